//! Streaming: pgoutput changes from the slot to Kafka, and the slot advanced
//! only as far as Kafka holds.
//!
//! ```text
//!  walsender ─► Begin ─► Relation* ─► Insert/Update/Delete/Truncate* ─► Commit(end_lsn)
//!                  │           │                 │                            │
//!                  tx        register         publisher.send              publisher.checkpoint(end_lsn)
//!                           schema version                                       │
//!  slot flush LSN ◄── update_applied_lsn ◄── acknowledged (events + offset durable) ┘
//! ```
//!
//! A table snapshotted after the slot's consistent point (an interrupted
//! snapshot resumed, a table added to the include list) was read at a later
//! point S of its own; its changes in transactions that committed before S are
//! in that snapshot already, so they are skipped (a commit at or after S is
//! not in it). That is the hand-over with no gap and no double, per table.
//!
//! A Relation message comes before the first change that uses a table's
//! (new) shape, so a new schema version is registered before any event that
//! needs it. On an idle database the server's keepalives carry its WAL end;
//! with no transaction open, everything before it was received, so it is
//! checkpointed too and the slot keeps moving (no WAL piles up).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use ferry_core::envelope::{ChangeEvent, Op, Snapshot, SourceDetail, SourceInfo, TransactionBlock};
use ferry_core::meta::TableId;
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::transaction::{TransactionRecord, TxStatus};
use ferry_core::value::Datum;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio_postgres::Client;

use crate::postgres::error::CaptureError;
use crate::postgres::pgoutput::{decode, Message};
use crate::postgres::rows::{relation_table, PgTable, TypeNames};
use crate::publish::Publisher;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The transaction being read.
#[derive(Debug)]
struct Tx {
    /// `xid:final_lsn`: an xid alone repeats after wraparound.
    id: String,
    xid: u32,
    /// The commit record's LSN.
    final_lsn: PgLsn,
    ts_ms: i64,
    total: i64,
    per_table: HashMap<TableId, i64>,
}

impl Tx {
    fn record(&self, status: TxStatus) -> TransactionRecord {
        let mut collections: Vec<(String, i64)> = self
            .per_table
            .iter()
            .map(|(t, n)| (format!("{}.{}", t.schema, t.table), *n))
            .collect();
        collections.sort();
        let end = status == TxStatus::End;
        TransactionRecord {
            status,
            id: self.id.clone(),
            event_count: end.then_some(self.total),
            data_collections: if end { collections } else { vec![] },
            ts_ms: self.ts_ms,
        }
    }
}

