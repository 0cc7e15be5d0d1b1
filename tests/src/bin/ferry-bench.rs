//! `ferry-bench`: Ferry's benchmarks that need more than a shell script, each
//! measured beside its reference in the same run. Run through `scripts/bench`.
//!
//! `ferry-bench capture-stream ROWS`: one transaction of ROWS inserts, drained
//! from a pgoutput slot by `pg_recvlogical` (the reference) and, on a second
//! slot, published to Kafka by `ferry-capture-postgres`; each timed from the
//! commit until the last change is out (for Ferry: acknowledged by Kafka).
//!
//! `ferry-bench capture-snapshot ROWS`: a table of ROWS rows read by
//! `ferry-capture-postgres --snapshot initial_only --snapshot-workers 2`, timed
//! from its start until it exits (the snapshot is then in Kafka), beside two
//! references: `COPY t TO STDOUT` drained to /dev/null by psql (PostgreSQL's
//! side), and the broker taking ROWS messages of Ferry's own sizes and contents
//! (sampled from its topic) from a producer with Ferry's settings (Kafka's side).
//!
//! `ferry-bench capture-rss ROWS`: peak resident memory (VmHWM) of
//! `ferry-capture-postgres` streaming one transaction of ROWS inserts until all
//! are in Kafka, beside `pg_recvlogical` draining the same kind of transaction.
//!
//! `ferry-bench capture-latency [SECONDS] [RATE]`: a writer commits RATE rows/s
//! (small transactions on a fixed interval) for SECONDS; commit-to-consumer
//! latency of every row (from just after COMMIT returns to its event reaching a
//! Kafka consumer), beside the same measure for `pg_recvlogical` (commit to the
//! row's pgoutput message on its stdout) and for Kafka alone (messages of
//! Ferry's size produced at the same pace with Ferry's settings, send to consumer).
//!
//! `FERRY_BENCH_CAPTURE_ARGS` adds flags to `ferry-capture-postgres` in the last three.
//!
//! `ferry-bench apply [EVENTS]`, `apply-latency [SECONDS] [RATE]` and `apply-paths [ROWS]`:
//! see [`apply`]; `FERRY_BENCH_APPLY_ARGS` adds flags to `ferry-apply-postgres`.
//!
//! `ferry-bench capture-mysql [ROWS]` and `capture-mysql-snapshot [ROWS]`:
//! see [`capture_mysql`].
//!
//! `ferry-bench apply-mysql [EVENTS]` and `apply-mysql-paths [ROWS]`: the same
//! log into MariaDB, and its two candidate write paths; see [`apply_mysql`].
//!
//! `ferry-bench apply-duckdb [EVENTS] [mirror|both]`: the same log into a DuckDB file; see
//! [`apply_duckdb`].
//!
//! `ferry-bench validate [ROWS]`: `ferry validate` of a narrow table; see [`validate`].
//!
//! `ferry-bench scaling [ROWS]`: snapshot and streaming rates at 1×, 10× and
//! 100× ROWS and over 1, 10 and 100 tables; see [`scaling`].
//!
//! `ferry-bench soak [SECONDS] [RATE] [CSV]`: memory, CPU and lag sampled over a
//! long steady run; see [`soak`]. Run through `scripts/soak`.

