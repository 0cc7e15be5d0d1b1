//! The snapshot: tables read inside a snapshot that a replication slot
//! exported, so the snapshot and the stream meet at the slot's consistent point
//! with no gap and no double.
//!
//! ```text
//!  replication session: CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export') ─► consistent point L, snapshot S
//!  coordinator:  BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S; LOCK tables IN ACCESS SHARE MODE;
//!                re-read columns; split each table into chunks of heap pages (ctid ranges)
//!  workers 1..N: BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S;
//!                take a chunk ─► COPY (SELECT ... WHERE ctid in range) TO STDOUT ─► rows ─┐
//!  coordinator:  rows ─► op "r" events ─► publisher                          ◄─────────────┘
//!                a table's last chunk done ─► "table read at L" stored once its events are in Kafka
//! ```
//!
//! The ACCESS SHARE locks (the weakest; writes go on) make DDL on the tables
//! wait until the snapshot commits, so the columns selected cannot be dropped
//! under it. Chunks are TID range scans (PostgreSQL 14 and later; older servers
//! read each table whole), so workers read one large table in parallel.
//!
//! A table counts as done only when every one of its events is in Kafka:
//! [`SnapshotState`] is stored through the publisher after them. A crash
//! loses only the tables in progress, which the next start reads again, in a
//! new exported snapshot; the stream then skips those tables' changes from
//! before that snapshot (see `stream.rs`). Memory is bounded: workers hand
//! over rows in batches through a bounded channel.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::config::SecretUrl;
use ferry_core::envelope::{ChangeEvent, Op, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::TableId;
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::value::Datum;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use crate::offsets::SnapshotState;
use crate::postgres::catalog::table_meta;
use crate::postgres::copy::{fields, Lines};
use crate::postgres::error::CaptureError;
use crate::postgres::replication::connect;
use crate::postgres::rows::PgTable;
use crate::postgres::validate::{quote_ident, quoted};
use crate::publish::Publisher;

/// Rows a worker hands over at once.
const BATCH_ROWS: usize = 1_000;
/// Heap pages per chunk by default: 32 MiB at PostgreSQL's 8 KiB pages.
pub const CHUNK_PAGES: i64 = 4_096;
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where the snapshot runs and what it reports.
#[derive(Debug)]
pub struct SnapshotSpec<'a> {
    pub source: &'a SecretUrl,
    pub snapshot_name: &'a str,
    /// The exporting slot's consistent point.
    pub at: PgLsn,
    pub prefix: &'a str,
    pub database: &'a str,
    /// Connections reading chunks at once.
    pub workers: usize,
    /// Heap pages per chunk.
    pub chunk_pages: i64,
    /// The offsets key of the [`SnapshotState`].
    pub state_key: &'a str,
}

/// A page range of one table; `None` bounds are open.
#[derive(Debug)]
struct Chunk {
    table: usize,
    pages: Option<(i64, Option<i64>)>,
}

impl Chunk {
    fn filter(&self) -> String {
        match self.pages {
            None => String::new(),
            Some((from, None)) => format!(" WHERE ctid >= '({from},0)'::tid"),
            Some((from, Some(to))) => format!(" WHERE ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid"),
        }
    }
}

/// A table being read.
#[derive(Debug)]
struct Progress {
    table: Arc<PgTable>,
    select: String,
    chunks_left: usize,
    rows: u64,
    estimate: u64,
    started: Instant,
    /// `ferry_capture_snapshot_rows{table}`.
    rows_gauge: metrics::Gauge,
}

type FromWorker = Result<(usize, Option<Vec<Vec<Datum>>>), CaptureError>;

async fn begin_in(client: &Client, snapshot_name: &str) -> Result<(), CaptureError> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot_name.replace('\'', "''")
        ))
        .await?;
    Ok(())
}

