//! PostgreSQL as a target: `ferry-apply-postgres`.
//!
//! A batch is one transaction:
//!
//! ```text
//!  per table:  TRUNCATE (if the batch holds one)
//!              COPY keys INTO a staging table; DELETE ... USING it     keys whose last state is a delete
//!              COPY rows INTO the table                                 keys the batch created (see below)
//!              COPY rows INTO a staging table; INSERT ... SELECT ...   other rows whose last state is a row,
//!                ON CONFLICT (key) DO UPDATE SET ...                    one merge per set of unchanged columns
//!              (keyless tables: COPY straight in; a delete removes one equal row)
//!  offsets:    INSERT INTO _ferry_offsets ... ON CONFLICT DO UPDATE ... WHERE next_offset <= batch start
//!  COMMIT
//! ```
//!
//! Values go in `COPY`'s binary form where every column copied has one Ferry
//! writes (see [`binary`]: the server reads a wide row in a third less time),
//! else in its text form (see [`text`]), so that every type — built-in,
//! array, enum, domain, range — goes through its own input function; one
//! round trip per table whatever the batch size. The staging tables are
//! temporary tables of the session with the target's column types and no
//! constraints (an update's unchanged columns are NULL there), created on first
//! use. The other candidate, one `INSERT ... SELECT FROM unnest($1::text[],
//! ...)` with every column a text array cast on the server, was 15-20% slower
//! in `scripts/bench apply-paths` (inserts and updates of a 17-column table).
//!
//! A key whose first event in the batch is an insert (`op = "c"`) did not
//! exist before it, by the source's log, so its row is copied straight into
//! the table: no staging, no conflict check (an `INSERT ... ON CONFLICT` costs
//! about twice a `COPY` into the table). That holds only while the target
//! follows the log, so it is done only where a unique index on the key would
//! refuse a second row; a key already there (a target loaded beforehand,
//! offsets reset) fails the batch, which is written again with that table's
//! new rows merged like the others, as they are from then on.
//!
//! Ferry's offsets table, `_ferry_offsets` in the target's default schema,
//! holds one row per consumer group, topic and partition: the next offset to
//! read. Its update is the compare-and-set described in [`crate::target`].

pub mod binary;
pub mod schema;
pub mod text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ferry_core::config::SecretUrl;
use ferry_core::meta::TableId;
use ferry_core::pg::{pg_message, quote_ident, quoted, ConnectError, PgConfig};
use ferry_core::pgbinary::Binary;
use ferry_core::value::Datum;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

use crate::batch::{Barrier, Batch, RowChange, RowState, TableChanges};
use crate::target::{key_text, offsets_of, sql, Connect, Plans, Rejected, Target, TargetError};

use self::schema::TargetColumn;
use self::text::{copy_text, pg_text};

pub use crate::target::{BARRIERS_TABLE, OFFSETS_TABLE};

/// Settings every apply session pins: UTC for values written without a zone,
/// ISO dates for input that could be read either way.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO";

/// What the pipeline does about a PostgreSQL error on `table`.
pub(crate) fn classify(e: &tokio_postgres::Error, table: &TableId) -> TargetError {
    let Some(db) = e.as_db_error() else {
        return TargetError::Unavailable(e.to_string());
    };
    let message = format!("table {table}: {}", pg_message(e));
    let code = db.code().code();
    match &code[..2] {
        // Connection, resources (disk full), operator intervention, rollbacks
        // (serialization, deadlock): they pass.
        "08" | "53" | "57" | "40" => TargetError::Unavailable(message),
        // Data exceptions and constraint violations: a row is refused.
        "22" | "23" => TargetError::Rejected(message),
        _ => match code {
            // Lock not available, object in use, table dropped meanwhile (it is
            // created again on retry).
            "55P03" | "55006" | "42P01" => TargetError::Unavailable(message),
            // A value of the wrong type for the column.
            "42804" => TargetError::Rejected(message),
            _ => TargetError::Permanent(message),
        },
    }
}

/// Connects to one PostgreSQL target.
#[derive(Debug)]
pub struct PgConnect {
    url: SecretUrl,
    config: PgConfig,
}

impl PgConnect {
    pub fn new(url: SecretUrl) -> Result<Self, ConnectError> {
        let mut config = ferry_core::pg::config(&url, "--target")?;
        config
            .session
            .options(SESSION_OPTIONS)
            .application_name("ferry-apply-postgres");
        Ok(Self { url, config })
    }
}

