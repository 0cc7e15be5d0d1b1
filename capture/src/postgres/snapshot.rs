//! The snapshot: tables read inside a snapshot that a replication slot
//! exported, so the snapshot and the stream meet at the slot's consistent point
//! with no gap and no double.
//!
//! ```text
//!  replication session: CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export') ─► consistent point L, snapshot S
//!  coordinator:  BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S; LOCK tables IN ACCESS SHARE MODE;
//!                re-read columns; split each table into chunks of heap pages (ctid ranges)
//!  workers 1..N: BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S;
//!                take a chunk ─► COPY (SELECT ... WHERE ctid in range) TO STDOUT [(FORMAT binary)]
//!                ─► rows ─► op "r" events, encoded ─────────────────────────┐
//!  coordinator:  encoded events ─► publisher                     ◄──────────┘
//!                a table's last chunk done ─► "table read at L" stored once its events are in Kafka
//! ```
//!
//! The ACCESS SHARE locks (the weakest; writes go on) make DDL on the tables
//! wait until the snapshot commits, so the columns selected cannot be dropped
//! under it. Chunks are TID range scans (PostgreSQL 14 and later; older servers
//! read each table whole), so workers read one large table in parallel.
//!
//! A table whose every column has a type `binary.rs` reads is copied in the
//! binary format, which costs a worker far less to parse than text; any
//! other table is copied as text and parsed by the stream's code.
//!
//! Workers also encode the events (`crate::snapshot::EncodedBatch`): the
//! coordinator only hands them to the producer.
//!
//! A table counts as done only when every one of its events is in Kafka:
//! [`SnapshotState`] is stored through the publisher after them. A crash
//! loses only the tables in progress, which the next start reads again, in a
//! new exported snapshot; the stream then skips those tables' changes from
//! before that snapshot (see `stream.rs`). Memory is bounded: workers hand
//! over rows in batches through a bounded channel.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_core::config::SecretUrl;
use ferry_core::envelope::{ChangeEvent, Op, SmolStr, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::TableId;
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::value::Datum;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use crate::now_ms;
use crate::offsets::SnapshotState;
use crate::postgres::catalog::table_meta;
use crate::postgres::error::CaptureError;
use crate::postgres::replication::connect;
use crate::postgres::rows::{CopyRows, PgTable};
use crate::postgres::validate::{quote_ident, quoted};
use crate::publish::{Publisher, TableEncoder};
use crate::snapshot::{collect, Collect, EncodedBatch, EncodedRead, EncodedRow, FromWorker, TableProgress};

/// Heap pages per chunk by default: 32 MiB at PostgreSQL's 8 KiB pages.
pub const CHUNK_PAGES: i64 = 4_096;

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

/// What a worker needs of a table: its parser, its select list, and how
/// its events look and are encoded.
struct Query {
    table: Arc<PgTable>,
    select: String,
    template: ChangeEvent,
    encoder: TableEncoder,
}

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
    reread: HashSet<TableId>,
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
    let mut queries: Vec<Query> = Vec::with_capacity(ids.len());
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
        tables.push(TableProgress::new(
            id.clone(),
            chunks.len() - before,
            u64::try_from(estimate).unwrap_or_default(),
        ));
        queries.push(Query {
            table: Arc::new(PgTable::new(meta)),
            select: format!("SELECT {} FROM {}", columns.join(", "), quoted(id)),
            template: read_event(spec, id, Vec::new()),
            encoder: publisher.encoder(id)?,
        });
    }

    let queries = Arc::new(queries);
    let workers = spec.workers.clamp(1, chunks.len().max(1));
    let queue = Arc::new(Mutex::new(chunks));
    let (tx, rx) = mpsc::channel::<FromWorker<CaptureError, EncodedRow>>(workers * 4);
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

    let started = Instant::now();
    let collecting = Collect {
        at: SourcePosition::Postgres { lsn: spec.at },
        state_key: spec.state_key,
        reread,
        event: |id: &TableId, row| EncodedRead::new(row, |values| read_event(spec, id, values)),
    };
    let rows = collect(&collecting, &mut tables, rx, publisher, state).await?;
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| CaptureError::Protocol(format!("a snapshot worker failed: {e}")))?;
    }
    client.batch_execute("COMMIT").await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(rows, rate = (rows as f64 / secs) as u64, workers, "snapshot read");
    Ok(rows)
}

fn read_event(spec: &SnapshotSpec<'_>, id: &TableId, row: Vec<Datum>) -> ChangeEvent {
    let now = now_ms();
    ChangeEvent {
        op: Op::Read,
        before: None,
        after: Some(row),
        source: SourceInfo {
            name: SmolStr::new(spec.prefix),
            ts_ms: now,
            snapshot: Snapshot::True,
            db: SmolStr::new(spec.database),
            detail: SourceDetail::Postgres {
                schema: SmolStr::new(&id.schema),
                table: SmolStr::new(&id.table),
                tx_id: None,
                lsn: Some(spec.at),
            },
        },
        ts_ms: now,
        transaction: None,
        unchanged: vec![],
    }
}

/// Reads chunks until none is left; rows go to the coordinator in batches,
/// then `(table, None)` when a chunk is done.
async fn worker(
    source: SecretUrl,
    snapshot_name: String,
    queries: Arc<Vec<Query>>,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
    tx: mpsc::Sender<FromWorker<CaptureError, EncodedRow>>,
) {
    let result = async {
        let client = connect(&source).await?;
        begin_in(&client, &snapshot_name).await?;
        while let Some(chunk) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
            let query = &queries[chunk.table];
            let mut rows = CopyRows::of(&query.table);
            let format = if query.table.reads_binary() {
                " (FORMAT binary)"
            } else {
                ""
            };
            let stream = client
                .copy_out(&format!("COPY ({}{}) TO STDOUT{format}", query.select, chunk.filter()))
                .await?;
            tokio::pin!(stream);
            let mut batch = EncodedBatch::default();
            let mut event = query.template.clone();
            while let Some(data) = stream.next().await {
                rows.feed(&query.table, &data?, |values| {
                    Ok(batch.push(&query.encoder, &mut event, values)?)
                })?;
                if batch.is_full() && tx.send(Ok((chunk.table, Some(batch.take())))).await.is_err() {
                    return Ok(());
                }
            }
            if rows.unfinished() {
                return Err(CaptureError::Protocol(format!(
                    "COPY of {} ended in the middle of a row",
                    query.table.meta.id
                )));
            }
            let batch = batch.take();
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
