//! The source workloads every target's apply tests run: the row-for-row
//! scenario (snapshot, then every kind of change), and the steady workload the
//! kill tests run while they kill apply. Whatever the target, it must end
//! equal to the source, with every append exactly once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{wait_for, Running};

/// The row-for-row scenario's tables and snapshot rows: keys of one and two
/// columns (text keys differing only in case or a trailing space), a large
/// value stored out of line, keyless tables, quotes in values.
pub const ROW_FOR_ROW_TABLES: &str =
    "CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric(10,2), big text, at timestamptz);
     ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
     CREATE TABLE lines (order_id int, sku varchar(20), qty int, PRIMARY KEY (order_id, sku));
     CREATE TABLE log (line text, n int); ALTER TABLE log REPLICA IDENTITY FULL;
     CREATE TABLE journal (line text); ALTER TABLE journal REPLICA IDENTITY FULL;
     CREATE TABLE scratch (id int PRIMARY KEY, v text);
     INSERT INTO orders SELECT i, 'snap ' || i || ' it''s', i * 1.25, NULL,
       '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour 1.000001 second' FROM generate_series(1, 500) i;
     INSERT INTO lines SELECT i % 50, 'sku-' || i, i FROM generate_series(1, 300) i;
     INSERT INTO lines VALUES (1, 'Sku-1', 1), (1, 'sku-1 ', 2);
     INSERT INTO log VALUES ('first', 1), ('first', 1), ('second', 2), ('First', 1);
     INSERT INTO journal VALUES ('before');
     INSERT INTO scratch SELECT i, 'old' FROM generate_series(1, 20) i;";

/// The row-for-row scenario's tables.
pub const ROW_FOR_ROW: &[&str] = &["orders", "lines", "log", "journal", "scratch"];

/// A large value, stored out of line, that later updates do not send again.
pub fn big_value() -> String {
    (0..4000).map(|i| format!("{:x}", (i * 7919) % 65_521)).collect()
}

/// The row-for-row scenario's live changes: inserts, updates (one leaving
/// the large value `big` unchanged), deletes, a key change, a transaction
/// that deletes and inserts a key again, keyless updates and deletes, truncates.
pub fn row_for_row_changes(big: &str) -> String {
    format!(
        "INSERT INTO orders VALUES (1002, 'live', 9.99, '{big}', now());
         UPDATE orders SET note = 'toast kept' WHERE id = 1002;
         UPDATE orders SET note = 'updated', amount = amount + 1 WHERE id % 7 = 0;
         DELETE FROM orders WHERE id % 11 = 0;
         UPDATE orders SET id = id + 10000 WHERE id = 3;
         BEGIN; INSERT INTO orders VALUES (2001, 'in a txn', 1, NULL, NULL);
                UPDATE orders SET note = 'twice' WHERE id = 2001;
                DELETE FROM orders WHERE id = 2;
                INSERT INTO orders VALUES (2, 'back again `', 2, NULL, NULL); COMMIT;
         UPDATE lines SET qty = qty * 10 WHERE order_id = 7;
         DELETE FROM lines WHERE order_id = 8;
         UPDATE log SET n = 20 WHERE line = 'second';
         DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE line = 'first' LIMIT 1);
         INSERT INTO log VALUES ('third', NULL);
         INSERT INTO scratch SELECT i, 'before the truncate' FROM generate_series(21, 60) i;
         TRUNCATE scratch;
         INSERT INTO scratch SELECT i, 'after the truncate' FROM generate_series(1, 40) i;
         INSERT INTO journal VALUES ('before');
         TRUNCATE journal;
         INSERT INTO journal VALUES ('after');"
    )
}

/// The schema-change scenario: a table, then columns added mid-stream and
/// rows that use them.
pub const SCHEMA_BEFORE: &str =
    "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL); INSERT INTO items VALUES (1, 'a');";
