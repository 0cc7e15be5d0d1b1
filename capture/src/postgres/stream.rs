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
//! Logical decoding messages (`pg_logical_emit_message`) go to
//! `<prefix>.message`, transactional ones at their transaction's commit, in
//! order with its rows (the outbox pattern). With `--heartbeat-interval`,
//! capture writes a non-transactional message with the prefix
//! [`HEARTBEAT_PREFIX`] itself: reading it back proves the stream is alive
//! and moves the slot even when nothing captured changes. Every few seconds
//! it also reports the slot's lag in bytes and the age of the oldest change
//! not yet acknowledged by Kafka.
//!
//! A lost connection (a restarting server, a terminated session) is reopened
//! in place by the caller (`mod.rs`), from the last checkpoint sent, which
//! the publisher still makes durable: nothing after it was published, except
//! the first events of a transaction cut short. That transaction is read
//! again from its start; [`Streamer::interrupted`] keeps it, and its events
//! already published are passed over (the server decodes a committed
//! transaction the same way each time), so nothing is published twice and
//! its `transaction` blocks count on where they stopped.
//!
//! A Relation message comes before the first change that uses a table's
//! (new) shape, so a new schema version is registered before any event that
//! needs it. On an idle database the server's keepalives carry its WAL end;
//! with no transaction open, everything before it was received, so it is
//! checkpointed too and the slot keeps moving (no WAL piles up).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::envelope::{ChangeEvent, Op, SmolStr, Snapshot, SourceDetail, SourceInfo};
use ferry_core::message::LogicalMessage;
use ferry_core::meta::TableId;
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::value::Datum;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio_postgres::Client;

use crate::now_ms;
use crate::postgres::error::CaptureError;
use crate::postgres::pgoutput::{decode, Message};
use crate::postgres::rows::{relation_table, PgTable, TypeNames};
use crate::publish::Publisher;
use crate::transaction::OpenTransaction;

/// The prefix of the messages capture writes as heartbeats; not published.
pub const HEARTBEAT_PREFIX: &str = "ferry.heartbeat";

/// How often the slot's lag and the oldest unacknowledged change are reported.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The transaction being read.
#[derive(Debug)]
struct Tx {
    open: OpenTransaction,
    xid: u32,
    /// The commit record's LSN.
    final_lsn: PgLsn,
    /// Its events (and transactional messages) reached so far.
    reached: u64,
    /// Those already published before the connection was lost: passed over.
    published: u64,
}

impl Tx {
    /// Counts the next event; whether it was published before a reconnect.
    fn published_before(&mut self) -> bool {
        self.reached += 1;
        let again = self.reached <= self.published;
        if again {
            metrics::counter!("ferry_capture_passed_over_total").increment(1);
        }
        again
    }
}

/// Turns the replication stream into published events.
#[derive(Debug)]
pub struct Streamer<'a> {
    /// For catalog lookups, heartbeats and the slot's lag; replaced on a reconnect.
    pub client: Client,
    pub prefix: &'a str,
    pub database: &'a str,
    pub slot: &'a str,
    /// How often to write a heartbeat message; `None`: never.
    pub heartbeat: Option<Duration>,
    /// Checkpoints not yet acknowledged, oldest first, with when they were made.
    unacknowledged: VecDeque<(PgLsn, Instant)>,
    relations: HashMap<u32, Arc<PgTable>>,
    names: TypeNames,
    tx: Option<Tx>,
    /// A transaction cut short by a lost connection, until it is read again.
    interrupted: Option<Tx>,
    checkpointed: PgLsn,
    /// Tables whose snapshot was read after `from`, with its point.
    snapshotted_at: HashMap<TableId, PgLsn>,
}

