//! PostgreSQL capture against the real server: validation and the catalog.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_capture::filter::TableFilter;
use ferry_capture::postgres::catalog::table_meta;
use ferry_capture::postgres::validate::{validate, Problem};
use ferry_core::meta::{DataType, TableId};
use ferry_tests::{capture_args, connect_pg, start_capture, unique, wait_for, PgDatabase};

#[tokio::test]
async fn a_ready_database_passes() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE log (line text); ALTER TABLE log REPLICA IDENTITY FULL;
         CREATE SCHEMA inventory; CREATE TABLE inventory.items (sku text PRIMARY KEY);",
    )
    .await;
    let client = db.client().await;
    let filter = TableFilter::parse("").unwrap();
    let (tables, problems) = validate(&client, &filter, &unique("slot"), "ferry").await.unwrap();
    assert_eq!(problems, vec![]);
    assert_eq!(
        tables,
        vec![
            TableId::new("inventory", "items"),
            TableId::new("public", "log"),
            TableId::new("public", "orders")
        ]
    );
    let filter = TableFilter::parse("inventory.*").unwrap();
    let (tables, _) = validate(&client, &filter, &unique("slot"), "ferry").await.unwrap();
    assert_eq!(tables, vec![TableId::new("inventory", "items")]);
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    let db = PgDatabase::create();
    let role = unique("norepl");
    db.execute(&format!(
        "CREATE TABLE keyless (a int);
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    ))
    .await;
    let client = connect_pg(&db.url_as(&role)).await;
    let filter = TableFilter::parse("public.*,public.ordres").unwrap();
    let (_, problems) = validate(&client, &filter, &unique("slot"), "ferry").await.unwrap();
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.contains(&Problem::NoReplicationPrivilege { role: role.clone() }),
        "{lines:#?}"
    );
    assert!(problems.contains(&Problem::UnknownTable {
        pattern: "public.ordres".into()
    }));
    assert!(problems.contains(&Problem::NoIdentity {
        table: TableId::new("public", "keyless"),
        identity: 'd'
    }));
    assert!(problems.contains(&Problem::NoIdentity {
        table: TableId::new("public", "nothing"),
        identity: 'n'
    }));
    // Not owning the tables, the role cannot publish them.
    assert!(problems.contains(&Problem::PublicationNotPermitted {
        role: role.clone(),
        publication: "ferry".into(),
        exists: false,
        tables: vec![TableId::new("public", "keyless"), TableId::new("public", "nothing")],
    }));
    assert_eq!(problems.len(), 5, "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\n')));
    assert!(lines
        .iter()
        .any(|l| l.contains("ALTER TABLE \"public\".\"keyless\" REPLICA IDENTITY FULL")));
    assert!(lines
        .iter()
        .any(|l| l.contains(&format!("ALTER ROLE {role} REPLICATION"))));
    db.execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
}

#[tokio::test]
async fn a_slot_in_use_names_the_process() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)").await;
    let slot = unique("busy");
    let other = unique("wrong_plugin");
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput');
         SELECT pg_create_logical_replication_slot('{other}', 'test_decoding');"
    ))
    .await;
    let mut holder = Command::new("pg_recvlogical")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &db.name,
            "--slot",
            &slot,
            "--start",
            "-f",
            "/dev/null",
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pg_recvlogical");
    let client = db.client().await;
    let pid: i32 = wait_for("pg_recvlogical to hold the slot", Duration::from_secs(30), || async {
        client
            .query_one(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i32>>(0))
    })
    .await;
    let filter = TableFilter::parse("").unwrap();
    let (_, problems) = validate(&client, &filter, &slot, "ferry").await.unwrap();
    assert_eq!(
        problems,
        vec![Problem::SlotInUse {
            slot: slot.clone(),
            pid
        }]
    );
    assert!(problems[0].to_string().contains(&pid.to_string()));
    let (_, problems) = validate(&client, &filter, &other, "ferry").await.unwrap();
    assert!(
        matches!(&problems[..], [Problem::SlotMismatch { what: "plugin", .. }]),
        "{problems:?}"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[tokio::test]
async fn the_catalog_gives_columns_types_and_key() {
    let db = PgDatabase::create();
    db.execute(
        r#"CREATE TABLE "Order Items" (
             "line no" int NOT NULL,
             order_id bigint NOT NULL,
             price numeric(10,2) DEFAULT 0,
             note varchar(20),
             at timestamptz NOT NULL DEFAULT now(),
             tags text[],
             PRIMARY KEY (order_id, "line no"));
           ALTER TABLE "Order Items" DROP COLUMN note;
           ALTER TABLE "Order Items" ADD COLUMN note2 text;"#,
    )
    .await;
    let client = db.client().await;
    let meta = table_meta(&client, &TableId::new("public", "Order Items"))
        .await
        .unwrap();
    let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["line no", "order_id", "price", "at", "tags", "note2"]);
    let key: Vec<&str> = meta.key_columns().map(|c| c.name.as_str()).collect();
    assert_eq!(key, ["order_id", "line no"], "key in primary-key order");
    let price = meta.column("price").unwrap();
    assert_eq!(
        price.data_type,
        DataType::Decimal {
            precision: 10,
            scale: 2,
            special: true
        }
    );
    assert_eq!(price.source_type, "numeric(10,2)");
    assert_eq!(price.default.as_deref(), Some("0"));
    assert!(price.nullable);
    let at = meta.column("at").unwrap();
    assert_eq!((at.data_type, at.nullable), (DataType::TimestampTz, false));
    assert_eq!(at.default.as_deref(), Some("now()"));
    assert_eq!(meta.column("tags").unwrap().source_type, "text[]");
    let keyless = {
        db.execute("CREATE TABLE plain (a int)").await;
        table_meta(&client, &TableId::new("public", "plain")).await.unwrap()
    };
    assert!(keyless.key.is_empty());
}

use ferry_core::envelope::{Op, Snapshot};
use ferry_core::value::Datum;
use ferry_tests::{read_topic, SERVICES_REGISTRY};

