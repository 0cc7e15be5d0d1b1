//! The one small trait a target implements; the pipeline does the rest.
//!
//! A target writes a [`Batch`] and the group's offsets for it in one
//! transaction, and reads those offsets back when partitions are assigned. It
//! also keeps the truncate barriers (see the writer in `pipeline.rs`) next to
//! those offsets, for the same reason. That
//! is the whole exactly-once contract: offsets live next to the rows, so a crash
//! either kept both or neither, and a restart resumes exactly after the last
//! batch the target holds.
//!
//! The offsets write is a compare-and-set: it succeeds only if no one has
//! stored an offset beyond the batch's first message for that partition. Two
//! writers that both believe they own a partition (a rebalance in flight, a
//! process that was paused) can therefore never both apply the same messages:
//! the second gets [`TargetError::Conflict`] and the pipeline starts over from
//! the stored offsets.

use std::collections::HashMap;
use std::future::Future;

use ferry_core::meta::{Column, DataType, TableId};
use ferry_core::value::Datum;

use crate::batch::{Barrier, Batch, Position, RowChange, RowState, TableChanges};

/// Ferry's offsets table, in the target's default schema (database).
pub const OFFSETS_TABLE: &str = "_ferry_offsets";
/// Truncate barriers: which partitions reached which truncate (`-1`: applied).
pub const BARRIERS_TABLE: &str = "_ferry_barriers";

/// Why a target operation failed, split by what the pipeline does about it.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target went away or is busy (connection lost, server restarting,
    /// lock or serialization conflict): retry with back-off.
    #[error("target unavailable: {0}")]
    Unavailable(String),
    /// Another writer stored offsets for this partition meanwhile: start over
    /// from the stored offsets.
    #[error("offsets of topic {topic} partition {partition} were moved by another apply process (a rebalance); resuming from the stored offsets")]
    Conflict { topic: String, partition: i32 },
    /// The target refused some row of the batch (constraint, type): find it.
    #[error("{0}")]
    Rejected(String),
    /// A change that cannot be applied safely, or a target that is not usable:
    /// stop and say what to fix.
    #[error("{0}")]
    Permanent(String),
}

impl TargetError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, TargetError::Unavailable(_) | TargetError::Conflict { .. })
    }

    /// A connection to `--target` that failed: worth waiting for when the
    /// server is down or starting, final for wrong credentials, a missing
    /// database or TLS settings that cannot work.
    pub fn connecting(error: impl std::fmt::Display, retryable: bool) -> Self {
        if retryable {
            TargetError::Unavailable(error.to_string())
        } else {
            TargetError::Permanent(format!("--target: {error}"))
        }
    }
}

/// A row the target refused, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub at: Position,
    pub table: String,
    /// The row's key values, printable.
    pub key: String,
    pub reason: String,
}

/// Ferry's bookkeeping queries, the same for every SQL target but for how a
/// parameter is written (`$1` or `?`); parameters in the order named.
pub mod sql {
    /// How the target's driver writes the `n`th parameter (from 1).
    pub type Param = fn(usize) -> String;

    /// `$1`, `$2`, ... (PostgreSQL).
    pub fn numbered(n: usize) -> String {
        format!("${n}")
    }

    /// `?` (MySQL).
    pub fn question(_: usize) -> String {
        "?".to_owned()
    }

    /// Group: topic, partition, next offset of each stored partition.
    pub fn load_offsets(offsets: &str, p: Param) -> String {
        format!(
            "SELECT topic, kafka_partition, next_offset FROM {offsets} WHERE consumer_group = {}",
            p(1)
        )
    }

    /// Group, topic, partition: the barriers it reached that are not done.
    pub fn open_barriers(barriers: &str, p: Param) -> String {
        format!(
            "SELECT b.barrier FROM {barriers} b WHERE b.consumer_group = {} AND b.topic = {} AND b.kafka_partition = {}
               AND NOT EXISTS (SELECT 1 FROM {barriers} d WHERE d.consumer_group = b.consumer_group
                                 AND d.topic = b.topic AND d.barrier = b.barrier AND d.kafka_partition = -1)",
            p(1),
            p(2),
            p(3)
        )
    }

    /// Group, topic, barrier: a row if it is done.
    pub fn barrier_done(barriers: &str, p: Param) -> String {
        format!(
            "SELECT 1 FROM {barriers} WHERE consumer_group = {} AND topic = {} AND barrier = {} AND kafka_partition = -1",
            p(1),
            p(2),
            p(3)
        )
    }

    /// Group, topic, barrier: how many partitions reached it.
    pub fn barrier_arrivals(barriers: &str, p: Param) -> String {
        format!(
            "SELECT count(*) FROM {barriers} WHERE consumer_group = {} AND topic = {} AND barrier = {}
               AND kafka_partition >= 0",
            p(1),
            p(2),
            p(3)
        )
    }
}

/// The stored offsets of `partitions`, out of every partition's of the group.
pub fn offsets_of(
    stored: impl IntoIterator<Item = ((String, i32), i64)>,
    partitions: &[(String, i32)],
) -> HashMap<(String, i32), i64> {
    stored.into_iter().filter(|(tp, _)| partitions.contains(tp)).collect()
}