impl Connect for PgConnect {
    type Target = PgTarget;

    async fn connect(&self) -> Result<PgTarget, TargetError> {
        let client = ferry_core::pg::connect(&self.config, &self.url)
            .await
            .map_err(|e| TargetError::connecting(&e, e.is_retryable()))?;
        let offsets_table = TableId::new(String::new(), OFFSETS_TABLE);
        let schema: Option<String> = client
            .query_one("SELECT current_schema()::text", &[])
            .await
            .map_err(|e| classify(&e, &offsets_table))?
            .get(0);
        let schema = schema.ok_or_else(|| {
            TargetError::Permanent(format!(
                "the target {} has no current schema (its search_path names none that exists): \
                 create one or set search_path",
                self.url
            ))
        })?;
        let offsets = TableId::new(schema.clone(), OFFSETS_TABLE);
        ensure_table(
            &client,
            &offsets,
            "next_offset bigint NOT NULL,
             batch_first_offset bigint NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer_group, topic, kafka_partition)",
        )
        .await?;
        let barriers = TableId::new(schema.clone(), BARRIERS_TABLE);
        ensure_table(
            &client,
            &barriers,
            "barrier text NOT NULL,
             arrived_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer_group, topic, barrier, kafka_partition)",
        )
        .await?;
        Ok(PgTarget {
            client,
            default_schema: schema,
            offsets,
            barriers,
            plans: HashMap::new(),
            statements: HashMap::new(),
            stages: HashSet::new(),
            merged: HashSet::new(),
        })
    }
}

/// Creates one of Ferry's own tables, keyed by group, topic and partition,
/// with `rest` of its columns and its key.
///
/// Two processes starting together (members of one group) both create them:
/// `CREATE TABLE IF NOT EXISTS` is not safe against that (one of them fails
/// with `type "..." already exists`), so the statement runs under a
/// transaction-scoped advisory lock, in the one implicit transaction of a
/// multi-statement query.
async fn ensure_table(client: &Client, table: &TableId, rest: &str) -> Result<(), TargetError> {
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext('ferry: own tables'));
             CREATE TABLE IF NOT EXISTS {} (
                consumer_group text NOT NULL,
                topic text NOT NULL,
                kafka_partition integer NOT NULL,
                {rest})",
            quoted(table)
        ))
        .await
        .map_err(|e| match classify(&e, table) {
            // Another process created it at the same moment.
            TargetError::Rejected(m) => TargetError::Unavailable(m),
            other => other,
        })
}

/// How a table's rows are written: its name and, per column of the schema
/// version, the target column's quoted name and the type text is cast to
/// (for the one statement that takes values as parameters).
#[derive(Debug)]
struct Plan {
    name: String,
    columns: Vec<(String, String)>,
    /// Indexes (in the schema's columns) of the key.
    key: Vec<usize>,
    /// A unique index is on exactly the key (see [`schema::unique_on`]).
    unique_key: bool,
    /// Per column of the schema version, its values' binary form, if they have one.
    forms: Vec<Option<Binary>>,
}

impl Plan {
    fn new(
        target: &TableId,
        table: &TableChanges,
        existing: &[TargetColumn],
        unique_key: bool,
    ) -> Result<Self, TargetError> {
        let meta = table.codec.meta();
        let (columns, forms) = meta
            .columns
            .iter()
            .map(|c| {
                let t = existing.iter().find(|t| t.name == c.name).ok_or_else(|| {
                    TargetError::Permanent(format!("table {target} has no column {:?} after adding it", c.name))
                })?;
                Ok((
                    (quote_ident(&c.name), t.cast.clone()),
                    binary::binary_form(c.data_type, &t.cast),
                ))
            })
            .collect::<Result<(Vec<_>, Vec<_>), TargetError>>()?;
        Ok(Self {
            name: quoted(target),
            columns,
            key: meta.key.clone(),
            unique_key,
            forms,
        })
    }