/// The flags to capture `db` under `prefix`, on the test broker unless `extra` names one.
fn int(d: &Datum) -> i64 {
    match d {
        Datum::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[tokio::test]
async fn snapshot_then_stream_then_resume_without_a_second_snapshot() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric(10,2), big text);
         ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO orders SELECT i, 'row ' || i, i * 1.5, NULL FROM generate_series(1, 3) i;",
    )
    .await;
    let prefix = unique("pgcap");
    let topic = format!("{prefix}.public.orders");
    let capture = start_capture(&db, &prefix, &[]);

    let snapshot = read_topic(&topic, 3, SERVICES_REGISTRY).await;
    let events: Vec<_> = snapshot
        .iter()
        .map(|r| r.event.clone().expect("no tombstones"))
        .collect();
    assert!(events.iter().all(|e| e.op == Op::Read && e.before.is_none()));
    let mut ids: Vec<i64> = events.iter().map(|e| int(&e.after.as_ref().unwrap()[0])).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        events.iter().filter(|e| e.source.snapshot == Snapshot::Last).count(),
        1,
        "exactly one event marks the snapshot's end"
    );

    // Changes while streaming: insert with a large value, an update that leaves
    // it untouched, a key change, a delete, a truncate.
    let big = "x".repeat(10_000);
    db.execute(&format!(
        "INSERT INTO orders VALUES (4, 'four', 6.00, '{big}');
         UPDATE orders SET note = 'FOUR' WHERE id = 4;
         UPDATE orders SET id = 5 WHERE id = 1;
         DELETE FROM orders WHERE id = 2;
         TRUNCATE orders;"
    ))
    .await;
    // 3 snapshot reads + insert + update + key change (delete, tombstone, create)
    // + delete + tombstone + truncate (a copy in each of the 3 partitions).
    let all = read_topic(&topic, 13, SERVICES_REGISTRY).await;
    let streamed: Vec<_> = all
        .iter()
        .filter(|r| r.event.as_ref().is_none_or(|e| e.op != Op::Read))
        .collect();
    let find = |op: Op| {
        streamed
            .iter()
            .filter_map(|r| r.event.clone())
            .filter(|e| e.op == op)
            .collect::<Vec<_>>()
    };
    let mut inserts = find(Op::Create);
    inserts.sort_by_key(|e| int(&e.after.as_ref().unwrap()[0]));
    assert_eq!(inserts.len(), 2);
    assert_eq!(inserts[0].after.as_ref().unwrap()[3], Datum::Text(big.clone()));
    assert!(inserts[0].transaction.is_some() && inserts[0].source.ts_ms > 0);
    let updates = find(Op::Update);
    assert_eq!(updates.len(), 1);
    let toast = updates
        .iter()
        .find(|e| int(&e.after.as_ref().unwrap()[0]) == 4)
        .unwrap();
    assert_eq!(toast.after.as_ref().unwrap()[1], Datum::Text("FOUR".into()));
    assert_eq!(toast.after.as_ref().unwrap()[3], Datum::Null);
    assert_eq!(
        toast.unchanged,
        vec!["big".to_owned()],
        "the untouched value is marked, not invented"
    );
    // A key change is the old key's delete, then the new key's create.
    assert_eq!(int(&inserts[1].after.as_ref().unwrap()[0]), 5);
    let deletes = find(Op::Delete);
    let mut deleted: Vec<i64> = deletes.iter().map(|e| int(&e.before.as_ref().unwrap()[0])).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, [1, 2]);
    assert_eq!(
        streamed.iter().filter(|r| r.event.is_none()).count(),
        2,
        "a tombstone after each delete"
    );
    assert_eq!(find(Op::Truncate).len(), 3, "a truncate in every partition");

    // A clean stop, changes while stopped, a restart: only the new changes come.
    assert!(capture.terminate().success(), "clean stop");
    db.execute("INSERT INTO orders VALUES (10, 'while stopped', 1, NULL)")
        .await;
    let capture = start_capture(&db, &prefix, &[]);
    let after_restart = read_topic(&topic, 14, SERVICES_REGISTRY).await;
    let new_row = after_restart
        .iter()
        .filter_map(|r| r.event.clone())
        .find(|e| e.after.as_ref().is_some_and(|a| int(&a[0]) == 10))
        .expect("the row inserted while stopped");
    assert_eq!(new_row.op, Op::Create);
    assert_eq!(
        after_restart
            .iter()
            .filter(|r| r.event.as_ref().is_some_and(|e| e.op == Op::Read))
            .count(),
        3,
        "no second snapshot"
    );
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_bad_source_is_one_line_and_a_failure_exit() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE keyless (a int)").await;
    let prefix = unique("pgbad");
    let out = std::process::Command::new(ferry_tests::binary("ferry-capture-postgres"))
        .args(capture_args(
            &db,
            &prefix,
            &["--tables", "public.keyless,public.missing"],
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ferry-capture-postgres:"))
        .expect("error line");
    assert!(
        line.contains("REPLICA IDENTITY FULL") && line.contains("public.missing does not exist"),
        "{line}"
    );
    let out = std::process::Command::new(ferry_tests::binary("ferry-capture-postgres"))
        .args(["--source", "postgres://nobody@127.0.0.1:1/x", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot connect to PostgreSQL at postgres://nobody@127.0.0.1:1/x"));
}

/// Every id in 1..=n arrived (duplicates allowed: at-least-once into Kafka).
async fn assert_all_ids_arrive(brokers: &str, topic: &str, n: i64) {
    use std::collections::BTreeSet;
    let want: BTreeSet<i64> = (1..=n).collect();
    let seen = wait_for(&format!("ids 1..={n} on {topic}"), Duration::from_secs(120), || async {
        let count = ferry_tests::topic_count_at(brokers, topic);
        if count < n {
            return None;
        }
        let messages =
            ferry_tests::read_topic_at(brokers, topic, usize::try_from(count).ok()?, SERVICES_REGISTRY).await;
        let ids: BTreeSet<i64> = messages
            .iter()
            .filter_map(|m| m.event.as_ref()?.after.as_ref().map(|row| int(&row[0])))
            .collect();
        (ids == want).then_some(ids)
    })
    .await;
    assert_eq!(seen.len() as i64, n);
}

/// The slot never confirms more than the position stored in Kafka.
async fn assert_slot_behind_stored_offset(brokers: &str, db: &PgDatabase, slot: &str, prefix: &str) {
    use ferry_capture::offsets::Offsets;
    use ferry_core::kafka::KafkaSettings;
    use ferry_core::position::{PgLsn, SourcePosition};
    let client = db.client().await;
    let confirmed: String = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slot")
        .get(0);
    let confirmed: PgLsn = confirmed.parse().expect("LSN");
    let offsets = Offsets::open(&KafkaSettings::new(brokers), "_ferry_offsets")
        .await
        .expect("offsets topic");
    let stored = match offsets.load::<SourcePosition>(prefix).await.expect("stored offset") {
        Some(SourcePosition::Postgres { lsn }) => lsn,
        other => panic!("no stored position: {other:?}"),
    };
    assert!(
        confirmed <= stored,
        "slot confirmed {confirmed}, Kafka holds up to {stored}"
    );
}

#[tokio::test]
async fn kill_9_during_the_snapshot_and_the_stream_loses_nothing() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i;",
    )
    .await;
    let prefix = unique("pgkill");
    let slot = ferry_capture::postgres::PgCaptureConfig::default_name(&prefix);
    let topic = format!("{prefix}.public.t");

    // Killed while the snapshot is being read.
    let capture = start_capture(&db, &prefix, &[]);
    wait_for("part of the snapshot in Kafka", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) > 0).then_some(())
    })
    .await;
    capture.kill9();

    // Restarted: the snapshot runs again, then streaming; killed mid-stream.
    let capture = start_capture(&db, &prefix, &[]);
    let client = db.client().await;
    for batch in 0..40 {
        let from = 20_001 + batch * 250;
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i, 'streamed' FROM generate_series({from}, {}) i",
                from + 249
            ))
            .await
            .unwrap();
        if batch == 20 {
            wait_for("streamed changes in Kafka", Duration::from_secs(60), || async {
                (ferry_tests::topic_count(&topic) > 20_000).then_some(())
            })
            .await;
            capture.kill9();
            break;
        }
    }
    // Changes while it is down, then a restart that must pick them all up.
    client
        .batch_execute("INSERT INTO t SELECT i, 'while down' FROM generate_series(25251, 30000) i")
        .await
        .unwrap();
    let capture = start_capture(&db, &prefix, &[]);
    assert_all_ids_arrive(&ferry_tests::brokers(), &topic, 30_000).await;
    assert_slot_behind_stored_offset(&ferry_tests::brokers(), &db, &slot, &prefix).await;
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_column_added_mid_stream_gets_a_new_schema_version() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE s (id int PRIMARY KEY, a text)").await;
    let prefix = unique("pgddl");
    let topic = format!("{prefix}.public.s");
    let capture = start_capture(&db, &prefix, &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    db.execute(
        "INSERT INTO s VALUES (1, 'before');
         ALTER TABLE s ADD COLUMN b numeric(6,2) NOT NULL DEFAULT 1.5;
         INSERT INTO s VALUES (2, 'after', 2.25);
         ALTER TABLE s DROP COLUMN a;
         INSERT INTO s VALUES (3, 3.75);",
    )
    .await;
    let got = read_topic(&topic, 3, SERVICES_REGISTRY).await;
    // Order across keys (partitions) is not defined: look rows up by id.
    let mut rows: Vec<Vec<Datum>> = got.iter().map(|r| r.event.clone().unwrap().after.unwrap()).collect();
    rows.sort_by_key(|r| int(&r[0]));
    assert_eq!(rows[0], vec![Datum::Int(1), Datum::Text("before".into())]);
    assert_eq!(rows[1].len(), 3);
    assert_eq!(rows[1][2], Datum::Decimal("2.25".parse().unwrap()));
    assert_eq!(rows[2], vec![Datum::Int(3), Datum::Decimal("3.75".parse().unwrap())]);
    let versions: serde_json::Value = reqwest::get(format!("{SERVICES_REGISTRY}/subjects/{topic}-value/versions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, serde_json::json!([1, 2, 3]));
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn ddl_during_the_snapshot_waits_for_it() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE d (id int PRIMARY KEY, v text, w text);
         INSERT INTO d SELECT i, md5(i::text), 'w' FROM generate_series(1, 50000) i;",
    )
    .await;
    let prefix = unique("pgsnapddl");
    let topic = format!("{prefix}.public.d");
    let capture = start_capture(&db, &prefix, &[]);
    wait_for("the snapshot to be under way", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) > 0).then_some(())
    })
    .await;
    // Waits for the snapshot's lock, then drops a column the snapshot reads.
    db.execute("ALTER TABLE d DROP COLUMN v; INSERT INTO d VALUES (50001, 'after');")
        .await;
    assert_all_ids_arrive(&ferry_tests::brokers(), &topic, 50_001).await;
    assert!(capture.terminate().success(), "capture survived the DDL");
}