#[path = "../bench/apply.rs"]
mod apply;
#[path = "../bench/apply_duckdb.rs"]
mod apply_duckdb;
#[path = "../bench/apply_mysql.rs"]
mod apply_mysql;
#[path = "../bench/capture_mysql.rs"]
mod capture_mysql;
#[path = "../bench/scaling.rs"]
mod scaling;
#[path = "../bench/soak.rs"]
mod soak;
#[path = "../bench/validate.rs"]
mod validate;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::kafka::{ensure_topics, EndIsNoError, IdleFetch, KafkaSettings, TopicSpec};
use ferry_tests::{binary, brokers, topic_count, unique, wait_for, PgDatabase};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: ferry-bench capture-stream [ROWS] | capture-snapshot [ROWS] | capture-rss [ROWS] \
                     | capture-latency [SECONDS] [RATE] | capture-mysql [ROWS] | capture-mysql-snapshot [ROWS] | apply [EVENTS] | apply-mysql [EVENTS] | apply-mysql-paths [ROWS] | apply-duckdb [EVENTS] [mirror|both] | apply-latency [SECONDS] [RATE] | apply-paths [ROWS] | validate [ROWS] | scaling [ROWS] | soak [SECONDS] [RATE] [CSV]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: i64| -> i64 {
        match args.get(i) {
            None => default,
            Some(a) => a.replace(['_', ','], "").parse().unwrap_or_else(|_| {
                eprintln!("ferry-bench: {a:?} is not a number\n{USAGE}");
                std::process::exit(2)
            }),
        }
    };
    match args.first().map(String::as_str) {
        Some("capture-stream") => capture_stream(number(1, 1_000_000)).await,
        Some("capture-snapshot") => capture_snapshot(number(1, 10_000_000)).await,
        Some("capture-rss") => capture_rss(number(1, 1_000_000)).await,
        Some("capture-latency") => capture_latency(number(1, 20), number(2, 5_000)).await,
        Some("capture-mysql") => capture_mysql::stream(number(1, 1_000_000)).await,
        Some("capture-mysql-snapshot") => capture_mysql::snapshot(number(1, 2_000_000)).await,
        Some("apply") => apply::throughput(number(1, 1_000_000)).await,
        Some("apply-mysql") => apply_mysql::throughput(number(1, 1_000_000)).await,
        Some("apply-mysql-paths") => apply_mysql::write_paths(number(1, 200_000)).await,
        Some("apply-duckdb") => {
            let mode = args.get(3).map_or("mirror", String::as_str);
            apply_duckdb::throughput(number(1, 1_000_000), mode).await
        }
        Some("apply-latency") => apply::latency(number(1, 20), number(2, 5_000)).await,
        Some("apply-paths") => apply::write_paths(number(1, 200_000)).await,
        Some("validate") => validate::throughput(number(1, 2_000_000)).await,
        Some("scaling") => scaling::run(number(1, 10_000)).await,
        Some("soak") => {
            let csv = args.get(3).map_or("soak.csv", String::as_str);
            soak::run(number(1, 3600), number(2, 5_000), csv).await
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn insert(db: &PgDatabase, from: i64, rows: i64) -> String {
    insert_with(&db.client().await, from, rows).await
}

/// Inserts rows `from..from + rows` into t in one transaction; the WAL position after it.
async fn insert_with(client: &tokio_postgres::Client, from: i64, rows: i64) -> String {
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

/// A database with the benchmark table `t`, its publication `bench`, and a
/// pgoutput slot `bench_ref` for the reference.
async fn table_with_reference_slot() -> PgDatabase {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz);
         CREATE PUBLICATION bench FOR TABLE t;",
    )
    .await;
    // A slot cannot be made in a transaction that wrote.
    db.execute("SELECT 'ok' FROM pg_create_logical_replication_slot('bench_ref', 'pgoutput')")
        .await;
    db
}

async fn capture_stream(rows: i64) {
    let db = table_with_reference_slot().await;

    // Reference: pg_recvlogical drains the same kind of transaction.
    let end = insert(&db, 1, rows).await;
    let reference = recvlogical_until(&db, &end).await;

    // Ferry: streaming only, on its own slot.
    let Streaming {
        capture, topic, topics, ..
    } = start_streaming(&db).await;
    insert(&db, rows + 1, rows).await;
    let started = Instant::now();
    wait_for("every change in Kafka", Duration::from_secs(1800), || async {
        (topic_count(&topic) >= rows).then_some(())
    })
    .await;
    let ferry = started.elapsed();
    drop(capture);
    drop(topics);

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

/// How long pg_recvlogical takes to drain slot `bench_ref` up to `end` into
/// /dev/null; the slot is dropped then.
async fn recvlogical_until(db: &PgDatabase, end: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("pg_recvlogical")
        .args(recvlogical_args(db, Some(end), "/dev/null"))
        .stderr(Stdio::null())
        .status()
        .expect("pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    let took = started.elapsed();
    db.execute("SELECT pg_drop_replication_slot('bench_ref')").await;
    took
}

/// pg_recvlogical on slot `bench_ref` and publication `bench` (pgoutput), until
/// `endpos` if given, writing to `file` (`-` for stdout).
fn recvlogical_args<'a>(db: &'a PgDatabase, endpos: Option<&'a str>, file: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        &db.name,
        "--slot",
        "bench_ref",
        "--start",
    ];
    if let Some(end) = endpos {
        args.extend(["--endpos", end]);
    }
    args.extend(["-o", "proto_version=1", "-o", "publication_names=bench", "-f", file]);
    args
}

/// `ferry-capture-postgres` with `args`, then those of `FERRY_BENCH_CAPTURE_ARGS`
/// (split at spaces: flags to try), killed when dropped; its log level is this
/// process's `FERRY_LOG` (warn unless set).
/// A `ferry-capture-postgres` streaming (no snapshot) the `bench` publication
/// under a new prefix; the capture is listed first so it stops before its
/// topics are cleaned up.
struct Streaming {
    capture: tokio::process::Child,
    prefix: String,
    topic: String,
    topics: Topics,
}

/// Starts a [`Streaming`] capture of `db` and waits until it holds its slot.
async fn start_streaming(db: &PgDatabase) -> Streaming {
    let prefix = unique("bench");
    let capture = spawn_capture(&[
        "--source",
        &db.url(),
        "--prefix",
        &prefix,
        "--snapshot",
        "never",
        "--publication",
        "bench",
    ]);
    db.wait_slot_active(&format!("ferry_{prefix}")).await;
    Streaming {
        capture,
        topic: format!("{prefix}.public.t"),
        topics: Topics(prefix.clone()),
        prefix,
    }
}

fn spawn_capture(args: &[&str]) -> tokio::process::Child {
    let extra = std::env::var("FERRY_BENCH_CAPTURE_ARGS").unwrap_or_default();
    if !extra.trim().is_empty() {
        eprintln!("ferry-bench: ferry-capture-postgres also gets {extra}");
    }
    tokio::process::Command::new(binary("ferry-capture-postgres"))
        .args(args)
        .args(extra.split_whitespace())
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start ferry-capture-postgres")
}

/// A `kB` field of /proc/PID/status (VmHWM, VmRSS), in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The fields of /proc/PID/stat after the command name (which is in
/// parentheses and may hold spaces) and the state: field N of the line is
/// index N - 4.
fn proc_stat(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // The first one (the state) is a letter.
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// User + system CPU seconds a process has used so far.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let fields = proc_stat(pid)?;
    // utime and stime: fields 14 and 15.
    Some((fields.get(10)? + fields.get(11)?) as f64 / clock_ticks())
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}

/// Every process alive now, by pid: its command name, when it started (to
/// tell a pid used again apart) and its CPU seconds.
fn processes_cpu() -> std::collections::HashMap<u32, (String, u64, f64)> {
    let mut all = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim().to_owned();
        let Some(fields) = proc_stat(pid) else {
            continue;
        };
        // utime and stime (fields 14, 15), and for PostgreSQL cutime and
        // cstime (16, 17): its ended backends (a snapshot's COPY sessions)
        // were reaped by the postmaster, so their CPU is its children's.
        let counted = if comm == "postgres" { 10..14 } else { 10..12 };
        let ticks: u64 = fields.get(counted).map_or(0, |f| f.iter().sum());
        // starttime (field 22) tells a pid used again apart.
        let start = fields.get(18).copied().unwrap_or(0);
        all.insert(pid, (comm, start, ticks as f64 / clock_ticks()));
    }
    all
}