    fn names(&self, columns: &[usize]) -> String {
        columns
            .iter()
            .map(|&i| self.columns[i].0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The session's staging table for `columns` of this table: same types,
    /// no constraints (an update's unchanged columns are NULL there).
    fn stage(&self, columns: &[usize]) -> (String, String) {
        let names = self.names(columns);
        let hash = format!("{} {names}", self.name)
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let stage = format!("ferry_stage_{hash:016x}");
        let create = format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {names} FROM {} WITH NO DATA",
            self.name
        );
        (stage, create)
    }

    /// Rows staged in `stage` (all columns) into the table: inserted, or
    /// updated by key leaving the `unchanged` columns as they are.
    fn merge(&self, stage: &str, unchanged: &[usize]) -> String {
        let all: Vec<usize> = (0..self.columns.len()).collect();
        let names = self.names(&all);
        let key = self.names(&self.key);
        let set: Vec<_> = all
            .iter()
            .filter(|i| !self.key.contains(i) && !unchanged.contains(i))
            .map(|&i| format!("{0} = EXCLUDED.{0}", self.columns[i].0))
            .collect();
        let action = if set.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        format!(
            "INSERT INTO {} ({names}) SELECT {names} FROM {stage} ON CONFLICT ({key}) {action}",
            self.name
        )
    }

    /// The rows whose keys are staged in `stage`, deleted.
    fn delete_staged(&self, stage: &str) -> String {
        let on: Vec<_> = self
            .key
            .iter()
            .map(|&k| format!("t.{0} = k.{0}", self.columns[k].0))
            .collect();
        format!("DELETE FROM {} t USING {stage} k WHERE {}", self.name, on.join(" AND "))
    }

    /// One row of a keyless table equal to the old row, compared as the
    /// target prints each value (every type has a text form, not every type
    /// has equality).
    fn delete_one(&self) -> String {
        let on: Vec<_> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, cast))| format!("{name}::text IS NOT DISTINCT FROM (${}::text::{cast})::text", i + 1))
            .collect();
        format!(
            "DELETE FROM {0} WHERE ctid = (SELECT ctid FROM {0} WHERE {1} LIMIT 1)",
            self.name,
            on.join(" AND ")
        )
    }
}

/// One connection to a PostgreSQL target.
#[derive(Debug)]
pub struct PgTarget {
    client: Client,
    default_schema: String,
    offsets: TableId,
    barriers: TableId,
    /// Per target table and schema version (the codec's address, stable for a session).
    plans: Plans<Plan>,
    statements: HashMap<String, Statement>,
    stages: HashSet<String>,
    /// Tables where a key the log said was new was there already: their new
    /// rows are merged for the rest of the session.
    merged: HashSet<TableId>,
}

/// The writes of one transaction, apart from the connection's caches so both
/// can be borrowed at once.
struct Writes<'a, 't> {
    tx: &'a Transaction<'t>,
    statements: &'a mut HashMap<String, Statement>,
    /// Staging tables this session has (dropped with a failed transaction).
    stages: &'a mut HashSet<String>,
    merged: &'a mut HashSet<TableId>,
    /// Whether rows of keys the batch created may be copied straight in.
    insert_new: bool,
}

