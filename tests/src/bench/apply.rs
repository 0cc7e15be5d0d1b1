//! `ferry-bench apply EVENTS` and `ferry-bench apply-latency SECONDS RATE`.
//!
//! `apply`: EVENTS change events (inserts, updates and deletes, 70% on a narrow
//! table, 30% on a wide one) captured into Kafka first; then
//! `ferry-apply-postgres` applies the whole log into an empty database, timed
//! from its start until the target's stored offsets reach the end of every
//! topic. Beside it, `COPY FROM` of as many rows of the same two shapes into the
//! same database (the rows are generated first; only the COPY is timed).
//!
//! `apply-paths`: see [`write_paths`].
//!
//! `apply-latency`: capture and apply running, a writer commits RATE rows/s for
//! SECONDS; each row's latency from just after its COMMIT returned to its
//! insert in the target (a target column defaulting to `clock_timestamp()`)
//! and to its target transaction's commit (`pg_xact_commit_timestamp`),
//! beside the same rows' commit-to-Kafka-consumer latency in the same run.
//! Timing starts once a warm-up row is in the target, so it measures the
//! running pipeline, not apply's start.

use std::time::{Duration, Instant, SystemTime};

use ferry_tests::{binary, brokers, topic_count, unique, wait_for, PgDatabase};

use super::{paced_writer, timed_consumer, Latencies, Topics};

const NARROW: &str = "n (id bigint PRIMARY KEY, v integer NOT NULL, s text)";
const WIDE: &str = "w (id bigint PRIMARY KEY, a integer, b bigint, c numeric(12,2), d double precision,
    e text, f text, g timestamptz, h date, i boolean, j uuid, k jsonb, l varchar(40), m numeric,
    o smallint, p bytea, q text)";

/// SQL for the rows `from..=to` of the narrow or the wide table.
fn rows_sql(wide: bool, from: i64, to: i64) -> String {
    if wide {
        format!(
            "SELECT i, i::int % 1000, i * 7, i * 0.25, i / 3.0, md5(i::text), repeat('x', 50),
                    '2024-01-01'::timestamptz + i * interval '1 second', '2024-01-01'::date + (i % 1000)::int,
                    i % 2 = 0, md5(i::text)::uuid, jsonb_build_object('i', i, 'tag', 'bench'), left(md5(i::text), 40),
                    i / 7.0, (i % 30000)::smallint, decode(md5(i::text), 'hex'), 'row ' || i
             FROM generate_series({from}, {to}) i"
        )
    } else {
        format!("SELECT i, i::int % 100000, md5(i::text) FROM generate_series({from}, {to}) i")
    }
}

/// Runs `sql` with `i` over `1..=n` in transactions of 10,000 rows.
async fn chunked(client: &tokio_postgres::Client, n: i64, sql: impl Fn(i64, i64) -> String) {
    let mut from = 1;
    while from <= n {
        let to = (from + 9_999).min(n);
        client.batch_execute(&sql(from, to)).await.expect("workload");
        from = to + 1;
    }
}

