//! DuckDB as a target: `ferry-apply-duckdb`, an embedded analytics store in
//! one file.
//!
//! DuckDB runs inside this process: [`DuckConnect`] opens the file once (one
//! database instance, which holds the file's lock, so no other process can
//! open it meanwhile) and each writer gets a connection cloned from it.
//! DuckDB calls block, so a target runs them under
//! [`tokio::task::block_in_place`], which hands the runtime's other tasks to
//! another thread meanwhile (the binaries use the multi-threaded runtime).
//!
//! `--mode` says what a source table becomes ([`Mode`]): its current state
//! (`mirror`, the default), an append-only change table `<table>__history`
//! with every event (`history`), or both. A batch is one transaction:
//!
//! ```text
//!  before:     CREATE TABLE / ALTER TABLE ADD COLUMN as the schema needs       (own transaction)
//!  BEGIN
//!  barrier:    the partition's arrival at a truncate (see crate::target)
//!  mirror:     DELETE FROM t                                   the batch holds a truncate
//!              appender → temp key table                        every key of the batch
//!              appender → temp staging table                    rows with unchanged TOAST values, if any
//!              UPDATE staging ← t                                 their target values
//!              DELETE FROM t USING key table                     every key's old row
//!              INSERT INTO t SELECT ... FROM staging              the rows with TOAST values
//!              appender → t                                      every other key's last state
//!              (keyless tables: the appender straight into t; a delete removes one row
//!               equal to the old row, found by joining it from the staging table)
//!  history:    appender → t__history                            every event, in order
//!  offsets:    INSERT INTO _ferry_offsets ... ON CONFLICT DO UPDATE ... WHERE next_offset <= batch start
//!              (no row changed: another writer moved it — the compare-and-set)
//!  COMMIT
//! ```
//!
//! DuckDB's transactions are optimistic: two that change one row conflict,
//! and so do two that insert one key (two partitions arriving at one truncate
//! at once both mark it), and the later one fails. Since only
//! this process can have the file open, the writers of the process take turns
//! instead ([`DuckConnect`]'s write lock, held for a whole batch): DuckDB runs
//! one batch at a time with all its threads, and no conflict can occur.

pub mod export;
pub mod schema;
pub mod value;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ::duckdb::types::{TimeUnit, ToSqlOutput, Value};
use ::duckdb::{appender_params_from_iter, params, AccessMode, Appender, Config, Connection};
use ferry_core::config::Secret;
use ferry_core::envelope::Op;
use ferry_core::meta::{DataType, TableId};
use ferry_core::value::Datum;
use serde::{Deserialize, Serialize};

use crate::batch::{Barrier, Batch, HistoryEvent, RowChange, RowState, TableChanges};
use crate::settings::TargetAddress;
use crate::target::{
    key_text, offsets_of, sql, Connect, Plans, Rejected, Target, TargetError, BARRIERS_TABLE, OFFSETS_TABLE,
};

use self::schema::{history_table, TargetColumn, HISTORY_COLUMNS};
use self::value::{cell, Slot};

/// The schema source tables go to unless `--table-map` says otherwise.
pub const DEFAULT_SCHEMA: &str = "main";

/// What a source table becomes in DuckDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A table of the same name holding the source's current rows.
    #[default]
    Mirror,
    /// `<table>__history`: every event, appended.
    History,
    /// Both tables.
    Both,
}

impl Mode {
    fn mirror(self) -> bool {
        matches!(self, Mode::Mirror | Mode::Both)
    }

    fn history(self) -> bool {
        matches!(self, Mode::History | Mode::Both)
    }
}

/// `ferry-apply-duckdb`'s own flags.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct DuckOptions {
    /// mirror | history | both: each source table's current rows, its change
    /// history (TABLE__history, every event appended), or both [default: mirror].
    #[arg(long, env = "FERRY_MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Write-ahead log (MiB) after which DuckDB checkpoints the file
    /// (DuckDB's `checkpoint_threshold`) [default: 1024].
    #[arg(long, env = "FERRY_CHECKPOINT_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_mb: Option<u64>,
}

/// `--checkpoint-mb` by default. A checkpoint rewrites, compressed, every
/// row group that changed since the last; at DuckDB's own 16 MB, a stream of
/// upserts and deletes checkpointed every few batches, which cost about a
/// quarter of apply's CPU (`scripts/bench apply-duckdb`, runs alternated on
/// one host: 9.0 µs per event on average at 16 MB, 6.7 at 1 GiB). The cost:
/// a crash replays up to this much log at the next start, and the changes
/// since the last checkpoint stay in DuckDB's memory (spilled to its
/// temporary directory beyond its limit).
pub const CHECKPOINT_MB: u64 = 1024;

/// DuckDB's worker threads. A batch is a few statements over tens of
/// thousands of rows; while DuckDB's workers run a statement's tasks, the
/// calling thread polls for more under a mutex, and on a machine of few cores
/// that polling took more than the parallel work gave back (`scripts/bench
/// apply-duckdb`, runs alternated on 2 cores: 6.2 and 5.7 µs of CPU per event
/// with one thread, 7.4 and 6.7 with two, and faster each time). Reads of the
/// file by other processes have their own setting.
pub const THREADS: u32 = 1;

