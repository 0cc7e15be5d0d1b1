//! The snapshot: tables read in consistent-snapshot transactions that all see
//! the database at one binlog position, where the stream then starts.
//!
//! ```text
//!  workers 1..N: START TRANSACTION WITH CONSISTENT SNAPSHOT
//!     MariaDB: each reads binlog_snapshot_file/_position (no lock at all); if they
//!              differ (a commit slipped in between), roll back and try again
//!     MySQL, or MariaDB under a steady stream of commits: FLUSH TABLES WITH READ LOCK
//!              for the moment it takes to open them and read SHOW MASTER STATUS
//!  chunks: a table with a single integer primary key is split into key ranges;
//!          others are read whole; each chunk: SELECT ... (text protocol, streamed)
//!  rows ─► op "r" events, encoded by the worker (crate::snapshot::EncodedBatch)
//!       ─► crate::snapshot::collect ─► the publisher; each table recorded once in Kafka
//! ```
//!
//! Before the snapshots open, one connection reads every table's columns and
//! keeps a metadata lock on each (an empty `SELECT`), so no DDL can change a
//! table under the snapshot. The position's GTID list (MariaDB
//! `BINLOG_GTID_POS`, MySQL `gtid_executed` under the lock) is stored with it,
//! so the stream can resume by GTID.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_core::envelope::{ChangeEvent, Op, SmolStr, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::{DataType, TableId};
use ferry_core::mysql::{quote_ident, quoted};
use ferry_core::position::{BinlogPosition, GtidSet, SourcePosition};
use ferry_core::value::Datum;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mysql::binlog::Start;
use crate::mysql::error::CaptureError;
use crate::mysql::types::{self, SourceColumn};
use crate::mysql::validate;
use crate::now_ms;
use crate::offsets::SnapshotState;
use crate::publish::{Publisher, TableEncoder};
use crate::snapshot::{collect, Collect, EncodedBatch, EncodedRead, EncodedRow, FromWorker, TableProgress};

/// Rows per chunk of a large table by default.
pub const CHUNK_ROWS: u64 = 250_000;
/// Attempts at opening lock-free snapshots that agree on a position.
const LOCK_FREE_ATTEMPTS: usize = 20;

/// Connections holding snapshots that all see the database at `start`.
#[derive(Debug)]
pub struct Snapshots {
    conns: Vec<Conn>,
    pub start: Start,
    /// The source's `@@server_id`, for the events' `source.server_id`.
    server_id: u32,
}

async fn begin_snapshot(conn: &mut Conn) -> Result<(), mysql_async::Error> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
}

/// MariaDB's position of the connection's consistent snapshot.
async fn snapshot_position(conn: &mut Conn) -> Result<Option<(String, u64)>, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    Ok(match (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
        (Some(file), Some(pos)) if !file.is_empty() => pos.parse().ok().map(|pos| (file, pos)),
        _ => None,
    })
}

/// The server's current binlog file and position.
pub async fn master_position(conn: &mut Conn) -> Result<(String, u64), CaptureError> {
    let row: Option<Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        // MySQL 8.4 renamed it.
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let row = row.ok_or_else(|| {
        CaptureError::Config("the source has no binlog (SHOW MASTER STATUS is empty): set log_bin".into())
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok((file, pos)),
        _ => Err(CaptureError::Config(
            "SHOW MASTER STATUS gave no file and position".into(),
        )),
    }
}

/// The GTID set at a position: MariaDB computes it; MySQL's is the executed
/// set, read while nothing commits.
pub async fn gtids_at(conn: &mut Conn, mariadb: bool, file: &str, pos: u64) -> Result<Option<GtidSet>, CaptureError> {
    if mariadb {
        let text: Option<Option<String>> = conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos)).await?;
        Ok(text.flatten().and_then(|t| GtidSet::parse_mariadb(&t).ok()))
    } else {
        let text: Option<Option<String>> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
        Ok(text
            .flatten()
            .and_then(|t| GtidSet::parse_mysql(&t.replace('\n', "")).ok()))
    }
}