/// Turns the replication stream into published events.
#[derive(Debug)]
pub struct Streamer<'a> {
    pub client: &'a Client,
    pub prefix: &'a str,
    pub database: &'a str,
    relations: HashMap<u32, Arc<PgTable>>,
    names: TypeNames,
    tx: Option<Tx>,
    checkpointed: PgLsn,
    /// Tables whose snapshot was read after `from`, with its point.
    snapshotted_at: HashMap<TableId, PgLsn>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl<'a> Streamer<'a> {
    /// `snapshotted_at`: where each table's snapshot was read; changes
    /// committed before it are skipped.
    pub fn new(
        client: &'a Client,
        prefix: &'a str,
        database: &'a str,
        from: PgLsn,
        snapshotted_at: HashMap<TableId, PgLsn>,
    ) -> Self {
        Self {
            client,
            prefix,
            database,
            relations: HashMap::new(),
            names: TypeNames::default(),
            tx: None,
            checkpointed: from,
            snapshotted_at: snapshotted_at.into_iter().filter(|(_, at)| *at > from).collect(),
        }
    }

    /// Streams until `shutdown` resolves or the server ends the stream; gives
    /// the session back so the caller can acknowledge the last position.
    pub async fn run(
        mut self,
        mut repl: ReplicationClient,
        publisher: &mut Publisher,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ReplicationClient, CaptureError> {
        let mut acked = publisher.acknowledged();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Ok(()) = acked.changed() => {
                    if let Some(SourcePosition::Postgres { lsn }) = acked.borrow_and_update().clone() {
                        repl.update_applied_lsn(Lsn(lsn.0));
                    }
                }
                event = repl.recv() => match event? {
                    None | Some(ReplicationEvent::StoppedAt { .. }) => break,
                    Some(event) => self.handle(event, publisher).await?,
                },
            }
        }
        Ok(repl)
    }

    async fn handle(&mut self, event: ReplicationEvent, publisher: &mut Publisher) -> Result<(), CaptureError> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                self.tx = Some(Tx {
                    id: format!("{xid}:{}", PgLsn(final_lsn.0)),
                    xid,
                    final_lsn: PgLsn(final_lsn.0),
                    ts_ms: (commit_time_micros + PG_EPOCH_MICROS) / 1000,
                    total: 0,
                    per_table: HashMap::new(),
                });
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                if let Some(tx) = self.tx.take().filter(|tx| tx.total > 0) {
                    publisher.send_transaction(&tx.record(TxStatus::End)).await?;
                }
                self.checkpoint(PgLsn(end_lsn.0), publisher).await?;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if self.tx.is_none() {
                    self.checkpoint(PgLsn(wal_end.0), publisher).await?;
                }
            }
            ReplicationEvent::XLogData { wal_start, data, .. } => {
                self.change(decode(&data)?, PgLsn(wal_start.0), publisher).await?;
            }
            // Logical messages (pg_logical_emit_message) are not published yet.
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    async fn checkpoint(&mut self, lsn: PgLsn, publisher: &mut Publisher) -> Result<(), CaptureError> {
        if lsn > self.checkpointed {
            self.checkpointed = lsn;
            publisher.checkpoint(SourcePosition::Postgres { lsn }).await?;
        }
        Ok(())
    }

    fn table(&self, oid: u32) -> Result<Arc<PgTable>, CaptureError> {
        self.relations
            .get(&oid)
            .cloned()
            .ok_or(CaptureError::UnknownRelation(oid))
    }

    async fn change(&mut self, message: Message, lsn: PgLsn, publisher: &mut Publisher) -> Result<(), CaptureError> {
        let (table, op, before, after, unchanged) = match message {
            Message::Relation(rel) => {
                let table = relation_table(self.client, &mut self.names, &rel).await?;
                if publisher.table(&table.meta.id) != Some(&table.meta) {
                    tracing::info!(table = %table.meta.id, "registering a new schema version");
                    publisher.register_table(table.meta.clone()).await?;
                }
                self.relations.insert(rel.oid, Arc::new(table));
                return Ok(());
            }
            Message::Insert { relation, new } => {
                let table = self.table(relation)?;
                let (after, unchanged) = table.cells_row(&new, None)?;
                (table, Op::Create, None, Some(after), unchanged)
            }
            Message::Update { relation, old, new } => {
                let table = self.table(relation)?;
                let old_cells = old.as_ref().map(|(_, cells)| cells.as_slice());
                let before = old_cells
                    .map(|c| table.cells_row(c, None))
                    .transpose()?
                    .map(|(row, _)| row);
                let (after, unchanged) = table.cells_row(&new, old_cells)?;
                (table, Op::Update, before, Some(after), unchanged)
            }
            Message::Delete { relation, old } => {
                let table = self.table(relation)?;
                let (before, _) = table.cells_row(&old.1, None)?;
                (table, Op::Delete, Some(before), None, vec![])
            }
            Message::Truncate { relations, .. } => {
                for oid in relations {
                    let table = self.table(oid)?;
                    self.emit(&table, Op::Truncate, None, None, vec![], lsn, publisher)
                        .await?;
                }
                return Ok(());
            }
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::Origin { .. }
            | Message::Type { .. }
            | Message::Message { .. } => return Ok(()),
        };
        self.emit(&table, op, before, after, unchanged, lsn, publisher).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn emit(
        &mut self,
        table: &PgTable,
        op: Op,
        before: Option<Vec<Datum>>,
        after: Option<Vec<Datum>>,
        unchanged: Vec<String>,
        lsn: PgLsn,
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        let id = &table.meta.id;
        if let (Some(tx), Some(at)) = (&self.tx, self.snapshotted_at.get(id)) {
            if tx.final_lsn < *at {
                return Ok(());
            }
        }
        let (ts_ms, tx_id, transaction) = match &mut self.tx {
            Some(tx) => {
                if tx.total == 0 {
                    publisher.send_transaction(&tx.record(TxStatus::Begin)).await?;
                }
                tx.total += 1;
                let n = tx.per_table.entry(id.clone()).or_default();
                *n += 1;
                let block = TransactionBlock {
                    id: tx.id.clone(),
                    total_order: tx.total,
                    data_collection_order: *n,
                };
                (tx.ts_ms, Some(i64::from(tx.xid)), Some(block))
            }
            None => (now_ms(), None, None),
        };
        let event = ChangeEvent {
            op,
            before,
            after,
            source: SourceInfo {
                name: self.prefix.to_owned(),
                ts_ms,
                snapshot: Snapshot::False,
                db: self.database.to_owned(),
                detail: SourceDetail::Postgres {
                    schema: id.schema.clone(),
                    table: id.table.clone(),
                    tx_id,
                    lsn: Some(lsn),
                },
            },
            ts_ms: now_ms(),
            transaction,
            unchanged,
        };
        publisher.send(id, &event).await?;
        Ok(())
    }
}