/// Where the machine's CPU went during a timed phase: Ferry's process, the
/// databases, the broker and everything else, so a figure shows what it
/// shared the host with. Only processes alive at the end are counted (a
/// process that ended during the phase is missed), and PostgreSQL's
/// backends that ended (counted as the postmaster's reaped children).
struct CpuShares {
    before: std::collections::HashMap<u32, (String, u64, f64)>,
    machine: (u64, u64),
    started: Instant,
}

impl CpuShares {
    fn start() -> Self {
        Self {
            before: processes_cpu(),
            machine: machine_ticks(),
            started: Instant::now(),
        }
    }

    /// One line: CPU seconds of Ferry's process (`ferry`, a pid, or the CPU
    /// `exited` used, read before it ended), PostgreSQL, MariaDB, the broker,
    /// this benchmark and the rest, against the cores busy.
    fn report(&self, ferry: Option<u32>, exited: f64) -> String {
        let busy = busy_cores(self.machine, machine_ticks());
        let wall = self.started.elapsed().as_secs_f64();
        let own = std::process::id();
        let mut by: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        if exited > 0.0 {
            by.insert("Ferry".into(), exited);
        }
        for (pid, (comm, start, cpu)) in processes_cpu() {
            let used = cpu
                - self
                    .before
                    .get(&pid)
                    .filter(|(_, s, _)| *s == start)
                    .map_or(0.0, |(_, _, c)| *c);
            let who = match comm.as_str() {
                _ if Some(pid) == ferry => "Ferry",
                _ if pid == own => "ferry-bench",
                "postgres" | "psql" => "PostgreSQL",
                "mariadbd" | "mysqld" => "MariaDB",
                "noida-db" => "broker",
                "ferry-schema-re" => "registry",
                // Named by what they work on at the moment (writeback, ...).
                c if c.starts_with("kworker") => "kernel workers",
                other => other,
            };
            *by.entry(who.to_owned()).or_default() += used;
        }
        // Processes of their own under a tenth of a second each go together.
        let mut parts = Vec::new();
        let mut rest = 0.0;
        for (who, cpu) in &by {
            if *cpu >= 0.1 {
                parts.push(format!("{who} {cpu:.1} s"));
            } else {
                rest += cpu;
            }
        }
        parts.push(format!("the rest {rest:.1} s"));
        format!(
            "CPU over the {wall:.1} s: {} ({busy:.2} of {} cores busy)",
            parts.join(", "),
            std::thread::available_parallelism().map_or(1, usize::from)
        )
    }
}

/// The machine's busy and total CPU time so far, in clock ticks (/proc/stat).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits until the machine is idle (under a fifth of a core busy over a
/// second; at most two minutes), so that a timed phase does not share the
/// host with what the one before left running. The development broker, for
/// one, writes its whole state file again after any change: once a
/// benchmark's log is in it (hundreds of MB), that takes a core for seconds
/// after the last message arrived, and it ran through most of a timed apply
/// (5.5 of its 7.9 s) before this wait.
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let before = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = busy_cores(before, machine_ticks());
        if busy < 0.2 {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("ferry-bench: the host is still busy ({busy:.2} cores) after two minutes; timing anyway");
            return;
        }
    }
}

/// Cores busy between two [`machine_ticks`] readings.
fn busy_cores(before: (u64, u64), after: (u64, u64)) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64 * cores
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A benchmark's topics and registry subjects (`<prefix>.*`), deleted when
/// dropped, also when the benchmark fails: the broker keeps every topic.
#[derive(Debug)]
struct Topics(String);

impl Drop for Topics {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // Dropped inside the runtime, which cannot block on itself.
        let done = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(cleanup(&prefix))
        })
        .join();
        if done.is_err() {
            eprintln!("ferry-bench: cleaning up {} failed", self.0);
        }
    }
}

/// Deletes the topics and registry subjects named `<prefix>.*`; what cannot
/// be deleted is only noted.
async fn cleanup(prefix: &str) {
    let start = format!("{prefix}.");
    let swept = ferry_tests::sweep::delete(|name| name.starts_with(&start)).await;
    for failure in swept.failures {
        eprintln!("ferry-bench: not cleaned up: {failure}");
    }
}

/// The partitions of `topic`, once it exists.
async fn partitions<X: ConsumerContext + 'static>(consumer: &StreamConsumer<X>, topic: &str) -> Vec<i32> {
    wait_for(&format!("topic {topic} to exist"), Duration::from_secs(60), || async {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic && t.error().is_none())?;
        let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await
}