/// Opens `n` connections whose snapshots agree on one binlog position.
pub async fn open(
    opts: &ferry_core::mysql::MysqlConfig,
    url: &ferry_core::config::SecretUrl,
    n: usize,
    mariadb: bool,
) -> Result<Snapshots, CaptureError> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        conns.push(ferry_core::mysql::connect(opts, url).await?);
    }
    let server_id: u32 = conns[0].query_first("SELECT @@server_id").await?.unwrap_or_default();
    if mariadb {
        for attempt in 0..LOCK_FREE_ATTEMPTS {
            let mut positions = Vec::with_capacity(conns.len());
            for conn in &mut conns {
                begin_snapshot(conn).await?;
            }
            for conn in &mut conns {
                positions.push(snapshot_position(conn).await?);
            }
            if let Some(Some((file, pos))) = positions.first().cloned() {
                if positions.iter().all(|p| p.as_ref() == Some(&(file.clone(), pos))) {
                    let gtids = gtids_at(&mut conns[0], mariadb, &file, pos).await?;
                    tracing::debug!(attempt, %file, pos, "lock-free consistent snapshot");
                    return Ok(Snapshots {
                        conns,
                        start: Start {
                            binlog: BinlogPosition { file, pos, row: 0 },
                            gtids,
                        },
                        server_id,
                    });
                }
            }
            for conn in &mut conns {
                conn.query_drop("ROLLBACK").await?;
            }
        }
        tracing::info!("commits kept arriving between the snapshots: taking a short global read lock");
    }
    // FLUSH TABLES WITH READ LOCK, for as long as opening the snapshots takes.
    conns[0].query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(|e| {
        CaptureError::Config(format!(
            "cannot lock the source for the moment it takes to open {} consistent snapshots ({}); \
             grant RELOAD, or use --snapshot-workers 1",
            conns.len(),
            crate::mysql::error::mysql_message(&e)
        ))
    })?;
    let opened = async {
        for conn in &mut conns {
            begin_snapshot(conn).await?;
        }
        let (file, pos) = master_position(&mut conns[0]).await?;
        let gtids = gtids_at(&mut conns[0], mariadb, &file, pos).await?;
        Ok::<_, CaptureError>((file, pos, gtids))
    }
    .await;
    conns[0].query_drop("UNLOCK TABLES").await?;
    let (file, pos, gtids) = opened?;
    Ok(Snapshots {
        conns,
        start: Start {
            binlog: BinlogPosition { file, pos, row: 0 },
            gtids,
        },
        server_id,
    })
}

/// One part of a table: a `WHERE` clause, or the whole table.
#[derive(Debug)]
struct Chunk {
    table: usize,
    filter: String,
}

/// A table's select and its columns, shared with the workers.
#[derive(Debug)]
struct Query {
    select: String,
    columns: Vec<SourceColumn>,
    id: TableId,
    template: ChangeEvent,
    encoder: TableEncoder,
}

/// What the snapshot's events say about where they come from.
#[derive(Debug)]
pub struct SnapshotSpec<'a> {
    pub prefix: &'a str,
    /// The offsets key of the [`SnapshotState`].
    pub state_key: &'a str,
    pub chunk_rows: u64,
}

/// Reads every table of `ids` in `snapshots`, recording each in `state` once
/// its events are in Kafka; returns the rows read.
pub async fn run(
    spec: &SnapshotSpec<'_>,
    mut snapshots: Snapshots,
    ids: &[TableId],
    reread: HashSet<TableId>,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<u64, CaptureError> {
    let first = &mut snapshots.conns[0];
    let mut tables = Vec::with_capacity(ids.len());
    let mut queries = Vec::with_capacity(ids.len());
    let mut chunks = VecDeque::new();
    for (i, id) in ids.iter().enumerate() {
        // Holds the table's metadata lock until the snapshot ends.
        first
            .query_drop(format!("SELECT 1 FROM {} LIMIT 0", quoted(id)))
            .await?;
        let (columns, meta) = validate::table(first, id).await?;
        let key = meta.key.clone();
        if publisher.table(id) != Some(&meta) {
            publisher.register_table(meta).await?;
        }
        let estimate: Option<Option<u64>> = first
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&id.schema, &id.table),
            )
            .await?;
        let estimate = estimate.flatten().unwrap_or_default();
        let before = chunks.len();
        for filter in split(first, id, &columns, &key, estimate, spec.chunk_rows).await? {
            chunks.push_back(Chunk { table: i, filter });
        }
        tables.push(TableProgress::new(id.clone(), chunks.len() - before, estimate));
        let list = columns.iter().map(types::select_expr).collect::<Vec<_>>().join(", ");
        queries.push(Query {
            select: format!("SELECT {list} FROM {}", quoted(id)),
            columns,
            id: id.clone(),
            template: read_event(spec.prefix, &snapshots.start, snapshots.server_id, id, Vec::new()),
            encoder: publisher.encoder(id)?,
        });
    }

    let queries = Arc::new(queries);
    let workers = snapshots.conns.len().min(chunks.len().max(1));
    let queue = Arc::new(Mutex::new(chunks));
    let (tx, rx) = mpsc::channel::<FromWorker<CaptureError, EncodedRow>>(workers * 4);
    let mut tasks = JoinSet::new();
    let mut conns = std::mem::take(&mut snapshots.conns);
    // The first connection holds the metadata locks: it reads last and commits last.
    let holder = conns.remove(0);
    let mut readers = vec![holder];
    readers.extend(conns.drain(..workers.saturating_sub(1).min(conns.len())));
    for conn in conns {
        // More snapshots than chunks: not needed.
        drop(conn);
    }
    for conn in readers {
        tasks.spawn(worker(conn, Arc::clone(&queries), Arc::clone(&queue), tx.clone()));
    }
    drop(tx);

    let started = Instant::now();
    let at = snapshots.start.clone();
    let server_id = snapshots.server_id;
    let collecting = Collect {
        at: SourcePosition::Mysql {
            binlog: at.binlog.clone(),
            gtids: at.gtids.clone(),
        },
        state_key: spec.state_key,
        reread,
        event: |id: &TableId, row| EncodedRead::new(row, |values| read_event(spec.prefix, &at, server_id, id, values)),
    };
    let rows = collect(&collecting, &mut tables, rx, publisher, state).await?;
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| CaptureError::Config(format!("a snapshot worker failed: {e}")))??;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(rows, rate = (rows as f64 / secs) as u64, workers, "snapshot read");
    Ok(rows)
}

