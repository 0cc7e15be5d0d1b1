//! PostgreSQL → Kafka → PostgreSQL end to end: `ferry-capture-postgres` and
//! `ferry-apply-postgres` as processes against the real servers. Every test
//! makes its own source and target databases and topic prefix, and ends by
//! comparing every row of the target with the source.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_tests::{start_apply, start_capture, table_rows, unique, wait_equal, wait_for, wait_streaming, PgDatabase};

const CATCH_UP: Duration = Duration::from_secs(90);

#[tokio::test]
async fn snapshot_and_live_changes_arrive_row_for_row() {
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    source
        .execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric(10,2), big text, at timestamptz);
             ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
             CREATE TABLE lines (order_id int, sku text, qty int, PRIMARY KEY (order_id, sku));
             CREATE TABLE log (line text, n int); ALTER TABLE log REPLICA IDENTITY FULL;
             CREATE TABLE scratch (id int PRIMARY KEY, v text);
             INSERT INTO orders SELECT i, 'snap ' || i, i * 1.25, NULL, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour'
               FROM generate_series(1, 500) i;
             INSERT INTO lines SELECT i % 50, 'sku-' || i, i FROM generate_series(1, 300) i;
             INSERT INTO log VALUES ('first', 1), ('first', 1), ('second', 2);
             INSERT INTO scratch SELECT i, 'old' FROM generate_series(1, 20) i;",
        )
        .await;
    let prefix = unique("e2e");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    // A large value, stored out of line, that later updates do not send again.
    let big: String = (0..4000).map(|i| format!("{:x}", (i * 7919) % 65_521)).collect();
    source
        .execute(&format!(
            "INSERT INTO orders VALUES (1002, 'live', 9.99, '{big}', now());
             UPDATE orders SET note = 'toast kept' WHERE id = 1002;
             UPDATE orders SET note = 'updated', amount = amount + 1 WHERE id % 7 = 0;
             DELETE FROM orders WHERE id % 11 = 0;
             UPDATE orders SET id = id + 10000 WHERE id = 3;
             BEGIN; INSERT INTO orders VALUES (2001, 'in a txn', 1, NULL, NULL);
                    UPDATE orders SET note = 'twice' WHERE id = 2001;
                    DELETE FROM orders WHERE id = 2;
                    INSERT INTO orders VALUES (2, 'back again', 2, NULL, NULL); COMMIT;
             UPDATE lines SET qty = qty * 10 WHERE order_id = 7;
             DELETE FROM lines WHERE order_id = 8;
             UPDATE log SET n = 20 WHERE line = 'second';
             DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE line = 'first' LIMIT 1);
             INSERT INTO log VALUES ('third', NULL);
             INSERT INTO scratch SELECT i, 'before the truncate' FROM generate_series(21, 60) i;
             TRUNCATE scratch;
             INSERT INTO scratch SELECT i, 'after the truncate' FROM generate_series(1, 40) i;
             TRUNCATE log;
             INSERT INTO log VALUES ('after', 1);"
        ))
        .await;
    wait_equal(&source, &target, &["orders", "lines", "log", "scratch"], CATCH_UP).await;
    // The unchanged large value kept its target copy.
    let t = target.client().await;
    let kept: String = t
        .query_one("SELECT big FROM orders WHERE id = 1002", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, big);
    // Ferry's offsets sit next to the rows.
    let stored: i64 = t
        .query_one("SELECT count(*) FROM _ferry_offsets", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored >= 4, "{stored} offsets stored");
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_schema_change_mid_stream_adds_the_column() {
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    source
        .execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL); INSERT INTO items VALUES (1, 'a');")
        .await;
    let prefix = unique("schema");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    source
        .execute(
            "ALTER TABLE items ADD COLUMN price numeric(8,2), ADD COLUMN tags text[];
             INSERT INTO items VALUES (2, 'b', 12.50, '{x,y}');
             UPDATE items SET price = 1.5 WHERE id = 1;",
        )
        .await;
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    let t = target.client().await;
    let types: Vec<String> = t
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, vec!["bigint", "text", "numeric(8,2)", "text[]"]);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn two_groups_fan_out_and_a_third_replays_from_the_beginning() {
    let source = PgDatabase::create();
    let (first, second, replayed) = (PgDatabase::create(), PgDatabase::create(), PgDatabase::create());
    source
        .execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             INSERT INTO accounts SELECT i, 100 FROM generate_series(1, 200) i;",
        )
        .await;
    let prefix = unique("fan");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let a = start_apply(&first, &prefix, &unique("a"), &[]);
    let b = start_apply(&second, &prefix, &unique("b"), &["--workers", "1", "--batch-size", "7"]);
    for i in 0..20 {
        source
            .execute(&format!(
                "UPDATE accounts SET balance = balance - {i} WHERE id = {};
                 UPDATE accounts SET balance = balance + {i} WHERE id = {};
                 DELETE FROM accounts WHERE id = {};",
                i + 1,
                i + 2,
                150 + i
            ))
            .await;
    }
    wait_equal(&source, &first, &["accounts"], CATCH_UP).await;
    wait_equal(&source, &second, &["accounts"], CATCH_UP).await;
    assert!(capture.terminate().success());
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    // The log alone rebuilds the table in an empty database.
    let c = start_apply(&replayed, &prefix, &unique("replay"), &["--from", "earliest"]);
    wait_equal(&source, &replayed, &["accounts"], CATCH_UP).await;
    assert!(c.terminate().success());
}