/// A decimal column narrower in the target than what the source sends (it
/// would round or overflow) is a definite error, naming the statement
/// (`widen`) that makes it fit. `target` is the column's precision and scale,
/// `kind` the target's name for the type.
pub fn check_decimal(
    table: &TableId,
    source: &Column,
    target: Option<(u32, u32)>,
    kind: &str,
    widen: impl FnOnce(u32, u32) -> String,
) -> Result<(), TargetError> {
    let (DataType::Decimal { precision, scale, .. }, Some((p, s))) = (source.data_type, target) else {
        return Ok(());
    };
    if s < scale || p.saturating_sub(s) < precision.saturating_sub(scale) {
        return Err(TargetError::Permanent(format!(
            "table {table} column {:?}: the source sends {kind}({precision},{scale}) but the target column is \
             {kind}({p},{s}), which would round or overflow; widen it ({}) and restart",
            source.name,
            widen(precision, scale)
        )));
    }
    Ok(())
}

/// A changed row's key (every column, for a keyless table) as `(name=value,
/// ...)`, each value as `show` prints it for `column` (`None`: NULL), to name a
/// rejected row.
pub fn key_text(table: &TableChanges, change: &RowChange, show: impl Fn(&Datum, &Column) -> Option<String>) -> String {
    let meta = table.codec.meta();
    let row = match &change.state {
        RowState::Upsert { row, .. } | RowState::Delete { row } => row,
    };
    let columns: Vec<usize> = if meta.key.is_empty() {
        (0..meta.columns.len()).collect()
    } else {
        meta.key.clone()
    };
    let parts: Vec<_> = columns
        .iter()
        .map(|&i| {
            let value = show(&row[i], &meta.columns[i]).unwrap_or_else(|| "NULL".into());
            format!("{}={value}", meta.columns[i].name)
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// How a target writes each table, per [`TableChanges::plan_key`]: the codec's
/// address is stable for a session, so a new schema version gets a new plan.
pub type Plans<P> = HashMap<(TableId, usize), std::sync::Arc<P>>;

/// One connection to a target.
pub trait Target: Send + 'static {
    /// The schema a source table goes to when `--table-map` does not say.
    fn default_schema(&self) -> &str;

    /// Whether the target needs every event of a batch, not only each key's
    /// last state ([`crate::batch::TableChanges::history`]).
    fn keeps_history(&self) -> bool {
        false
    }

    /// The next offset to read for each of `partitions` that has one stored for `group`.
    fn load_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> impl Future<Output = Result<HashMap<(String, i32), i64>, TargetError>> + Send;

    /// Writes `batch` and its offsets for `group` in one transaction. With a
    /// barrier (the batch is then one message, which carries it), first records
    /// that the batch's partition reached it, and applies the batch's truncate
    /// only if that partition is the last to arrive; returns whether the barrier
    /// is done (always true without one).
    fn transact(
        &mut self,
        group: &str,
        batch: &Batch,
        barrier: Option<&Barrier>,
    ) -> impl Future<Output = Result<bool, TargetError>> + Send;

    /// Writes `batch` and its offsets for `group` in one transaction.
    fn write(&mut self, group: &str, batch: &Batch) -> impl Future<Output = Result<(), TargetError>> + Send {
        async move { self.transact(group, batch, None).await.map(|_| ()) }
    }

    /// Records that the partition of `arrival` (a batch of one message, which
    /// carries `barrier`) reached it, moving its offset past it; the last
    /// partition to arrive also applies the message. Returns whether the
    /// barrier is done.
    fn arrive(
        &mut self,
        group: &str,
        arrival: &Batch,
        barrier: &Barrier,
    ) -> impl Future<Output = Result<bool, TargetError>> + Send {
        self.transact(group, arrival, Some(barrier))
    }

    /// The barriers `partition` of `topic` reached that are not done yet.
    fn open_barriers(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<String>, TargetError>> + Send;

    /// Whether every partition has reached barrier `id` of `topic`.
    fn barrier_done(
        &mut self,
        group: &str,
        topic: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, TargetError>> + Send;

    /// Applies `batch` row by row in a transaction that is rolled back, and
    /// returns the rows the target refuses.
    fn find_rejected(&mut self, batch: &Batch) -> impl Future<Output = Result<Vec<Rejected>, TargetError>> + Send;
}

/// Opens connections to one target.
pub trait Connect: Send + Sync + 'static {
    type Target: Target;

    /// A new connection, with Ferry's offsets table in place.
    fn connect(&self) -> impl Future<Output = Result<Self::Target, TargetError>> + Send;
}

/// A target shared with the rest of the process (`ferry migrate` reads
/// progress from the DuckDB instance its apply writes to).
impl<C: Connect> Connect for std::sync::Arc<C> {
    type Target = C::Target;

    fn connect(&self) -> impl Future<Output = Result<Self::Target, TargetError>> + Send {
        C::connect(self)
    }
}
