//! MySQL and MariaDB as a target: `ferry-apply-mysql`.
//!
//! A batch is one transaction:
//!
//! ```text
//!  before:     CREATE TABLE / ALTER TABLE ADD COLUMN as the schema needs   (DDL commits by itself in MySQL)
//!  START TRANSACTION
//!  per table:  DELETE FROM t (if the batch holds a truncate: TRUNCATE would commit)
//!              DELETE FROM t WHERE (k1, k2) IN ((...), ...)             keys whose last state is a delete
//!              INSERT INTO t (...) VALUES (...), ...                     rows whose last state is a row, one
//!                ON DUPLICATE KEY UPDATE c = VALUES(c), ...               statement per set of unchanged columns
//!              (keyless tables: multi-row INSERTs; a delete removes one equal row, LIMIT 1)
//!  offsets:    per partition INSERT INTO _ferry_offsets ... ON DUPLICATE KEY UPDATE next_offset =
//!                IF(next_offset <= batch start, new, NULL)               NULL fails: the compare-and-set
//!  COMMIT
//! ```
//!
//! Values are SQL literals in the text protocol (see [`value`]), several
//! rows a statement, each statement at most a quarter of the server's
//! `max_allowed_packet` (and 8 MiB). Every session pins what the values rely
//! on: UTC (`time_zone = '+00:00'`), utf8mb4, `READ COMMITTED` (no gap locks
//! between writers of different partitions), and a strict `sql_mode` so that a
//! value that does not fit is an error, never a quiet change.
//!
//! Ferry's offsets table, `_ferry_offsets` in the target's database, holds one
//! row per consumer group, topic and partition: the next offset to read. Its
//! update is the compare-and-set described in [`crate::target`]: a partition
//! whose stored offset is past the batch's start makes the update set NULL
//! into a NOT NULL column, which strict mode refuses.

pub mod schema;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferry_core::config::SecretUrl;
use ferry_core::meta::TableId;
use ferry_core::mysql::MysqlConfig;
pub use ferry_core::mysql::{quote_ident, quoted, server_code};
use ferry_core::value::Datum;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::batch::{Barrier, Batch, RowChange, RowState, TableChanges};
use crate::target::{
    key_text, offsets_of, sql, Connect, Plans, Rejected, Target, TargetError, BARRIERS_TABLE, OFFSETS_TABLE,
};

use self::schema::Server;
use self::value::{quote_str, write_literal, Fit};

/// What every session sets besides UTC and utf8mb4 ([`ferry_core::mysql::opts`]):
/// strict and exact, no backslash escapes in string literals (see [`value`]).
pub const SESSION: &[&str] = &[
    "SET sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO,NO_ZERO_DATE,\
     NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_BACKSLASH_ESCAPES', \
     explicit_defaults_for_timestamp = ON",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
];

/// The largest statement sent, whatever the server allows.
const MAX_STATEMENT: usize = 8 << 20;

/// What the pipeline does about a MySQL error on `table`.
pub(crate) fn classify(e: &mysql_async::Error, table: &TableId) -> TargetError {
    let mysql_async::Error::Server(server) = e else {
        // The connection broke, or the client could not speak to the server.
        return TargetError::Unavailable(format!("table {table}: {e}"));
    };
    let message = format!("table {table}: {} (MySQL error {})", server.message, server.code);
    match server.code {
        // Deadlock, lock wait timeout, too many connections, shutting down,
        // killed or interrupted, read-only (a failover), disk or table full,
        // table dropped or changed meanwhile (made again on retry).
        1213 | 1205 | 1040 | 1053 | 1927 | 1317 | 1290 | 1792 | 1836 | 1021 | 1114 | 1146 | 1412 | 1020 | 1637
        | 1180 | 1181 | 2006 | 2013 => TargetError::Unavailable(message),
        // A row the target refuses: duplicate unique key, too long, out of
        // range, incorrect value, NULL into NOT NULL, foreign keys, check
        // constraints, invalid JSON or geometry, bad characters.
        1062 | 1586 | 1406 | 1264 | 1366 | 1292 | 1048 | 1452 | 1451 | 1364 | 1265 | 1690 | 3819 | 4025 | 1367
        | 1411 | 1416 | 3140 | 4038 | 1300 | 1138 | 1263 | 1365 | 1441 | 1153 => TargetError::Rejected(message),
        _ => TargetError::Permanent(message),
    }
}