impl Writes<'_, '_> {
    async fn run(&mut self, sql: String, params: &[&(dyn ToSql + Sync)], table: &TableId) -> Result<u64, TargetError> {
        let statement = match self.statements.get(&sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.tx.prepare(&sql).await.map_err(|e| classify(&e, table))?;
                self.statements.insert(sql, s.clone());
                s
            }
        };
        self.tx
            .execute(&statement, params)
            .await
            .map_err(|e| classify(&e, table))
    }

    /// `COPY`s `rows` (their `columns`) into `into`: binary when every
    /// column and value has a binary form, else as text.
    async fn copy(
        &mut self,
        plan: &Plan,
        into: &str,
        rows: &[&[Datum]],
        columns: &[usize],
        table: &TableChanges,
    ) -> Result<(), tokio_postgres::Error> {
        use futures::SinkExt;
        let binary = columns
            .iter()
            .map(|&c| plan.forms[c])
            .collect::<Option<Vec<Binary>>>()
            .and_then(|forms| binary::copy_binary(rows, columns, &forms));
        let (format, data) = match binary {
            Some(data) => (" (FORMAT binary)", data),
            None => {
                let meta = table.codec.meta();
                let zones: Vec<bool> = columns
                    .iter()
                    .map(|&c| meta.columns[c].data_type == ferry_core::meta::DataType::TimestampTz)
                    .collect();
                ("", copy_text(rows, columns, &zones))
            }
        };
        let sink = self
            .tx
            .copy_in::<_, bytes::Bytes>(&format!("COPY {into} ({}) FROM STDIN{format}", plan.names(columns)))
            .await?;
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from(data)).await?;
        sink.as_mut().finish().await?;
        Ok(())
    }

    /// Stages `rows` (their `columns`) in the session's staging table, runs
    /// what `then` makes of its name, and empties it.
    async fn staged(
        &mut self,
        plan: &Plan,
        rows: &[&[Datum]],
        columns: &[usize],
        table: &TableChanges,
        then: impl FnOnce(&str) -> String,
    ) -> Result<(), TargetError> {
        let err = |e: tokio_postgres::Error| classify(&e, &table.target);
        let (stage, create) = plan.stage(columns);
        if !self.stages.contains(&stage) {
            self.tx.batch_execute(&create).await.map_err(err)?;
            self.stages.insert(stage.clone());
        }
        self.copy(plan, &stage, rows, columns, table).await.map_err(err)?;
        self.run(then(&stage), &[], &table.target).await?;
        self.tx.batch_execute(&format!("TRUNCATE {stage}")).await.map_err(err)?;
        Ok(())
    }

    /// Writes `changes` of `table` (a subset of its batch, in order).
    async fn rows(&mut self, plan: &Plan, table: &TableChanges, changes: &[&RowChange]) -> Result<(), TargetError> {
        let all: Vec<usize> = (0..plan.columns.len()).collect();
        if !plan.key.is_empty() {
            let deletes: Vec<&[Datum]> = changes
                .iter()
                .filter_map(|c| match &c.state {
                    RowState::Delete { row } => Some(row.as_slice()),
                    RowState::Upsert { .. } => None,
                })
                .collect();
            if !deletes.is_empty() {
                self.staged(plan, &deletes, &plan.key, table, |stage| plan.delete_staged(stage))
                    .await?;
            }
            let insert_new = self.insert_new && plan.unique_key && !self.merged.contains(&table.target);
            let mut new: Vec<&[Datum]> = Vec::new();
            let mut upserts: BTreeMap<&[usize], Vec<&[Datum]>> = BTreeMap::new();
            for c in changes {
                if let RowState::Upsert { row, unchanged } = &c.state {
                    if insert_new && c.new && unchanged.is_empty() {
                        new.push(row);
                    } else {
                        upserts.entry(unchanged).or_default().push(row);
                    }
                }
            }
            if !new.is_empty() {
                if let Err(e) = self.copy(plan, &plan.name, &new, &all, table).await {
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                        tracing::info!(table = %table.target, "a key the log says is new is in the target already: \
                            its new rows are merged from now on");
                        self.merged.insert(table.target.clone());
                    }
                    return Err(classify(&e, &table.target));
                }
            }
            for (unchanged, rows) in upserts {
                self.staged(plan, &rows, &all, table, |stage| plan.merge(stage, unchanged))
                    .await?;
            }
            return Ok(());
        }
        // Keyless: runs of inserts copied straight in, each delete on its own, in order.
        let mut inserts: Vec<&[Datum]> = Vec::new();
        for c in changes {
            match &c.state {
                RowState::Upsert { row, .. } => inserts.push(row),
                RowState::Delete { row } => {
                    if !inserts.is_empty() {
                        self.copy(plan, &plan.name, &inserts, &all, table)
                            .await
                            .map_err(|e| classify(&e, &table.target))?;
                        inserts.clear();
                    }
                    let meta = table.codec.meta();
                    let values: Vec<Option<String>> = row
                        .iter()
                        .zip(&meta.columns)
                        .map(|(d, c)| pg_text(d, c.data_type == ferry_core::meta::DataType::TimestampTz))
                        .collect();
                    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                    self.run(plan.delete_one(), &params, &table.target).await?;
                }
            }
        }
        if !inserts.is_empty() {
            self.copy(plan, &plan.name, &inserts, &all, table)
                .await
                .map_err(|e| classify(&e, &table.target))?;
        }
        Ok(())
    }
}

