//! The initial snapshot: every included table read inside the snapshot the
//! replication slot exported, so the snapshot and the stream meet at the
//! slot's consistent point with no gap and no double.
//!
//! ```text
//!   replication session: CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export') ─► consistent point L, snapshot S
//!   query session:       BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S;
//!                        LOCK the tables IN ACCESS SHARE MODE; re-read their columns
//!                        per table: cursor, FETCH in batches ─► op "r" events
//!                        COMMIT ─► checkpoint L (stored once every read is in Kafka)
//!   replication session: START_REPLICATION ─► every change committed after L
//! ```
//!
//! The ACCESS SHARE locks (the weakest; writes go on) make DDL on the tables
//! wait until the snapshot commits, so the columns the snapshot selects cannot
//! be dropped under it; they are read after the locks are held.
//!
//! Rows are fetched through a cursor in batches, so memory stays bounded
//! whatever the table's size. A crash before the end stores nothing, so the
//! next start snapshots again (on a new slot). Not yet here: parallel chunked
//! reads, and resuming without re-reading finished tables.

use ferry_core::config::SecretUrl;
use ferry_core::envelope::{ChangeEvent, Op, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::TableId;
use ferry_core::position::{PgLsn, SourcePosition};
use tokio_postgres::SimpleQueryMessage;

use crate::postgres::catalog::table_meta;
use crate::postgres::error::CaptureError;
use crate::postgres::replication::connect;
use crate::postgres::rows::PgTable;
use crate::postgres::validate::{quote_ident, quoted};
use crate::publish::Publisher;

/// Rows fetched per round trip.
const BATCH: u64 = 5_000;

/// Where the snapshot runs and what it reports.
#[derive(Debug)]
pub struct SnapshotSpec<'a> {
    pub source: &'a SecretUrl,
    pub snapshot_name: &'a str,
    pub consistent: PgLsn,
    pub prefix: &'a str,
    pub database: &'a str,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Reads every table; returns the number of rows published.
pub async fn run(spec: &SnapshotSpec<'_>, ids: &[TableId], publisher: &mut Publisher) -> Result<u64, CaptureError> {
    let client = connect(spec.source).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            spec.snapshot_name.replace('\'', "''")
        ))
        .await?;
    if !ids.is_empty() {
        let list = ids.iter().map(quoted).collect::<Vec<_>>().join(", ");
        client
            .batch_execute(&format!("LOCK TABLE {list} IN ACCESS SHARE MODE"))
            .await?;
    }
    let mut tables = Vec::with_capacity(ids.len());
    for id in ids {
        let meta = table_meta(&client, id).await?;
        if publisher.table(id) != Some(&meta) {
            publisher.register_table(meta.clone()).await?;
        }
        tables.push(PgTable::new(meta));
    }
    let started = std::time::Instant::now();
    let mut rows = 0u64;
    // Held back one event, so the snapshot's last event can say `last`.
    let mut held: Option<(TableId, ChangeEvent)> = None;
    for table in &tables {
        let columns = table
            .meta
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        client
            .batch_execute(&format!(
                "DECLARE ferry_snapshot NO SCROLL CURSOR FOR SELECT {columns} FROM {}",
                quoted(&table.meta.id)
            ))
            .await?;
        let mut table_rows = 0u64;
        loop {
            let batch = client
                .simple_query(&format!("FETCH {BATCH} FROM ferry_snapshot"))
                .await?;
            let mut fetched = 0;
            for message in batch {
                let SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                fetched += 1;
                let values = (0..row.len()).map(|i| row.get(i).map(str::as_bytes));
                let event = ChangeEvent {
                    op: Op::Read,
                    before: None,
                    after: Some(table.parse_row(values)?),
                    source: SourceInfo {
                        name: spec.prefix.to_owned(),
                        ts_ms: now_ms(),
                        snapshot: Snapshot::True,
                        db: spec.database.to_owned(),
                        detail: SourceDetail::Postgres {
                            schema: table.meta.id.schema.clone(),
                            table: table.meta.id.table.clone(),
                            tx_id: None,
                            lsn: Some(spec.consistent),
                        },
                    },
                    ts_ms: now_ms(),
                    transaction: None,
                    unchanged: vec![],
                };
                if let Some((id, previous)) = held.replace((table.meta.id.clone(), event)) {
                    publisher.send(&id, &previous).await?;
                }
            }
            table_rows += fetched;
            if fetched < BATCH {
                break;
            }
        }
        client.batch_execute("CLOSE ferry_snapshot").await?;
        rows += table_rows;
        tracing::info!(table = %table.meta.id, rows = table_rows, "snapshot of table done");
    }
    if let Some((id, mut last)) = held {
        last.source.snapshot = Snapshot::Last;
        publisher.send(&id, &last).await?;
    }
    client.batch_execute("COMMIT").await?;
    publisher
        .checkpoint(SourcePosition::Postgres { lsn: spec.consistent })
        .await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(rows, rate = (rows as f64 / secs) as u64, "snapshot read");
    Ok(rows)
}
