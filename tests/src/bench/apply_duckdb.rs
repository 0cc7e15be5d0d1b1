//! `ferry-bench apply-duckdb [EVENTS] [MODE]`: the log of `ferry-bench apply` (EVENTS
//! change events on a narrow and a wide table) applied by `ferry-apply-duckdb
//! --mode MODE` (`mirror`, the default, or `both`: the mirror the reference
//! loads is needed) into a new DuckDB file, timed from its start until its
//! `/metrics` count every event applied (DuckDB lets no other process read the
//! file meanwhile). Beside it, DuckDB's own bulk path: `COPY ... FROM` a CSV
//! file of the rows the tables end with (written first with `COPY ... TO`;
//! only the load is timed) into empty copies, in the same file; and a Kafka
//! consumer with Ferry's settings reading the same messages, the pace apply
//! cannot beat on this broker.

use std::time::{Duration, Instant};

use ferry_tests::workload::rows_applied;
use ferry_tests::{free_port, unique, wait_for};

use super::apply::{captured_log, read_all, spawn_apply_to};

pub async fn throughput(events: i64, mode: &str) {
    assert!(
        ["mirror", "both"].contains(&mode),
        "mode {mode:?}: mirror or both (the reference loads the mirror tables)"
    );
    let log = captured_log(events).await;
    let dir = std::env::temp_dir().join(unique("ferry_bench_duck"));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let file = dir.join("bench.duckdb");
    let metrics = format!("127.0.0.1:{}", free_port());
    let shares = super::CpuShares::start();
    let started = Instant::now();
    let mut apply = spawn_apply_to(
        "ferry-apply-duckdb",
        &file.display().to_string(),
        &log.prefix,
        &unique("bench"),
        &["--metrics", &metrics, "--mode", mode],
    );
    wait_for("apply to apply every event", Duration::from_secs(3600), || async {
        (rows_applied(&metrics).await? >= events).then_some(())
    })
    .await;
    let ferry = started.elapsed();
    let apply_cpu = apply.id().and_then(super::proc_cpu_seconds).unwrap_or(f64::NAN);
    let shares = shares.report(apply.id(), 0.0);
    // SIGTERM: it writes what it holds and closes the file.
    if let Some(pid) = apply.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = apply.wait().await;

    let conn = duckdb::Connection::open(&file).expect("open the bench file");
    let mut rows = 0;
    for table in ["n", "w"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let got: i64 = conn.query_row(&sql, [], |r| r.get(0)).expect("count");
        let want: i64 = log.client.query_one(&sql, &[]).await.expect("count").get(0);
        assert_eq!(got, want, "table {table} differs");
        rows += want;
    }
    if mode == "both" {
        let history: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM n__history) + (SELECT count(*) FROM w__history)",
                [],
                |r| r.get(0),
            )
            .expect("count the history");
        assert_eq!(history, events, "the history holds one row per event");
    }

    // Kafka's side: a consumer with Ferry's settings reading the same messages.
    super::settle().await;
    let reading = super::CpuShares::start();
    let consumed = read_all(&log).await;
    let reading = reading.report(None, 0.0);

    // Reference: DuckDB loading the same rows from CSV.
    let mut loaded = Duration::ZERO;
    for table in ["n", "w"] {
        let csv = dir.join(format!("{table}.csv")).display().to_string();
        conn.execute_batch(&format!(
            "CREATE TABLE {table}_copy AS FROM {table} LIMIT 0; COPY {table} TO '{csv}' (HEADER)"
        ))
        .expect("dump");
        super::settle().await;
        let started = Instant::now();
        conn.execute_batch(&format!("COPY {table}_copy FROM '{csv}' (HEADER)"))
            .expect("load");
        loaded += started.elapsed();
    }
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    let ferry_rate = events as f64 / ferry.as_secs_f64();
    let copy_rate = rows as f64 / loaded.as_secs_f64();
    println!("| measure | rows | seconds | rows/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `COPY ... FROM` CSV of the {rows} rows the tables end with (reference: DuckDB) | {rows} | {:.2} | {copy_rate:.0} |",
        loaded.as_secs_f64()
    );
    println!(
        "| ferry-apply-duckdb --mode {mode}, {events} change events ({} messages with tombstones) from Kafka | {events} | {:.1} | {ferry_rate:.0} |",
        log.total,
        ferry.as_secs_f64()
    );
    println!(
        "| a Kafka consumer with Ferry's settings reading the same {} messages (reference: Kafka) | {} | {:.1} | {:.0} |",
        log.total,
        log.total,
        consumed.as_secs_f64(),
        log.total as f64 / consumed.as_secs_f64()
    );
    println!();
    println!(
        "Ratio: {:.2} x COPY; apply at the Kafka consumer's pace would be {:.2} x. ferry-apply-duckdb used \
         {apply_cpu:.1} s of CPU ({:.1} µs per event). {shares}. The Kafka consumer: {reading}.",
        ferry_rate / copy_rate,
        events as f64 / consumed.as_secs_f64() / copy_rate,
        apply_cpu * 1e6 / events as f64
    );
    println!();
    println!(
        "Events: 4/7 inserts, 2/7 updates, 1/7 deletes, on a 3-column and a 17-column table; applied from the \
         beginning of the log into a new DuckDB file (defaults: 2 writers, batches up to 20,000 messages), timed \
         from the start of apply until its metrics count every event applied."
    );
}