/// Reads every table of `ids`, recording each in `state` (stored under
/// `spec.state_key`) once its events are in Kafka; returns the rows read.
pub async fn run(
    spec: &SnapshotSpec<'_>,
    ids: &[TableId],
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<u64, CaptureError> {
    let client = connect(spec.source).await?;
    begin_in(&client, spec.snapshot_name).await?;
    if !ids.is_empty() {
        let list = ids.iter().map(quoted).collect::<Vec<_>>().join(", ");
        client
            .batch_execute(&format!("LOCK TABLE {list} IN ACCESS SHARE MODE"))
            .await?;
    }
    let tid_ranges: bool = client
        .query_one("SELECT current_setting('server_version_num')::int >= 140000", &[])
        .await?
        .get(0);
    let mut tables = Vec::with_capacity(ids.len());
    let mut chunks = VecDeque::new();
    for (i, id) in ids.iter().enumerate() {
        let meta = table_meta(&client, id).await?;
        if publisher.table(id) != Some(&meta) {
            publisher.register_table(meta.clone()).await?;
        }
        let size = client
            .query_one(
                "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint,
                        greatest(c.reltuples, 0)::bigint
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&quoted(id)],
            )
            .await?;
        let (pages, estimate): (i64, i64) = (size.get(0), size.get(1));
        let before = chunks.len();
        let step = spec.chunk_pages.max(1);
        if tid_ranges && pages > step {
            let mut from = 0;
            while from + step < pages {
                chunks.push_back(Chunk {
                    table: i,
                    pages: Some((from, Some(from + step))),
                });
                from += step;
            }
            // The last chunk is open: it also reads pages past the size read above.
            chunks.push_back(Chunk {
                table: i,
                pages: Some((from, None)),
            });
        } else {
            chunks.push_back(Chunk { table: i, pages: None });
        }
        let columns = meta.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>();
        let label = id.to_string();
        metrics::gauge!("ferry_capture_snapshot_rows_estimate", "table" => label.clone()).set(estimate as f64);
        let rows_gauge = metrics::gauge!("ferry_capture_snapshot_rows", "table" => label);
        rows_gauge.set(0.0);
        tables.push(Progress {
            rows_gauge,
            select: format!("SELECT {} FROM {}", columns.join(", "), quoted(id)),
            table: Arc::new(PgTable::new(meta)),
            chunks_left: chunks.len() - before,
            rows: 0,
            estimate: u64::try_from(estimate).unwrap_or_default(),
            started: Instant::now(),
        });
    }

    let queries: Arc<Vec<(Arc<PgTable>, String)>> = Arc::new(
        tables
            .iter()
            .map(|t| (Arc::clone(&t.table), t.select.clone()))
            .collect(),
    );
    let workers = spec.workers.clamp(1, chunks.len().max(1));
    let queue = Arc::new(Mutex::new(chunks));
    let (tx, mut rx) = mpsc::channel::<FromWorker>(workers * 4);
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(
            spec.source.clone(),
            spec.snapshot_name.to_owned(),
            Arc::clone(&queries),
            Arc::clone(&queue),
            tx.clone(),
        ));
    }
    drop(tx);

    let remaining = metrics::gauge!("ferry_capture_snapshot_tables_remaining");
    remaining.set(tables.len() as f64);
    let started = Instant::now();
    let mut rows = 0u64;
    // One event is held back so the snapshot's last event can say `last`; a
    // table whose final event is the held one is recorded once that is sent.
    let mut held: Option<(usize, ChangeEvent)> = None;
    let mut waiting: Vec<usize> = Vec::new();
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = progress.tick() => {
                log_progress(&tables);
                continue;
            }
        };
        match message {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok((t, Some(batch)))) => {
                tables[t].rows += batch.len() as u64;
                tables[t].rows_gauge.set(tables[t].rows as f64);
                if rows / crate::publish::COMMIT_EVENTS < (rows + batch.len() as u64) / crate::publish::COMMIT_EVENTS {
                    publisher.commit_snapshot_rows().await?;
                }
                rows += batch.len() as u64;
                for row in batch {
                    let event = read_event(spec, &tables[t].table.meta.id, row);
                    if let Some((previous_table, previous)) = held.replace((t, event)) {
                        publisher.send(&tables[previous_table].table.meta.id, &previous).await?;
                        for done in waiting.drain(..) {
                            complete(spec, &tables[done], publisher, state).await?;
                        }
                    }
                }
            }
            Some(Ok((t, None))) => {
                tables[t].chunks_left -= 1;
                if tables[t].chunks_left == 0 {
                    if held.as_ref().is_some_and(|(h, _)| *h == t) {
                        waiting.push(t);
                    } else {
                        complete(spec, &tables[t], publisher, state).await?;
                    }
                }
            }
        }
    }
    if let Some((t, mut last)) = held {
        last.source.snapshot = Snapshot::Last;
        publisher.send(&tables[t].table.meta.id, &last).await?;
    }
    for done in waiting {
        complete(spec, &tables[done], publisher, state).await?;
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| CaptureError::Protocol(format!("a snapshot worker failed: {e}")))?;
    }
    client.batch_execute("COMMIT").await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(rows, rate = (rows as f64 / secs) as u64, workers, "snapshot read");
    Ok(rows)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn read_event(spec: &SnapshotSpec<'_>, id: &TableId, row: Vec<Datum>) -> ChangeEvent {
    let now = now_ms();
    ChangeEvent {
        op: Op::Read,
        before: None,
        after: Some(row),
        source: SourceInfo {
            name: spec.prefix.to_owned(),
            ts_ms: now,
            snapshot: Snapshot::True,
            db: spec.database.to_owned(),
            detail: SourceDetail::Postgres {
                schema: id.schema.clone(),
                table: id.table.clone(),
                tx_id: None,
                lsn: Some(spec.at),
            },
        },
        ts_ms: now,
        transaction: None,
        unchanged: vec![],
    }
}