/// Connects to one MySQL or MariaDB target.
#[derive(Debug)]
pub struct MyConnect {
    url: SecretUrl,
    opts: MysqlConfig,
    database: String,
}

impl MyConnect {
    /// Checks `--target` (`mysql://USER:PASSWORD@HOST:PORT/DATABASE`).
    pub fn new(url: SecretUrl) -> Result<Self, String> {
        let opts = ferry_core::mysql::opts(&url, "--target").map_err(|e| e.to_string())?;
        let database = opts
            .opts
            .db_name()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                format!(
                    "--target {url} names no database: mysql://USER:PASSWORD@HOST:PORT/DATABASE \
                     (the database source tables go to)"
                )
            })?
            .to_owned();
        let opts = opts.with_init(SESSION.iter().map(|s| s.to_string()));
        Ok(Self { url, opts, database })
    }
}

impl Connect for MyConnect {
    type Target = MyTarget;

    async fn connect(&self) -> Result<MyTarget, TargetError> {
        let offsets = TableId::new(self.database.clone(), OFFSETS_TABLE);
        let mut conn = ferry_core::mysql::connect(&self.opts, &self.url)
            .await
            .map_err(|e| TargetError::connecting(&e, e.is_retryable()))?;
        let err = |e: mysql_async::Error| classify(&e, &offsets);
        let (version, packet): (String, u64) = conn
            .query_first("SELECT VERSION(), @@max_allowed_packet")
            .await
            .map_err(err)?
            .unwrap_or_default();
        let server = Server::parse(&version);
        let collation = server.collation();
        let names = "consumer_group VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL, kafka_partition INT NOT NULL";
        let barriers = TableId::new(self.database.clone(), BARRIERS_TABLE);
        for sql in [
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({names}, next_offset BIGINT NOT NULL,
                   batch_first_offset BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                   PRIMARY KEY (consumer_group, topic, kafka_partition))
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}",
                quoted(&offsets)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({names}, barrier VARCHAR(64) NOT NULL,
                   arrived_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                   PRIMARY KEY (consumer_group, topic, barrier, kafka_partition))
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}",
                quoted(&barriers)
            ),
        ] {
            conn.query_drop(sql).await.map_err(err)?;
        }
        let packet = usize::try_from(packet).unwrap_or(MAX_STATEMENT);
        Ok(MyTarget {
            conn,
            server,
            max_statement: (packet / 4).clamp(16 << 10, MAX_STATEMENT),
            offsets,
            barriers,
            plans: HashMap::new(),
        })
    }
}

/// How a table's rows are written: its quoted name and, per column of the
/// schema version, the target column's quoted name and what its values need.
#[derive(Debug)]
struct Plan {
    name: String,
    columns: Vec<(String, Fit)>,
    /// Indexes (in the schema's columns) of the key.
    key: Vec<usize>,
}

impl Plan {
    fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }

    /// Appends `(v1, v2, ...)` of `row`'s `columns`, or why a value cannot go in.
    fn tuple(&self, row: &[Datum], columns: &[usize], out: &mut String) -> Result<(), TargetError> {
        out.push('(');
        for (j, &c) in columns.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            let (name, fit) = &self.columns[c];
            write_literal(&row[c], *fit, out)
                .map_err(|reason| TargetError::Rejected(format!("column {name}: {reason}")))?;
        }
        out.push(')');
        Ok(())
    }

    /// `ON DUPLICATE KEY UPDATE` of every column but the key and `unchanged`.
    fn on_duplicate(&self, unchanged: &[usize]) -> String {
        let set: Vec<String> = (0..self.columns.len())
            .filter(|i| !self.key.contains(i) && !unchanged.contains(i))
            .map(|i| format!("{0} = VALUES({0})", self.columns[i].0))
            .collect();
        let set = if set.is_empty() {
            // Nothing to change: the key set to itself.
            let k = &self.columns[self.key[0]].0;
            format!("{k} = {k}")
        } else {
            set.join(", ")
        };
        format!(" ON DUPLICATE KEY UPDATE {set}")
    }

    /// Deletes one row of a keyless table equal to `row`.
    fn delete_one(&self, row: &[Datum]) -> Result<String, TargetError> {
        let mut sql = format!("DELETE FROM {} WHERE ", self.name);
        for (i, (name, _)) in self.columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(" AND ");
            }
            sql.push_str(name);
            sql.push_str(" <=> ");
            self.tuple(row, &[i], &mut sql)?;
        }
        sql.push_str(" LIMIT 1");
        Ok(sql)
    }
}

