//! `ferry-bench capture-mysql [ROWS]` and `capture-mysql-snapshot [ROWS]`:
//! ferry-capture-mysql beside MariaDB's own tools, in the same run.
//!
//! Stream: ROWS inserts (transactions of 10,000 rows) written into a fresh
//! binlog file while no capture runs; then `mariadb-binlog
//! --read-from-remote-server` reads that file to /dev/null, as it comes and
//! with `--verbose` (every row decoded), the references; and a
//! `ferry-capture-mysql` resuming from just before the inserts streams the
//! same events into Kafka, timed from its start until Kafka holds them all.
//!
//! Snapshot: a table of ROWS rows dumped by `mariadb-dump --single-transaction`
//! to /dev/null (the reference), and read into Kafka by `ferry-capture-mysql
//! --snapshot initial_only`, timed from its start until it exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::mariadb::{capture_args, server_id, wait_position, MariaDatabase};
use ferry_tests::{binary, topic_count, unique, wait_for};
use mysql_async::prelude::Queryable;

use super::Topics;

const TABLE: &str = "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(64), qty INT, \
                     price DECIMAL(10,2), at DATETIME(6))";

/// Fills `t` with rows `from..from+rows` in transactions of 10,000.
async fn fill(db: &MariaDatabase, from: i64, rows: i64) {
    let mut conn = db.conn().await;
    let mut at = from;
    while at < from + rows {
        let to = (at + 10_000).min(from + rows) - 1;
        conn.query_drop(format!(
            "INSERT INTO t SELECT seq, CONCAT('name ', seq), seq % 1000, seq / 100, NOW(6) FROM seq_{at}_to_{to}"
        ))
        .await
        .expect("insert");
        at = to + 1;
    }
    conn.disconnect().await.ok();
}

fn capture(db: &MariaDatabase, prefix: &str, id: u32, extra: &[&str]) -> std::process::Child {
    Command::new(binary("ferry-capture-mysql"))
        .args(capture_args(db, prefix, id, extra))
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry-capture-mysql")
}

/// The results, each against the first reference.
fn table(rows: i64, references: &[(&str, Duration)], ferry: Duration) {
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let base = rate(references[0].1);
    println!("| measure | rows | seconds | rows/s | vs {} |", references[0].0);
    println!("|---|---:|---:|---:|---:|");
    for (name, time) in references {
        println!(
            "| {name} (reference) | {rows} | {:.2} | {:.0} | {:.2} |",
            time.as_secs_f64(),
            rate(*time),
            rate(*time) / base
        );
    }
    println!(
        "| ferry-capture-mysql → Kafka | {rows} | {:.2} | {:.0} | {:.2} |",
        ferry.as_secs_f64(),
        rate(ferry),
        rate(ferry) / base
    );
}

pub async fn stream(rows: i64) {
    let db = MariaDatabase::create().await;
    db.execute(TABLE).await;
    let prefix = unique("bench");
    // The events go when the run ends: left in the development broker they
    // would slow every benchmark after this one (it rewrites its whole state
    // file every few seconds).
    let _topics = Topics(prefix.clone());
    let id = server_id();
    // A capture that stores its starting point, then stops.
    let mut first = capture(&db, &prefix, id, &["--snapshot", "never"]);
    wait_position(&prefix).await;
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .ok();
    first.wait().ok();

    db.execute("FLUSH BINARY LOGS").await;
    let mut conn = db.conn().await;
    let file: String = conn
        .query_first::<mysql_async::Row, _>("SHOW MASTER STATUS")
        .await
        .expect("master status")
        .and_then(|r| r.get(0))
        .expect("a binlog file");
    conn.disconnect().await.ok();
    fill(&db, 1, rows).await;

    // As it comes (rows as base64 BINLOG statements), and decoded (--verbose:
    // every row as pseudo-SQL, which, like Ferry, reads each value).
    let read = |extra: &[&str]| {
        let started = Instant::now();
        let status = Command::new("mariadb-binlog")
            .args(["--read-from-remote-server", "--host=127.0.0.1", "--user=root", &file])
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .expect("mariadb-binlog");
        assert!(status.success(), "mariadb-binlog failed");
        started.elapsed()
    };
    let plain = read(&[]);
    let decoded = read(&["--verbose"]);

    let topic = format!("{prefix}.{}.t", db.name);
    let started = Instant::now();
    let mut ferry = capture(&db, &prefix, id, &["--snapshot", "never"]);
    wait_for("every change in Kafka", Duration::from_secs(1800), || async {
        (topic_count(&topic) >= rows).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    ferry.kill().ok();
    ferry.wait().ok();
    table(
        rows,
        &[
            ("mariadb-binlog --read-from-remote-server", plain),
            ("mariadb-binlog --read-from-remote-server --verbose", decoded),
        ],
        elapsed,
    );
}

pub async fn snapshot(rows: i64) {
    let db = MariaDatabase::create().await;
    db.execute(TABLE).await;
    fill(&db, 1, rows).await;
    db.execute("ANALYZE TABLE t").await;

    let started = Instant::now();
    let status = Command::new("mariadb-dump")
        .args(["--single-transaction", "--host=127.0.0.1", "--user=root", &db.name, "t"])
        .stdout(Stdio::null())
        .status()
        .expect("mariadb-dump");
    assert!(status.success(), "mariadb-dump failed");
    let reference = started.elapsed();

    let prefix = unique("bench");
    let _topics = Topics(prefix.clone());
    let started = Instant::now();
    let status = capture(&db, &prefix, server_id(), &["--snapshot", "initial_only"])
        .wait()
        .expect("ferry-capture-mysql");
    assert!(status.success(), "ferry-capture-mysql failed");
    table(
        rows,
        &[("mariadb-dump --single-transaction", reference)],
        started.elapsed(),
    );
}