/// `WHERE` clauses that cover the table: key ranges for a large table with a
/// single integer key, else the whole table.
async fn split(
    conn: &mut Conn,
    id: &TableId,
    columns: &[SourceColumn],
    key: &[usize],
    estimate: u64,
    chunk_rows: u64,
) -> Result<Vec<String>, CaptureError> {
    let whole = vec![String::new()];
    let [k] = key else { return Ok(whole) };
    let integer = matches!(
        types::column(&columns[*k]).data_type,
        DataType::Int16 | DataType::Int32 | DataType::Int64
    );
    if estimate <= chunk_rows || !integer {
        return Ok(whole);
    }
    let name = quote_ident(&columns[*k].name);
    let bounds: Option<(Option<i128>, Option<i128>)> = conn
        .query_first(format!(
            "SELECT CAST(MIN({name}) AS CHAR), CAST(MAX({name}) AS CHAR) FROM {}",
            quoted(id)
        ))
        .await?
        .map(|(lo, hi): (Option<String>, Option<String>)| {
            (lo.and_then(|v| v.parse().ok()), hi.and_then(|v| v.parse().ok()))
        });
    let Some((Some(lo), Some(hi))) = bounds else {
        return Ok(whole);
    };
    let parts = (estimate / chunk_rows.max(1)).max(1) as i128;
    let step = ((hi - lo) / parts).max(1);
    let mut filters = Vec::new();
    let mut from = lo + step;
    filters.push(format!(" WHERE {name} < {from}"));
    while from + step <= hi {
        filters.push(format!(" WHERE {name} >= {from} AND {name} < {}", from + step));
        from += step;
    }
    // Open at the top: rows inserted past the maximum read above are in too.
    filters.push(format!(" WHERE {name} >= {from}"));
    Ok(filters)
}

fn read_event(prefix: &str, at: &Start, server_id: u32, id: &TableId, row: Vec<Datum>) -> ChangeEvent {
    let now = now_ms();
    ChangeEvent {
        op: Op::Read,
        before: None,
        after: Some(row),
        source: SourceInfo {
            name: SmolStr::new(prefix),
            ts_ms: now,
            snapshot: Snapshot::True,
            db: SmolStr::new(&id.schema),
            detail: SourceDetail::Mysql {
                table: Some(SmolStr::new(&id.table)),
                server_id: i64::from(server_id),
                gtid: None,
                file: SmolStr::new(&at.binlog.file),
                pos: at.binlog.pos as i64,
                row: 0,
                thread: None,
                query: None,
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
    mut conn: Conn,
    queries: Arc<Vec<Query>>,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
    tx: mpsc::Sender<FromWorker<CaptureError, EncodedRow>>,
) -> Result<(), CaptureError> {
    let result = async {
        while let Some(chunk) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
            let query = &queries[chunk.table];
            let mut batch = EncodedBatch::default();
            let mut event = query.template.clone();
            let mut result = conn.query_iter(format!("{}{}", query.select, chunk.filter)).await?;
            if let Some(mut rows) = result.stream::<Row>().await? {
                while let Some(row) = rows.next().await {
                    batch.push(&query.encoder, &mut event, row_values(query, row?)?)?;
                    if batch.is_full() && tx.send(Ok((chunk.table, Some(batch.take())))).await.is_err() {
                        return Ok(());
                    }
                }
            }
            drop(result);
            let batch = batch.take();
            if !batch.is_empty() && tx.send(Ok((chunk.table, Some(batch)))).await.is_err() {
                return Ok(());
            }
            if tx.send(Ok((chunk.table, None))).await.is_err() {
                return Ok(());
            }
        }
        conn.query_drop("COMMIT").await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
    Ok(())
}

fn row_values(query: &Query, row: Row) -> Result<Vec<Datum>, CaptureError> {
    row.unwrap()
        .into_iter()
        .zip(&query.columns)
        .map(|(value, column)| match value {
            Value::NULL => Ok(Datum::Null),
            Value::Bytes(bytes) => types::from_text(&column.kind, &bytes).map_err(|error| CaptureError::Type {
                table: format!("{} column {}", query.id, column.name),
                error,
            }),
            other => Err(CaptureError::Type {
                table: format!("{} column {}", query.id, column.name),
                error: types::TypeError(format!("the text protocol gave {other:?}")),
            }),
        })
        .collect()
}