#[tokio::test]
async fn each_transaction_gets_begin_and_end_records_that_count_its_events() {
    use ferry_core::transaction::{TransactionCodec, TxStatus};
    let db = PgDatabase::create();
    db.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);")
        .await;
    let prefix = unique("pgtx");
    let capture = start_capture(&db, &prefix, &["--tables", "public.a,public.b"]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    db.execute("BEGIN; INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (1); COMMIT;")
        .await;
    // Only an uncaptured table: no records at all.
    db.execute("INSERT INTO c VALUES (1)").await;
    db.execute("UPDATE b SET id = 2").await;

    let codec = TransactionCodec::new(&prefix).unwrap();
    let records: Vec<_> = ferry_tests::read_raw(&format!("{prefix}.transaction"), 4)
        .await
        .into_iter()
        .map(|(_, value)| {
            let (_, datum) = ferry_core::wire::decode(value.as_deref().unwrap()).unwrap();
            codec.decode_value(datum).unwrap()
        })
        .collect();
    let ends: Vec<_> = records.iter().filter(|r| r.status == TxStatus::End).collect();
    assert_eq!(ends.len(), 2, "{records:#?}");
    for end in &ends {
        assert_eq!(
            records
                .iter()
                .filter(|r| r.id == end.id && r.status == TxStatus::Begin)
                .count(),
            1,
            "one BEGIN per END: {records:#?}"
        );
    }
    let big = ends
        .iter()
        .find(|r| r.event_count == Some(3))
        .expect("the 3-event transaction");
    assert_eq!(
        big.data_collections,
        [("public.a".to_owned(), 2), ("public.b".to_owned(), 1)]
    );
    let key_change = ends.iter().find(|r| r.event_count == Some(2)).expect("the key change");
    assert_eq!(key_change.data_collections, [("public.b".to_owned(), 2)]);

    // The events name their transaction and their place in it.
    let mut events: Vec<_> = read_topic(&format!("{prefix}.public.a"), 2, SERVICES_REGISTRY)
        .await
        .into_iter()
        .chain(read_topic(&format!("{prefix}.public.b"), 2, SERVICES_REGISTRY).await)
        .filter_map(|r| r.event?.transaction)
        .filter(|t| t.id == big.id)
        .collect();
    events.sort_by_key(|t| t.total_order);
    let orders: Vec<(i64, i64)> = events
        .iter()
        .map(|t| (t.total_order, t.data_collection_order))
        .collect();
    assert_eq!(orders, [(1, 1), (2, 2), (3, 1)]);
    assert!(capture.terminate().success());
}

