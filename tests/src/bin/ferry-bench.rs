//! `ferry-bench`: Ferry's benchmarks that need more than a shell script, each
//! measured beside its reference in the same run. Run through `scripts/bench`.
//!
//! `ferry-bench capture-stream ROWS`: one transaction of ROWS inserts, drained
//! from a pgoutput slot by `pg_recvlogical` (the reference) and, on a second
//! slot, published to Kafka by `ferry-capture-postgres`; each timed from the
//! commit until the last change is out (for Ferry: acknowledged by Kafka).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{topic_count, unique, wait_for, PgDatabase, Running};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("capture-stream") => {
            let rows: i64 = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
            capture_stream(rows).await;
        }
        _ => {
            eprintln!("usage: ferry-bench capture-stream [ROWS]");
            std::process::exit(2);
        }
    }
}

async fn insert(db: &PgDatabase, from: i64, rows: i64) -> String {
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT i, md5(i::text), i * 0.25, now() FROM generate_series({from}, {}) i",
            from + rows - 1
        ))
        .await
        .expect("insert");
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0)
}

async fn capture_stream(rows: i64) {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz);
         CREATE PUBLICATION bench FOR TABLE t;",
    )
    .await;
    // A slot cannot be made in a transaction that wrote.
    db.execute("SELECT 'ok' FROM pg_create_logical_replication_slot('bench_ref', 'pgoutput')")
        .await;

    // Reference: pg_recvlogical drains the same kind of transaction.
    let end = insert(&db, 1, rows).await;
    let started = Instant::now();
    let status = Command::new("pg_recvlogical")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &db.name,
            "--slot",
            "bench_ref",
            "--start",
        ])
        .args([
            "--endpos",
            &end,
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=bench",
            "-f",
            "/dev/null",
        ])
        .stderr(Stdio::null())
        .status()
        .expect("pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    let reference = started.elapsed();
    db.execute("SELECT pg_drop_replication_slot('bench_ref')").await;

    // Ferry: streaming only, on its own slot.
    let prefix = unique("bench");
    let topic = format!("{prefix}.public.t");
    let capture = Running::start(
        "ferry-capture-postgres",
        &[
            "--source",
            &db.url(),
            "--prefix",
            &prefix,
            "--snapshot",
            "never",
            "--publication",
            "bench",
        ],
    );
    db.wait_slot_active(&format!("ferry_{prefix}")).await;
    insert(&db, rows + 1, rows).await;
    let started = Instant::now();
    wait_for("every change in Kafka", Duration::from_secs(1800), || async {
        (topic_count(&topic) >= rows).then_some(())
    })
    .await;
    let ferry = started.elapsed();
    drop(capture);

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("| measure | rows | seconds | events/s | vs pg_recvlogical |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| pg_recvlogical (reference) | {rows} | {:.2} | {:.0} | 1.00 |",
        reference.as_secs_f64(),
        rate(reference)
    );
    println!(
        "| ferry-capture-postgres → Kafka | {rows} | {:.2} | {:.0} | {:.2} |",
        ferry.as_secs_f64(),
        rate(ferry),
        rate(ferry) / rate(reference)
    );
}
