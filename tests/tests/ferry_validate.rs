//! `ferry validate` across engines: a real pipeline copies a source into a
//! target of the other engine; validate finds them equal, then names the
//! missing, extra and changed rows an operator made by hand in the target.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_tests::mariadb::{self, MariaDatabase};
use ferry_tests::{binary, start_apply, start_apply_with, start_capture, unique, wait_streaming, PgDatabase};

const DEADLINE: Duration = Duration::from_secs(120);

/// Tables of every kind of value, a text key and no key at all.
const TABLES: &str =
    "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,3), note text, at timestamptz, raw bytea,
                      ok boolean, u uuid, doc jsonb, r real, d double precision, day date, t time);
 INSERT INTO orders SELECT i, i * 1.25, 'note ' || i, '2024-01-02 03:04:05.5+02'::timestamptz + i * interval '1 minute',
                           decode(lpad(to_hex(i), 4, '0'), 'hex'), i % 2 = 0, md5(i::text)::uuid,
                           jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)), i / 3.0, i / 7.0,
                           date '2024-01-01' + i, time '10:00:00.25' + i * interval '1 second'
                    FROM generate_series(1, 2000) i;
 INSERT INTO orders (id) VALUES (0);
 CREATE TABLE codes (code text PRIMARY KEY, n int);
 INSERT INTO codes VALUES ('B', 1), ('a', 2), ('é', 3), ('a b', 4);
 CREATE TABLE log (line text, n int);
 ALTER TABLE log REPLICA IDENTITY FULL;
 INSERT INTO log VALUES ('x', 1), ('x', 1), ('y', 2);";

/// `ferry validate` of `source` against `target`: exit code and stdout (stderr when it failed to run).
async fn validate(source: &str, target: &str, extra: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(binary("ferry"))
        .args(["validate", "--source", source, "--target", target])
        .args(extra)
        .output()
        .await
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let text = if code == 2 { out.stderr } else { out.stdout };
    (code, String::from_utf8_lossy(&text).into_owned())
}