/// Every (op, first column) on `topic` once at least `n` messages are there.
async fn ops_and_ids(topic: &str, n: i64) -> Vec<(Op, i64)> {
    wait_for(
        &format!("{n} messages on {topic}"),
        Duration::from_secs(120),
        || async { (ferry_tests::topic_count(topic) >= n).then_some(()) },
    )
    .await;
    let count = usize::try_from(ferry_tests::topic_count(topic)).unwrap();
    read_topic(topic, count, SERVICES_REGISTRY)
        .await
        .into_iter()
        .filter_map(|r| {
            let e = r.event?;
            let row = e.after.as_ref().or(e.before.as_ref())?;
            Some((e.op, int(&row[0])))
        })
        .collect()
}

async fn snapshot_state(prefix: &str) -> ferry_capture::offsets::SnapshotState {
    use ferry_capture::offsets::{snapshot_key, Offsets};
    let offsets = Offsets::open(
        &ferry_core::kafka::KafkaSettings::new(ferry_tests::brokers()),
        "_ferry_offsets",
    )
    .await
    .unwrap();
    offsets.load(&snapshot_key(prefix)).await.unwrap().unwrap_or_default()
}

#[tokio::test]
async fn kill_9_in_a_parallel_snapshot_reads_only_the_unfinished_table_again() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE a_small (id int PRIMARY KEY, v text);
         CREATE TABLE b_big (id int PRIMARY KEY, v text);
         INSERT INTO a_small SELECT i, 'small' FROM generate_series(1, 100) i;
         INSERT INTO b_big SELECT i, md5(i::text) FROM generate_series(1, 100000) i;",
    )
    .await;
    let prefix = unique("pgresume");
    let (small, big) = (format!("{prefix}.public.a_small"), format!("{prefix}.public.b_big"));
    let (id_small, id_big) = (TableId::new("public", "a_small"), TableId::new("public", "b_big"));
    let parallel = ["--snapshot-workers", "2", "--snapshot-chunk-pages", "16"];
    let capture = start_capture(&db, &prefix, &parallel);
    wait_for(
        "a_small's snapshot stored, b_big's under way",
        Duration::from_secs(60),
        || async {
            let state = snapshot_state(&prefix).await;
            (state.get(&id_small).is_some() && ferry_tests::topic_count(&big) > 0).then_some(())
        },
    )
    .await;
    capture.kill9();
    assert!(
        snapshot_state(&prefix).await.get(&id_big).is_none(),
        "b_big must still be unfinished for this test to mean anything"
    );

    // While down: a change to the finished table (streamed later), rows for the
    // unfinished one (in its new snapshot, so the stream must skip them).
    db.execute(
        "UPDATE a_small SET v = 'changed' WHERE id <= 10;
         INSERT INTO b_big SELECT i, 'while down' FROM generate_series(100001, 100100) i;",
    )
    .await;
    let capture = start_capture(&db, &prefix, &parallel);
    wait_for("b_big's snapshot stored", Duration::from_secs(120), || async {
        snapshot_state(&prefix).await.get(&id_big).map(|_| ())
    })
    .await;
    db.wait_slot_active(&ferry_capture::postgres::PgCaptureConfig::default_name(&prefix))
        .await;
    db.execute("INSERT INTO b_big SELECT i, 'streamed' FROM generate_series(100101, 100200) i")
        .await;

    let small_events = ops_and_ids(&small, 110).await;
    let reads = small_events.iter().filter(|(op, _)| *op == Op::Read).count();
    assert_eq!(reads, 100, "a_small is not read a second time");
    assert_eq!(small_events.iter().filter(|(op, _)| *op == Op::Update).count(), 10);

    let big_events = ops_and_ids(&big, 100_200).await;
    let mut seen = std::collections::BTreeMap::<i64, usize>::new();
    for (_, id) in &big_events {
        *seen.entry(*id).or_default() += 1;
    }
    assert_eq!(seen.len(), 100_200, "every row of b_big arrived");
    // Rows of the first, interrupted read may come twice; what came after it exactly once.
    for id in 100_001..=100_200 {
        assert_eq!(
            seen[&id], 1,
            "row {id}: no gap and no double at the new snapshot's point"
        );
    }
    assert_slot_behind_stored_offset(
        &ferry_tests::brokers(),
        &db,
        &ferry_capture::postgres::PgCaptureConfig::default_name(&prefix),
        &prefix,
    )
    .await;
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_table_added_to_the_include_list_is_snapshotted_while_writes_go_on() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE a (id int PRIMARY KEY);
         CREATE TABLE b (id int PRIMARY KEY);
         INSERT INTO a VALUES (1), (2);
         INSERT INTO b SELECT generate_series(1, 50);",
    )
    .await;
    let prefix = unique("pgadd");
    let capture = start_capture(&db, &prefix, &["--tables", "public.a"]);
    wait_for("a's snapshot stored", Duration::from_secs(60), || async {
        snapshot_state(&prefix)
            .await
            .get(&TableId::new("public", "a"))
            .map(|_| ())
    })
    .await;
    assert!(capture.terminate().success());

    // b joins the include list; single-row commits race its snapshot.
    let capture = start_capture(&db, &prefix, &["--tables", "public.a,public.b"]);
    let client = db.client().await;
    for id in 51..=150 {
        client
            .batch_execute(&format!("INSERT INTO b VALUES ({id})"))
            .await
            .unwrap();
    }
    wait_for("b's snapshot stored", Duration::from_secs(60), || async {
        snapshot_state(&prefix)
            .await
            .get(&TableId::new("public", "b"))
            .map(|_| ())
    })
    .await;
    db.execute("INSERT INTO b SELECT generate_series(151, 200)").await;

    let events = ops_and_ids(&format!("{prefix}.public.b"), 200).await;
    let mut ids: Vec<i64> = events.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>(), "each row of b exactly once");
    assert!(events.iter().any(|(op, _)| *op == Op::Read));
    assert!(events.iter().any(|(op, _)| *op == Op::Create));
    let a = ops_and_ids(&format!("{prefix}.public.a"), 2).await;
    assert_eq!(a.len(), 2, "a is not read again");
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn logical_messages_reach_the_message_topic_only_when_committed() {
    use ferry_core::message::MessageCodec;
    let db = PgDatabase::create();
    db.execute("CREATE TABLE orders (id int PRIMARY KEY)").await;
    let prefix = unique("pgmsg");
    let capture = start_capture(&db, &prefix, &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    db.execute(
        "BEGIN; INSERT INTO orders VALUES (1);
         SELECT pg_logical_emit_message(true, 'outbox.orders', '\\x00ff7b'::bytea); COMMIT;
         BEGIN; SELECT pg_logical_emit_message(true, 'outbox.orders', 'rolled back'); ROLLBACK;
         SELECT pg_logical_emit_message(false, 'audit', 'at once');",
    )
    .await;
    let topic = format!("{prefix}.message");
    wait_for("two messages", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) >= 2).then_some(())
    })
    .await;
    let codec = MessageCodec::new(&prefix, ferry_core::envelope::Connector::Postgres).unwrap();
    let mut messages: Vec<_> = ferry_tests::read_raw(&topic, 2)
        .await
        .into_iter()
        .map(|(_, v)| {
            codec
                .decode_value(ferry_core::wire::decode(&v.unwrap()).unwrap().1)
                .unwrap()
        })
        .collect();
    messages.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    assert_eq!(messages[0].prefix, "audit");
    assert_eq!(messages[0].content, b"at once");
    assert_eq!(messages[1].prefix, "outbox.orders");
    assert_eq!(messages[1].content, [0x00, 0xff, 0x7b]);
    match &messages[1].source.detail {
        ferry_core::envelope::SourceDetail::Postgres { tx_id, .. } => assert!(tx_id.is_some()),
        other => panic!("{other:?}"),
    }
    // The orders row arrives; the rolled-back message never does.
    read_topic(&format!("{prefix}.public.orders"), 1, SERVICES_REGISTRY).await;
    assert_eq!(ferry_tests::topic_count(&topic), 2);
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn the_slot_advances_while_only_another_database_changes_and_metrics_say_so() {
    let db = PgDatabase::create();
    let busy = PgDatabase::create();
    db.execute("CREATE TABLE quiet (id int PRIMARY KEY)").await;
    busy.execute("CREATE TABLE noise (id int)").await;
    let prefix = unique("pgidle");
    let slot = ferry_capture::postgres::PgCaptureConfig::default_name(&prefix);
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let capture = start_capture(&db, &prefix, &["--heartbeat-interval", "1", "--metrics", &metrics]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    let client = db.client().await;
    let confirmed = || async {
        let lsn: String = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        lsn.parse::<ferry_core::position::PgLsn>().unwrap()
    };
    let before = confirmed().await;
    busy.execute("INSERT INTO noise SELECT generate_series(1, 50000)").await;
    let end_of_noise: ferry_core::position::PgLsn = {
        let lsn: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        lsn.parse().unwrap()
    };
    assert!(end_of_noise > before);
    wait_for(
        "the slot to pass the other database's writes",
        Duration::from_secs(60),
        || async { (confirmed().await >= end_of_noise).then_some(()) },
    )
    .await;
    assert_slot_behind_stored_offset(&ferry_tests::brokers(), &db, &slot, &prefix).await;

    let http = reqwest::Client::new();
    let health = http.get(format!("http://{metrics}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().contains("streaming"));
    let text = wait_for(
        "heartbeats and slot lag in /metrics",
        Duration::from_secs(30),
        || async {
            let text = http
                .get(format!("http://{metrics}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (text.contains("ferry_capture_heartbeats_total") && text.contains("ferry_capture_slot_lag_bytes"))
                .then_some(text)
        },
    )
    .await;
    assert!(text.contains("ferry_capture_oldest_unacknowledged_seconds"), "{text}");
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn kill_9_between_produce_and_acknowledge_loses_nothing() {
    use ferry_capture::offsets::{snapshot_key, Offsets, SnapshotState};
    let broker = ferry_tests::PrivateBroker::start().await;
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'snap' FROM generate_series(1, 1000) i;",
    )
    .await;
    let prefix = unique("pgack");
    let slot = ferry_capture::postgres::PgCaptureConfig::default_name(&prefix);
    let topic = format!("{prefix}.public.t");
    let args = ["--brokers", broker.address.as_str()];
    let capture = start_capture(&db, &prefix, &args);
    let offsets = Offsets::open(
        &ferry_core::kafka::KafkaSettings::new(&broker.address),
        "_ferry_offsets",
    )
    .await
    .unwrap();
    wait_for("the snapshot stored", Duration::from_secs(60), || async {
        let state: SnapshotState = offsets.load(&snapshot_key(&prefix)).await.ok()??;
        state.get(&TableId::new("public", "t")).map(|_| ())
    })
    .await;
    db.wait_slot_active(&slot).await;

    // The broker stops answering: changes are produced but never acknowledged.
    broker.freeze();
    let client = db.client().await;
    for batch in 0..5 {
        let from = 1001 + batch * 100;
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i, 'frozen' FROM generate_series({from}, {}) i",
                from + 99
            ))
            .await
            .unwrap();
    }
    let end: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let end: ferry_core::position::PgLsn = end.parse().unwrap();
    let lsn = |column: &'static str| {
        let client = &client;
        let slot = slot.clone();
        async move {
            let sql = format!(
                "SELECT {column}::text FROM pg_stat_replication r JOIN pg_replication_slots s \
                 ON s.active_pid = r.pid WHERE s.slot_name = $1"
            );
            let text: Option<String> = client.query_opt(&sql, &[&slot]).await.unwrap()?.get(0);
            text?.parse::<ferry_core::position::PgLsn>().ok()
        }
    };
    wait_for(
        "capture to have received every change",
        Duration::from_secs(60),
        || async { (lsn("r.sent_lsn").await? >= end).then_some(()) },
    )
    .await;
    let confirmed: String = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        confirmed.parse::<ferry_core::position::PgLsn>().unwrap() < end,
        "nothing Kafka did not acknowledge is confirmed to the slot"
    );
    capture.kill9();
    broker.thaw();

    let capture = start_capture(&db, &prefix, &args);
    assert_all_ids_arrive(&broker.address, &topic, 1500).await;
    assert_slot_behind_stored_offset(&broker.address, &db, &slot, &prefix).await;
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn exactly_once_into_kafka_across_a_restart_mid_stream() {
    if ferry_tests::skip_without_transactions() {
        return;
    }
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'snap' FROM generate_series(1, 2000) i;",
    )
    .await;
    let prefix = unique("pgeos");
    let topic = format!("{prefix}.public.t");
    // Its own offsets topic: a killed capture's open transaction holds back
    // the topic's read_committed readers until it restarts.
    let offsets_topic = unique("_ferry_offsets_eos");
    let eos = [
        "--exactly-once",
        "--no-transaction-topic",
        "--offsets-topic",
        &offsets_topic,
    ];
    let mut capture = Some(start_capture(&db, &prefix, &eos));
    let offsets = ferry_capture::offsets::Offsets::open(
        &ferry_core::kafka::KafkaSettings::new(ferry_tests::brokers()),
        &offsets_topic,
    )
    .await
    .unwrap();
    wait_for("the snapshot stored", Duration::from_secs(60), || async {
        let key = ferry_capture::offsets::snapshot_key(&prefix);
        let state: ferry_capture::offsets::SnapshotState = offsets.load(&key).await.ok()??;
        state.get(&TableId::new("public", "t")).map(|_| ())
    })
    .await;
    db.wait_slot_active(&ferry_capture::postgres::PgCaptureConfig::default_name(&prefix))
        .await;
    // Many small transactions; capture stops while they stream: killed where
    // the broker aborts a dead producer's transaction when its successor
    // starts (Apache Kafka; FERRY_BROKER_FENCES=true), stopped otherwise (the
    // development broker only ends it at its timeout, minutes later).
    let fences = std::env::var("FERRY_BROKER_FENCES").is_ok_and(|v| v == "true");
    let client = db.client().await;
    for id in 2001..=3000 {
        client
            .batch_execute(&format!("INSERT INTO t VALUES ({id}, 'streamed')"))
            .await
            .unwrap();
        if id == 2500 {
            let running = capture.take().unwrap();
            if fences {
                running.kill9();
            } else {
                assert!(running.terminate().success());
            }
        }
    }
    let capture = start_capture(&db, &prefix, &eos);
    // A read_committed reader sees every row exactly once.
    let decoded = read_topic(&topic, 3000, SERVICES_REGISTRY).await;
    assert!(
        capture.terminate().success(),
        "a clean stop commits the open transaction"
    );
    let mut ids: Vec<i64> = decoded
        .iter()
        .map(|r| int(&r.event.as_ref().unwrap().after.as_ref().unwrap()[0]))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>(), "each row exactly once");
    assert_eq!(
        ferry_tests::count_committed(&topic, Duration::from_secs(3)).await,
        3000,
        "nothing beyond the 3000 rows: no duplicate is visible"
    );
}