/// Applied messages of `group` so far, by the target's stored offsets.
async fn applied(client: &tokio_postgres::Client, group: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM _ferry_offsets WHERE consumer_group = $1",
            &[&group],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

fn spawn_apply(target: &PgDatabase, prefix: &str, group: &str) -> tokio::process::Child {
    spawn_apply_to("ferry-apply-postgres", &target.url(), prefix, group, &[])
}

/// The apply binary `name` of `prefix`'s topics into `url` as `group`, with
/// `extra` and `FERRY_BENCH_APPLY_ARGS`, logging at `FERRY_LOG` (default warn).
pub fn spawn_apply_to(name: &str, url: &str, prefix: &str, group: &str, extra: &[&str]) -> tokio::process::Child {
    let topics = format!("{prefix}\\..*");
    tokio::process::Command::new(binary(name))
        .args(["--target", url, "--topics", &topics, "--group", group])
        .args(["--brokers", &brokers()])
        .args(extra)
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
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

fn spawn_capture(source: &PgDatabase, prefix: &str) -> tokio::process::Child {
    tokio::process::Command::new(binary("ferry-capture-postgres"))
        .args(["--source", &source.url(), "--prefix", prefix, "--brokers", &brokers()])
        .env("FERRY_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start ferry-capture-postgres")
}

/// The log the throughput benchmarks apply: EVENTS change events of the
/// narrow and the wide table, all in Kafka (the topics go when it is dropped).
pub struct Log {
    /// Held, not read: dropping it drops the database.
    _source: PgDatabase,
    pub client: tokio_postgres::Client,
    pub prefix: String,
    /// Messages, with the tombstone after each delete.
    pub total: i64,
    _topics: Topics,
}

impl Log {
    pub fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }
}

/// Captures EVENTS change events into Kafka: 70% on the narrow table, 30% on
/// the wide one; of each, 4/7 inserts, 2/7 updates of the first rows, 1/7
/// deletes of the last.
pub async fn captured_log(events: i64) -> Log {
    assert!(events >= 100, "EVENTS must be at least 100");
    let source = PgDatabase::create();
    source
        .execute(&format!("CREATE TABLE {NARROW}; CREATE TABLE {WIDE};"))
        .await;
    let prefix = unique("benchapply");
    let topics = Topics(prefix.clone());
    let capture = spawn_capture(&source, &prefix);
    ferry_tests::wait_streaming(&source, &prefix).await;
    let client = source.client().await;
    let mut written = 0;
    for (wide, share) in [(false, 0.7), (true, 0.3)] {
        let table = if wide { "w" } else { "n" };
        let events = (events as f64 * share) as i64;
        let (inserts, updates) = (events * 4 / 7, events * 2 / 7);
        let deletes = events - inserts - updates;
        chunked(&client, inserts, |from, to| {
            format!("INSERT INTO {table} {}", rows_sql(wide, from, to))
        })
        .await;
        let set = if wide { "a = a + 1, e = 'updated'" } else { "v = v + 1" };
        chunked(&client, updates, |from, to| {
            format!("UPDATE {table} SET {set} WHERE id BETWEEN {from} AND {to}")
        })
        .await;
        chunked(&client, deletes, |from, to| {
            format!(
                "DELETE FROM {table} WHERE id BETWEEN {} AND {}",
                inserts - to + 1,
                inserts - from + 1
            )
        })
        .await;
        written += inserts + updates + deletes;
    }
    let topic = |t: &str| format!("{prefix}.public.{t}");
    let messages = || topic_count(&topic("n")) + topic_count(&topic("w"));
    wait_for("every event in Kafka", Duration::from_secs(1800), || async {
        let before = messages();
        tokio::time::sleep(Duration::from_secs(2)).await;
        (before >= written && messages() == before).then_some(())
    })
    .await;
    drop(capture);
    let total = messages();
    super::settle().await;
    Log {
        _source: source,
        client,
        prefix,
        total,
        _topics: topics,
    }
}

pub async fn throughput(events: i64) {
    let log = captured_log(events).await;
    let (client, prefix, total) = (&log.client, &log.prefix, log.total);

    // Ferry: the whole log (its events, and a tombstone after each delete) into an empty database.
    let target = PgDatabase::create();
    let t = target.client().await;
    let group = unique("bench");
    let shares = super::CpuShares::start();
    let started = Instant::now();
    let apply = spawn_apply(&target, prefix, &group);
    wait_for(
        "apply to reach the end of the log",
        Duration::from_secs(3600),
        || async { (applied(&t, &group).await >= total).then_some(()) },
    )
    .await;
    let ferry = started.elapsed();
    let apply_cpu = apply.id().and_then(super::proc_cpu_seconds).unwrap_or(f64::NAN);
    let shares = shares.report(apply.id(), 0.0);
    drop(apply);
    super::settle().await;
    // Kafka's side: a consumer with Ferry's settings reading the same messages.
    let reading = super::CpuShares::start();
    let consumed = read_all(&log).await;
    let reading = reading.report(None, 0.0);
    for table in ["n", "w"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let (got, want): (i64, i64) = (
            t.query_one(&sql, &[]).await.expect("count").get(0),
            client.query_one(&sql, &[]).await.expect("count").get(0),
        );
        assert_eq!(got, want, "table {table} differs");
    }

    // Reference: COPY FROM of as many rows of the same shapes into the same database.
    let narrow_rows = (events as f64 * 0.7) as i64;
    let mut copied = Duration::ZERO;
    for (wide, rows, name) in [(false, narrow_rows, "n_copy"), (true, events - narrow_rows, "w_copy")] {
        let shape = if wide { WIDE } else { NARROW };
        let shape = shape.replacen(if wide { "w " } else { "n " }, &format!("{name} "), 1);
        target.execute(&format!("CREATE TABLE {shape}")).await;
        let data = copy_out(client, &rows_sql(wide, 1, rows)).await;
        super::settle().await;
        let started = Instant::now();
        copy_in(&t, name, data, "csv").await;
        copied += started.elapsed();
    }
    drop(log);

    let ferry_rate = events as f64 / ferry.as_secs_f64();
    let copy_rate = events as f64 / copied.as_secs_f64();
    println!("| measure | rows | seconds | rows/s | vs COPY |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `COPY FROM` (CSV) of {events} rows, 70% narrow, 30% wide (reference) | {events} | {:.1} | {copy_rate:.0} | 1.00 |",
        copied.as_secs_f64()
    );
    println!(
        "| ferry-apply-postgres, {events} change events ({total} messages with tombstones) from Kafka | {events} | {:.1} | {ferry_rate:.0} | {:.2} |",
        ferry.as_secs_f64(),
        ferry_rate / copy_rate
    );
    println!(
        "| a Kafka consumer with Ferry's settings reading the same {total} messages (reference: Kafka) | {total} | {:.1} | {:.0} | |",
        consumed.as_secs_f64(),
        total as f64 / consumed.as_secs_f64()
    );
    println!();
    println!(
        "ferry-apply-postgres used {apply_cpu:.1} s of CPU ({:.1} µs per event). {shares}.",
        apply_cpu * 1e6 / events as f64
    );
    println!();
    println!("The Kafka consumer (reference): {reading}.");
    println!();
    println!(
        "Events: 4/7 inserts, 2/7 updates, 1/7 deletes, on a 3-column and a 17-column table; applied from the \
         beginning of the log into an empty database (defaults: 2 writers, batches up to 20,000 messages), timed \
         from the start of apply until the target's stored offsets reach the end of every topic."
    );
}

/// How long a consumer with Ferry's settings takes to read every message of
/// `log` (reference: Kafka; apply cannot be faster than this).
pub async fn read_all(log: &Log) -> Duration {
    let topics = [log.topic("n"), log.topic("w")];
    let total = log.total;
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ferry_core::kafka::KafkaSettings::new(brokers())
            .consumer(&unique("bench-read"))
            .create()
            .expect("consumer");
        consumer
            .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
            .expect("subscribe");
        let started = Instant::now();
        let mut n = 0;
        while n < total {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                m.expect("consume");
                n += 1;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "read only {n} of {total}"
            );
        }
        started.elapsed()
    })
    .await
    .expect("reader")
}

