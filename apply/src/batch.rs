//! A batch: the changes one writer applies in one target transaction, with the
//! offsets they bring each partition to.
//!
//! Within a batch a keyed table's changes collapse to one final state per key
//! (the last one: an upsert or a delete), so a row updated a thousand times in a
//! second is written once. That is safe because every change of a key travels in
//! one partition, in source commit order, and a batch is applied atomically: the
//! target never shows an intermediate state that the log did not. An update whose
//! large values did not change (PostgreSQL unchanged TOAST, listed in
//! `unchanged`) takes them from the state it replaces when that is in the batch,
//! and otherwise leaves the target's values alone.
//!
//! A keyless table cannot collapse: its inserts are appended in order, and its
//! updates and deletes, which can only name the row by all its old values, are
//! kept in order between them.
//!
//! A target that keeps a change history (DuckDB's `--mode history`) needs every
//! event, not the collapsed states: a batch made with [`Batch::with_history`]
//! also lists each table's events in order ([`TableChanges::history`]). Other
//! batches skip that list, so the targets that do not need it copy nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_core::codec::TableCodec;
use ferry_core::envelope::{ChangeEvent, Op, SourceDetail};
use ferry_core::meta::TableId;
use ferry_core::value::Datum;
use indexmap::map::Entry;
use indexmap::IndexMap;

/// The hasher of the maps a batch looks up once per event (tables, keys):
/// foldhash, several times faster than the standard library's SipHash on
/// short keys, and still seeded per process.
pub type FastHash = foldhash::fast::RandomState;

/// Where a message is in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// One decoded message, ready for a writer.
#[derive(Debug)]
pub struct Change {
    pub at: Position,
    pub what: ChangeKind,
    /// Set on a truncate: every partition of the topic carries a copy, and the
    /// table is emptied once all of them have reached it.
    pub barrier: Option<Barrier>,
}

/// A point every partition of a topic must reach before the change it
/// carries is applied (a truncate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Barrier {
    /// The same for every copy: a hash of the message value.
    pub id: String,
    /// How many partitions carry a copy.
    pub partitions: i32,
}

// Nearly every message is a row: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ChangeKind {
    /// A row event of `target`, decoded with `codec`; `key` is the Kafka key's
    /// Avro bytes (absent for keyless tables).
    Row {
        target: Arc<TableId>,
        codec: Arc<TableCodec>,
        key: Option<Vec<u8>>,
        event: ChangeEvent,
    },
    /// Nothing to write (a tombstone, a record that is not a table change, an
    /// event sent to the dead-letter topic), but the offset moves past it.
    Skip,
}

/// A row's final state in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    /// Insert or update to `row` (in the codec's column order), leaving the
    /// target's values of the columns in `unchanged` (indexes) as they are.
    Upsert { row: Vec<Datum>, unchanged: Vec<usize> },
    /// Delete the row whose key columns hold these values (`row` has the key
    /// columns set; for a keyless table, every column of the old row).
    Delete { row: Vec<Datum> },
}

/// A row state and the message that produced it.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub state: RowState,
    pub at: Position,
    /// The key's first event in the batch created it (`op = "c"`): by the
    /// source's log the row did not exist before the batch, so a target may
    /// insert it without looking for it (see [`crate::postgres`]).
    pub new: bool,
}

/// One event of a table as a change history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub at: Position,
    pub op: Op,
    /// The row after the event (for a delete: the row deleted, as the source
    /// sent it; for a truncate: empty), in the codec's column order.
    pub row: Vec<Datum>,
    /// Columns (indexes) whose value the source did not send (unchanged TOAST).
    pub unchanged: Vec<usize>,
    /// Commit time at the source, ms since the epoch.
    pub source_ms: i64,
    /// The source transaction, when the source names it.
    pub tx: Option<String>,
}

