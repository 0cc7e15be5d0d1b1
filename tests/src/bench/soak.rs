//! `ferry-bench soak [SECONDS] [RATE] [CSV]`: PostgreSQL to PostgreSQL for
//! SECONDS at a steady RATE changes/s, sampling every 10 s the resident memory
//! and CPU of `ferry-capture-postgres` and `ferry-apply-postgres` and the lag:
//! the age, on the server's clock, of the newest row the target holds (the
//! writer commits every 100 ms, so a lag under 100 ms reads as "caught up").
//! The samples go to CSV (for `scripts/plot-soak`); the summary compares the
//! memory of the run's first and last fifths and bounds the lag.
//!
//! The source starts with 500,000 rows, which the capture snapshots first;
//! then each 100 ms the writer inserts RATE/20 new rows and deletes the RATE/20
//! oldest in one transaction, so the tables keep their size however long the
//! run is.

use std::io::Write;
use std::time::{Duration, Instant};

use ferry_tests::{unique, wait_for, PgDatabase};

use crate::apply::spawn_apply_to;
use crate::{proc_cpu_seconds, proc_status_kib, spawn_capture, Topics};

const SEED_ROWS: i64 = 500_000;

/// One sample: seconds since the start, capture's and apply's RSS (MiB) and
/// CPU (% of one core over the interval), the lag (ms) and the rate written.
struct Sample {
    at: f64,
    capture_mib: f64,
    apply_mib: f64,
    capture_cpu: f64,
    apply_cpu: f64,
    lag_ms: f64,
    written: f64,
}

async fn lag_ms(target: &tokio_postgres::Client) -> Option<f64> {
    target
        .query_opt(
            "SELECT (extract(epoch FROM clock_timestamp() - at) * 1000)::float8 FROM t ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

pub async fn run(seconds: i64, rate: i64, csv: &str) {
    assert!(rate >= 20, "RATE must be at least 20 changes/s");
    let source = PgDatabase::create();
    source
        .execute(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO t (id, v, n) SELECT i, md5(i::text), i * 0.25 FROM generate_series(1, {SEED_ROWS}) i;"
        ))
        .await;
    let target = PgDatabase::create();
    let prefix = unique("soak");
    let _topics = Topics(prefix.clone());
    let capture = spawn_capture(&["--source", &source.url(), "--prefix", &prefix]);
    let apply = spawn_apply_to("ferry-apply-postgres", &target.url(), &prefix, &unique("soak"), &[]);
    let pids = [capture.id().expect("capture pid"), apply.id().expect("apply pid")];
    let tc = target.client().await;
    let loaded = Instant::now();
    wait_for("the snapshot in the target", Duration::from_secs(1800), || async {
        let n: i64 = tc.query_one("SELECT count(*) FROM t", &[]).await.ok()?.get(0);
        (n == SEED_ROWS).then_some(())
    })
    .await;
    eprintln!(
        "ferry-bench: {SEED_ROWS} rows snapshotted and applied in {:.1} s; soaking for {seconds} s at {rate} changes/s",
        loaded.elapsed().as_secs_f64()
    );

    let written = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let (url, written) = (source.url(), std::sync::Arc::clone(&written));
        let per_tick = rate / 20;
        tokio::spawn(async move {
            let client = ferry_tests::connect_pg(&url).await;
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let end = Instant::now() + Duration::from_secs(seconds as u64);
            let mut next = SEED_ROWS + 1;
            while Instant::now() < end {
                ticks.tick().await;
                let sql = format!(
                    "BEGIN; INSERT INTO t (id, v, n) SELECT i, md5(i::text), i * 0.25 FROM generate_series({next}, {}) i;
                     DELETE FROM t WHERE id BETWEEN {} AND {}; COMMIT;",
                    next + per_tick - 1,
                    next - SEED_ROWS,
                    next - SEED_ROWS + per_tick - 1
                );
                client.batch_execute(&sql).await.expect("the soak's writes");
                next += per_tick;
                written.fetch_add(2 * per_tick, std::sync::atomic::Ordering::Relaxed);
            }
            next
        })
    };

    let mut out = std::fs::File::create(csv).unwrap_or_else(|e| panic!("create {csv}: {e}"));
    writeln!(
        out,
        "seconds,capture_rss_mib,apply_rss_mib,capture_cpu_pct,apply_cpu_pct,lag_ms,changes_per_s"
    )
    .expect("write the samples");
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut cpu_before = pids.map(|p| proc_cpu_seconds(p).unwrap_or(0.0));
    let mut written_before = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(10));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if writer.is_finished() {
            break;
        }
        let mib = pids.map(|p| proc_status_kib(p, "VmRSS").unwrap_or(0) as f64 / 1024.0);
        let cpu = pids.map(|p| proc_cpu_seconds(p).unwrap_or(0.0));
        let now = written.load(std::sync::atomic::Ordering::Relaxed);
        let s = Sample {
            at: started.elapsed().as_secs_f64(),
            capture_mib: mib[0],
            apply_mib: mib[1],
            capture_cpu: (cpu[0] - cpu_before[0]) * 10.0,
            apply_cpu: (cpu[1] - cpu_before[1]) * 10.0,
            lag_ms: lag_ms(&tc).await.unwrap_or(f64::NAN),
            written: (now - written_before) as f64 / 10.0,
        };
        (cpu_before, written_before) = (cpu, now);
        writeln!(
            out,
            "{:.0},{:.1},{:.1},{:.1},{:.1},{:.0},{:.0}",
            s.at, s.capture_mib, s.apply_mib, s.capture_cpu, s.apply_cpu, s.lag_ms, s.written
        )
        .expect("write the samples");
        samples.push(s);
    }
    let next = writer.await.expect("the writer");
    wait_for("the target to catch up", Duration::from_secs(600), || async {
        let max: i64 = tc
            .query_one("SELECT coalesce(max(id), 0) FROM t", &[])
            .await
            .ok()?
            .get(0);
        (max == next - 1).then_some(())
    })
    .await;
    let count = "SELECT count(*) FROM t";
    let source_rows: i64 = source
        .client()
        .await
        .query_one(count, &[])
        .await
        .expect("count the source")
        .get(0);
    let target_rows: i64 = tc.query_one(count, &[]).await.expect("count the target").get(0);
    summary(&samples, seconds, rate, source_rows == target_rows);
}