/// The rows of `select` in COPY's CSV form.
async fn copy_out(client: &tokio_postgres::Client, select: &str) -> Vec<u8> {
    use futures::StreamExt;
    let stream = client
        .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT csv)"))
        .await
        .expect("copy out");
    let mut stream = std::pin::pin!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.expect("copy chunk"));
    }
    data
}

async fn copy_in(client: &tokio_postgres::Client, table: &str, data: Vec<u8>, format: &str) {
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN (FORMAT {format})"))
        .await
        .expect("copy in");
    use futures::SinkExt;
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(data)).await.expect("copy data");
    sink.as_mut().finish().await.expect("copy finish");
}

pub async fn latency(seconds: i64, rate: i64) {
    assert!(seconds > 0 && rate > 0, "SECONDS and RATE must be positive");
    let rows_per_tx = (rate / 200).max(1);
    let total = seconds * rate;
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    source
        .execute("CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz DEFAULT clock_timestamp());")
        .await;
    // The target's own column: when apply inserted the row.
    target
        .execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz,
                             applied_at timestamptz NOT NULL DEFAULT clock_timestamp());",
        )
        .await;
    let prefix = unique("benchlat");
    let topics = Topics(prefix.clone());
    let capture = spawn_capture(&source, &prefix);
    ferry_tests::wait_streaming(&source, &prefix).await;
    let group = unique("bench");
    let started = Instant::now();
    let apply = spawn_apply(&target, &prefix, &group);
    let t = target.client().await;
    // A warm-up row first, timed only once it is in the target: what follows
    // is the pipeline's latency, not apply joining its group (assignment and
    // the first fetch took the first 0.4 s here, 2% of the rows at this rate).
    let warm_up: i64 = 0;
    source
        .execute(&format!("INSERT INTO t (id, v, n) VALUES ({warm_up}, 'warm-up', 0)"))
        .await;
    wait_for("the warm-up row in the target", Duration::from_secs(120), || async {
        t.query_opt("SELECT 1 FROM t WHERE id = $1", &[&warm_up])
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
    let joined = started.elapsed();
    let first = warm_up + 1;
    let kafka = timed_consumer(&format!("{prefix}.public.t"), first, total).await;
    let (clock, wall) = (Instant::now(), SystemTime::now());
    let commits = paced_writer(source.url(), first, seconds, rate, rows_per_tx).await;
    let (in_kafka, _) = kafka.await.expect("consumer");
    wait_for("every row in the target", Duration::from_secs(300), || async {
        let n: i64 = t
            .query_one("SELECT count(*) FROM t WHERE id >= $1", &[&first])
            .await
            .ok()?
            .get(0);
        (n >= total).then_some(())
    })
    .await;
    drop(apply);
    drop(capture);
    // Each row's insert, and its transaction's commit (`track_commit_timestamp`,
    // which `scripts/services` turns on), as instants of this process.
    let mut inserted = vec![None; total as usize];
    let mut committed = vec![None; total as usize];
    let epoch = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let instant = |micros: i64| clock + Duration::from_micros(micros as u64).saturating_sub(epoch);
    for row in t
        .query(
            "SELECT id, (extract(epoch FROM applied_at) * 1000000)::bigint,
                    (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint
             FROM t WHERE id >= $1",
            &[&first],
        )
        .await
        .expect("applied_at")
    {
        let (id, at, commit): (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
        let commit = commit.expect("no commit timestamps: track_commit_timestamp is off (scripts/services up sets it)");
        inserted[(id - first) as usize] = Some(instant(at));
        committed[(id - first) as usize] = Some(instant(commit));
    }
    drop(topics);
    let kafka = Latencies::new(&commits, first, &in_kafka, "Kafka");
    let inserted = Latencies::new(&commits, first, &inserted, "target");
    let end_to_end = Latencies::new(&commits, first, &committed, "target");
    println!("| measure | rows | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, l) in [
        ("source commit → Kafka consumer (capture alone, same run)", &kafka),
        (
            "source commit → row inserted in the target (capture + apply)",
            &inserted,
        ),
        ("source commit → target commit (capture + apply)", &end_to_end),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            l.sorted.len(),
            l.percentile(0.5),
            l.percentile(0.99),
            l.percentile(1.0)
        );
    }
    println!();
    println!(
        "{rate} rows/s for {seconds} s in transactions of {rows_per_tx} rows; apply with its defaults, timed once \
         a warm-up row had reached the target ({:.1} s after apply started). Rows over 50 ms end to end: {}.",
        joined.as_secs_f64(),
        end_to_end.slow()
    );
}

/// `ferry-bench apply-paths ROWS`: the ways a batch can be written, on the
/// same rows of the wide table in batches of 20,000, once into an empty table
/// (all inserts) and once more (all updates): `INSERT ... SELECT FROM
/// unnest($1::text[], ...) ON CONFLICT DO UPDATE`, and `COPY` into a temporary
/// staging table followed by `INSERT ... SELECT ... ON CONFLICT DO UPDATE` from
/// it (apply's path); for the inserts also `COPY` straight into the table
/// (apply's path for keys the batch created, see `ferry_apply::postgres`) and
/// the staging table followed by `INSERT ... SELECT ... WHERE NOT EXISTS`, an
/// earlier candidate for those keys. Not taken: into an empty table the
/// planner checks each row by scanning the table, which the insert itself
/// keeps growing (3.3 s for the first 20,000 rows here); forced to probe the
/// key's index instead it was slower than `ON CONFLICT`, which probes it once
/// anyway.
pub async fn write_paths(rows: i64) {
    const BATCH: usize = 20_000;
    let db = PgDatabase::create();
    let client = db.client().await;
    let shape = WIDE.replacen("w ", "paths ", 1);
    db.execute(&format!("CREATE TABLE {shape}")).await;
    // The rows as text, column by column per batch, as apply holds them.
    let text_rows: Vec<Vec<Option<String>>> = client
        .simple_query(&format!("SELECT * FROM ({}) r", rows_sql(true, 1, rows)))
        .await
        .expect("rows")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect();
    let types: Vec<String> = client
        .query(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'paths'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .expect("types")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let names: Vec<String> = (0..types.len()).map(|i| format!("c{i}")).collect();
    let columns = "id, a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q";
    let set: Vec<String> = columns
        .split(", ")
        .skip(1)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let conflict = format!("ON CONFLICT (id) DO UPDATE SET {}", set.join(", "));
    let params: Vec<String> = (1..=types.len()).map(|i| format!("${i}::text[]")).collect();
    let casts: Vec<String> = names.iter().zip(&types).map(|(n, t)| format!("{n}::{t}")).collect();
    let unnest_sql = format!(
        "INSERT INTO paths ({columns}) SELECT {} FROM unnest({}) AS v({}) {conflict}",
        casts.join(", "),
        params.join(", "),
        names.join(", ")
    );
    let unnest = client.prepare(&unnest_sql).await.expect("prepare");
    let mut results = Vec::new();
    // New keys also the third way: measured, not taken (see write_paths).
    let rounds: [(&str, &[&str]); 2] = [
        ("empty table (inserts)", &["unnest", "copy", "direct", "absent"]),
        ("same rows again (updates)", &["unnest", "copy"]),
    ];
    for (round, paths) in rounds {
        for &path in paths {
            if path == "unnest" {
                client.batch_execute("TRUNCATE paths").await.expect("truncate");
                if round.starts_with("same") {
                    client
                        .batch_execute(&format!("INSERT INTO paths {}", rows_sql(true, 1, rows)))
                        .await
                        .expect("fill");
                }
            } else if round.starts_with("empty") {
                client.batch_execute("TRUNCATE paths").await.expect("truncate");
            }
            client.batch_execute("VACUUM ANALYZE paths").await.expect("vacuum");
            let started = Instant::now();
            for chunk in text_rows.chunks(BATCH) {
                client.batch_execute("BEGIN").await.expect("begin");
                if path == "unnest" {
                    let arrays: Vec<Vec<Option<&str>>> = (0..types.len())
                        .map(|c| chunk.iter().map(|r| r[c].as_deref()).collect())
                        .collect();
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
                        .iter()
                        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    client.execute(&unnest, &refs).await.expect("unnest upsert");
                } else {
                    let mut data = String::new();
                    for r in chunk {
                        let fields: Vec<String> = r
                            .iter()
                            .map(|v| match v {
                                None => "\\N".to_owned(),
                                Some(s) => s
                                    .replace('\\', "\\\\")
                                    .replace('\t', "\\t")
                                    .replace('\n', "\\n")
                                    .replace('\r', "\\r"),
                            })
                            .collect();
                        data.push_str(&fields.join("\t"));
                        data.push('\n');
                    }
                    if path == "direct" {
                        copy_in(&client, "paths", data.into_bytes(), "text").await;
                        client.batch_execute("COMMIT").await.expect("commit");
                        continue;
                    }
                    client
                        .batch_execute("CREATE TEMP TABLE stage (LIKE paths) ON COMMIT DROP")
                        .await
                        .expect("stage");
                    copy_in(&client, "stage", data.into_bytes(), "text").await;
                    let merge = if path == "absent" {
                        "INSERT INTO paths SELECT * FROM stage s WHERE NOT EXISTS (SELECT 1 FROM paths t WHERE t.id = s.id)"
                            .to_owned()
                    } else {
                        format!("INSERT INTO paths SELECT * FROM stage {conflict}")
                    };
                    client.batch_execute(&merge).await.expect("merge");
                }
                client.batch_execute("COMMIT").await.expect("commit");
            }
            results.push((round, path, started.elapsed()));
        }
    }
    println!("| rows of the 17-column table, batches of {BATCH} | path | seconds | rows/s |");
    println!("|---|---|---:|---:|");
    for (round, path, took) in results {
        let name = match path {
            "unnest" => "`INSERT ... SELECT FROM unnest(text arrays) ON CONFLICT`",
            "copy" => "`COPY` into a temporary table, then `INSERT ... SELECT ... ON CONFLICT` (apply's path)",
            "direct" => "`COPY` into the table (apply's path for keys the batch created)",
            _ => "`COPY` into a temporary table, then `INSERT ... SELECT ... WHERE NOT EXISTS` (not taken)",
        };
        println!(
            "| {rows}, {round} | {name} | {:.1} | {:.0} |",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64()
        );
    }
}