impl HistoryEvent {
    fn new(at: &Position, event: &ChangeEvent, unchanged: &[usize]) -> Self {
        let row = match (event.op, &event.after, &event.before) {
            (Op::Truncate, _, _) => Vec::new(),
            (Op::Delete, _, Some(before)) => before.clone(),
            (_, Some(after), _) => after.clone(),
            (_, None, before) => before.clone().unwrap_or_default(),
        };
        let tx = event
            .transaction
            .as_ref()
            .map(|t| t.id.to_string())
            .or_else(|| match &event.source.detail {
                SourceDetail::Postgres { tx_id, .. } => tx_id.map(|t| t.to_string()),
                SourceDetail::Mysql { gtid, .. } => gtid.as_ref().map(ToString::to_string),
                SourceDetail::Mongodb { lsid, txn_number, .. } => {
                    lsid.as_ref().zip(*txn_number).map(|(l, n)| format!("{l}:{n}"))
                }
            });
        Self {
            at: at.clone(),
            op: event.op,
            row,
            unchanged: unchanged.to_vec(),
            source_ms: event.source.ts_ms,
            tx,
        }
    }
}

/// A table's changes in a batch, all of one schema version.
#[derive(Debug)]
pub struct TableChanges {
    pub target: TableId,
    pub codec: Arc<TableCodec>,
    /// Empty the table before the rows below.
    pub truncate: Option<Position>,
    /// Keyed tables: the final state per key, in first-change order.
    pub rows: IndexMap<Vec<u8>, RowChange, FastHash>,
    /// Keyless tables: every change, in order.
    pub log: Vec<RowChange>,
    /// Events per op code, for metrics.
    pub ops: BTreeMap<&'static str, u64>,
    /// Every event in order, in a batch made [`Batch::with_history`]; `None` otherwise.
    pub history: Option<Vec<HistoryEvent>>,
}

impl TableChanges {
    fn new(target: TableId, codec: Arc<TableCodec>, history: bool) -> Self {
        Self {
            target,
            codec,
            truncate: None,
            rows: IndexMap::default(),
            log: Vec::new(),
            ops: BTreeMap::new(),
            history: history.then(Vec::new),
        }
    }

    pub fn keyed(&self) -> bool {
        !self.codec.meta().key.is_empty()
    }

    /// The key a target keeps its plan for this table under (see
    /// [`crate::target::Plans`]): the target table and the schema version.
    pub fn plan_key(&self) -> (TableId, usize) {
        (self.target.clone(), Arc::as_ptr(&self.codec) as usize)
    }

    /// Every row change, keyed or not.
    pub fn changes(&self) -> impl Iterator<Item = &RowChange> {
        self.rows.values().chain(&self.log)
    }

    fn add(&mut self, at: Position, key: Option<Vec<u8>>, event: ChangeEvent) {
        *self.ops.entry(event.op.code()).or_default() += 1;
        let columns = &self.codec.meta().columns;
        if !self.keyed() && event.op == Op::Update {
            // A keyless row is named by all its old values: the old row goes,
            // the new one comes.
            if let Some(before) = event.before.clone() {
                self.log.push(RowChange {
                    state: RowState::Delete { row: before },
                    at: at.clone(),
                    new: false,
                });
            }
        }
        let unchanged: Vec<usize> = event
            .unchanged
            .iter()
            .filter_map(|name| columns.iter().position(|c| &c.name == name))
            .collect();
        if let Some(history) = &mut self.history {
            history.push(HistoryEvent::new(&at, &event, &unchanged));
        }
        let created = event.op == Op::Create;
        let state = match (event.op, event.after, event.before) {
            (Op::Truncate, _, _) => {
                self.rows.clear();
                self.log.clear();
                self.truncate = Some(at);
                return;
            }
            (Op::Delete, _, Some(before)) => RowState::Delete { row: before },
            (Op::Read | Op::Create | Op::Update, Some(after), _) => RowState::Upsert { row: after, unchanged },
            // An event without the row it needs: nothing can be applied for it.
            _ => return,
        };
        match key {
            Some(k) if self.keyed() => match self.rows.entry(k) {
                Entry::Vacant(v) => {
                    v.insert(RowChange {
                        state,
                        at,
                        new: created,
                    });
                }
                Entry::Occupied(mut o) => {
                    let previous = o.get();
                    let new = previous.new;
                    let state = match (state, &previous.state) {
                        (
                            RowState::Upsert { mut row, unchanged },
                            RowState::Upsert {
                                row: old,
                                unchanged: old_u,
                            },
                        ) if !unchanged.is_empty() => {
                            for &i in &unchanged {
                                row[i] = old[i].clone();
                            }
                            let unchanged = unchanged.into_iter().filter(|i| old_u.contains(i)).collect();
                            RowState::Upsert { row, unchanged }
                        }
                        (state, _) => state,
                    };
                    // Replaced in place: the order of different keys does not
                    // matter, as a writer applies all deletes before all upserts.
                    o.insert(RowChange { state, at, new });
                }
            },
            _ => self.log.push(RowChange { state, at, new: false }),
        }
    }
}