fn summary(samples: &[Sample], seconds: i64, rate: i64, equal: bool) {
    assert!(
        samples.len() >= 5,
        "too short a soak to judge: run it for at least a minute"
    );
    let fifth = samples.len() / 5;
    let (first, last) = (&samples[..fifth], &samples[samples.len() - fifth..]);
    let peak = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).fold(0.0, f64::max);
    let mut lags: Vec<f64> = samples.iter().map(|s| s.lag_ms).filter(|l| l.is_finite()).collect();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let achieved = samples.iter().map(|s| s.written).sum::<f64>() / samples.len() as f64;
    println!("| measure | ferry-capture-postgres | ferry-apply-postgres |");
    println!("|---|---:|---:|");
    println!(
        "| peak RSS, first fifth of the run (MiB) | {:.1} | {:.1} |",
        peak(first, |s| s.capture_mib),
        peak(first, |s| s.apply_mib)
    );
    println!(
        "| peak RSS, last fifth of the run (MiB) | {:.1} | {:.1} |",
        peak(last, |s| s.capture_mib),
        peak(last, |s| s.apply_mib)
    );
    let mean = |f: fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>() / samples.len() as f64;
    println!(
        "| mean CPU (% of one core) | {:.1} | {:.1} |",
        mean(|s| s.capture_cpu),
        mean(|s| s.apply_cpu)
    );
    println!();
    println!(
        "{seconds} s at {rate} changes/s asked, {achieved:.0} achieved; {} samples. Lag (age of the newest row in \
         the target): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms. Source and target row counts {}.",
        samples.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        if equal { "equal" } else { "DIFFERENT" }
    );
}