#[tokio::test]
async fn kill_9_mid_batch_applies_nothing_twice_and_loses_nothing() {
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    source
        .execute(
            "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO counters SELECT i, 0 FROM generate_series(1, 50) i;
             CREATE TABLE appended (k int, v int); ALTER TABLE appended REPLICA IDENTITY FULL;",
        )
        .await;
    let prefix = unique("kill");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let group = unique("g");
    // A steady workload: increments and appends, many small transactions and some big ones.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let url = source.url();
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let client = ferry_tests::connect_pg(&url).await;
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sql = if round % 50 == 0 {
                    format!(
                        "BEGIN; INSERT INTO appended SELECT {round}, i FROM generate_series(1, 2000) i;
                         UPDATE counters SET n = n + 1; COMMIT;"
                    )
                } else {
                    format!(
                        "UPDATE counters SET n = n + 1 WHERE id = {}; INSERT INTO appended VALUES ({round}, -1);",
                        round % 50 + 1
                    )
                };
                client.batch_execute(&sql).await.unwrap();
                round += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            round
        })
    };
    // Small batches, so a kill lands inside one more often than not; a stable
    // instance id, so each restart takes its partitions back at once.
    let instance = unique("instance");
    let args = ["--batch-size", "300", "--instance-id", &instance];
    for kill in 0..5u64 {
        let t = target.client().await;
        let applied = "SELECT coalesce(sum(next_offset), 0)::bigint FROM _ferry_offsets";
        let before: i64 = match t.query_one(applied, &[]).await {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        let apply = start_apply(&target, &prefix, &group, &args);
        // Let it apply something, then kill it wherever it is.
        wait_for("apply to write a batch", CATCH_UP, || async {
            let now: i64 = t.query_one(applied, &[]).await.ok()?.get(0);
            (now > before).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150 + 97 * kill)).await;
        apply.kill9();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: i64 = writer.await.unwrap();
    let apply = start_apply(&target, &prefix, &group, &args);
    wait_equal(&source, &target, &["counters", "appended"], CATCH_UP).await;
    // Appends have no key: a message applied twice would be a second row.
    let s = source.client().await;
    let t = target.client().await;
    let count = "SELECT count(*) FROM appended";
    let (in_source, in_target): (i64, i64) = (
        s.query_one(count, &[]).await.unwrap().get(0),
        t.query_one(count, &[]).await.unwrap().get(0),
    );
    assert_eq!(in_target, in_source);
    let big = (rounds + 49) / 50;
    assert_eq!(in_source, big * 2000 + rounds - big);
    assert_eq!(table_rows(&t, "counters").await.unwrap(), table_rows(&s, "counters").await.unwrap());
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}