pub const SCHEMA_CHANGE: &str =
    "ALTER TABLE items ADD COLUMN price numeric(8,2), ADD COLUMN tags text[], ADD COLUMN seen timestamp;
     INSERT INTO items VALUES (2, 'b', 12.50, '{x,y}', '2024-02-29 12:00:00.5');
     UPDATE items SET price = 1.5 WHERE id = 1;";

/// The dropped-connections scenario: upserts and appends in rounds, while
/// the test drops apply's target connections between them.
pub const DROPS_TABLES: &str = "CREATE TABLE events (id int PRIMARY KEY, n int NOT NULL);
     CREATE TABLE log (line int); ALTER TABLE log REPLICA IDENTITY FULL;";

/// Round `round` of the dropped-connections scenario.
pub fn drops_round(round: i64) -> String {
    format!(
        "INSERT INTO events SELECT i, {round} FROM generate_series({0}, {0} + 99) i
           ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n;
         INSERT INTO log SELECT {round} FROM generate_series(1, 20);",
        round * 50
    )
}

/// The value of the Prometheus sample starting with `sample` (name and
/// labels) at the `/metrics` of `addr`, 0 if absent.
pub async fn metric(addr: &str, sample: &str) -> f64 {
    let text = crate::http_get(&format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics text");
    text.lines()
        .find(|l| l.starts_with(sample))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The events an apply process serving `/metrics` at `addr` has applied (the
/// sum of `ferry_apply_rows_total`); `None` while nothing answers there. For
/// targets a test cannot look into while apply runs (DuckDB).
pub async fn rows_applied(addr: &str) -> Option<i64> {
    let text = crate::http_get(&format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let sum: f64 = text
        .lines()
        .filter(|l| l.starts_with("ferry_apply_rows_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(sum as i64)
}

/// The workload's source tables: counters (updated), appended (keyless, so a
/// message applied twice would be a second row), emptied (truncated).
pub const TABLES: &str = "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
     INSERT INTO counters SELECT i, 0 FROM generate_series(1, 50) i;
     CREATE TABLE appended (k int, v int); ALTER TABLE appended REPLICA IDENTITY FULL;
     CREATE TABLE emptied (id int PRIMARY KEY, round int NOT NULL);";

/// Rounds of increments and appends into a PostgreSQL source at `url`: many
/// small transactions, some big ones, and truncates.
#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Workload {
    pub fn start(url: &str) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (url, stop) = (url.to_owned(), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = crate::connect_pg(&url).await;
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sql = if round % 37 == 0 {
                        // A truncate is a barrier across partitions: killed in the
                        // middle of one, apply must still end with exactly these rows.
                        format!(
                            "BEGIN; TRUNCATE emptied; INSERT INTO emptied SELECT i, {round} FROM generate_series(1, 30) i;
                             INSERT INTO appended VALUES ({round}, -1); COMMIT;"
                        )
                    } else if round % 50 == 0 {
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
                    client.batch_execute(&sql).await.expect("workload round");
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                round
            })
        };
        Workload { stop, task }
    }

    /// Stops after the round in progress; how many rounds ran.
    pub async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("workload task")
    }
}

/// How many rows `appended` holds after `rounds` rounds.
pub fn appended_rows(rounds: i64) -> i64 {
    let big = (0..rounds).filter(|r| r % 50 == 0 && r % 37 != 0).count() as i64;
    big * 2000 + rounds - big
}

/// Starts apply `kills` times, each time letting it write (the sum of its
/// stored offsets, `applied`, grows) and then killing it with SIGKILL a little
/// later each time, wherever it is.
pub async fn kill_repeatedly<F, Fut>(kills: u64, timeout: Duration, start: impl Fn() -> Running, applied: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<i64>>,
{
    for kill in 0..kills {
        let before = applied().await.unwrap_or(0);
        let apply = start();
        wait_for("apply to write a batch", timeout, || async {
            let now = applied().await?;
            (now > before).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150 + 97 * kill)).await;
        apply.kill9();
    }
}