/// `--target`: the DuckDB file's path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DuckFile(pub PathBuf);

impl TryFrom<String> for DuckFile {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.contains("://") || s == ":memory:" {
            return Err(format!(
                "--target {s:?} is not a file path: name the DuckDB file, e.g. ./analytics.duckdb (created if absent)"
            ));
        }
        Ok(DuckFile(PathBuf::from(s)))
    }
}

impl fmt::Display for DuckFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

impl TargetAddress for DuckFile {
    fn with_password(self, password: Option<&Secret>) -> Result<Self, String> {
        match password {
            Some(_) => Err(format!("--target {self} is a DuckDB file, which takes no password")),
            None => Ok(self),
        }
    }
}

/// `name` quoted as a DuckDB identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn quoted(table: &TableId) -> String {
    format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.table))
}

/// What the pipeline does about a DuckDB error on `table`.
pub(crate) fn classify(e: &::duckdb::Error, table: &TableId) -> TargetError {
    let message = format!("table {table}: {e}");
    let text = e.to_string();
    if [
        "Constraint Error",
        "Conversion Error",
        "Out of Range Error",
        "Invalid Input Error",
    ]
    .iter()
    .any(|k| text.contains(k))
        && !text.contains("onflict")
    {
        TargetError::Rejected(message)
    } else if [
        "onflict",
        "TransactionContext Error",
        "IO Error",
        "Out of Memory",
        "Interrupt",
    ]
    .iter()
    .any(|k| text.contains(k))
    {
        TargetError::Unavailable(message)
    } else {
        TargetError::Permanent(message)
    }
}

/// What the pipeline does about a DuckDB error on Ferry's own tables: a
/// duplicate key there is two writers inserting the same row at once (the
/// later one's transaction fails), so it is retried like a conflict.
fn bookkeeping(e: &::duckdb::Error, table: &TableId) -> TargetError {
    match classify(e, table) {
        TargetError::Rejected(m) => TargetError::Unavailable(m),
        other => other,
    }
}

/// How Ferry opens a DuckDB file: never fetching extensions from the network
/// (a query needing one that is not built in fails instead of downloading it).
pub fn config(access: AccessMode) -> Result<Config, String> {
    Config::default()
        .access_mode(access)
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .map_err(|e| format!("DuckDB settings: {e}"))
}

/// The one database instance of a DuckDB file.
#[derive(Debug)]
pub struct DuckConnect {
    path: PathBuf,
    mode: Mode,
    /// Connections are cloned from this one (a `Connection` is not `Sync`).
    db: Mutex<Connection>,
    /// Held by a writer for the whole of a batch: one transaction at a time.
    writing: Arc<Mutex<()>>,
}

impl DuckConnect {
    /// Opens (or creates) the file at `target`, or says why it cannot.
    pub fn open(target: DuckFile, options: DuckOptions) -> Result<Self, String> {
        let path = target.0;
        let checkpoint = format!("{}MiB", options.checkpoint_mb.unwrap_or(CHECKPOINT_MB));
        let settings = config(AccessMode::ReadWrite)?
            .with("checkpoint_threshold", &checkpoint)
            .and_then(|c| c.with("threads", THREADS.to_string()))
            .map_err(|e| format!("DuckDB settings: {e}"))?;
        let db = Connection::open_with_flags(&path, settings).map_err(|e| {
            format!(
                "--target {}: {e}; DuckDB lets one process open a file to write, so stop whatever holds it \
                 (another ferry-apply-duckdb, a DuckDB shell) and check the directory exists",
                path.display()
            )
        })?;
        Ok(Self {
            path,
            mode: options.mode.unwrap_or_default(),
            db: Mutex::new(db),
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// A new connection to the same database (for reading it in this process).
    pub fn connection(&self) -> Result<Connection, TargetError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.try_clone()
            .map_err(|e| TargetError::Permanent(format!("{}: {e}", self.path.display())))
    }
}

impl Connect for DuckConnect {
    type Target = DuckTarget;

    async fn connect(&self) -> Result<DuckTarget, TargetError> {
        let conn = self.connection()?;
        let offsets = TableId::new(DEFAULT_SCHEMA, OFFSETS_TABLE);
        let barriers = TableId::new(DEFAULT_SCHEMA, BARRIERS_TABLE);
        let names = "consumer_group VARCHAR NOT NULL, topic VARCHAR NOT NULL, kafka_partition INTEGER NOT NULL";
        tokio::task::block_in_place(|| {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({names}, next_offset BIGINT NOT NULL,
                   batch_first_offset BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                   PRIMARY KEY (consumer_group, topic, kafka_partition));
                 CREATE TABLE IF NOT EXISTS {} ({names}, barrier VARCHAR NOT NULL,
                   arrived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                   PRIMARY KEY (consumer_group, topic, barrier, kafka_partition));",
                quoted(&offsets),
                quoted(&barriers)
            ))
            .map_err(|e| classify(&e, &offsets))
        })?;
        Ok(DuckTarget {
            conn,
            mode: self.mode,
            offsets,
            barriers,
            plans: HashMap::new(),
            stages: 0,
            writing: Arc::clone(&self.writing),
        })
    }
}