/// About `n` messages of `topic` as (key, value), the last ones of each
/// partition. (A consumer of all the partitions of a 10M-event topic from
/// their beginning fails with BadMessage against the development broker.)
async fn sample_tail(topic: &str, n: i64) -> Vec<Raw> {
    let consumer: StreamConsumer = KafkaSettings::new(brokers())
        .consumer(&unique("sample"))
        .create()
        .expect("consumer");
    let parts = partitions(&consumer, topic).await;
    let per = (n + parts.len() as i64 - 1) / parts.len() as i64;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut expected = 0;
    for p in parts {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        let take = per.min(high - low);
        expected += take;
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Offset(high - take))
            .expect("assignment");
    }
    assert!(expected > 0, "{topic} is empty");
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    while (out.len() as i64) < expected {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected} messages of {topic}", out.len()))
            .unwrap_or_else(|e| panic!("consume {topic}: {e}"));
        out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
    }
    out
}

/// A message's key and value, as bytes.
type Raw = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Counts the producer's delivery reports.
#[derive(Debug, Clone, Default)]
struct Counting {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("ferry-bench: delivery failed: {e}");
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces `n` messages, cycling through `sample`, to `topic` with Ferry's
/// producer settings; the time from the first send until all are acknowledged.
async fn produce_all(topic: &str, sample: &[Raw], n: i64) -> Duration {
    let counting = Counting::default();
    let producer: ThreadedProducer<Counting> = KafkaSettings::new(brokers())
        .producer()
        .create_with_context(counting.clone())
        .expect("producer");
    let started = Instant::now();
    for i in 0..n {
        let (key, value) = &sample[i as usize % sample.len()];
        let mut record = BaseRecord::to(topic);
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // What Ferry's publisher does when librdkafka's queue is full.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    wait_for(
        "every reference message acknowledged",
        Duration::from_secs(1800),
        || async { (counting.delivered.load(Ordering::Relaxed) >= n as u64).then_some(()) },
    )
    .await;
    let elapsed = started.elapsed();
    let failed = counting.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} reference messages were not delivered");
    producer.flush(Duration::from_secs(30)).expect("flush");
    elapsed
}

/// How long psql takes to drain `COPY <table> TO STDOUT` of each of `tables`,
/// one after the other, to /dev/null.
fn copy_out(db: &PgDatabase, tables: &[&str]) -> Duration {
    let started = Instant::now();
    let mut psql = Command::new("psql");
    psql.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        &db.name,
        "-qAtX",
        "-v",
        "ON_ERROR_STOP=1",
    ]);
    for table in tables {
        psql.args(["-c", &format!("COPY {table} TO STDOUT")]);
    }
    let status = psql.stdout(Stdio::null()).status().expect("psql");
    assert!(status.success(), "psql COPY failed");
    started.elapsed()
}