#[tokio::test]
async fn initial_only_exits_after_the_snapshot_and_a_later_start_streams_from_it() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);")
        .await;
    let prefix = unique("pginitonly");
    let topic = format!("{prefix}.public.t");
    let once = start_capture(&db, &prefix, &["--snapshot", "initial_only"]);
    assert!(once.exited(Duration::from_secs(60)).await.success());
    assert_eq!(ferry_tests::topic_count(&topic), 100);
    // Written between the two runs: after the slot's consistent point, so streamed.
    db.execute("INSERT INTO t VALUES (101)").await;
    let capture = start_capture(&db, &prefix, &[]);
    let events = ops_and_ids(&topic, 101).await;
    assert_eq!(
        events.iter().filter(|(op, _)| *op == Op::Read).count(),
        100,
        "no second snapshot"
    );
    assert!(events.contains(&(Op::Create, 101)));
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn writes_racing_the_initial_snapshot_arrive_once_and_the_events_rebuild_the_table() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 30000) i;")
        .await;
    let prefix = unique("pgrace");
    let topic = format!("{prefix}.public.t");
    let capture = start_capture(&db, &prefix, &["--no-tombstones"]);
    // Single-row commits before, during and after the slot's consistent point.
    let client = db.client().await;
    for i in 0..300 {
        client
            .batch_execute(&format!(
                "INSERT INTO t VALUES ({}, 'raced'); DELETE FROM t WHERE id = {};",
                30_001 + i,
                1 + i
            ))
            .await
            .unwrap();
    }
    ferry_tests::wait_streaming(&db, &prefix).await;
    let source: std::collections::BTreeSet<i64> = client
        .query("SELECT id FROM t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| i64::from(r.get::<_, i32>(0)))
        .collect();
    // Partitions fill independently, so read until the fold matches: a double
    // fails at once, a gap fails at the deadline.
    wait_for(
        "the events to rebuild the source table",
        Duration::from_secs(120),
        || async {
            let count = usize::try_from(ferry_tests::topic_count(&topic)).ok()?;
            let events = read_topic(&topic, count, SERVICES_REGISTRY).await;
            // Fold the events per key in order (one key is one partition, in order).
            let mut present = std::collections::BTreeSet::new();
            for e in events.iter().filter_map(|r| r.event.as_ref()) {
                let row = e.after.as_ref().or(e.before.as_ref()).unwrap();
                let id = int(&row[0]);
                match e.op {
                    Op::Read | Op::Create => {
                        assert!(present.insert(id), "row {id} arrived twice without a delete between")
                    }
                    Op::Delete => assert!(present.remove(&id), "delete of row {id}, which never arrived"),
                    other => panic!("unexpected {other:?}"),
                }
            }
            (present == source).then_some(())
        },
    )
    .await;
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn an_untouched_large_value_comes_from_the_old_row_with_replica_identity_full() {
    let db = PgDatabase::create();
    let big = "y".repeat(20_000);
    db.execute(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, note text, big text);
         ALTER TABLE docs ALTER COLUMN big SET STORAGE EXTERNAL;
         ALTER TABLE docs REPLICA IDENTITY FULL;
         INSERT INTO docs VALUES (1, 'a', '{big}');"
    ))
    .await;
    let prefix = unique("pgtoastfull");
    let capture = start_capture(&db, &prefix, &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    db.execute("UPDATE docs SET note = 'b' WHERE id = 1").await;
    let events = read_topic(&format!("{prefix}.public.docs"), 2, SERVICES_REGISTRY).await;
    let update = events
        .iter()
        .filter_map(|r| r.event.clone())
        .find(|e| e.op == Op::Update)
        .expect("the update");
    let after = update.after.as_ref().unwrap();
    assert_eq!(after[1], Datum::Text("b".into()));
    assert_eq!(
        after[2],
        Datum::Text(big.clone()),
        "the value, not a placeholder or null"
    );
    assert!(update.unchanged.is_empty());
    assert_eq!(update.before.as_ref().unwrap()[2], Datum::Text(big));
    assert!(capture.terminate().success());
}