/// A writer's batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// Whether each table lists every event ([`TableChanges::history`]).
    history: bool,
    pub tables: IndexMap<TableId, TableChanges, FastHash>,
    /// Per partition: the offset of its first message in the batch and the next
    /// offset after its last one.
    pub offsets: BTreeMap<(Arc<str>, i32), (i64, i64)>,
    /// Messages in the batch.
    pub messages: usize,
    /// The newest source commit time in the batch (ms), for the lag metric.
    pub newest_source_ms: Option<i64>,
}

impl Batch {
    /// An empty batch that also keeps every event of each table in order.
    pub fn with_history() -> Self {
        Self {
            history: true,
            ..Self::default()
        }
    }

    /// An empty batch of the same kind (with history or not).
    pub fn emptied(&self) -> Self {
        Self {
            history: self.history,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Whether `change` must wait for this batch to be written first: it is of
    /// a table whose schema version differs from the one in the batch.
    pub fn conflicts(&self, change: &Change) -> bool {
        match &change.what {
            ChangeKind::Row { target, codec, .. } => self
                .tables
                .get(&**target)
                .is_some_and(|t| !Arc::ptr_eq(&t.codec, codec)),
            ChangeKind::Skip => false,
        }
    }

    pub fn add(&mut self, change: Change) {
        let Change { at, what, .. } = change;
        self.messages += 1;
        self.offsets
            .entry((Arc::clone(&at.topic), at.partition))
            .and_modify(|(_, next)| *next = at.offset + 1)
            .or_insert((at.offset, at.offset + 1));
        if let ChangeKind::Row {
            target,
            codec,
            key,
            event,
        } = what
        {
            if event.source.snapshot == ferry_core::envelope::Snapshot::False {
                self.newest_source_ms = self.newest_source_ms.max(Some(event.source.ts_ms));
            }
            // Looked up before inserting: the entry API would clone the name per event.
            match self.tables.get_mut(&*target) {
                Some(table) => table.add(at, key, event),
                None => {
                    let mut table = TableChanges::new((*target).clone(), codec, self.history);
                    table.add(at, key, event);
                    self.tables.insert((*target).clone(), table);
                }
            }
        }
    }

    /// Drops the row changes made by the messages at `positions` (rejected by
    /// the target); their offsets still count as applied.
    pub fn remove(&mut self, positions: &[Position]) {
        for table in self.tables.values_mut() {
            table.rows.retain(|_, c| !positions.contains(&c.at));
            table.log.retain(|c| !positions.contains(&c.at));
            if let Some(history) = &mut table.history {
                history.retain(|e| !positions.contains(&e.at));
            }
            if table.truncate.as_ref().is_some_and(|t| positions.contains(t)) {
                table.truncate = None;
            }
        }
    }
}

/// Changes for the tests of the batch and of the targets.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use ferry_core::envelope::Connector;
    use ferry_core::envelope::{Snapshot, SourceInfo};
    use ferry_core::meta::{Column, DataType, TableMeta};

    /// A table `id` (bigint, the key if `keyed`), `a` and `big` (text), then `more`.
    pub(crate) fn codec(table: TableId, keyed: bool, more: Vec<Column>) -> Arc<TableCodec> {
        let mut columns = vec![
            Column::new("id", DataType::Int64, "bigint").not_null(),
            Column::new("a", DataType::Text, "text"),
            Column::new("big", DataType::Text, "text"),
        ];
        columns.extend(more);
        let meta = TableMeta::new(table, columns, if keyed { &["id"] } else { &[] }).unwrap();
        Arc::new(TableCodec::new("p", meta, Connector::Postgres).unwrap())
    }

    /// The first three values of a row of [`codec`]'s table.
    pub(crate) fn row(id: i64, a: &str, big: Option<&str>) -> Vec<Datum> {
        vec![
            Datum::Int(id),
            Datum::Text(a.into()),
            big.map_or(Datum::Null, |b| Datum::Text(b.into())),
        ]
    }

    /// The message at `offset` of `codec`'s table (its target: the source
    /// table): an event `op` with `before` and `after`, keyed by the first
    /// column (an integer); an update whose third column is NULL did not send
    /// it (unchanged TOAST). Commit time and transaction id are the offset.
    pub(crate) fn change(
        codec: &Arc<TableCodec>,
        offset: i64,
        op: Op,
        before: Option<Vec<Datum>>,
        after: Option<Vec<Datum>>,
    ) -> Change {
        let key = after.as_ref().or(before.as_ref()).map(|r| match &r[0] {
            Datum::Int(i) => i.to_be_bytes().to_vec(),
            _ => unreachable!(),
        });
        Change {
            at: Position {
                topic: "p.public.t".into(),
                partition: 0,
                offset,
            },
            what: ChangeKind::Row {
                target: Arc::new(codec.meta().id.clone()),
                codec: Arc::clone(codec),
                key: key.filter(|_| !codec.meta().key.is_empty()),
                event: ChangeEvent {
                    op,
                    unchanged: if after.as_ref().is_some_and(|r| r[2] == Datum::Null) && op == Op::Update {
                        vec!["big".into()]
                    } else {
                        vec![]
                    },
                    before,
                    after,
                    source: SourceInfo {
                        name: "p".into(),
                        ts_ms: offset,
                        snapshot: Snapshot::False,
                        db: "db".into(),
                        detail: SourceDetail::Postgres {
                            schema: "public".into(),
                            table: "t".into(),
                            tx_id: Some(offset),
                            lsn: None,
                        },
                    },
                    ts_ms: 0,
                    transaction: None,
                },
            },
            barrier: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{change, row};
    use super::*;

    fn codec(keyed: bool) -> Arc<TableCodec> {
        testing::codec(TableId::new("public", "t"), keyed, Vec::new())
    }

    fn states(batch: &Batch) -> Vec<RowState> {
        batch.tables[0].changes().map(|c| c.state.clone()).collect()
    }

    #[test]
    fn changes_collapse_to_the_last_state_per_key() {
        let c = codec(true);
        let mut batch = Batch::default();
        batch.add(change(&c, 10, Op::Create, None, Some(row(1, "a", Some("BIG")))));
        batch.add(change(&c, 11, Op::Create, None, Some(row(2, "b", None))));
        // Unchanged TOAST: the value comes from the insert in the same batch.
        batch.add(change(
            &c,
            12,
            Op::Update,
            Some(row(1, "a", None)),
            Some(row(1, "a2", None)),
        ));
        batch.add(change(&c, 13, Op::Delete, Some(row(2, "b", None)), None));
        batch.add(Change {
            at: Position {
                topic: "p.public.t".into(),
                partition: 0,
                offset: 14,
            },
            what: ChangeKind::Skip,
            barrier: None,
        });
        assert_eq!(
            states(&batch),
            vec![
                RowState::Upsert {
                    row: row(1, "a2", Some("BIG")),
                    unchanged: vec![]
                },
                RowState::Delete { row: row(2, "b", None) },
            ]
        );
        assert_eq!(batch.offsets[&("p.public.t".into(), 0)], (10, 15));
        assert_eq!(batch.messages, 5);
        assert_eq!(batch.newest_source_ms, Some(13));
        // An update whose TOAST value is not in the batch keeps the target's.
        let mut batch = Batch::default();
        batch.add(change(
            &c,
            20,
            Op::Update,
            Some(row(1, "a", None)),
            Some(row(1, "x", None)),
        ));
        assert_eq!(
            states(&batch),
            vec![RowState::Upsert {
                row: row(1, "x", None),
                unchanged: vec![2]
            }]
        );
        // A key deleted and inserted again ends as its last state.
        batch.add(change(&c, 21, Op::Create, None, Some(row(5, "five", None))));
        batch.add(change(&c, 22, Op::Delete, Some(row(1, "x", None)), None));
        batch.add(change(&c, 23, Op::Create, None, Some(row(1, "new", None))));
        let last: Vec<_> = batch.tables[0].rows.values().map(|c| c.at.offset).collect();
        assert_eq!(last, vec![23, 21]);
        assert_eq!(
            batch.tables[0].rows.values().next().map(|c| c.state.clone()),
            Some(RowState::Upsert {
                row: row(1, "new", None),
                unchanged: vec![]
            })
        );
    }

    #[test]
    fn a_key_is_new_when_its_first_event_in_the_batch_created_it() {
        let c = codec(true);
        let mut batch = Batch::default();
        // Created, then updated: still new (it did not exist before the batch).
        batch.add(change(&c, 1, Op::Create, None, Some(row(1, "a", None))));
        batch.add(change(
            &c,
            2,
            Op::Update,
            Some(row(1, "a", None)),
            Some(row(1, "b", None)),
        ));
        // Updated first, or deleted and created again: it existed before.
        batch.add(change(
            &c,
            3,
            Op::Update,
            Some(row(2, "a", None)),
            Some(row(2, "b", None)),
        ));
        batch.add(change(&c, 4, Op::Delete, Some(row(3, "a", None)), None));
        batch.add(change(&c, 5, Op::Create, None, Some(row(3, "c", None))));
        // A snapshot read is not a creation.
        batch.add(change(&c, 6, Op::Read, None, Some(row(4, "r", None))));
        let new: Vec<bool> = batch.tables[0].changes().map(|c| c.new).collect();
        assert_eq!(new, vec![true, false, false, false]);
    }

    #[test]
    fn truncate_drops_earlier_rows_and_keyless_tables_keep_every_change() {
        let c = codec(false);
        let mut batch = Batch::default();
        batch.add(change(&c, 1, Op::Create, None, Some(row(1, "a", None))));
        batch.add(change(&c, 2, Op::Create, None, Some(row(1, "a", None))));
        assert_eq!(states(&batch).len(), 2);
        batch.add(change(&c, 3, Op::Truncate, None, None));
        batch.add(change(&c, 4, Op::Create, None, Some(row(7, "b", None))));
        batch.add(change(
            &c,
            5,
            Op::Update,
            Some(row(7, "b", None)),
            Some(row(7, "c", Some("x"))),
        ));
        batch.add(change(&c, 6, Op::Delete, Some(row(7, "c", Some("x"))), None));
        let t = &batch.tables[0];
        assert_eq!(t.truncate.as_ref().map(|p| p.offset), Some(3));
        assert_eq!(t.ops.get("c"), Some(&3));
        assert_eq!(
            states(&batch),
            vec![
                RowState::Upsert {
                    row: row(7, "b", None),
                    unchanged: vec![]
                },
                RowState::Delete { row: row(7, "b", None) },
                RowState::Upsert {
                    row: row(7, "c", Some("x")),
                    unchanged: vec![]
                },
                RowState::Delete {
                    row: row(7, "c", Some("x"))
                },
            ]
        );
        batch.remove(&[t.log[0].at.clone()]);
        assert_eq!(states(&batch).len(), 3);
    }

    #[test]
    fn a_new_schema_version_waits_for_the_batch() {
        let (v1, v2) = (codec(true), codec(true));
        let mut batch = Batch::default();
        batch.add(change(&v1, 1, Op::Create, None, Some(row(1, "a", None))));
        assert!(!batch.conflicts(&change(&v1, 2, Op::Create, None, Some(row(2, "a", None)))));
        assert!(batch.conflicts(&change(&v2, 2, Op::Create, None, Some(row(2, "a", None)))));
    }
}