async fn capture_snapshot(rows: i64) {
    assert!(rows > 0, "ROWS must be positive");
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz)")
        .await;
    let loading = Instant::now();
    insert(&db, 1, rows).await;
    // Hint bits and the visibility map set now, so no reader below pays for them.
    db.execute("VACUUM (ANALYZE) t").await;
    db.execute("CHECKPOINT").await;
    let client = db.client().await;
    let (count, size): (i64, i64) = {
        let r = client
            .query_one("SELECT count(*), pg_table_size('t') FROM t", &[])
            .await
            .expect("count");
        (r.get(0), r.get(1))
    };
    assert_eq!(count, rows, "the table holds {count} rows, not {rows}");
    eprintln!(
        "ferry-bench: {rows} rows ({:.0} MiB) loaded in {:.1} s",
        size as f64 / 1048576.0,
        loading.elapsed().as_secs_f64()
    );

    // Reference A: PostgreSQL's own COPY of the table, drained to /dev/null.
    settle().await;
    let copy = copy_out(&db, &["t"]);

    // Ferry: the snapshot alone; the process exits once it is in Kafka.
    let prefix = unique("bench");
    let topics = Topics(prefix.clone());
    let topic = format!("{prefix}.public.t");
    settle().await;
    let started = Instant::now();
    let machine_before = machine_ticks();
    let shares = CpuShares::start();
    let mut capture = spawn_capture(&[
        "--source",
        &db.url(),
        "--prefix",
        &prefix,
        "--tables",
        "public.t",
        "--snapshot",
        "initial_only",
        "--snapshot-workers",
        "2",
    ]);
    let pid = capture.id().expect("capture pid");
    let (mut peak_kib, mut cpu) = (0, 0.0);
    let deadline = started + Duration::from_secs(3600);
    let status = loop {
        if let Some(status) = capture.try_wait().expect("wait for ferry-capture-postgres") {
            break status;
        }
        peak_kib = proc_status_kib(pid, "VmHWM").unwrap_or(peak_kib);
        cpu = proc_cpu_seconds(pid).unwrap_or(cpu);
        assert!(Instant::now() < deadline, "the snapshot did not end within an hour");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ferry = started.elapsed();
    let machine_busy = busy_cores(machine_before, machine_ticks());
    let ferry_shares = shares.report(None, cpu);
    assert!(
        status.success(),
        "ferry-capture-postgres --snapshot initial_only failed: {status}"
    );
    let in_topic = topic_count(&topic);
    assert_eq!(in_topic, rows, "{topic} holds {in_topic} events, not {rows}");
    eprintln!(
        "ferry-bench: COPY {:.2} s; Ferry's snapshot {:.2} s",
        copy.as_secs_f64(),
        ferry.as_secs_f64()
    );

    // Reference B: the broker taking as many messages of the same sizes and
    // contents (a sample of Ferry's own, cycled) from a producer set up as Ferry's.
    let sample = sample_tail(&topic, rows.min(6000)).await;
    let sample_bytes: usize = sample
        .iter()
        .map(|(k, v)| k.as_ref().map_or(0, Vec::len) + v.as_ref().map_or(0, Vec::len))
        .sum();
    let average = sample_bytes as f64 / sample.len() as f64;
    let reference_topic = format!("{prefix}.reference");
    let admin = KafkaSettings::new(brokers()).admin().expect("admin client");
    ensure_topics(
        &admin,
        &[TopicSpec {
            name: reference_topic.clone(),
            // Ferry's default for table topics (--partitions).
            partitions: 3,
            compacted: false,
        }],
    )
    .await
    .expect("create the reference topic");
    settle().await;
    let own_before = proc_cpu_seconds(std::process::id()).unwrap_or(0.0);
    let shares = CpuShares::start();
    let produce = produce_all(&reference_topic, &sample, rows).await;
    let produce_cpu = proc_cpu_seconds(std::process::id()).unwrap_or(0.0) - own_before;
    let produce_shares = shares.report(None, 0.0);
    let produced = topic_count(&reference_topic);
    assert_eq!(
        produced, rows,
        "{reference_topic} holds {produced} messages, not {rows}"
    );
    drop(topics);

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let slower = rate(copy).min(rate(produce));
    println!("| measure | rows | seconds | rows/s | vs slower reference |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `COPY t TO STDOUT` → /dev/null, psql (reference: PostgreSQL) | {rows} | {:.2} | {:.0} | {:.2} |",
        copy.as_secs_f64(),
        rate(copy),
        rate(copy) / slower
    );
    println!(
        "| produce {rows} messages of {average:.0} B, Ferry's producer settings (reference: Kafka) | {rows} | {:.2} | {:.0} | {:.2} |",
        produce.as_secs_f64(),
        rate(produce),
        rate(produce) / slower
    );
    println!(
        "| ferry-capture-postgres --snapshot initial_only --snapshot-workers 2 → Kafka | {rows} | {:.2} | {:.0} | {:.2} |",
        ferry.as_secs_f64(),
        rate(ferry),
        rate(ferry) / slower
    );
    println!();
    println!(
        "Table: {:.0} MiB. Ferry's process: {:.1} CPU s ({:.2} cores, {:.2} µs/row), peak RSS {:.0} MiB; the \
         machine meanwhile: {:.2} of {} cores busy. The reference producer: {:.1} CPU s ({:.2} µs/message). Ferry's \
         time runs from its start to its exit (connecting, schemas, topics included).",
        size as f64 / 1048576.0,
        cpu,
        cpu / ferry.as_secs_f64(),
        cpu * 1e6 / rows as f64,
        mib(peak_kib),
        machine_busy,
        std::thread::available_parallelism().map_or(1, usize::from),
        produce_cpu,
        produce_cpu * 1e6 / rows as f64,
    );
    println!();
    println!("Ferry's snapshot: {ferry_shares} (Ferry's as last read before it exited).");
    println!();
    println!("The reference producer: {produce_shares}.");
}

