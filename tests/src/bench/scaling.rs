//! `ferry-bench scaling [ROWS]`: how PostgreSQL capture's cost grows with the
//! work. One table of ROWS (1×), 10× and 100× the rows; then 10× the rows
//! spread over 10 and over 100 tables. Each point measures the snapshot
//! (`--snapshot initial_only --snapshot-workers 2`, start to exit) beside
//! `COPY ... TO STDOUT` of the same tables, and streaming (one transaction
//! writing as many rows again, commit until every event is in Kafka) beside
//! `pg_recvlogical` draining the same kind of transaction. A rate that holds
//! as the work grows means a cost linear in the work; a ratio that holds means
//! Ferry's overhead grows no faster than PostgreSQL's own.

use std::time::{Duration, Instant};

use ferry_core::kafka::KafkaSettings;
use ferry_tests::{brokers, unique, PgDatabase};

use crate::{copy_out, recvlogical_until, spawn_capture, start_streaming, Topics};

/// Tables `t1..tN` of the benchmark's shape, each with `per_table` rows,
/// vacuumed, under the publication `bench`.
async fn tables(n: usize, per_table: i64) -> (PgDatabase, Vec<String>) {
    let db = PgDatabase::create();
    let names: Vec<String> = (1..=n).map(|i| format!("t{i}")).collect();
    for name in &names {
        db.execute(&format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY, v text, n numeric(12,2), at timestamptz)"
        ))
        .await;
    }
    db.execute("CREATE PUBLICATION bench FOR ALL TABLES").await;
    db.execute(&fill(&names, 1, per_table)).await;
    for name in &names {
        db.execute(&format!("VACUUM (ANALYZE) {name}")).await;
    }
    db.execute("CHECKPOINT").await;
    (db, names)
}

/// One transaction inserting ids `from..from + rows` into each table.
fn fill(tables: &[String], from: i64, rows: i64) -> String {
    let inserts: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "INSERT INTO {t} SELECT i, md5(i::text), i * 0.25, now() FROM generate_series({from}, {}) i;",
                from + rows - 1
            )
        })
        .collect();
    format!("BEGIN; {} COMMIT;", inserts.join(" "))
}

/// Counts the messages in the table topics of a prefix: their partitions' end
/// offsets asked in one request (the topics are new, so they start at 0),
/// not one request per partition, whose round trips had made the 100-table
/// point's count take longer than Ferry took to stream.
struct Counter {
    consumer: rdkafka::consumer::BaseConsumer,
    prefix: String,
    tables: usize,
    partitions: rdkafka::TopicPartitionList,
}

impl Counter {
    fn new(prefix: &str, tables: usize) -> Self {
        Self {
            consumer: KafkaSettings::new(brokers())
                .consumer(&unique("count"))
                .create()
                .expect("consumer"),
            prefix: format!("{prefix}.public."),
            tables,
            partitions: rdkafka::TopicPartitionList::new(),
        }
    }

    /// Messages in Kafka now (0 until every table's topic exists).
    fn count(&mut self) -> i64 {
        use rdkafka::consumer::Consumer;
        if self.partitions.count() == 0 {
            let Ok(md) = self.consumer.fetch_metadata(None, Duration::from_secs(10)) else {
                return 0;
            };
            let topics: Vec<_> = md
                .topics()
                .iter()
                .filter(|t| t.name().starts_with(&self.prefix))
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .collect();
            if topics.len() < self.tables {
                return 0;
            }
            for t in topics {
                for p in t.partitions() {
                    self.partitions
                        .add_partition_offset(t.name(), p.id(), rdkafka::Offset::End)
                        .expect("a partition");
                }
            }
        }
        self.consumer
            .offsets_for_times(self.partitions.clone(), Duration::from_secs(10))
            .map_or(0, |ends| {
                ends.elements().iter().filter_map(|e| e.offset().to_raw()).sum()
            })
    }
}

/// Seconds each side took at one point of the scale.
struct Point {
    tables: usize,
    rows: i64,
    copy: Duration,
    snapshot: Duration,
    recvlogical: Duration,
    streaming: Duration,
}

async fn measure(n: usize, rows: i64) -> Point {
    let per_table = rows / n as i64;
    let rows = per_table * n as i64;
    let (db, names) = tables(n, per_table).await;

    // Snapshot: COPY of every table, one after the other, then Ferry's.
    let copy = copy_out(&db, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let prefix = unique("bench");
    let _topics = Topics(prefix.clone());
    let started = Instant::now();
    let mut capture = spawn_capture(&[
        "--source",
        &db.url(),
        "--prefix",
        &prefix,
        "--tables",
        "public.*",
        "--snapshot",
        "initial_only",
        "--snapshot-workers",
        "2",
    ]);
    let status = tokio::time::timeout(Duration::from_secs(3600), capture.wait())
        .await
        .expect("the snapshot ended within an hour")
        .expect("wait for ferry-capture-postgres");
    let snapshot = started.elapsed();
    assert!(status.success(), "the snapshot failed: {status}");
    assert_eq!(
        Counter::new(&prefix, n).count(),
        rows,
        "every row of the snapshot in Kafka"
    );

    // Streaming: pg_recvlogical drains one transaction, then Ferry another.
    db.execute("SELECT 'ok' FROM pg_create_logical_replication_slot('bench_ref', 'pgoutput')")
        .await;
    let client = db.client().await;
    client
        .batch_execute(&fill(&names, per_table + 1, per_table))
        .await
        .expect("insert");
    let end: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let recvlogical = recvlogical_until(&db, &end).await;

    let streaming = start_streaming(&db).await;
    client
        .batch_execute(&fill(&names, 2 * per_table + 1, per_table))
        .await
        .expect("insert");
    let started = Instant::now();
    let mut counter = Counter::new(&streaming.prefix, n);
    while counter.count() < rows {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "every change in Kafka within an hour"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    // Dropping it deletes its topics, seconds for a hundred on the
    // development broker: not part of streaming.
    drop(streaming);
    Point {
        tables: n,
        rows,
        copy,
        snapshot,
        recvlogical,
        streaming: took,
    }
}

pub async fn run(base: i64) {
    assert!(
        base >= 100,
        "ROWS must be at least 100 (the 100-table point splits 10× ROWS over 100 tables)"
    );
    println!(
        "| work | tables | rows | COPY rows/s | snapshot rows/s | vs COPY | pg_recvlogical events/s | streaming events/s | vs pg_recvlogical |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (work, tables, rows) in [
        ("1× rows", 1, base),
        ("10× rows", 1, base * 10),
        ("100× rows", 1, base * 100),
        ("10× rows, 10 tables", 10, base * 10),
        ("10× rows, 100 tables", 100, base * 10),
    ] {
        let p = measure(tables, rows).await;
        let rate = |d: Duration| p.rows as f64 / d.as_secs_f64();
        println!(
            "| {work} | {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
            p.tables,
            p.rows,
            rate(p.copy),
            rate(p.snapshot),
            rate(p.snapshot) / rate(p.copy),
            rate(p.recvlogical),
            rate(p.streaming),
            rate(p.streaming) / rate(p.recvlogical),
        );
    }
    println!();
    println!(
        "Snapshot: Ferry's time runs from its start to its exit (connecting, schemas and topics included), COPY's \
         from psql's start. Streaming: from the commit of one transaction writing every row until the last event \
         is acknowledged by Kafka (Ferry) or written out (pg_recvlogical)."
    );
}