/// A keyless table's inserts are appends, so what a capture restarted after
/// `kill -9` sends again (without Kafka transactions: what it published after
/// its last stored position) must not reach the table's topic twice.
#[tokio::test]
async fn kill_9_mid_stream_sends_no_keyless_row_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let db = PgDatabase::create();
    db.execute("CREATE TABLE log (n int, v text); ALTER TABLE log REPLICA IDENTITY FULL;")
        .await;
    let prefix = unique("pgresend");
    let topic = format!("{prefix}.public.log");
    let mut capture = start_capture(&db, &prefix, &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (db.url(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let client = connect_pg(&url).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute(&format!("INSERT INTO log VALUES ({n}, 'row {n}')"))
                    .await
                    .expect("insert");
                n += 1;
            }
            n
        })
    };
    // Killed while the rows stream, each time after more of them are in Kafka.
    for _ in 0..4 {
        let before = ferry_tests::topic_count(&topic);
        wait_for("more rows in Kafka", Duration::from_secs(60), || async {
            (ferry_tests::topic_count(&topic) > before + 200).then_some(())
        })
        .await;
        capture.kill9();
        capture = start_capture(&db, &prefix, &[]);
    }
    stop.store(true, Ordering::Relaxed);
    let rows = writer.await.expect("the writer");
    wait_for("every row in Kafka", Duration::from_secs(120), || async {
        (ferry_tests::topic_count(&topic) >= rows).then_some(())
    })
    .await;
    assert_eq!(
        ferry_tests::count_committed(&topic, Duration::from_secs(3)).await,
        rows as usize,
        "each row once"
    );
    assert!(capture.terminate().success());
}