/// Waits until validate says equal (the pipeline has caught up), or panics
/// with what it said last.
async fn wait_equal(source: &str, target: &str) {
    let mut last = String::new();
    let equal = tokio::time::timeout(DEADLINE, async {
        loop {
            let (code, out) = validate(source, target, &[]).await;
            assert_ne!(code, 2, "{out}");
            if code == 0 {
                return;
            }
            last = out;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(equal.is_ok(), "the target never became equal; validate said:\n{last}");
}

#[tokio::test]
async fn postgres_to_mariadb_equal_then_each_difference_named() {
    let source = PgDatabase::create();
    source.execute(TABLES).await;
    let target = MariaDatabase::create().await;
    let prefix = unique("val");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let apply = start_apply_with("ferry-apply-mysql", &target.url(), &prefix, &unique("g"), &[]);
    wait_equal(&source.url(), &target.url()).await;
    capture.terminate();
    apply.terminate();

    target
        .execute(
            "DELETE FROM orders WHERE id = 17;
             UPDATE orders SET amount = amount + 0.001 WHERE id = 1500;
             UPDATE codes SET n = 9 WHERE code = 'é';
             INSERT INTO orders (id, note) VALUES (99999, 'extra');
             INSERT INTO log VALUES ('x', 1);",
        )
        .await;
    let (code, out) = validate(&source.url(), &target.url(), &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENT: 1 missing, 1 extra, 1 changed"), "{out}");
    assert!(out.contains("missing: (id=17)"), "{out}");
    assert!(out.contains("extra: (id=99999)"), "{out}");
    assert!(out.contains("changed: (id=1500)"), "{out}");
    assert!(out.contains("changed: (code=é)"), "{out}");
    assert!(
        out.contains("extra: (x, 1)"),
        "keyless rows are compared as a multiset: {out}"
    );
    assert!(out.contains("3 of 3 tables differ"), "{out}");

    // --tables narrows it; --json gives the same verdicts.
    let (code, json) = validate(&source.url(), &target.url(), &["--tables", "public.orders", "--json"]).await;
    assert_eq!(code, 1);
    let reports: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["missing_keys"][0], "(id=17)");
    assert_eq!(reports[0]["source_rows"], 2001);
}

#[tokio::test]
async fn mariadb_to_postgres_equal_then_a_changed_row_named() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE items (id INT PRIMARY KEY, price DECIMAL(10,2), label VARCHAR(40), at DATETIME(6),
                                 flag TINYINT(1), blob_col VARBINARY(16), took TIME(3), f FLOAT, j JSON);
             INSERT INTO items VALUES (1, 10.50, 'one', '2024-05-06 07:08:09.123456', 1, X'00ff', '-01:02:03.500', 0.1, '{\"a\": [1, 2]}'),
                                      (2, 0.00, NULL, '2024-05-06 07:08:09', 0, NULL, '838:59:59', NULL, NULL),
                                      (3, -7.25, 'three', NULL, NULL, X'', '00:00:00', 1e20, '[]');",
        )
        .await;
    let target = PgDatabase::create();
    let prefix = unique("val");
    let capture = mariadb::start_capture(&source, &prefix, mariadb::server_id(), &[]);
    mariadb::wait_position(&prefix).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_equal(&source.url(), &target.url()).await;
    capture.terminate();
    apply.terminate();

    target.execute("UPDATE items SET label = 'ONE' WHERE id = 1").await;
    let (code, out) = validate(&source.url(), &target.url(), &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("changed: (id=1)"), "{out}");
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_code_2_and_a_missing_table_is_named() {
    let (code, err) = validate("redis://127.0.0.1:6379", "postgres://postgres@127.0.0.1/postgres", &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("postgres://, mysql:// and duckdb://"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, err) = validate("duckdb://./x.duckdb", "postgres://postgres@127.0.0.1/postgres", &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("a DuckDB file is a target only"), "{err}");
    let (code, err) = validate(
        "mysql://root@127.0.0.1:3306",
        "postgres://postgres@127.0.0.1/postgres",
        &[],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("names no database"), "{err}");

    let source = PgDatabase::create();
    source.execute("CREATE TABLE only_here (id int PRIMARY KEY)").await;
    let target = PgDatabase::create();
    let (code, out) = validate(&source.url(), &target.url(), &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("MISSING: the target has no table public.only_here"),
        "{out}"
    );
}

#[tokio::test]
async fn postgres_to_duckdb_by_ferry_migrate_equal_then_each_difference_named() {
    let source = PgDatabase::create();
    source.execute(TABLES).await;
    source
        .execute(
            "CREATE TABLE spans (id int PRIMARY KEY, span interval, at timestamp, big numeric, tz timestamptz);
             INSERT INTO spans SELECT i, i * interval '1 hour 2 minutes 3.5 seconds', '2024-02-29 23:59:59.123456'::timestamp + i * interval '1 day',
                                      i * 12345678901234567890.5, NULL
                               FROM generate_series(-5, 5) i;
             UPDATE spans SET tz = '1999-12-31 23:00:00-05' WHERE id > 0;",
        )
        .await;
    let lake = ferry_tests::duck::DuckDir::create();
    let target = format!("duckdb://{}", lake.file().display());
    // A full load validates by itself before it stops.
    ferry_tests::ferry_full_load(&source.url(), &[&target], &unique("val")).await;
    let (code, out) = validate(&source.url(), &target, &[]).await;
    assert_eq!(code, 0, "{out}");

    {
        let duck = duckdb::Connection::open(lake.file()).unwrap();
        duck.execute_batch(
            "DELETE FROM orders WHERE id = 17;
             UPDATE orders SET \"at\" = CAST(CAST(\"at\" AS TIMESTAMP) + INTERVAL 1 MICROSECOND AS TIMESTAMPTZ) WHERE id = 1500;
             UPDATE spans SET \"at\" = \"at\" + INTERVAL 1 SECOND WHERE id = -3;
             UPDATE codes SET n = 9 WHERE code = 'é';
             INSERT INTO orders (id, note) VALUES (99999, 'extra');
             INSERT INTO log VALUES ('x', 1);",
        )
        .unwrap();
    }
    let (code, out) = validate(&source.url(), &target, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENT: 1 missing, 1 extra, 1 changed"), "{out}");
    assert!(out.contains("missing: (id=17)"), "{out}");
    assert!(out.contains("extra: (id=99999)"), "{out}");
    assert!(out.contains("changed: (id=1500)"), "{out}");
    assert!(out.contains("changed: (id=-3)"), "{out}");
    assert!(out.contains("changed: (code=é)"), "{out}");
    assert!(out.contains("extra: (x, 1)"), "{out}");
    assert!(out.contains("4 of 4 tables differ"), "{out}");
}

#[tokio::test]
async fn mariadb_to_duckdb_by_ferry_migrate_equal_then_a_changed_time_named() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE shifts (id int PRIMARY KEY, took time(6), starts datetime(6), pay decimal(9,2),
                                  badge varbinary(8), ok tinyint(1), at timestamp(3) NULL, label varchar(20));
             INSERT INTO shifts VALUES (1, '-838:59:59.000000', '2024-02-29 23:59:59.123456', 12.5, x'00ff', 1,
                                        '2024-01-02 03:04:05.250', 'é'),
                                       (2, '01:02:03.500000', '1999-12-31 00:00:00', -0.01, NULL, 0, NULL, NULL),
                                       (3, '838:59:59', '2038-01-19 03:14:07.999999', 0, x'', NULL, '2030-06-30 12:00:00', 'a b');",
        )
        .await;
    let lake = ferry_tests::duck::DuckDir::create();
    let target = format!("duckdb://{}", lake.file().display());
    ferry_tests::ferry_full_load(&source.url(), &[&target], &unique("val")).await;

    duckdb::Connection::open(lake.file())
        .unwrap()
        .execute_batch("UPDATE shifts SET took = took + INTERVAL 1 MICROSECOND WHERE id = 2")
        .unwrap();
    let (code, out) = validate(&source.url(), &target, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENT: 0 missing, 0 extra, 1 changed"), "{out}");
    assert!(out.contains("changed: (id=2)"), "{out}");
}

#[tokio::test]
async fn replay_rebuilds_a_dropped_duckdb_table_and_the_migration_resumes_equal() {
    let source = PgDatabase::create();
    source
        .execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 500) i;",
        )
        .await;
    let lake = ferry_tests::duck::DuckDir::create();
    let target = format!("duckdb://{}", lake.file().display());
    let prefix = unique("val");
    ferry_tests::ferry_full_load(&source.url(), &[&target], &prefix).await;

    duckdb::Connection::open(lake.file())
        .unwrap()
        .execute_batch("DROP TABLE items")
        .unwrap();
    let out = tokio::process::Command::new(binary("ferry"))
        .args(["replay", "--target", &target, "--group", &format!("{prefix}.to.0")])
        .args(["--from", "earliest", "--force", "--brokers", &ferry_tests::brokers()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("{prefix}.public.items partition 0: ")),
        "{stdout}"
    );
    let (code, out) = validate(&source.url(), &target, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("MISSING: the target has no table main.items"), "{out}");

    // The same migration again: its capture has its snapshot, its apply
    // reads the topics from the start again and makes the table anew.
    ferry_tests::ferry_full_load(&source.url(), &[&target], &prefix).await;
}