async fn capture_rss(rows: i64) {
    assert!(rows > 0, "ROWS must be positive");
    let db = table_with_reference_slot().await;

    // Reference: pg_recvlogical drains one transaction of ROWS inserts.
    let end = insert(&db, 1, rows).await;
    let started = Instant::now();
    let mut recv = tokio::process::Command::new("pg_recvlogical")
        .args(recvlogical_args(&db, Some(&end), "/dev/null"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pg_recvlogical");
    let pid = recv.id().expect("pg_recvlogical pid");
    let mut reference_kib = 0;
    let status = loop {
        if let Some(status) = recv.try_wait().expect("wait for pg_recvlogical") {
            break status;
        }
        // VmHWM only grows: the last reading before the exit is the peak.
        reference_kib = proc_status_kib(pid, "VmHWM").unwrap_or(reference_kib);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let reference = started.elapsed();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    assert!(reference_kib > 0, "no reading of pg_recvlogical's memory");
    db.execute("SELECT pg_drop_replication_slot('bench_ref')").await;

    // Ferry: streaming only, on its own slot, while one transaction of ROWS inserts commits.
    let Streaming {
        mut capture,
        topic,
        topics,
        ..
    } = start_streaming(&db).await;
    let pid = capture.id().expect("capture pid");
    let idle_kib = proc_status_kib(pid, "VmRSS").expect("capture's RSS");
    let client = db.client().await;
    let writer = tokio::spawn(async move { insert_with(&client, rows + 1, rows).await });
    let started = Instant::now();
    let (mut peak_kib, mut last_rss_kib, mut max_rss_kib) = (0, 0, 0);
    let mut next_count = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    loop {
        if let Some(status) = capture.try_wait().expect("wait for ferry-capture-postgres") {
            panic!("ferry-capture-postgres exited: {status}");
        }
        peak_kib = proc_status_kib(pid, "VmHWM").unwrap_or(peak_kib);
        last_rss_kib = proc_status_kib(pid, "VmRSS").unwrap_or(last_rss_kib);
        max_rss_kib = max_rss_kib.max(last_rss_kib);
        if Instant::now() >= next_count {
            if topic_count(&topic) >= rows {
                break;
            }
            next_count = Instant::now() + Duration::from_millis(250);
        }
        assert!(
            Instant::now() < deadline,
            "not every change reached Kafka within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ferry = started.elapsed();
    writer.await.expect("writer");
    let in_topic = topic_count(&topic);
    assert_eq!(in_topic, rows, "{topic} holds {in_topic} events, not {rows}");
    drop(capture);
    drop(topics);

    println!("| process | rows in the transaction | seconds | peak RSS MiB | RSS at rest MiB | vs pg_recvlogical |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| pg_recvlogical, pgoutput → /dev/null (reference) | {rows} | {:.2} | {:.1} | | 1.00 |",
        reference.as_secs_f64(),
        mib(reference_kib)
    );
    println!(
        "| ferry-capture-postgres --snapshot never → Kafka | {rows} | {:.2} | {:.1} | {:.1} | {:.2} |",
        ferry.as_secs_f64(),
        mib(peak_kib),
        mib(idle_kib),
        peak_kib as f64 / reference_kib as f64
    );
    println!();
    println!(
        "Peak RSS is VmHWM from /proc/PID/status, sampled until the last event was in Kafka; Ferry's largest VmRSS \
         reading meanwhile: {:.1} MiB, at the end: {:.1} MiB. Ferry's seconds run from before the INSERT (its commit \
         included) until the topic holds every event.",
        mib(max_rss_kib),
        mib(last_rss_kib)
    );
}

/// Commits `rows_per_tx`-row INSERTs on a fixed interval so that `rate` rows/s
/// go in for `seconds`, ids from `first`; each batch's ids with the instant
/// just after its COMMIT returned.
async fn paced_writer(
    db_url: String,
    first: i64,
    seconds: i64,
    rate: i64,
    rows_per_tx: i64,
) -> Vec<(i64, i64, Instant)> {
    let client = ferry_tests::connect_pg(&db_url).await;
    let insert = client
        .prepare(
            "INSERT INTO t (id, v, n) SELECT i, md5(i::text), i * 0.25 FROM generate_series($1::bigint, $2::bigint) i",
        )
        .await
        .expect("prepare");
    let total = seconds * rate;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(rows_per_tx as f64 / rate as f64));
    let mut commits = Vec::with_capacity((total / rows_per_tx + 1) as usize);
    let mut id = first;
    while id < first + total {
        ticks.tick().await;
        let last = (id + rows_per_tx - 1).min(first + total - 1);
        // One statement outside a transaction block: it has committed when it returns.
        let n = client.execute(&insert, &[&id, &last]).await.expect("insert");
        commits.push((id, last, Instant::now()));
        assert_eq!(n as i64, last - id + 1);
        id = last + 1;
    }
    commits
}

/// Per-row latencies of one measure.
#[derive(Debug)]
struct Latencies {
    /// Sorted, in ms.
    sorted: Vec<f64>,
    /// Seconds since the run's first commit of the rows slower than [`SLOW_MS`].
    slow_at: Vec<f64>,
}

/// What counts as a slow row in the notes under the latency table.
const SLOW_MS: f64 = 50.0;

impl Latencies {
    /// Each row's arrival minus its batch's commit (or send).
    fn new(commits: &[(i64, i64, Instant)], first: i64, arrived: &[Option<Instant>], what: &str) -> Self {
        let start = commits.first().map(|c| c.2).expect("commits");
        let mut sorted = Vec::with_capacity(arrived.len());
        let mut slow_at = Vec::new();
        for &(from, to, committed) in commits {
            for id in from..=to {
                let at = arrived[(id - first) as usize].unwrap_or_else(|| panic!("{what}: row {id} never arrived"));
                // Signed: a change may be out before the client hears its commit.
                let ms = if at >= committed {
                    (at - committed).as_secs_f64() * 1000.0
                } else {
                    -((committed - at).as_secs_f64() * 1000.0)
                };
                if ms > SLOW_MS {
                    slow_at.push((committed - start).as_secs_f64());
                }
                sorted.push(ms);
            }
        }
        sorted.sort_by(f64::total_cmp);
        Self { sorted, slow_at }
    }

    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.sorted.len() as f64 * p).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        self.sorted[i]
    }

    /// "N rows (x%), committed in seconds a, b, c of the run".
    fn slow(&self) -> String {
        if self.slow_at.is_empty() {
            return "none".into();
        }
        let mut seconds: Vec<u64> = self.slow_at.iter().map(|s| *s as u64).collect();
        seconds.dedup();
        let list: Vec<String> = seconds.iter().map(u64::to_string).collect();
        format!(
            "{} rows ({:.2}%), committed in seconds {} of the run",
            self.slow_at.len(),
            self.slow_at.len() as f64 * 100.0 / self.sorted.len() as f64,
            list.join(", ")
        )
    }
}

/// Times the arrival of each of `total` messages (ids from `first`, keyed as
/// Ferry keys table t) at a consumer of every partition of `topic` with Ferry's
/// consumer settings; also their bytes (key and value) in all.
async fn timed_consumer(topic: &str, first: i64, total: i64) -> tokio::task::JoinHandle<(Vec<Option<Instant>>, u64)> {
    // It rests between fetches once caught up, as apply does (see
    // `IdleFetch`): on the development broker a consumer that does not spends
    // a core, which the pipeline being timed would miss. Arrivals are late by
    // at most the 10 ms rest.
    let consumer: StreamConsumer<EndIsNoError> = KafkaSettings::new(brokers())
        .consumer(&unique("latency"))
        .set("enable.partition.eof", "true")
        .create_with_context(EndIsNoError)
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in partitions(&consumer, topic).await {
        // Concrete offsets: a paused partition resumes at them.
        let (low, _) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Offset(low))
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    tokio::spawn(async move {
        let mut arrived = vec![None; total as usize];
        let (mut seen, mut bytes) = (0, 0);
        let mut idle = IdleFetch::new(Duration::from_millis(10));
        let mut quiet = Instant::now();
        while seen < total {
            assert!(
                quiet.elapsed() < Duration::from_secs(120),
                "only {seen} of {total} events arrived"
            );
            let m = match tokio::time::timeout(idle.wait(Duration::from_secs(1)), consumer.recv()).await {
                Err(_) => {
                    idle.wake_if_due(&consumer);
                    continue;
                }
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    idle.reached_end(&consumer, p);
                    continue;
                }
                Ok(m) => m.expect("consume"),
            };
            idle.active();
            let now = Instant::now();
            quiet = now;
            let id = m.key().and_then(key_id).expect("a message whose key is not Ferry's id");
            if id < first {
                // A warm-up message of the producer's.
                continue;
            }
            bytes += (m.key_len() + m.payload_len()) as u64;
            seen += i64::from(arrive(&mut arrived, first, id, now));
        }
        (arrived, bytes)
    })
}

/// Produces `rate` messages/s for `seconds` to `topic` with Ferry's producer
/// settings, `per_tick` at a time on a fixed interval, ids from `first` keyed as
/// Ferry keys table t, each value `value_len` bytes; each batch's ids with the
/// instant just before it was sent. Warm-up messages before them have ids below `first`.
async fn paced_producer(
    topic: &str,
    first: i64,
    seconds: i64,
    rate: i64,
    per_tick: i64,
    value_len: usize,
) -> Vec<(i64, i64, Instant)> {
    let counting = Counting::default();
    let producer: ThreadedProducer<Counting> = KafkaSettings::new(brokers())
        .producer()
        .create_with_context(counting.clone())
        .expect("producer");
    let value = vec![b'x'; value_len];
    // Warm-up, untimed: the producer learns the topic's partitions and leaders
    // (as Ferry's has by the time it streams) with messages to each partition.
    for i in 1..=30 {
        let key = ferry_core::wire::encode(1, &zigzag(first - i));
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    wait_for("the warm-up messages acknowledged", Duration::from_secs(60), || async {
        (counting.delivered.load(Ordering::Relaxed) >= 30).then_some(())
    })
    .await;
    counting.delivered.store(0, Ordering::Relaxed);
    let total = seconds * rate;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate as f64));
    let mut sends = Vec::with_capacity((total / per_tick + 1) as usize);
    let mut id = first;
    while id < first + total {
        ticks.tick().await;
        let last = (id + per_tick - 1).min(first + total - 1);
        sends.push((id, last, Instant::now()));
        for i in id..=last {
            let key = ferry_core::wire::encode(1, &zigzag(i));
            producer
                .send(BaseRecord::to(topic).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("produce");
        }
        id = last + 1;
    }
    wait_for("every message acknowledged", Duration::from_secs(120), || async {
        (counting.delivered.load(Ordering::Relaxed) >= total as u64).then_some(())
    })
    .await;
    assert_eq!(counting.failed.load(Ordering::Relaxed), 0, "messages not delivered");
    sends
}

/// An Avro long: zig-zag varint.
fn zigzag(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::with_capacity(10);
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return out;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Scans pg_recvlogical's pgoutput stream (`-f -`) for the Insert messages of
/// one relation, yielding each row's first column (its id).
#[derive(Debug)]
struct InsertScanner {
    /// 'I', the relation's OID, 'N', 4 columns, the first one as text.
    pattern: Vec<u8>,
    buf: Vec<u8>,
}

impl InsertScanner {
    fn new(relation: u32) -> Self {
        let mut pattern = vec![b'I'];
        pattern.extend_from_slice(&relation.to_be_bytes());
        pattern.extend_from_slice(&[b'N', 0, 4, b't']);
        Self {
            pattern,
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8], mut found: impl FnMut(i64)) {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        let keep = loop {
            let Some(pos) = self.buf[at..]
                .windows(self.pattern.len())
                .position(|w| w == self.pattern)
            else {
                break self.buf.len().saturating_sub(self.pattern.len() - 1).max(at);
            };
            let start = at + pos;
            let len_at = start + self.pattern.len();
            let Some(len) = self.buf.get(len_at..len_at + 4) else {
                break start;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(text) = self.buf.get(len_at + 4..len_at + 4 + len) else {
                break start;
            };
            let id = std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("pg_recvlogical: an id that is not a number: {text:?}"));
            found(id);
            at = len_at + 4 + len;
        };
        self.buf.drain(..keep);
    }
}

/// Ferry's key of table t: the Confluent frame around an Avro record of one
/// long (zig-zag varint).
fn key_id(key: &[u8]) -> Option<i64> {
    let (_, datum) = ferry_core::wire::decode(key).ok()?;
    let mut v: u64 = 0;
    for (i, b) in datum.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    None
}

/// Marks `id` as arrived at `now`; whether it is new.
fn arrive(arrived: &mut [Option<Instant>], first: i64, id: i64, now: Instant) -> bool {
    let i = id - first;
    assert!(i >= 0 && (i as usize) < arrived.len(), "an id outside the run: {id}");
    let slot = &mut arrived[i as usize];
    if slot.is_none() {
        *slot = Some(now);
        true
    } else {
        false
    }
}

async fn capture_latency(seconds: i64, rate: i64) {
    assert!(seconds > 0 && rate > 0, "SECONDS and RATE must be positive");
    // 200 transactions a second, each of RATE/200 rows (at least one).
    let rows_per_tx = (rate / 200).max(1);
    let total = seconds * rate;
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz DEFAULT clock_timestamp());
         CREATE PUBLICATION bench FOR TABLE t;",
    )
    .await;
    db.execute("SELECT 'ok' FROM pg_create_logical_replication_slot('bench_ref', 'pgoutput')")
        .await;
    let relation: u32 = db
        .client()
        .await
        .query_one("SELECT 't'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0);

    // Reference: pg_recvlogical's stdout, each row's Insert message timed as it is read.
    let mut recv = tokio::process::Command::new("pg_recvlogical")
        .args(recvlogical_args(&db, None, "-"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pg_recvlogical");
    let mut out = recv.stdout.take().expect("pg_recvlogical's stdout");
    db.wait_slot_active("bench_ref").await;
    let first = 1;
    let reader = tokio::spawn(async move {
        let mut arrived = vec![None; total as usize];
        let mut scanner = InsertScanner::new(relation);
        let mut seen = 0;
        let mut chunk = vec![0; 1 << 16];
        while seen < total {
            let n = out.read(&mut chunk).await.expect("read pg_recvlogical");
            assert!(n > 0, "pg_recvlogical ended after {seen} of {total} rows");
            let now = Instant::now();
            scanner.feed(&chunk[..n], |id| {
                seen += i64::from(arrive(&mut arrived, first, id, now))
            });
        }
        arrived
    });
    let commits = paced_writer(db.url(), first, seconds, rate, rows_per_tx).await;
    let written = commits.last().map(|c| c.2).expect("commits") - commits[0].2;
    let arrived = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("pg_recvlogical did not show every row within 2 minutes")
        .expect("reader");
    let reference = Latencies::new(&commits, first, &arrived, "pg_recvlogical");
    drop(recv);
    db.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'bench_ref'")
        .await;
    wait_for("slot bench_ref to be free", Duration::from_secs(30), || async {
        db.client()
            .await
            .query_one("SELECT 'ok' FROM pg_drop_replication_slot('bench_ref')", &[])
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // Ferry: streaming only; a consumer of every partition times each row's event.
    let Streaming {
        capture,
        prefix,
        topic,
        topics,
    } = start_streaming(&db).await;
    let first = total + 1;
    let reader = timed_consumer(&topic, first, total).await;
    let ferry_commits = paced_writer(db.url(), first, seconds, rate, rows_per_tx).await;
    let ferry_written = ferry_commits.last().map(|c| c.2).expect("commits") - ferry_commits[0].2;
    let (arrived, ferry_bytes) = reader.await.expect("consumer");
    let ferry = Latencies::new(&ferry_commits, first, &arrived, "Ferry");
    drop(capture);
    let in_topic = topic_count(&topic);
    assert_eq!(in_topic, total, "{topic} holds {in_topic} events, not {total}");

    // The broker alone: messages of Ferry's average size produced at the same
    // pace with Ferry's producer settings, timed from send to the consumer.
    let average = ferry_bytes as f64 / total as f64;
    let broker_topic = format!("{prefix}.reference");
    let admin = KafkaSettings::new(brokers()).admin().expect("admin client");
    ensure_topics(
        &admin,
        &[TopicSpec {
            name: broker_topic.clone(),
            partitions: 3,
            compacted: false,
        }],
    )
    .await
    .expect("create the reference topic");
    let first = 2 * total + 100;
    let reader = timed_consumer(&broker_topic, first, total).await;
    // Ferry's key of a row here is 5 bytes of framing and 3 of id.
    let value_len = (average - 8.0).max(1.0) as usize;
    let sends = paced_producer(&broker_topic, first, seconds, rate, rows_per_tx, value_len).await;
    let broker_written = sends.last().map(|c| c.2).expect("sends") - sends[0].2;
    let (arrived, _) = reader.await.expect("consumer");
    let broker = Latencies::new(&sends, first, &arrived, "Kafka");
    drop(topics);

    println!("| measure | rows | rows/s written | p50 ms | p99 ms | max ms | p99 vs slower reference |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // Of the slower reference.
    let p99 = reference.percentile(0.99).max(broker.percentile(0.99));
    for (name, l, w) in [
        (
            "pg_recvlogical, pgoutput → its stdout (reference: PostgreSQL)",
            &reference,
            written,
        ),
        (
            &format!("produce {average:.0} B messages → Kafka consumer, Ferry's producer settings (reference: Kafka)")
                as &str,
            &broker,
            broker_written,
        ),
        (
            "ferry-capture-postgres --snapshot never → Kafka consumer",
            &ferry,
            ferry_written,
        ),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} |",
            l.sorted.len(),
            (l.sorted.len() - rows_per_tx as usize) as f64 / w.as_secs_f64(),
            l.percentile(0.5),
            l.percentile(0.99),
            l.percentile(1.0),
            l.percentile(0.99) / p99
        );
    }
    println!();
    println!(
        "Each row: from just after its INSERT's COMMIT returned to the client (for Kafka alone: from just before its \
         send) until it was read: from pg_recvlogical's stdout, or by a consumer of every partition of the topic with \
         Ferry's consumer settings. Transactions (batches) of {rows_per_tx} rows every {:.1} ms on one connection. \
         Rows over {SLOW_MS} ms: pg_recvlogical {}; Kafka alone {}; Ferry {}.",
        rows_per_tx as f64 * 1000.0 / rate as f64,
        reference.slow(),
        broker.slow(),
        ferry.slow()
    );
}
