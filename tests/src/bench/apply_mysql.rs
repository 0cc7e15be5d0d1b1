//! `ferry-bench apply-mysql [EVENTS]`: the log of `ferry-bench apply` (EVENTS
//! change events on a narrow and a wide table) applied by `ferry-apply-mysql`
//! into an empty MariaDB database, timed from its start until the target's
//! stored offsets reach the end of every topic. Beside it, MariaDB's own bulk
//! path: `LOAD DATA INFILE` of the same tables' rows (written first with
//! `SELECT ... INTO OUTFILE`; only the load is timed) into empty copies.

use std::time::{Duration, Instant};

use ferry_tests::mariadb::MariaDatabase;
use ferry_tests::{binary, brokers, unique, wait_for};
use mysql_async::prelude::Queryable;

use super::apply::captured_log;

pub async fn throughput(events: i64) {
    let log = captured_log(events).await;
    let target = MariaDatabase::create().await;
    let conn = target.conn().await;
    let group = unique("bench");
    let started = Instant::now();
    let topics = format!("{}\\..*", log.prefix);
    let apply = tokio::process::Command::new(binary("ferry-apply-mysql"))
        .args(["--target", &target.url(), "--topics", &topics, "--group", &group])
        .args(["--brokers", &brokers()])
        .args(
            std::env::var("FERRY_BENCH_APPLY_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("start ferry-apply-mysql");
    let applied = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM _ferry_offsets WHERE consumer_group = ?";
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
    wait_for("apply to reach the end of the log", Duration::from_secs(3600), || {
        let (conn, group) = (std::sync::Arc::clone(&conn), group.clone());
        async move {
            let done: Option<i64> = conn.lock().await.exec_first(applied, (group,)).await.ok().flatten();
            (done? >= log.total).then_some(())
        }
    })
    .await;
    let ferry = started.elapsed();
    let apply_cpu = apply.id().and_then(super::proc_cpu_seconds).unwrap_or(f64::NAN);
    drop(apply);
    let mut conn = std::sync::Arc::into_inner(conn).expect("one owner").into_inner();
    let mut rows = 0;
    for table in ["n", "w"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let got: Option<i64> = conn.query_first(&sql).await.expect("count");
        let want: i64 = log.client.query_one(&sql, &[]).await.expect("count").get(0);
        assert_eq!(got, Some(want), "table {table} differs");
        rows += want;
    }

    // Reference: MariaDB loading the same rows from its own dump format.
    let mut loaded = Duration::ZERO;
    for table in ["n", "w"] {
        let file = std::env::temp_dir().join(unique(&format!("ferry_bench_{table}")));
        let file = file.display().to_string();
        conn.query_drop(format!(
            "CREATE TABLE {table}_copy LIKE {table}; SELECT * FROM {table} INTO OUTFILE '{file}'"
        ))
        .await
        .expect("dump");
        let started = Instant::now();
        conn.query_drop(format!("LOAD DATA INFILE '{file}' INTO TABLE {table}_copy"))
            .await
            .expect("load");
        loaded += started.elapsed();
        let _ = std::fs::remove_file(&file);
    }
    let ferry_rate = events as f64 / ferry.as_secs_f64();
    let load_rate = rows as f64 / loaded.as_secs_f64();
    println!("| measure | rows | seconds | rows/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `LOAD DATA INFILE` of the {rows} rows the tables end with (reference: MariaDB) | {rows} | {:.1} | {load_rate:.0} |",
        loaded.as_secs_f64()
    );
    println!(
        "| ferry-apply-mysql, {events} change events ({} messages with tombstones) from Kafka | {events} | {:.1} | {ferry_rate:.0} |",
        log.total,
        ferry.as_secs_f64()
    );
    println!();
    println!(
        "ferry-apply-mysql used {apply_cpu:.1} s of CPU ({:.1} µs per event).",
        apply_cpu * 1e6 / events as f64
    );
    println!();
    println!(
        "Events: 4/7 inserts, 2/7 updates, 1/7 deletes, on a 3-column and a 17-column table; applied from the \
         beginning of the log into an empty MariaDB database (defaults: 2 writers, batches up to 20,000 \
         messages), timed from the start of apply until the target's stored offsets reach the end of every topic."
    );
}