impl<'a> Streamer<'a> {
    /// `snapshotted_at`: where each table's snapshot was read; changes
    /// committed before it are skipped.
    pub fn new(
        client: Client,
        prefix: &'a str,
        database: &'a str,
        slot: &'a str,
        heartbeat: Option<Duration>,
        from: PgLsn,
        snapshotted_at: HashMap<TableId, PgLsn>,
    ) -> Self {
        Self {
            client,
            prefix,
            database,
            slot,
            heartbeat,
            unacknowledged: VecDeque::new(),
            relations: HashMap::new(),
            names: TypeNames::default(),
            tx: None,
            interrupted: None,
            checkpointed: from,
            snapshotted_at: snapshotted_at.into_iter().filter(|(_, at)| *at > from).collect(),
        }
    }

    /// Where a reconnected stream starts: the last checkpoint sent.
    pub fn checkpointed(&self) -> PgLsn {
        self.checkpointed
    }

    /// The connection was lost: the stream starts again after the last
    /// checkpoint, with Relation messages anew. A transaction being read is
    /// kept, to pass over its events already published when it comes again.
    pub fn interrupted(&mut self) {
        self.relations.clear();
        if let Some(mut tx) = self.tx.take() {
            tx.published = tx.published.max(tx.reached);
            tx.reached = 0;
            tracing::info!(
                xid = tx.xid,
                events = tx.published,
                "a transaction was cut short; its published events will be passed over"
            );
            self.interrupted = Some(tx);
        }
    }