/// A keyless table's topic written with `--exactly-once` ends with a
/// transaction marker, which no consumer ever receives: a capture started
/// later without Kafka transactions must still find the last event there and
/// go on.
#[tokio::test]
async fn a_keyless_topic_ending_in_a_transaction_marker_is_read_back() {
    if ferry_tests::skip_without_transactions() {
        return;
    }
    let db = PgDatabase::create();
    db.execute("CREATE TABLE log (n int); ALTER TABLE log REPLICA IDENTITY FULL; INSERT INTO log VALUES (1);")
        .await;
    let prefix = unique("pgmarker");
    let topic = format!("{prefix}.public.log");
    let transactional = start_capture(&db, &prefix, &["--exactly-once"]);
    // The snapshot row and the marker of its transaction.
    wait_for("the snapshot committed", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) >= 2).then_some(())
    })
    .await;
    assert!(transactional.terminate().success());
    let capture = start_capture(&db, &prefix, &[]);
    db.execute("INSERT INTO log VALUES (2)").await;
    wait_for("the new row in Kafka", Duration::from_secs(60), || async {
        (ferry_tests::count_committed(&topic, Duration::from_secs(2)).await == 2).then_some(())
    })
    .await;
    assert!(capture.terminate().success());
}

/// The server ending capture's sessions (its walsender and its query
/// connection) while large transactions stream: capture reconnects in place,
/// without exiting, from the last checkpoint it sent. A transaction cut short
/// is read again and its events already published are passed over, so each
/// row's event is in Kafka once (a keyed table: nothing but that would drop a
/// second copy) and each transaction's events are numbered 1..n without a
/// gap or a repeat.
/// `ferry-capture-postgres` of `db` under `prefix` serving metrics (at the
/// address returned) with a producer queue of `queued` messages: a short
/// queue keeps what capture has read close to what the broker holds, so a
/// test can end its sessions in the middle of what it reads.
fn start_paced_capture(db: &PgDatabase, prefix: &str, queued: u32) -> (ferry_tests::Running, String) {
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let queue = format!("queue.buffering.max.messages={queued}");
    let capture = start_capture(db, prefix, &["--metrics", &metrics, "--kafka-option", &queue]);
    (capture, metrics)
}