impl PgTarget {
    /// Writes `batch` in one transaction (see [`Target::transact`]).
    async fn attempt(&mut self, group: &str, batch: &Batch, barrier: Option<&Barrier>) -> Result<bool, TargetError> {
        let offsets = self.offsets.clone();
        let result = async {
            let tx = self.client.transaction().await.map_err(|e| classify(&e, &offsets))?;
            let done = match barrier {
                Some(b) => Self::reach(&tx, &self.barriers, group, batch, b).await?,
                None => true,
            };
            let mut fresh = Vec::new();
            let mut writes = Writes {
                tx: &tx,
                statements: &mut self.statements,
                stages: &mut self.stages,
                merged: &mut self.merged,
                insert_new: true,
            };
            for table in batch.tables.values() {
                let plan = Self::plan(&self.plans, writes.tx, table).await?;
                if table.truncate.is_some() && done {
                    writes
                        .tx
                        .batch_execute(&format!("TRUNCATE {}", plan.name))
                        .await
                        .map_err(|e| classify(&e, &table.target))?;
                }
                let changes: Vec<&RowChange> = table.changes().collect();
                writes.rows(&plan, table, &changes).await?;
                fresh.push((table.plan_key(), plan));
            }
            Self::store_offsets(&tx, &self.offsets, group, batch).await?;
            tx.commit().await.map_err(|e| classify(&e, &offsets))?;
            Ok((fresh, done))
        }
        .await;
        match result {
            Ok((fresh, done)) => {
                self.plans.extend(fresh);
                Ok(done)
            }
            Err(e) => {
                // The failed transaction may have taken DDL the plans relied
                // on, and the staging tables it created.
                self.plans.clear();
                self.stages.clear();
                Err(e)
            }
        }
    }

    /// The plan for `table`'s schema version, making the target table fit it.
    async fn plan(
        plans: &HashMap<(TableId, usize), Arc<Plan>>,
        tx: &Transaction<'_>,
        table: &TableChanges,
    ) -> Result<Arc<Plan>, TargetError> {
        let key = table.plan_key();
        if let Some(plan) = plans.get(&key) {
            return Ok(Arc::clone(plan));
        }
        let meta = table.codec.meta();
        let connector = table.codec.connector();
        let existing = schema::ensure(tx, &table.target, meta, connector).await?;
        let key: Vec<&str> = meta.key.iter().map(|&i| meta.columns[i].name.as_str()).collect();
        let unique_key = !key.is_empty() && schema::unique_on(tx, &table.target, &key).await?;
        Ok(Arc::new(Plan::new(&table.target, table, &existing, unique_key)?))
    }

    /// Stores the arrival of the batch's partition at `barrier`; true if it is
    /// the last one (the barrier is then marked done). Arrivals take turns on a
    /// lock per barrier, so exactly one partition is the last.
    async fn reach(
        tx: &Transaction<'_>,
        barriers: &TableId,
        group: &str,
        batch: &Batch,
        barrier: &Barrier,
    ) -> Result<bool, TargetError> {
        let err = |e: tokio_postgres::Error| classify(&e, barriers);
        let Some((topic, partition)) = batch.offsets.keys().next() else {
            return Ok(false);
        };
        let topic = topic.to_string();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("ferry barrier {group} {topic} {}", barrier.id)],
        )
        .await
        .map_err(err)?;
        let table = quoted(barriers);
        tx.execute(
            &format!(
                "INSERT INTO {table} (consumer_group, topic, barrier, kafka_partition) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING"
            ),
            &[&group, &topic, &barrier.id, partition],
        )
        .await
        .map_err(err)?;
        let arrived: i64 = tx
            .query_one(
                &sql::barrier_arrivals(&table, sql::numbered),
                &[&group, &topic, &barrier.id],
            )
            .await
            .map_err(err)?
            .get(0);
        let last = arrived >= i64::from(barrier.partitions);
        if last {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (consumer_group, topic, barrier, kafka_partition) VALUES ($1, $2, $3, -1)
                     ON CONFLICT DO NOTHING"
                ),
                &[&group, &topic, &barrier.id],
            )
            .await
            .map_err(err)?;
        }
        Ok(last)
    }

    async fn store_offsets(
        tx: &Transaction<'_>,
        offsets_table: &TableId,
        group: &str,
        batch: &Batch,
    ) -> Result<(), TargetError> {
        let (mut topics, mut partitions, mut next, mut first) = (vec![], vec![], vec![], vec![]);
        for ((topic, partition), (start, end)) in &batch.offsets {
            topics.push(topic.to_string());
            partitions.push(*partition);
            first.push(*start);
            next.push(*end);
        }
        let sql = format!(
            "INSERT INTO {0} AS o (consumer_group, topic, kafka_partition, next_offset, batch_first_offset, updated_at)
             SELECT $1, t, p, n, f, now() FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[]) AS v(t, p, n, f)
             ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE
               SET next_offset = EXCLUDED.next_offset, batch_first_offset = EXCLUDED.batch_first_offset,
                   updated_at = EXCLUDED.updated_at
               WHERE o.next_offset <= EXCLUDED.batch_first_offset
             RETURNING topic, kafka_partition",
            quoted(offsets_table)
        );
        let stored = tx
            .query(&sql, &[&group, &topics, &partitions, &next, &first])
            .await
            .map_err(|e| classify(&e, offsets_table))?;
        if stored.len() != topics.len() {
            let done: Vec<(String, i32)> = stored.iter().map(|r| (r.get(0), r.get(1))).collect();
            let (topic, partition) = topics
                .into_iter()
                .zip(partitions)
                .find(|tp| !done.contains(tp))
                .unwrap_or_default();
            return Err(TargetError::Conflict { topic, partition });
        }
        Ok(())
    }
}