    /// Streams until `shutdown` resolves; gives the session back so the
    /// caller can acknowledge the last position. The server ending the
    /// stream is an error: the caller reconnects.
    pub async fn run(
        &mut self,
        mut repl: ReplicationClient,
        publisher: &mut Publisher,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ReplicationClient, CaptureError> {
        let mut acked = publisher.acknowledged();
        tokio::pin!(shutdown);
        let mut report = tokio::time::interval(REPORT_EVERY);
        let mut commit = tokio::time::interval(crate::publish::COMMIT_AFTER);
        let mut heartbeat = tokio::time::interval(self.heartbeat.unwrap_or(Duration::MAX / 4));
        heartbeat.reset();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Ok(()) = acked.changed() => {
                    if let Some(SourcePosition::Postgres { lsn }) = acked.borrow_and_update().clone() {
                        repl.update_applied_lsn(Lsn(lsn.0));
                        while self.unacknowledged.front().is_some_and(|(l, _)| *l <= lsn) {
                            self.unacknowledged.pop_front();
                        }
                    }
                }
                _ = report.tick() => self.report().await,
                _ = commit.tick() => publisher.tick().await?,
                _ = heartbeat.tick(), if self.heartbeat.is_some() => self.beat().await,
                event = repl.recv() => match event? {
                    None | Some(ReplicationEvent::StoppedAt { .. }) => return Err(CaptureError::StreamEnded),
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
                let final_lsn = PgLsn(final_lsn.0);
                self.tx = match self.interrupted.take() {
                    Some(again) if again.final_lsn == final_lsn => Some(again),
                    other => {
                        if let Some(lost) = other {
                            // Never seen: the first transaction after the
                            // checkpoint is the one cut short.
                            tracing::warn!(
                                xid = lost.xid,
                                "a transaction cut short did not come again first; its events may be published twice"
                            );
                        }
                        Some(Tx {
                            // `xid:final_lsn`: an xid alone repeats after wraparound.
                            open: OpenTransaction::new(
                                format!("{xid}:{final_lsn}"),
                                (commit_time_micros + PG_EPOCH_MICROS) / 1000,
                            ),
                            xid,
                            final_lsn,
                            reached: 0,
                            published: 0,
                        })
                    }
                };
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                if let Some(tx) = self.tx.take() {
                    tx.open.end(publisher).await?;
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
            ReplicationEvent::Message {
                prefix, content, lsn, ..
            } => {
                let lsn = PgLsn(lsn.0);
                if prefix == HEARTBEAT_PREFIX {
                    metrics::counter!("ferry_capture_heartbeats_total").increment(1);
                    if self.tx.is_none() {
                        self.checkpoint(lsn, publisher).await?;
                    }
                    return Ok(());
                }
                if self.tx.as_mut().is_some_and(Tx::published_before) {
                    return Ok(());
                }
                let (ts_ms, tx_id) = self
                    .tx
                    .as_ref()
                    .map_or((now_ms(), None), |tx| (tx.open.ts_ms, Some(i64::from(tx.xid))));
                let message = LogicalMessage {
                    prefix,
                    content: content.to_vec(),
                    source: self.source(ts_ms, "", "", tx_id, lsn),
                    ts_ms: now_ms(),
                };
                publisher.send_message(&message).await?;
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    fn source(&self, ts_ms: i64, schema: &str, table: &str, tx_id: Option<i64>, lsn: PgLsn) -> SourceInfo {
        SourceInfo {
            name: SmolStr::new(self.prefix),
            ts_ms,
            snapshot: Snapshot::False,
            db: SmolStr::new(self.database),
            detail: SourceDetail::Postgres {
                schema: SmolStr::new(schema),
                table: SmolStr::new(table),
                tx_id,
                lsn: Some(lsn),
            },
        }
    }

    /// Sets the slot's lag in bytes and the age of the oldest unacknowledged change.
    async fn report(&self) {
        let age = self
            .unacknowledged
            .front()
            .map_or(0.0, |(_, at)| at.elapsed().as_secs_f64());
        metrics::gauge!("ferry_capture_oldest_unacknowledged_seconds").set(age);
        let lag = self
            .client
            .query_opt(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::float8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await;
        match lag {
            Ok(Some(row)) => {
                metrics::gauge!("ferry_capture_slot_lag_bytes").set(row.get::<_, Option<f64>>(0).unwrap_or(0.0))
            }
            Ok(None) => tracing::warn!(slot = self.slot, "the replication slot is gone"),
            Err(e) => tracing::warn!(error = %e, "cannot read the slot's lag"),
        }
    }

    /// Writes a heartbeat message into the WAL; a refusal turns heartbeats off.
    async fn beat(&mut self) {
        let sql = format!("SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')");
        if let Err(e) = self.client.batch_execute(&sql).await {
            tracing::warn!(
                error = %crate::postgres::error::pg_message(&e),
                "heartbeats are off: the capture user cannot run pg_logical_emit_message \
                 (GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO the user)"
            );
            self.heartbeat = None;
        }
    }

    async fn checkpoint(&mut self, lsn: PgLsn, publisher: &mut Publisher) -> Result<(), CaptureError> {
        if lsn > self.checkpointed {
            self.checkpointed = lsn;
            self.unacknowledged.push_back((lsn, Instant::now()));
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
                let table = relation_table(&self.client, &mut self.names, &rel).await?;
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
                let key = &table.meta.key;
                if let Some(old) = before.as_ref().filter(|old| key.iter().any(|&i| old[i] != after[i])) {
                    // A key change, as Debezium gives it: a delete of the old key
                    // (in the old key's partition, with its tombstone), then a
                    // create of the new one.
                    let old = old.clone();
                    self.emit(&table, Op::Delete, Some(old), None, vec![], lsn, publisher)
                        .await?;
                    (table, Op::Create, None, Some(after), unchanged)
                } else {
                    (table, Op::Update, before, Some(after), unchanged)
                }
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
        if self.tx.as_mut().is_some_and(Tx::published_before) {
            return Ok(());
        }
        if let (Some(tx), Some(at)) = (&self.tx, self.snapshotted_at.get(id)) {
            if tx.final_lsn < *at {
                return Ok(());
            }
        }
        let (ts_ms, tx_id, transaction) = match &mut self.tx {
            Some(tx) => {
                let block = tx.open.next(id, publisher).await?;
                (tx.open.ts_ms, Some(i64::from(tx.xid)), Some(block))
            }
            None => (now_ms(), None, None),
        };
        let event = ChangeEvent {
            op,
            before,
            after,
            source: self.source(ts_ms, &id.schema, &id.table, tx_id, lsn),
            ts_ms: now_ms(),
            transaction,
            unchanged,
        };
        publisher.send(id, &event).await?;
        Ok(())
    }
}
