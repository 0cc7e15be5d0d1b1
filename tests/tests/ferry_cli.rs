//! `ferry topics` and `ferry replay` against the real stack: the topics of a
//! running pipeline with their subjects, and a target whose table was dropped
//! rebuilt from the log.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_tests::{binary, start_apply, start_capture, unique, wait_for, wait_streaming, PgDatabase};

const DEADLINE: Duration = Duration::from_secs(120);

/// `ferry ARGS`: exit code, stdout, stderr.
async fn ferry(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(binary("ferry"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wait_equal(source: &PgDatabase, target: &PgDatabase) {
    wait_for("the target to equal the source", DEADLINE, || async {
        let (code, out, _) = ferry(&["validate", "--source", &source.url(), "--target", &target.url()]).await;
        (code == 0).then_some(out)
    })
    .await;
}

#[tokio::test]
async fn topics_list_a_pipeline_and_replay_rebuilds_a_dropped_table() {
    let source = PgDatabase::create();
    source
        .execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i;",
        )
        .await;
    let target = PgDatabase::create();
    let prefix = unique("cli");
    let group = unique("g");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    source
        .execute("UPDATE items SET name = 'changed' WHERE id <= 10; DELETE FROM items WHERE id > 290")
        .await;
    let apply = start_apply(&target, &prefix, &group, &[]);
    wait_equal(&source, &target).await;

    // The topics of the prefix, with their partitions, messages and subjects.
    let (code, json, err) = ferry(&["topics", "--prefix", &prefix, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let topics: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == format!("{prefix}.public.items"))
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(items["partitions"], 3);
    // 300 reads, 10 updates, 10 deletes and their tombstones.
    assert_eq!(items["messages"], 330, "{json}");
    let subjects: Vec<&str> = items["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            format!("{prefix}.public.items-key"),
            format!("{prefix}.public.items-value")
        ]
    );
    assert!(topics
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["topic"].as_str().unwrap().starts_with(&format!("{prefix}."))));

    // Not while the group runs: its next batch would store its old position again.
    let (code, _, err) = ferry(&[
        "replay",
        "--target",
        &target.url(),
        "--group",
        &group,
        "--from",
        "earliest",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("running member"), "{err}");

    // Rebuild: stop apply, drop the table, move the group to the start, apply again.
    apply.terminate();
    target.execute("DROP TABLE items").await;
    let (code, out, err) = ferry(&[
        "replay",
        "--target",
        &target.url(),
        "--group",
        &group,
        "--from",
        "earliest",
        "--force",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{prefix}.public.items partition 0: ")), "{out}");
    assert!(out.contains("-> 0"), "{out}");
    let apply = start_apply(&target, &prefix, &group, &[]);
    wait_equal(&source, &target).await;
    apply.terminate();
    capture.terminate();

    // A group the target never saw is an error that says so.
    let (code, _, err) = ferry(&[
        "replay",
        "--target",
        &target.url(),
        "--group",
        "nobody",
        "--from",
        "earliest",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("holds no offsets of apply group \"nobody\""), "{err}");
}

/// `ferry status --json ARGS` as JSON, the statuses of one kind and name.
async fn status_of(args: &[&str], kind: &str, name: &str) -> Option<serde_json::Value> {
    let mut all = vec!["status", "--json"];
    all.extend(args);
    let (code, out, err) = ferry(&all).await;
    assert_eq!(code, 0, "{err}");
    let statuses: serde_json::Value = serde_json::from_str(&out).unwrap();
    statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["name"] == name)
        .cloned()
}

#[tokio::test]
async fn status_shows_the_pipeline_a_silent_killed_capture_and_a_failed_one() {
    let source = PgDatabase::create();
    source
        .execute("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'x' FROM generate_series(1, 50) i;")
        .await;
    let target = PgDatabase::create();
    let (prefix, group) = (unique("st"), unique("g"));
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    source
        .execute("UPDATE items SET name = 'y' WHERE id <= 5; DELETE FROM items WHERE id = 50")
        .await;
    let apply = start_apply(&target, &prefix, &group, &[]);
    wait_equal(&source, &target).await;

    // The capture: streaming, its position, 50 reads, 5 updates, 1 delete.
    let capture_status = wait_for("the capture's report", DEADLINE, || async {
        let s = status_of(&["--prefix", &prefix], "capture", &prefix).await?;
        (s["tables"]["public.items"]["d"] == 1 && s["state"] == "streaming").then_some(s)
    })
    .await;
    assert_eq!(capture_status["tables"]["public.items"]["r"], 50, "{capture_status}");
    assert_eq!(capture_status["tables"]["public.items"]["u"], 5, "{capture_status}");
    assert_eq!(capture_status["position"]["source"], "postgres", "{capture_status}");
    // The apply group: the rows it applied.
    let apply_status = wait_for("the apply group's report", DEADLINE, || async {
        let s = status_of(&["--group", &group], "apply", &group).await?;
        (s["tables"]["public.items"]["d"] == 1).then_some(s)
    })
    .await;
    assert_eq!(apply_status["state"], "streaming", "{apply_status}");

    // kill -9: the capture says nothing more, and status says it went silent.
    capture.kill9();
    let (_, human, _) = wait_for("the killed capture to show as silent", DEADLINE, || async {
        let s = status_of(&["--prefix", &prefix], "capture", &prefix).await?;
        if s["state"] != "silent" {
            return None;
        }
        Some(ferry(&["status", "--prefix", &prefix]).await)
    })
    .await;
    assert!(human.contains(&format!("capture {prefix} — SILENT for")), "{human}");
    apply.terminate();

    // A capture that cannot start says why in its last report.
    source.execute("CREATE TABLE nokey (n int)").await;
    let failing = unique("st");
    let run = start_capture(&source, &failing, &[]);
    assert!(!run.exited(DEADLINE).await.success());
    let failed = status_of(&["--prefix", &failing], "capture", &failing).await.unwrap();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["last_error"].as_str().unwrap().contains("REPLICA IDENTITY"),
        "{failed}"
    );
}

#[tokio::test]
async fn assess_reports_readiness_sizes_conversions_and_what_is_left_behind() {
    let source = PgDatabase::create();
    source
        .execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2), note text, at timestamptz);
             INSERT INTO orders SELECT i, i, 'n', now() FROM generate_series(1, 5000) i;
             ANALYZE orders;
             CREATE TABLE audit (line text);
             CREATE INDEX orders_at ON orders (at);
             CREATE VIEW recent AS SELECT * FROM orders;
             CREATE SEQUENCE invoice_no;",
        )
        .await;
    let target = ferry_tests::mariadb::MariaDatabase::create().await;
    let (code, json, err) = ferry(&["assess", "--source", &source.url(), "--target", &target.url(), "--json"]).await;
    assert_eq!(code, 1, "not ready: audit has no key nor identity; {err}");
    let a: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(a["engine"], "PostgreSQL");
    assert!(
        a["problems"][0].as_str().unwrap().contains("REPLICA IDENTITY FULL"),
        "{a}"
    );
    let orders = a["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.orders")
        .unwrap();
    assert_eq!(
        (orders["rows_estimate"].as_u64(), orders["primary_key"].as_bool()),
        (Some(5000), Some(true))
    );
    assert_eq!(orders["large_columns"], serde_json::json!(["note"]));
    let numeric = a["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source_type"] == "numeric(12,2)")
        .unwrap();
    assert_eq!(numeric["target_type"], "DECIMAL(12,2)");
    let left: Vec<&str> = a["not_migrated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for object in [
        "view public.recent",
        "sequence public.invoice_no",
        "index public.orders_at on orders",
    ] {
        assert!(left.iter().any(|n| n.starts_with(object)), "{object}: {left:?}");
    }

    // A ready source exits 0; the human report says so.
    source.execute("ALTER TABLE audit REPLICA IDENTITY FULL").await;
    let (code, out, err) = ferry(&["assess", "--source", &source.url()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ready: every setting"), "{out}");
}