/// Multi-row statements of one shape, each under a size limit.
struct Statements<'a> {
    conn: &'a mut Conn,
    table: &'a TableId,
    head: String,
    tail: String,
    max: usize,
    sql: String,
    rows: usize,
}

impl<'a> Statements<'a> {
    fn new(conn: &'a mut Conn, table: &'a TableId, head: String, tail: String, max: usize) -> Self {
        Self {
            conn,
            table,
            sql: head.clone(),
            head,
            tail,
            max,
            rows: 0,
        }
    }

    /// Adds a row that `write` appends (`(...)`), sending what is gathered first
    /// if the row would make it too long.
    async fn push(
        &mut self,
        row: &mut String,
        write: impl FnOnce(&mut String) -> Result<(), TargetError>,
    ) -> Result<(), TargetError> {
        row.clear();
        write(row)?;
        if self.rows > 0 && self.sql.len() + row.len() + self.tail.len() + 2 > self.max {
            self.flush().await?;
        }
        if self.rows > 0 {
            self.sql.push_str(", ");
        }
        self.sql.push_str(row);
        self.rows += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TargetError> {
        if self.rows == 0 {
            return Ok(());
        }
        self.sql.push_str(&self.tail);
        let sql = std::mem::replace(&mut self.sql, self.head.clone());
        self.rows = 0;
        self.conn.query_drop(sql).await.map_err(|e| classify(&e, self.table))
    }
}

/// Writes `changes` of `table` (a subset of its batch, in order).
async fn write_rows(
    conn: &mut Conn,
    max: usize,
    plan: &Plan,
    table: &TableChanges,
    changes: &[&RowChange],
) -> Result<(), TargetError> {
    let target = &table.target;
    let all: Vec<usize> = (0..plan.columns.len()).collect();
    let insert = format!("INSERT INTO {} ({}) VALUES ", plan.name, plan.names());
    let mut row = String::new();
    if !plan.key.is_empty() {
        let keys: Vec<&str> = plan.key.iter().map(|&k| plan.columns[k].0.as_str()).collect();
        let head = format!("DELETE FROM {} WHERE ({}) IN (", plan.name, keys.join(", "));
        let mut deletes = Statements::new(conn, target, head, ")".into(), max);
        for c in changes {
            if let RowState::Delete { row: values } = &c.state {
                deletes.push(&mut row, |out| plan.tuple(values, &plan.key, out)).await?;
            }
        }
        deletes.flush().await?;
        let mut upserts: BTreeMap<&[usize], Vec<&[Datum]>> = BTreeMap::new();
        for c in changes {
            if let RowState::Upsert { row, unchanged } = &c.state {
                upserts.entry(unchanged).or_default().push(row);
            }
        }
        for (unchanged, rows) in upserts {
            let mut statements = Statements::new(conn, target, insert.clone(), plan.on_duplicate(unchanged), max);
            for values in rows {
                statements.push(&mut row, |out| plan.tuple(values, &all, out)).await?;
            }
            statements.flush().await?;
        }
        return Ok(());
    }
    // Keyless: runs of inserts, each delete on its own, in order.
    let mut inserts = Statements::new(conn, target, insert, String::new(), max);
    for c in changes {
        match &c.state {
            RowState::Upsert { row: values, .. } => {
                inserts.push(&mut row, |out| plan.tuple(values, &all, out)).await?;
            }
            RowState::Delete { row: values } => {
                inserts.flush().await?;
                let sql = plan.delete_one(values)?;
                inserts.conn.query_drop(sql).await.map_err(|e| classify(&e, target))?;
            }
        }
    }
    inserts.flush().await
}

/// One connection to a MySQL or MariaDB target.
#[derive(Debug)]
pub struct MyTarget {
    conn: Conn,
    server: Server,
    max_statement: usize,
    offsets: TableId,
    barriers: TableId,
    /// Per target table and schema version (the codec's address, stable for a session).
    plans: Plans<Plan>,
}

impl MyTarget {
    async fn sql(&mut self, sql: String, table: &TableId) -> Result<(), TargetError> {
        self.conn.query_drop(sql).await.map_err(|e| classify(&e, table))
    }