/// Ends every session of the capture on `client`'s database, as an
/// administrator's `pg_terminate_backend` would; how many there were.
async fn end_capture_sessions(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'ferry-capture-postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The server ends the snapshot's sessions while it reads: capture starts
/// again in place (it does not exit), reads the table again in a new
/// snapshot, and the events rebuild the source, rows deleted meanwhile
/// included (a row of the first reading must not outlive its delete).
#[tokio::test]
async fn sessions_ended_during_the_snapshot_start_it_again_in_place() {
    const ROWS: i64 = 100_000;
    let db = PgDatabase::create();
    db.execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, {ROWS}) i;"
    ))
    .await;
    let prefix = unique("pgsnaplost");
    let topic = format!("{prefix}.public.t");
    // A queue of 100 messages paces the snapshot by the broker's round trips
    // (seconds for these rows), so it is still reading when its sessions end.
    let (capture, metrics) = start_paced_capture(&db, &prefix, 100);
    wait_for("part of the snapshot in Kafka", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) > 0).then_some(())
    })
    .await;
    let client = db.client().await;
    let ended = end_capture_sessions(&client).await;
    assert!(ended >= 2, "the snapshot's sessions ended ({ended})");
    assert!(
        snapshot_state(&prefix)
            .await
            .get(&TableId::new("public", "t"))
            .is_none(),
        "the snapshot was still being read when its sessions ended"
    );
    client
        .batch_execute("DELETE FROM t WHERE id <= 1000; UPDATE t SET v = 'changed' WHERE id BETWEEN 1001 AND 2000")
        .await
        .unwrap();

    let target = PgDatabase::create();
    let _apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    client
        .batch_execute("INSERT INTO t VALUES (0, 'streamed')")
        .await
        .unwrap();
    ferry_tests::wait_equal(&db, &target, &["t"], Duration::from_secs(180)).await;
    let reconnects = ferry_tests::workload::metric(&metrics, "ferry_capture_reconnects_total").await;
    assert!(reconnects >= 1.0, "started again in place {reconnects} times");
    assert!(capture.terminate().success(), "capture ran on and stopped cleanly");
}

#[tokio::test]
async fn sessions_ended_mid_transaction_reconnect_in_place_with_nothing_twice() {
    const TRANSACTIONS: i64 = 4;
    const ROWS: i64 = 20_000;
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (tx int, n int, PRIMARY KEY (tx, n))").await;
    let prefix = unique("pgreconnect");
    let topic = format!("{prefix}.public.t");
    // A queue of a thousand: when part of a transaction is in Kafka, capture
    // is still inside it (with librdkafka's default of 100,000 it may have
    // read all 20,000 rows and the commit already).
    let (capture, metrics) = start_paced_capture(&db, &prefix, 1000);
    ferry_tests::wait_streaming(&db, &prefix).await;
    let client = db.client().await;
    for tx in 0..TRANSACTIONS {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT {tx}, n FROM generate_series(1, {ROWS}) n"
            ))
            .await
            .unwrap();
        // Once part of this transaction is in Kafka, every session of the
        // capture ends (an administrator's pg_terminate_backend).
        let before = tx * ROWS;
        wait_for("part of the transaction in Kafka", Duration::from_secs(120), || async {
            (ferry_tests::topic_count(&topic) > before).then_some(())
        })
        .await;
        let ended = end_capture_sessions(&client).await;
        assert!(ended >= 2, "the walsender and the query connection ended ({ended})");
    }
    let total = TRANSACTIONS * ROWS;
    let received = ferry_tests::read_topic(&topic, total as usize, ferry_tests::SERVICES_REGISTRY).await;
    let mut rows = std::collections::HashSet::new();
    let mut orders: std::collections::HashMap<String, Vec<i64>> = std::collections::HashMap::new();
    for r in &received {
        let event = r.event.as_ref().unwrap();
        let after = event.after.as_ref().unwrap();
        assert!(rows.insert((int(&after[0]), int(&after[1]))), "row {after:?} twice");
        let block = event.transaction.as_ref().unwrap();
        orders.entry(block.id.to_string()).or_default().push(block.total_order);
    }
    assert_eq!(orders.len(), TRANSACTIONS as usize);
    for (id, mut order) in orders {
        order.sort_unstable();
        assert_eq!(
            order,
            (1..=ROWS).collect::<Vec<_>>(),
            "transaction {id}'s events numbered once each"
        );
    }
    assert_eq!(
        ferry_tests::count_committed(&topic, Duration::from_secs(3)).await,
        total as usize,
        "nothing beyond the rows"
    );
    let reconnects = ferry_tests::workload::metric(&metrics, "ferry_capture_reconnects_total").await;
    assert!(
        reconnects >= TRANSACTIONS as f64,
        "reconnected in place {reconnects} times"
    );
    let passed_over = ferry_tests::workload::metric(&metrics, "ferry_capture_passed_over_total").await;
    assert!(passed_over > 0.0, "no session ended in the middle of a transaction");
    // Reconnected sessions told the slot only what Kafka holds.
    let slot = ferry_capture::postgres::PgCaptureConfig::default_name(&prefix);
    assert_slot_behind_stored_offset(&ferry_tests::brokers(), &db, &slot, &prefix).await;
    assert!(capture.terminate().success());
}

/// `--snapshot always` reads every table again from a new slot, so a row
/// deleted while capture was stopped is in no event: the table's topic gets a
/// truncate before the new reading, and a target that applied the first
/// reading ends without the row.
#[tokio::test]
async fn always_truncates_before_reading_again_so_a_delete_while_stopped_reaches_targets() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 3);")
        .await;
    let prefix = unique("pgalways");
    let topic = format!("{prefix}.public.t");
    let capture = start_capture(&db, &prefix, &[]);
    ferry_tests::wait_streaming(&db, &prefix).await;
    assert!(capture.terminate().success());
    db.execute("DELETE FROM t WHERE id = 2").await;

    let capture = start_capture(&db, &prefix, &["--snapshot", "always"]);
    let target = PgDatabase::create();
    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    ferry_tests::wait_equal(&db, &target, &["t"], Duration::from_secs(60)).await;
    let all = read_topic(
        &topic,
        usize::try_from(ferry_tests::topic_count(&topic)).unwrap(),
        SERVICES_REGISTRY,
    )
    .await;
    let ops: Vec<Op> = all.iter().filter_map(|r| r.event.as_ref().map(|e| e.op)).collect();
    assert_eq!(
        ops.iter().filter(|op| **op == Op::Read).count(),
        5,
        "read twice, the second time without 2: {ops:?}"
    );
    assert!(
        ops.contains(&Op::Truncate),
        "a truncate before the second reading: {ops:?}"
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}