/// Records a table whose every event has been sent: stored once they are in Kafka.
async fn complete(
    spec: &SnapshotSpec<'_>,
    table: &Progress,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<(), CaptureError> {
    let id = &table.table.meta.id;
    state.complete(id.clone(), SourcePosition::Postgres { lsn: spec.at });
    publisher.store_after_sent(spec.state_key.to_owned(), state).await?;
    metrics::gauge!("ferry_capture_snapshot_tables_remaining").decrement(1.0);
    let secs = table.started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(table = %id, rows = table.rows, rate = (table.rows as f64 / secs) as u64, "snapshot of table done");
    Ok(())
}

fn log_progress(tables: &[Progress]) {
    for t in tables.iter().filter(|t| t.chunks_left > 0 && t.rows > 0) {
        let secs = t.started.elapsed().as_secs_f64().max(1e-9);
        let rate = t.rows as f64 / secs;
        let eta = (t.estimate.saturating_sub(t.rows) as f64 / rate.max(1.0)).round() as u64;
        tracing::info!(
            table = %t.table.meta.id,
            rows = t.rows,
            of_about = t.estimate,
            rate = rate as u64,
            eta_s = eta,
            "snapshot progress"
        );
    }
}

/// Reads chunks until none is left; rows go to the coordinator in batches,
/// then `(table, None)` when a chunk is done.
async fn worker(
    source: SecretUrl,
    snapshot_name: String,
    queries: Arc<Vec<(Arc<PgTable>, String)>>,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
    tx: mpsc::Sender<FromWorker>,
) {
    let result = async {
        let client = connect(&source).await?;
        begin_in(&client, &snapshot_name).await?;
        while let Some(chunk) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
            let (table, select) = &queries[chunk.table];
            let stream = client
                .copy_out(&format!("COPY ({select}{}) TO STDOUT", chunk.filter()))
                .await?;
            tokio::pin!(stream);
            let mut lines = Lines::default();
            let mut batch = Vec::with_capacity(BATCH_ROWS);
            while let Some(data) = stream.next().await {
                lines.feed(&data?, |line| {
                    let values: Vec<Option<Cow<'_, [u8]>>> = fields(line).collect();
                    batch.push(table.parse_row(values.iter().map(|v| v.as_deref()))?);
                    Ok::<_, CaptureError>(())
                })?;
                if batch.len() >= BATCH_ROWS {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                    if tx.send(Ok((chunk.table, Some(full)))).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if lines.has_partial_row() {
                return Err(CaptureError::Protocol(format!(
                    "COPY of {} ended in the middle of a row",
                    table.meta.id
                )));
            }
            if !batch.is_empty() && tx.send(Ok((chunk.table, Some(batch)))).await.is_err() {
                return Ok(());
            }
            if tx.send(Ok((chunk.table, None))).await.is_err() {
                return Ok(());
            }
        }
        client.batch_execute("COMMIT").await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}