impl Target for PgTarget {
    fn default_schema(&self) -> &str {
        &self.default_schema
    }

    async fn load_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), i64>, TargetError> {
        let rows = self
            .client
            .query(&sql::load_offsets(&quoted(&self.offsets), sql::numbered), &[&group])
            .await
            .map_err(|e| classify(&e, &self.offsets))?;
        Ok(offsets_of(
            rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))),
            partitions,
        ))
    }

    async fn transact(&mut self, group: &str, batch: &Batch, barrier: Option<&Barrier>) -> Result<bool, TargetError> {
        loop {
            let merged = self.merged.len();
            match self.attempt(group, batch, barrier).await {
                // A key the log says is new was there: again, merging that table's new rows.
                Err(_) if self.merged.len() > merged => continue,
                result => return result,
            }
        }
    }

    async fn open_barriers(&mut self, group: &str, topic: &str, partition: i32) -> Result<Vec<String>, TargetError> {
        let rows = self
            .client
            .query(
                &sql::open_barriers(&quoted(&self.barriers), sql::numbered),
                &[&group, &topic, &partition],
            )
            .await
            .map_err(|e| classify(&e, &self.barriers))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn barrier_done(&mut self, group: &str, topic: &str, id: &str) -> Result<bool, TargetError> {
        let row = self
            .client
            .query_opt(
                &sql::barrier_done(&quoted(&self.barriers), sql::numbered),
                &[&group, &topic, &id],
            )
            .await
            .map_err(|e| classify(&e, &self.barriers))?;
        Ok(row.is_some())
    }

    async fn find_rejected(&mut self, batch: &Batch) -> Result<Vec<Rejected>, TargetError> {
        let offsets = self.offsets.clone();
        self.plans.clear();
        let result = async {
            let tx = self.client.transaction().await.map_err(|e| classify(&e, &offsets))?;
            let mut writes = Writes {
                tx: &tx,
                statements: &mut self.statements,
                stages: &mut self.stages,
                merged: &mut self.merged,
                // Row by row, each merged: a new key already there is no rejected row.
                insert_new: false,
            };
            let mut rejected = Vec::new();
            for table in batch.tables.values() {
                let plan = Self::plan(&self.plans, writes.tx, table).await?;
                for change in table.changes() {
                    writes
                        .tx
                        .batch_execute("SAVEPOINT ferry_row")
                        .await
                        .map_err(|e| classify(&e, &offsets))?;
                    // A rolled-back row takes the staging table it created with it.
                    writes.stages.clear();
                    match writes.rows(&plan, table, &[change]).await {
                        Ok(()) => writes.tx.batch_execute("RELEASE SAVEPOINT ferry_row").await,
                        Err(TargetError::Rejected(reason)) => {
                            rejected.push(Rejected {
                                at: change.at.clone(),
                                table: table.target.to_string(),
                                key: key_text(table, change, |d, c| {
                                    pg_text(d, c.data_type == ferry_core::meta::DataType::TimestampTz)
                                }),
                                reason,
                            });
                            writes.tx.batch_execute("ROLLBACK TO SAVEPOINT ferry_row").await
                        }
                        Err(e) => return Err(e),
                    }
                    .map_err(|e| classify(&e, &offsets))?;
                }
            }
            tx.rollback().await.map_err(|e| classify(&e, &offsets))?;
            Ok(rejected)
        }
        .await;
        // Whatever it created was rolled back.
        self.stages.clear();
        result
    }
}