    /// The plans of the batch's tables, making each target table fit its schema
    /// version first (before the transaction: DDL commits by itself).
    async fn plans(&mut self, batch: &Batch) -> Result<Vec<Arc<Plan>>, TargetError> {
        let mut plans = Vec::with_capacity(batch.tables.len());
        for table in batch.tables.values() {
            let key = table.plan_key();
            if let Some(plan) = self.plans.get(&key) {
                plans.push(Arc::clone(plan));
                continue;
            }
            let meta = table.codec.meta();
            let existing = schema::ensure(
                &mut self.conn,
                &table.target,
                meta,
                table.codec.connector(),
                self.server,
            )
            .await?;
            let columns = meta
                .columns
                .iter()
                .map(|c| {
                    let t = existing.iter().find(|t| t.name == c.name).ok_or_else(|| {
                        TargetError::Permanent(format!(
                            "table {} has no column {:?} after adding it",
                            table.target, c.name
                        ))
                    })?;
                    Ok((quote_ident(&c.name), t.fit()))
                })
                .collect::<Result<_, TargetError>>()?;
            let plan = Arc::new(Plan {
                name: quoted(&table.target),
                columns,
                key: meta.key.clone(),
            });
            self.plans.insert(key, Arc::clone(&plan));
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Rolls back whatever is open; a table may have changed under the plans.
    async fn abandon(&mut self) {
        self.plans.clear();
        // A broken connection has nothing open; the session reconnects.
        let _ = self.conn.query_drop("ROLLBACK").await;
    }

    /// Stores the arrival of the batch's partition at `barrier`; true if it is
    /// the last one (the barrier is then marked done). Arrivals take turns on
    /// a lock row per barrier (partition -2), so exactly one partition is the last.
    async fn reach(&mut self, group: &str, batch: &Batch, barrier: &Barrier) -> Result<bool, TargetError> {
        let Some((topic, partition)) = batch.offsets.keys().next() else {
            return Ok(false);
        };
        let table = quoted(&self.barriers);
        let mark = |partition: i32| {
            format!(
                "INSERT INTO {table} (consumer_group, topic, barrier, kafka_partition) VALUES ({}, {}, {}, {partition})
                 ON DUPLICATE KEY UPDATE kafka_partition = kafka_partition",
                quote_str(group),
                quote_str(topic),
                quote_str(&barrier.id)
            )
        };
        let barriers = self.barriers.clone();
        self.sql(mark(-2), &barriers).await?;
        self.sql(mark(*partition), &barriers).await?;
        let arrived: Option<i64> = self
            .conn
            .exec_first(
                sql::barrier_arrivals(&table, sql::question),
                (group, &**topic, &barrier.id),
            )
            .await
            .map_err(|e| classify(&e, &barriers))?;
        let last = arrived.unwrap_or(0) >= i64::from(barrier.partitions);
        if last {
            self.sql(mark(-1), &barriers).await?;
        }
        Ok(last)
    }

    /// The compare-and-set of each partition's offset.
    async fn store_offsets(&mut self, group: &str, batch: &Batch) -> Result<(), TargetError> {
        for ((topic, partition), (first, next)) in &batch.offsets {
            let sql = format!(
                "INSERT INTO {} (consumer_group, topic, kafka_partition, next_offset, batch_first_offset, updated_at)
                 VALUES ({}, {}, {partition}, {next}, {first}, NOW(6))
                 ON DUPLICATE KEY UPDATE
                   next_offset = IF(next_offset <= VALUES(batch_first_offset), VALUES(next_offset), NULL),
                   batch_first_offset = VALUES(batch_first_offset), updated_at = VALUES(updated_at)",
                quoted(&self.offsets),
                quote_str(group),
                quote_str(topic)
            );
            match self.conn.query_drop(sql).await {
                Ok(()) => {}
                Err(e) if server_code(&e) == Some(1048) => {
                    return Err(TargetError::Conflict {
                        topic: topic.to_string(),
                        partition: *partition,
                    })
                }
                Err(e) => return Err(classify(&e, &self.offsets)),
            }
        }
        Ok(())
    }

    /// Applies each change alone under a savepoint; the rows the target refuses.
    async fn try_rows(&mut self, batch: &Batch, plans: &[Arc<Plan>]) -> Result<Vec<Rejected>, TargetError> {
        let offsets = self.offsets.clone();
        let mut rejected = Vec::new();
        for (table, plan) in batch.tables.values().zip(plans) {
            for change in table.changes() {
                self.sql("SAVEPOINT ferry_row".into(), &offsets).await?;
                match write_rows(&mut self.conn, self.max_statement, plan, table, &[change]).await {
                    Ok(()) => self.sql("RELEASE SAVEPOINT ferry_row".into(), &offsets).await?,
                    Err(TargetError::Rejected(reason)) => {
                        rejected.push(Rejected {
                            at: change.at.clone(),
                            table: table.target.to_string(),
                            key: key_text(table, change, |d, _| {
                                let mut out = String::new();
                                write_literal(d, Fit::Any, &mut out).ok().map(|()| out)
                            }),
                            reason,
                        });
                        self.sql("ROLLBACK TO SAVEPOINT ferry_row".into(), &offsets).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(rejected)
    }
}

impl Target for MyTarget {
    fn default_schema(&self) -> &str {
        &self.offsets.schema
    }

    async fn load_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), i64>, TargetError> {
        let rows: Vec<(String, i32, i64)> = self
            .conn
            .exec(sql::load_offsets(&quoted(&self.offsets), sql::question), (group,))
            .await
            .map_err(|e| classify(&e, &self.offsets))?;
        Ok(offsets_of(rows.into_iter().map(|(t, p, n)| ((t, p), n)), partitions))
    }

    async fn transact(&mut self, group: &str, batch: &Batch, barrier: Option<&Barrier>) -> Result<bool, TargetError> {
        let plans = self.plans(batch).await?;
        let offsets = self.offsets.clone();
        self.sql("START TRANSACTION".into(), &offsets).await?;
        let result = async {
            let done = match barrier {
                Some(b) => self.reach(group, batch, b).await?,
                None => true,
            };
            for (table, plan) in batch.tables.values().zip(&plans) {
                if table.truncate.is_some() && done {
                    self.sql(format!("DELETE FROM {}", plan.name), &table.target).await?;
                }
                let changes: Vec<&RowChange> = table.changes().collect();
                write_rows(&mut self.conn, self.max_statement, plan, table, &changes).await?;
            }
            self.store_offsets(group, batch).await?;
            self.sql("COMMIT".into(), &offsets).await?;
            Ok(done)
        }
        .await;
        if result.is_err() {
            self.abandon().await;
        }
        result
    }

    async fn open_barriers(&mut self, group: &str, topic: &str, partition: i32) -> Result<Vec<String>, TargetError> {
        self.conn
            .exec(
                sql::open_barriers(&quoted(&self.barriers), sql::question),
                (group, topic, partition),
            )
            .await
            .map_err(|e| classify(&e, &self.barriers))
    }

    async fn barrier_done(&mut self, group: &str, topic: &str, id: &str) -> Result<bool, TargetError> {
        let row: Option<i32> = self
            .conn
            .exec_first(
                sql::barrier_done(&quoted(&self.barriers), sql::question),
                (group, topic, id),
            )
            .await
            .map_err(|e| classify(&e, &self.barriers))?;
        Ok(row.is_some())
    }

    async fn find_rejected(&mut self, batch: &Batch) -> Result<Vec<Rejected>, TargetError> {
        self.plans.clear();
        let plans = self.plans(batch).await?;
        let offsets = self.offsets.clone();
        self.sql("START TRANSACTION".into(), &offsets).await?;
        let result = self.try_rows(batch, &plans).await;
        self.abandon().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let t = TableId::new("db", "t");
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        assert!(matches!(classify(&server(1213), &t), TargetError::Unavailable(_)));
        assert!(matches!(classify(&server(1406), &t), TargetError::Rejected(_)));
        assert!(matches!(classify(&server(1142), &t), TargetError::Permanent(_)));
        let e = classify(&server(1062), &t).to_string();
        assert_eq!(e, "table db.t: m (MySQL error 1062)");
    }

    #[test]
    fn upserts_leave_unchanged_columns_alone() {
        let plan = Plan {
            name: "`db`.`t`".into(),
            columns: vec![
                ("`id`".into(), Fit::Any),
                ("`a`".into(), Fit::Any),
                ("`big`".into(), Fit::Any),
            ],
            key: vec![0],
        };
        assert_eq!(
            plan.on_duplicate(&[]),
            " ON DUPLICATE KEY UPDATE `a` = VALUES(`a`), `big` = VALUES(`big`)"
        );
        assert_eq!(plan.on_duplicate(&[2]), " ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)");
        assert_eq!(plan.on_duplicate(&[1, 2]), " ON DUPLICATE KEY UPDATE `id` = `id`");
        let row = [Datum::Int(1), Datum::Text("x'".into()), Datum::Null];
        assert_eq!(
            plan.delete_one(&row).unwrap(),
            "DELETE FROM `db`.`t` WHERE `id` <=> (1) AND `a` <=> ('x''') AND `big` <=> (NULL) LIMIT 1"
        );
    }
}