/// How one table's rows are written for one schema version.
#[derive(Debug)]
struct Plan {
    /// The mirror table, quoted, and per column of the schema its quoted name and slot.
    name: String,
    columns: Vec<(String, Slot)>,
    /// Indexes (in the schema's columns) of the key.
    key: Vec<usize>,
    /// The mirror's staging table (temporary, this connection's).
    stage: Option<String>,
    /// A keyed table's key table (temporary, this connection's): every key of a batch.
    keys: Option<String>,
    /// The history table, unquoted, when the mode keeps one.
    history: Option<TableId>,
    /// The source columns in the history table, quoted, and their slots.
    history_columns: Vec<(String, Slot)>,
    /// The source columns' names, to list unchanged ones.
    source_names: Vec<String>,
}

/// Slots of `meta`'s columns as `existing` has them.
fn slots(
    target: &TableId,
    meta: &ferry_core::meta::TableMeta,
    existing: &[TargetColumn],
) -> Result<Vec<(String, Slot)>, TargetError> {
    meta.columns
        .iter()
        .map(|c| {
            let t = existing.iter().find(|t| t.name == c.name).ok_or_else(|| {
                TargetError::Permanent(format!("table {target} has no column {:?} after adding it", c.name))
            })?;
            Ok((
                quote_ident(&c.name),
                Slot {
                    source: c.data_type,
                    decimal: t.data_type.starts_with("DECIMAL"),
                },
            ))
        })
        .collect()
}

/// Appends one row: `head`, then each value in its column's slot; a value
/// DuckDB cannot hold is a rejected row naming its column.
fn append<'a>(
    appender: &mut Appender<'_>,
    head: Vec<ToSqlOutput<'a>>,
    values: impl Iterator<Item = (&'a Datum, &'a (String, Slot))>,
) -> Result<(), TargetError> {
    let mut row = head;
    for (datum, (name, slot)) in values {
        row.push(cell(datum, *slot).map_err(|reason| TargetError::Rejected(format!("column {name}: {reason}")))?);
    }
    appender
        .append_row(appender_params_from_iter(row.iter()))
        .map_err(|e| TargetError::Rejected(e.to_string()))
}

/// A whole row's values with their columns' slots (a value the row lacks is null).
fn whole<'a>(
    values: &'a [Datum],
    slots: &'a [(String, Slot)],
) -> impl Iterator<Item = (&'a Datum, &'a (String, Slot))> {
    slots
        .iter()
        .enumerate()
        .map(|(i, slot)| (values.get(i).unwrap_or(&Datum::Null), slot))
}

/// One connection to the DuckDB file.
#[derive(Debug)]
pub struct DuckTarget {
    conn: Connection,
    mode: Mode,
    offsets: TableId,
    barriers: TableId,
    /// Per target table and schema version (the codec's address, stable for a session).
    plans: Plans<Plan>,
    /// Staging tables made so far, for their names.
    stages: usize,
    /// The process's write lock (see the module doc).
    writing: Arc<Mutex<()>>,
}

impl DuckTarget {
    fn sql(&self, sql: &str, table: &TableId) -> Result<(), TargetError> {
        self.conn.execute_batch(sql).map_err(|e| classify(&e, table))
    }

    /// The plans of the batch's tables, making the tables fit first.
    fn plans(&mut self, batch: &Batch) -> Result<Vec<Arc<Plan>>, TargetError> {
        let mut plans = Vec::with_capacity(batch.tables.len());
        for table in batch.tables.values() {
            let key = table.plan_key();
            if let Some(plan) = self.plans.get(&key) {
                plans.push(Arc::clone(plan));
                continue;
            }
            let meta = table.codec.meta();
            let target = &table.target;
            let mut plan = Plan {
                name: quoted(target),
                columns: Vec::new(),
                key: meta.key.clone(),
                stage: None,
                keys: None,
                history: None,
                history_columns: Vec::new(),
                source_names: meta.columns.iter().map(|c| c.name.clone()).collect(),
            };
            if self.mode.mirror() {
                let existing = schema::ensure_mirror(&self.conn, target, meta)?;
                plan.columns = slots(target, meta, &existing)?;
                self.stages += 1;
                let def = |c: &ferry_core::meta::Column| {
                    let ty = existing
                        .iter()
                        .find(|t| t.name == c.name)
                        .map_or("VARCHAR", |t| t.data_type.as_str());
                    format!("{} {ty}", quote_ident(&c.name))
                };
                let stage = format!("_ferry_stage_{}", self.stages);
                let defs: Vec<String> = meta.columns.iter().map(def).collect();
                self.sql(
                    &format!(
                        "CREATE OR REPLACE TEMP TABLE {} (__ferry_keep VARCHAR, {})",
                        quote_ident(&stage),
                        defs.join(", ")
                    ),
                    target,
                )?;
                plan.stage = Some(stage);
                if !meta.key.is_empty() {
                    let keys = format!("_ferry_keys_{}", self.stages);
                    let defs: Vec<String> = meta.key.iter().map(|&k| def(&meta.columns[k])).collect();
                    self.sql(
                        &format!(
                            "CREATE OR REPLACE TEMP TABLE {} ({})",
                            quote_ident(&keys),
                            defs.join(", ")
                        ),
                        target,
                    )?;
                    plan.keys = Some(keys);
                }
            }
            if self.mode.history() {
                let existing = schema::ensure_history(&self.conn, target, meta)?;
                let history = history_table(target);
                plan.history_columns = slots(&history, meta, &existing)?;
                plan.history = Some(history);
            }
            let plan = Arc::new(plan);
            self.plans.insert(key, Arc::clone(&plan));
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Writes `changes` of `table` (a subset of its batch, in order) into its mirror table.
    ///
    /// Every key's old row is deleted (joined from the key table), then each
    /// key's last state appended straight into the table; only rows that keep
    /// target values (unchanged TOAST) pass through the staging table, where
    /// those values are filled in before the delete.
    fn write_mirror(&self, plan: &Plan, table: &TableChanges, changes: &[&RowChange]) -> Result<(), TargetError> {
        let target = &table.target;
        let err = |e| classify(&e, target);
        let Some(stage) = &plan.stage else {
            return Err(TargetError::Permanent(format!("table {target} has no staging table")));
        };
        let Some(keys) = &plan.keys else {
            return self.write_keyless(plan, stage, table, changes);
        };
        let mut kept: Vec<usize> = Vec::new();
        {
            let mut key_rows = self
                .conn
                .appender_to_catalog_and_db(keys, "temp", "main")
                .map_err(err)?;
            let mut staged = None;
            for c in changes {
                let (RowState::Upsert { row, .. } | RowState::Delete { row }) = &c.state;
                let key = plan
                    .key
                    .iter()
                    .map(|&k| (row.get(k).unwrap_or(&Datum::Null), &plan.columns[k]));
                append(&mut key_rows, Vec::new(), key)?;
                let RowState::Upsert { row, unchanged } = &c.state else {
                    continue;
                };
                if unchanged.is_empty() {
                    continue;
                }
                kept.extend(unchanged);
                let list: Vec<String> = unchanged.iter().map(usize::to_string).collect();
                let head = vec![ToSqlOutput::from(format!(",{},", list.join(",")))];
                let staged = match &mut staged {
                    Some(a) => a,
                    None => staged.insert(
                        self.conn
                            .appender_to_catalog_and_db(stage, "temp", "main")
                            .map_err(err)?,
                    ),
                };
                append(staged, head, whole(row, &plan.columns))?;
            }
            key_rows.flush().map_err(err)?;
            if let Some(mut staged) = staged {
                staged.flush().map_err(err)?;
            }
        }
        let (stage, keys) = (quote_ident(stage), quote_ident(keys));
        let on = |other: &str| {
            let on: Vec<String> = plan
                .key
                .iter()
                .map(|&k| format!("t.{0} = {other}.{0}", plan.columns[k].0))
                .collect();
            on.join(" AND ")
        };
        let mut sql = String::new();
        let toasted = !kept.is_empty();
        kept.sort_unstable();
        kept.dedup();
        for i in kept {
            // Unchanged TOAST values: what the target holds.
            sql.push_str(&format!(
                "UPDATE {stage} AS s SET {0} = t.{0} FROM {1} AS t WHERE {2} AND contains(s.__ferry_keep, ',{i},');",
                plan.columns[i].0,
                plan.name,
                on("s")
            ));
        }
        sql.push_str(&format!(
            "DELETE FROM {} AS t USING {keys} AS k WHERE {}; DELETE FROM {keys};",
            plan.name,
            on("k")
        ));
        if toasted {
            let names: Vec<&str> = plan.columns.iter().map(|(n, _)| n.as_str()).collect();
            let names = names.join(", ");
            sql.push_str(&format!(
                "INSERT INTO {0} ({names}) SELECT {names} FROM {stage}; DELETE FROM {stage};",
                plan.name
            ));
        }
        self.sql(&sql, target)?;
        let mut rows = self.table_appender(plan, target)?;
        for c in changes {
            if let RowState::Upsert { row, unchanged } = &c.state {
                if unchanged.is_empty() {
                    append(&mut rows, Vec::new(), whole(row, &plan.columns))?;
                }
            }
        }
        rows.flush().map_err(err)
    }

    /// An appender into the mirror table, of the source's columns.
    fn table_appender(&self, plan: &Plan, target: &TableId) -> Result<Appender<'_>, TargetError> {
        let names: Vec<&str> = plan.source_names.iter().map(String::as_str).collect();
        self.conn
            .appender_with_columns_to_db(&target.table, &target.schema, &names)
            .map_err(|e| classify(&e, target))
    }

    /// A keyless table: runs of inserts appended, each delete removing one
    /// row equal to the old row (found through the staging table, so that the
    /// values compare in the column's own type).
    fn write_keyless(
        &self,
        plan: &Plan,
        stage: &str,
        table: &TableChanges,
        changes: &[&RowChange],
    ) -> Result<(), TargetError> {
        let target = &table.target;
        let err = |e| classify(&e, target);
        let conditions: Vec<String> = plan
            .columns
            .iter()
            .map(|(n, _)| format!("t.{n} IS NOT DISTINCT FROM s.{n}"))
            .collect();
        let delete = format!(
            "DELETE FROM {0} WHERE rowid = (SELECT t.rowid FROM {0} AS t, {1} AS s WHERE {2} LIMIT 1);
             DELETE FROM {1};",
            plan.name,
            quote_ident(stage),
            conditions.join(" AND ")
        );
        let mut appender = self.table_appender(plan, target)?;
        for c in changes {
            match &c.state {
                RowState::Upsert { row, .. } => append(&mut appender, Vec::new(), whole(row, &plan.columns))?,
                RowState::Delete { row } => {
                    appender.flush().map_err(err)?;
                    let mut staged = self
                        .conn
                        .appender_to_catalog_and_db(stage, "temp", "main")
                        .map_err(err)?;
                    let head = vec![ToSqlOutput::Owned(Value::Null)];
                    append(&mut staged, head, whole(row, &plan.columns))?;
                    staged.flush().map_err(err)?;
                    self.sql(&delete, target)?;
                }
            }
        }
        appender.flush().map_err(err)
    }

    /// Appends `events` to the history table; the truncate among them only if `truncated`.
    fn write_history(
        &self,
        plan: &Plan,
        history: &TableId,
        events: &[&HistoryEvent],
        truncated: bool,
    ) -> Result<(), TargetError> {
        let err = |e| classify(&e, history);
        let names: Vec<&str> = HISTORY_COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .chain(plan.source_names.iter().map(String::as_str))
            .collect();
        let mut appender = self
            .conn
            .appender_with_columns_to_db(&history.table, &history.schema, &names)
            .map_err(err)?;
        for e in events {
            if e.op == Op::Truncate && !truncated {
                continue;
            }
            let unchanged = (!e.unchanged.is_empty()).then(|| {
                let names: Vec<&str> = e
                    .unchanged
                    .iter()
                    .filter_map(|&i| plan.source_names.get(i).map(String::as_str))
                    .collect();
                names.join(",")
            });
            let text = |s: Option<String>| s.map_or(ToSqlOutput::Owned(Value::Null), ToSqlOutput::from);
            let head = vec![
                ToSqlOutput::from(e.op.code()),
                ToSqlOutput::Owned(Value::Timestamp(TimeUnit::Millisecond, e.source_ms)),
                ToSqlOutput::from(&*e.at.topic),
                ToSqlOutput::from(e.at.partition),
                ToSqlOutput::from(e.at.offset),
                text(e.tx.clone()),
                text(unchanged),
            ];
            debug_assert_eq!(head.len(), HISTORY_COLUMNS.len());
            append(&mut appender, head, whole(&e.row, &plan.history_columns)).map_err(|x| match x {
                TargetError::Rejected(m) => TargetError::Rejected(format!("table {history}: {m}")),
                other => other,
            })?;
        }
        appender.flush().map_err(err)
    }

    /// Stores the arrival of the batch's partition at `barrier`; true if it is
    /// the last one (the barrier is then marked done). Arrivals take turns
    /// under the write lock, so exactly one is the last.
    fn reach(&self, group: &str, batch: &Batch, barrier: &Barrier) -> Result<bool, TargetError> {
        let Some((topic, partition)) = batch.offsets.keys().next() else {
            return Ok(false);
        };
        let err = |e| bookkeeping(&e, &self.barriers);
        let mark = format!(
            "INSERT INTO {} (consumer_group, topic, barrier, kafka_partition) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
            quoted(&self.barriers)
        );
        let mut mark = self.conn.prepare_cached(&mark).map_err(err)?;
        let topic: &str = topic;
        mark.execute(params![group, topic, barrier.id, partition])
            .map_err(err)?;
        let arrived: i64 = self
            .conn
            .query_row(
                &sql::barrier_arrivals(&quoted(&self.barriers), sql::question),
                params![group, topic, barrier.id],
                |r| r.get(0),
            )
            .map_err(err)?;
        let last = arrived >= i64::from(barrier.partitions);
        if last {
            mark.execute(params![group, topic, barrier.id, -1]).map_err(err)?;
        }
        Ok(last)
    }

    /// The compare-and-set of each partition's offset.
    fn store_offsets(&self, group: &str, batch: &Batch) -> Result<(), TargetError> {
        let err = |e| bookkeeping(&e, &self.offsets);
        let sql = format!(
            "INSERT INTO {} (consumer_group, topic, kafka_partition, next_offset, batch_first_offset, updated_at)
             VALUES (?, ?, ?, ?, ?, now())
             ON CONFLICT DO UPDATE SET next_offset = excluded.next_offset,
               batch_first_offset = excluded.batch_first_offset, updated_at = excluded.updated_at
             WHERE next_offset <= excluded.batch_first_offset",
            quoted(&self.offsets)
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(err)?;
        for ((topic, partition), (first, next)) in &batch.offsets {
            let topic: &str = topic;
            let changed = statement
                .execute(params![group, topic, partition, next, first])
                .map_err(err)?;
            if changed == 0 {
                return Err(TargetError::Conflict {
                    topic: topic.to_owned(),
                    partition: *partition,
                });
            }
        }
        Ok(())
    }

    /// The batch's rows and history, in the open transaction.
    fn write_tables(&self, batch: &Batch, plans: &[Arc<Plan>], truncated: bool) -> Result<(), TargetError> {
        for (table, plan) in batch.tables.values().zip(plans) {
            if self.mode.mirror() {
                if table.truncate.is_some() && truncated {
                    self.sql(&format!("DELETE FROM {}", plan.name), &table.target)?;
                }
                let changes: Vec<&RowChange> = table.changes().collect();
                if !changes.is_empty() {
                    self.write_mirror(plan, table, &changes)?;
                }
            }
            if let (Some(history), Some(events)) = (&plan.history, &table.history) {
                let events: Vec<&HistoryEvent> = events.iter().collect();
                self.write_history(plan, history, &events, truncated)?;
            }
        }
        Ok(())
    }

    /// Rolls back whatever is open; a table may have changed under the plans.
    fn abandon(&mut self) {
        self.plans.clear();
        // Nothing open is fine too.
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn transact_blocking(
        &mut self,
        group: &str,
        batch: &Batch,
        barrier: Option<&Barrier>,
    ) -> Result<bool, TargetError> {
        // One batch at a time (module doc): without the turn, two partitions
        // arriving at a truncate at once each count only its own arrival
        // (neither sees the other's uncommitted row) and the barrier is
        // never marked done.
        let writing = Arc::clone(&self.writing);
        let _turn = writing.lock().unwrap_or_else(|e| e.into_inner());
        let plans = self.plans(batch)?;
        let offsets = self.offsets.clone();
        self.sql("BEGIN TRANSACTION", &offsets)?;
        let result = (|| {
            let done = match barrier {
                Some(b) => self.reach(group, batch, b)?,
                None => true,
            };
            self.write_tables(batch, &plans, done)?;
            self.store_offsets(group, batch)?;
            self.sql("COMMIT", &offsets)?;
            Ok(done)
        })();
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// Runs `write` in a transaction that is rolled back: why DuckDB refused it, if it did.
    fn attempt(&self, write: impl FnOnce() -> Result<(), TargetError>) -> Result<Option<String>, TargetError> {
        self.sql("BEGIN TRANSACTION", &self.offsets)?;
        let result = write();
        self.sql("ROLLBACK", &self.offsets)?;
        match result {
            Ok(()) => Ok(None),
            Err(TargetError::Rejected(reason)) => Ok(Some(reason)),
            Err(e) => Err(e),
        }
    }

    /// Applies each change (and history event) alone; the ones DuckDB refuses.
    fn find_rejected_blocking(&mut self, batch: &Batch) -> Result<Vec<Rejected>, TargetError> {
        let writing = Arc::clone(&self.writing);
        let _turn = writing.lock().unwrap_or_else(|e| e.into_inner());
        self.plans.clear();
        let plans = self.plans(batch)?;
        let mut rejected = Vec::new();
        for (table, plan) in batch.tables.values().zip(&plans) {
            let mut refuse = |change: &RowChange, reason| {
                let key = if change_has_row(change) {
                    key_text(table, change, |d, c| show(d, c.data_type))
                } else {
                    "(none)".into()
                };
                rejected.push(Rejected {
                    at: change.at.clone(),
                    table: table.target.to_string(),
                    key,
                    reason,
                });
            };
            if self.mode.mirror() {
                for change in table.changes() {
                    if let Some(reason) = self.attempt(|| self.write_mirror(plan, table, &[change]))? {
                        refuse(change, reason);
                    }
                }
            }
            if let (Some(history), Some(events)) = (&plan.history, &table.history) {
                for e in events {
                    if let Some(reason) = self.attempt(|| self.write_history(plan, history, &[e], true))? {
                        let stand_in = RowChange {
                            state: RowState::Upsert {
                                row: e.row.clone(),
                                unchanged: Vec::new(),
                            },
                            at: e.at.clone(),
                            new: false,
                        };
                        refuse(&stand_in, reason);
                    }
                }
            }
        }
        self.abandon();
        Ok(rejected)
    }
}

/// Whether a change carries row values (a truncate's history event does not).
fn change_has_row(change: &RowChange) -> bool {
    match &change.state {
        RowState::Upsert { row, .. } | RowState::Delete { row } => !row.is_empty(),
    }
}

/// A value printed to name a rejected row.
fn show(datum: &Datum, data_type: DataType) -> Option<String> {
    match datum {
        Datum::Null => None,
        Datum::Text(s) => Some(format!("'{s}'")),
        Datum::Int(i) => Some(i.to_string()),
        Datum::Uuid(u) => Some(u.to_string()),
        Datum::Decimal(d) => Some(d.to_string()),
        other => Some(format!("{other:?} ({data_type})")),
    }
}

impl Target for DuckTarget {
    fn default_schema(&self) -> &str {
        DEFAULT_SCHEMA
    }

    fn keeps_history(&self) -> bool {
        self.mode.history()
    }

    async fn load_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), i64>, TargetError> {
        let sql = sql::load_offsets(&quoted(&self.offsets), sql::question);
        let err = |e| classify(&e, &self.offsets);
        let rows = tokio::task::block_in_place(|| {
            let mut statement = self.conn.prepare(&sql).map_err(err)?;
            let rows = statement
                .query_map([group], |r| {
                    Ok(((r.get::<_, String>(0)?, r.get::<_, i32>(1)?), r.get::<_, i64>(2)?))
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })?;
        Ok(offsets_of(rows, partitions))
    }

    async fn transact(&mut self, group: &str, batch: &Batch, barrier: Option<&Barrier>) -> Result<bool, TargetError> {
        tokio::task::block_in_place(|| self.transact_blocking(group, batch, barrier))
    }

    async fn open_barriers(&mut self, group: &str, topic: &str, partition: i32) -> Result<Vec<String>, TargetError> {
        let sql = sql::open_barriers(&quoted(&self.barriers), sql::question);
        let err = |e| classify(&e, &self.barriers);
        tokio::task::block_in_place(|| {
            let mut statement = self.conn.prepare(&sql).map_err(err)?;
            let rows = statement
                .query_map(params![group, topic, partition], |r| r.get::<_, String>(0))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
    }

    async fn barrier_done(&mut self, group: &str, topic: &str, id: &str) -> Result<bool, TargetError> {
        let sql = sql::barrier_done(&quoted(&self.barriers), sql::question);
        let err = |e| classify(&e, &self.barriers);
        tokio::task::block_in_place(|| {
            let mut statement = self.conn.prepare(&sql).map_err(err)?;
            statement.exists(params![group, topic, id]).map_err(err)
        })
    }

    async fn find_rejected(&mut self, batch: &Batch) -> Result<Vec<Rejected>, TargetError> {
        tokio::task::block_in_place(|| self.find_rejected_blocking(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::{self, change};
    use ferry_core::codec::TableCodec;
    use ferry_core::meta::Column;

    fn codec(keyed: bool) -> Arc<TableCodec> {
        let dec = DataType::Decimal {
            precision: 10,
            scale: 2,
            special: true,
        };
        testing::codec(
            TableId::new(DEFAULT_SCHEMA, if keyed { "t" } else { "log" }),
            keyed,
            vec![
                Column::new("amount", dec, "numeric(10,2)"),
                Column::new("at", DataType::TimestampTz, "timestamptz"),
                Column::new("u", DataType::Uuid, "uuid"),
                Column::new("span", DataType::Duration, "time"),
                Column::new("day", DataType::Date, "date"),
            ],
        )
    }

    fn row(id: i64, a: &str, big: Option<&str>) -> Vec<Datum> {
        let mut row = testing::row(id, a, big);
        row.extend([
            Datum::Decimal("-12.50".parse().unwrap()),
            Datum::Timestamp(1_700_000_000_123_456),
            Datum::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap()),
            Datum::Time(-3_000_001),
            Datum::Date(i32::MAX),
        ]);
        row
    }

    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut statement = conn.prepare(sql).unwrap();
        let mut rows = statement.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get::<_, String>(0).unwrap());
        }
        out
    }

    #[test]
    fn the_checkpoint_threshold_is_ferrys_unless_set() {
        let dir = std::env::temp_dir().join(format!("ferry-duck-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let threshold = |mb: Option<u64>| {
            let file = dir.join(format!("{mb:?}.duckdb"));
            let _ = std::fs::remove_file(&file);
            let options = DuckOptions {
                checkpoint_mb: mb,
                ..Default::default()
            };
            let connect = DuckConnect::open(DuckFile(file), options).unwrap();
            rows(
                &connect.connection().unwrap(),
                "SELECT current_setting('checkpoint_threshold')",
            )
            .join("")
        };
        assert_eq!(threshold(None), "1.0 GiB");
        assert_eq!(threshold(Some(64)), "64.0 MiB");
        // 0 checkpoints at every commit (the kill test relies on it): the log stays empty.
        let wal_after_commit = |mb: u64| {
            let file = dir.join(format!("wal{mb}.duckdb"));
            let options = DuckOptions {
                checkpoint_mb: Some(mb),
                ..Default::default()
            };
            let connect = DuckConnect::open(DuckFile(file.clone()), options).unwrap();
            let conn = connect.connection().unwrap();
            conn.execute_batch("CREATE TABLE t (i INTEGER); INSERT INTO t SELECT range FROM range(100000)")
                .unwrap();
            let wal = std::fs::metadata(format!("{}.wal", file.display())).map_or(0, |m| m.len());
            drop((conn, connect));
            wal
        };
        assert_eq!(wal_after_commit(0), 0);
        assert!(wal_after_commit(1024) > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_mirror_and_record_every_event_exactly_once() {
        let dir = std::env::temp_dir().join(format!("ferry-duck-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.duckdb");
        let _ = std::fs::remove_file(&file);
        let connect = DuckConnect::open(
            DuckFile(file.clone()),
            DuckOptions {
                mode: Some(Mode::Both),
                ..Default::default()
            },
        )
        .unwrap();
        let mut target = connect.connect().await.unwrap();
        let reader = connect.connection().unwrap();
        let (keyed, keyless) = (codec(true), codec(false));

        let mut batch = Batch::with_history();
        batch.add(change(&keyed, 0, Op::Create, None, Some(row(1, "a", Some("BIG")))));
        batch.add(change(&keyed, 1, Op::Create, None, Some(row(2, "b", None))));
        batch.add(change(&keyless, 2, Op::Create, None, Some(row(7, "x", None))));
        batch.add(change(&keyless, 3, Op::Create, None, Some(row(7, "x", None))));
        target.write("g", &batch).await.unwrap();

        let mut batch = Batch::with_history();
        // Unchanged TOAST: the target's value stays.
        batch.add(change(
            &keyed,
            4,
            Op::Update,
            Some(row(1, "a", None)),
            Some(row(1, "a2", None)),
        ));
        batch.add(change(
            &keyed,
            5,
            Op::Update,
            Some(row(2, "b", None)),
            Some(row(2, "b2", None)),
        ));
        batch.add(change(&keyed, 6, Op::Delete, Some(row(2, "b2", None)), None));
        batch.add(change(&keyed, 7, Op::Create, None, Some(row(2, "b3", Some("new")))));
        batch.add(change(&keyless, 8, Op::Delete, Some(row(7, "x", None)), None));
        target.write("g", &batch).await.unwrap();

        let mirror =
            "SELECT concat_ws('|', id, a, coalesce(big, '-'), amount, \"at\", u, span, day) FROM t ORDER BY id";
        assert_eq!(
            rows(&reader, mirror),
            [
                "1|a2|BIG|-12.50|2023-11-14 22:13:20.123456+00|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|-00:00:03.000001|infinity",
                "2|b3|new|-12.50|2023-11-14 22:13:20.123456+00|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|-00:00:03.000001|infinity"
            ]
        );
        assert_eq!(rows(&reader, "SELECT CAST(count(*) AS VARCHAR) FROM log"), ["1"]);
        assert_eq!(
            rows(
                &reader,
                "SELECT concat_ws('|', id, __op, __offset, __tx_id, coalesce(__unchanged, '-'), a, epoch_ms(__source_ts))
                 FROM t__history ORDER BY __offset"
            ),
            [
                "1|c|0|0|-|a|0",
                "2|c|1|1|-|b|1",
                "1|u|4|4|big|a2|4",
                "2|u|5|5|big|b2|5",
                "2|d|6|6|-|b2|6",
                "2|c|7|7|-|b3|7"
            ]
        );
        assert_eq!(
            rows(
                &reader,
                "SELECT string_agg(__op, '' ORDER BY __offset) FROM log__history"
            ),
            ["ccd"]
        );
        assert_eq!(
            target.load_offsets("g", &[("p.public.t".into(), 0)]).await.unwrap()[&("p.public.t".into(), 0)],
            9
        );

        // The same batch again (a second writer, a replay): the compare-and-set refuses it, nothing doubles.
        let err = target.write("g", &batch).await.unwrap_err();
        assert!(matches!(err, TargetError::Conflict { .. }), "{err}");
        assert_eq!(rows(&reader, "SELECT CAST(count(*) AS VARCHAR) FROM t__history"), ["6"]);

        // NaN cannot go into a DECIMAL: a rejected row, found alone.
        let mut bad = row(3, "nan", None);
        bad[3] = Datum::Special(ferry_core::value::Special::NaN);
        let mut batch = Batch::with_history();
        batch.add(change(&keyed, 9, Op::Create, None, Some(bad)));
        batch.add(change(&keyed, 10, Op::Create, None, Some(row(4, "ok", None))));
        let err = target.write("g", &batch).await.unwrap_err();
        assert!(matches!(err, TargetError::Rejected(_)), "{err}");
        let rejected = target.find_rejected(&batch).await.unwrap();
        let at: Vec<i64> = rejected.iter().map(|r| r.at.offset).collect();
        assert_eq!(at, [9, 9], "the mirror row and its history event");
        assert_eq!(rejected[0].key, "(id=3)");
        assert!(
            rejected[0].reason.contains("NaN cannot be stored"),
            "{}",
            rejected[0].reason
        );

        // A truncate and the same keys again in one batch (with a primary key,
        // DuckDB took them for duplicates).
        let mut batch = Batch::with_history();
        batch.add(change(&keyed, 9, Op::Create, None, Some(row(5, "gone", None))));
        batch.add(change(&keyed, 10, Op::Truncate, None, None));
        batch.add(change(&keyed, 11, Op::Create, None, Some(row(1, "again", None))));
        batch.add(change(&keyed, 12, Op::Create, None, Some(row(2, "again", None))));
        target.write("g", &batch).await.unwrap();
        assert_eq!(
            rows(&reader, "SELECT concat_ws('|', id, a) FROM t ORDER BY id"),
            ["1|again", "2|again"]
        );
        assert_eq!(
            rows(
                &reader,
                "SELECT string_agg(__op, '' ORDER BY __offset) FROM t__history WHERE __offset >= 9"
            ),
            ["ctcc"]
        );
        drop(reader);
        drop(target);
        drop(connect);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
