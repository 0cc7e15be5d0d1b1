//! The engines `ferry` reads and writes: for `validate`, the tables a
//! source includes, a table's columns, and its rows as text, in key order,
//! streamed; for `replay` and `migrate`, an apply group's offsets stored in a
//! target. PostgreSQL and MySQL/MariaDB are sources and targets, a DuckDB
//! file (`duckdb.rs`) a target only.
//!
//! Each engine prints every value as text in UTC (`canon.rs` evens out the
//! rest) and sorts keys so that both sides agree on one order: numbers by
//! value, everything else bytewise (PostgreSQL `COLLATE "C"`, MySQL's binary
//! cast), which is how `canon::compare_keys` orders them too.

pub mod duckdb;

use ferry_apply::target::{BARRIERS_TABLE, OFFSETS_TABLE};
use ferry_capture::filter::TableFilter;
use ferry_core::config::SecretUrl;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

/// Rows handed from a reader to the comparison at once.
pub const BATCH: usize = 2_000;

/// A database `ferry validate` reads.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres {
        url: SecretUrl,
        config: Box<ferry_core::pg::PgConfig>,
    },
    Mysql {
        url: SecretUrl,
        opts: ferry_core::mysql::MysqlConfig,
        database: String,
    },
    Duckdb(duckdb::Duck),
}

/// Ferry's own tables in a target.
fn ferrys(id: &TableId) -> bool {
    id.table.starts_with("_ferry_")
}

impl Db {
    /// The database at `url`, by its scheme; `flag` names it in errors.
    pub fn parse(url: &str, flag: &'static str) -> Result<Db, String> {
        if url.starts_with("duckdb:") {
            return duckdb::Duck::parse(url, flag).map(Db::Duckdb);
        }
        let parsed = SecretUrl::parse(url).map_err(|e| format!("{flag}: {e}"))?;
        match parsed.expose().scheme() {
            "postgres" | "postgresql" => Ok(Db::Postgres {
                config: Box::new(ferry_core::pg::config(&parsed, flag).map_err(|e| e.to_string())?),
                url: parsed,
            }),
            "mysql" | "mariadb" => {
                let mut text = parsed.expose().clone();
                let _ = text.set_scheme("mysql");
                let opts = ferry_core::mysql::opts(&SecretUrl::parse(text.as_str()).map_err(|e| e.to_string())?, flag)
                    .map_err(|e| e.to_string())?;
                // As the driver decodes it: `my%20db` is `my db`.
                let database = opts.opts.db_name().unwrap_or_default().to_owned();
                if database.is_empty() {
                    return Err(format!(
                        "{flag} {parsed} names no database: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
                    ));
                }
                Ok(Db::Mysql {
                    url: parsed,
                    opts,
                    database,
                })
            }
            other => Err(format!(
                "{flag} {parsed}: ferry reads postgres://, mysql:// and duckdb:// databases, not {other}://"
            )),
        }
    }

    /// The engine's name, for people.
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Postgres { .. } => "PostgreSQL",
            Db::Mysql { .. } => "MySQL",
            Db::Duckdb(_) => "DuckDB",
        }
    }

    /// Where apply puts a source table in this database.
    pub fn default_schema(&self) -> &str {
        match self {
            Db::Postgres { .. } => "public",
            Db::Mysql { database, .. } => database,
            Db::Duckdb(_) => ferry_apply::duckdb::DEFAULT_SCHEMA,
        }
    }

    pub(crate) async fn pg(
        config: &ferry_core::pg::PgConfig,
        url: &SecretUrl,
    ) -> Result<tokio_postgres::Client, String> {
        let client = ferry_core::pg::connect(config, url).await.map_err(|e| e.to_string())?;
        client
            .batch_execute(
                "SET TimeZone = 'UTC'; SET DateStyle = ISO; SET IntervalStyle = iso_8601; \
                 SET extra_float_digits = 3; SET bytea_output = hex",
            )
            .await
            .map_err(|e| ferry_core::pg::pg_message(&e))?;
        Ok(client)
    }

    pub(crate) async fn my(
        opts: &ferry_core::mysql::MysqlConfig,
        url: &SecretUrl,
    ) -> Result<mysql_async::Conn, String> {
        ferry_core::mysql::connect(opts, url).await.map_err(|e| e.to_string())
    }

    /// The error of a DuckDB file named as a source.
    pub fn not_a_source(&self) -> String {
        let name = match self {
            Db::Duckdb(duck) => duck.path.display().to_string(),
            _ => self.engine().to_owned(),
        };
        format!("--source {name}: a DuckDB file is a target only; the source is postgres:// or mysql://")
    }

    /// The tables of this (source) database that `filter` includes; a MySQL
    /// source's are those of its URL's database.
    pub async fn tables(&self, filter: &TableFilter) -> Result<Vec<TableId>, String> {
        let tables = match self {
            Db::Duckdb(_) => return Err(self.not_a_source()),
            Db::Postgres { url, config } => {
                let client = Self::pg(config, url).await?;
                ferry_capture::postgres::validate::included_tables(&client, filter)
                    .await
                    .map_err(|e| ferry_core::pg::pg_message(&e))?
            }
            Db::Mysql { url, opts, database } => {
                let mut conn = Self::my(opts, url).await?;
                ferry_capture::mysql::validate::included_tables(&mut conn, filter)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .filter(|t| &t.schema == database)
                    .collect()
            }
        };
        Ok(tables.into_iter().filter(|t| !ferrys(t)).collect())
    }

    /// The source's estimate of each table's rows, from its statistics (no
    /// scan), by `schema.table`; for the live view of `ferry migrate`.
    pub async fn row_estimates(&self) -> Result<std::collections::BTreeMap<String, i64>, String> {
        Ok(match self {
            Db::Postgres { url, config } => Self::pg(config, url)
                .await?
                .query(
                    "SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')",
                    &[],
                )
                .await
                .map_err(|e| ferry_core::pg::pg_message(&e))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Db::Mysql { url, opts, database } => Self::my(opts, url)
                .await?
                .exec::<(String, Option<i64>), _, _>(
                    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), CAST(TABLE_ROWS AS SIGNED)
                     FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                    (database,),
                )
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(t, n)| (t, n.unwrap_or(0)))
                .collect(),
            Db::Duckdb(_) => return Err(self.not_a_source()),
        })
    }

    /// A (source) table's columns, types and key.
    pub async fn meta(&self, id: &TableId) -> Result<TableMeta, String> {
        match self {
            Db::Duckdb(_) => Err(self.not_a_source()),
            Db::Postgres { url, config } => {
                let client = Self::pg(config, url).await?;
                ferry_capture::postgres::catalog::table_meta(&client, id)
                    .await
                    .map_err(|e| format!("table {id}: {e}"))
            }
            Db::Mysql { url, opts, .. } => {
                let mut conn = Self::my(opts, url).await?;
                let (_, meta) = ferry_capture::mysql::validate::table(&mut conn, id)
                    .await
                    .map_err(|e| format!("table {id}: {e}"))?;
                Ok(meta)
            }
        }
    }

    /// The column names of (target) table `id`, or `None` if it does not exist.
    pub async fn column_names(&self, id: &TableId) -> Result<Option<Vec<String>>, String> {
        let names: Vec<String> = match self {
            Db::Postgres { url, config } => Self::pg(config, url)
                .await?
                .query(
                    "SELECT column_name::text FROM information_schema.columns
                     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                    &[&id.schema, &id.table],
                )
                .await
                .map_err(|e| ferry_core::pg::pg_message(&e))?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Db::Mysql { url, opts, .. } => Self::my(opts, url)
                .await?
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (&id.schema, &id.table),
                )
                .await
                .map_err(|e| e.to_string())?,
            Db::Duckdb(duck) => duck.column_names(id).await?,
        };
        Ok((!names.is_empty()).then_some(names))
    }

    /// The `SELECT` of `columns` (of the source's types) of table `id`, in
    /// key order (`key`: positions in `columns`).
    fn select(&self, id: &TableId, columns: &[Column], key: &[usize]) -> String {
        let numeric = |c: &Column| {
            matches!(
                c.data_type,
                DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Decimal { .. }
                    | DataType::Numeric
                    | DataType::Float32
                    | DataType::Float64
            )
        };
        let (list, order, table): (Vec<String>, Vec<String>, String) = match self {
            Db::Postgres { .. } => {
                let q = |c: &Column| ferry_core::pg::quote_ident(&c.name);
                (
                    columns.iter().map(|c| format!("{}::text", q(c))).collect(),
                    key.iter()
                        .map(|&i| {
                            let c = &columns[i];
                            if numeric(c) {
                                q(c)
                            } else {
                                format!("{}::text COLLATE \"C\"", q(c))
                            }
                        })
                        .collect(),
                    ferry_core::pg::quoted(id),
                )
            }
            Db::Mysql { .. } => {
                let q = |c: &Column| ferry_core::mysql::quote_ident(&c.name);
                (
                    columns
                        .iter()
                        .map(|c| match c.data_type {
                            DataType::Bytes => format!("HEX({})", q(c)),
                            // FLOAT prints six digits; its double is exact.
                            DataType::Float32 | DataType::Float64 => format!("CAST({} AS DOUBLE)", q(c)),
                            _ => format!("CAST({} AS CHAR)", q(c)),
                        })
                        .collect(),
                    key.iter()
                        .map(|&i| {
                            let c = &columns[i];
                            match c.data_type {
                                _ if numeric(c) => q(c),
                                DataType::Bytes => q(c),
                                _ => format!("CAST(CAST({} AS CHAR) AS BINARY)", q(c)),
                            }
                        })
                        .collect(),
                    ferry_core::mysql::quoted(id),
                )
            }
            Db::Duckdb(_) => duckdb::select_parts(id, columns, key, numeric),
        };
        let order = if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", order.join(", "))
        };
        // Output columns are named apart, so ORDER BY reads the columns
        // themselves, not their text.
        let list: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS ferry_c{i}"))
            .collect();
        format!("SELECT {} FROM {table}{order}", list.join(", "))
    }

    /// Streams the rows of `columns` of table `id` in key order to `tx`, in
    /// batches; an error is sent as the last message.
    pub async fn scan(
        &self,
        id: &TableId,
        columns: &[Column],
        key: &[usize],
        tx: mpsc::Sender<Result<Vec<Vec<Option<String>>>, String>>,
    ) {
        let sql = self.select(id, columns, key);
        let result = match self {
            Db::Postgres { url, config } => scan_pg(config, url, &sql, &tx).await,
            Db::Mysql { url, opts, .. } => scan_my(opts, url, &sql, &tx).await,
            Db::Duckdb(duck) => duck.scan(sql, tx.clone()).await,
        };
        if let Err(e) = result {
            let _ = tx.send(Err(format!("table {id}: {e}"))).await;
        }
    }
}

type Rows = mpsc::Sender<Result<Vec<Vec<Option<String>>>, String>>;

async fn scan_pg(config: &ferry_core::pg::PgConfig, url: &SecretUrl, sql: &str, tx: &Rows) -> Result<(), String> {
    let client = Db::pg(config, url).await?;
    let rows = client
        .query_raw(sql, std::iter::empty::<&str>())
        .await
        .map_err(|e| ferry_core::pg::pg_message(&e))?;
    futures::pin_mut!(rows);
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| ferry_core::pg::pg_message(&e))?;
        batch.push((0..row.len()).map(|i| row.get::<_, Option<String>>(i)).collect());
        if batch.len() == BATCH && tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(())
}

async fn scan_my(opts: &ferry_core::mysql::MysqlConfig, url: &SecretUrl, sql: &str, tx: &Rows) -> Result<(), String> {
    let mut conn = Db::my(opts, url).await?;
    let mut result = conn.query_iter(sql).await.map_err(|e| e.to_string())?;
    let mut batch = Vec::with_capacity(BATCH);
    if let Some(mut rows) = result.stream::<mysql_async::Row>().await.map_err(|e| e.to_string())? {
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| e.to_string())?;
            batch.push(
                row.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::NULL => None,
                        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
                    })
                    .collect(),
            );
            if batch.len() == BATCH && tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(())
}

/// One partition of an apply group's stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOffset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

impl Db {
    /// The offsets apply group `group` stored in this (target) database.
    pub async fn group_offsets(&self, group: &str) -> Result<Vec<StoredOffset>, String> {
        let none = |e: String| {
            if e.contains("42P01") || e.contains("1146") || e.contains("doesn't exist") {
                format!(
                    "the target holds no Ferry offsets (no table {OFFSETS_TABLE}): is it the target of ferry-apply?"
                )
            } else {
                e
            }
        };
        let rows: Vec<(String, i32, i64)> = match self {
            Db::Postgres { url, config } => {
                let sql = ferry_apply::target::sql::load_offsets(OFFSETS_TABLE, ferry_apply::target::sql::numbered);
                Self::pg(config, url)
                    .await?
                    .query(&sql, &[&group])
                    .await
                    .map_err(|e| none(ferry_core::pg::pg_message(&e)))?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
            Db::Mysql { url, opts, .. } => {
                let sql = ferry_apply::target::sql::load_offsets(OFFSETS_TABLE, ferry_apply::target::sql::question);
                Self::my(opts, url)
                    .await?
                    .exec(sql, (group,))
                    .await
                    .map_err(|e| none(e.to_string()))?
            }
            Db::Duckdb(duck) => return duck.group_offsets(group).await,
        };
        let mut offsets: Vec<StoredOffset> = rows
            .into_iter()
            .map(|(topic, partition, next_offset)| StoredOffset {
                topic,
                partition,
                next_offset,
            })
            .collect();
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }

    /// Stores `offsets` for `group` and forgets the group's truncate
    /// barriers (the truncates it will read again), in one transaction.
    pub async fn move_group(&self, group: &str, offsets: &[StoredOffset]) -> Result<(), String> {
        let update = |p: fn(usize) -> String| {
            format!(
                "UPDATE {OFFSETS_TABLE} SET next_offset = {}, batch_first_offset = {} \
                 WHERE consumer_group = {} AND topic = {} AND kafka_partition = {}",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            )
        };
        let forget = |p: fn(usize) -> String| format!("DELETE FROM {BARRIERS_TABLE} WHERE consumer_group = {}", p(1));
        match self {
            Db::Duckdb(duck) => {
                let (update, forget) = (
                    update(ferry_apply::target::sql::question),
                    forget(ferry_apply::target::sql::question),
                );
                duck.move_group(group, offsets, update, forget).await
            }
            Db::Postgres { url, config } => {
                let mut client = Self::pg(config, url).await?;
                let tx = client.transaction().await.map_err(|e| ferry_core::pg::pg_message(&e))?;
                let sql = update(ferry_apply::target::sql::numbered);
                for o in offsets {
                    tx.execute(&sql, &[&o.next_offset, &o.next_offset, &group, &o.topic, &o.partition])
                        .await
                        .map_err(|e| ferry_core::pg::pg_message(&e))?;
                }
                tx.execute(&forget(ferry_apply::target::sql::numbered), &[&group])
                    .await
                    .map_err(|e| ferry_core::pg::pg_message(&e))?;
                tx.commit().await.map_err(|e| ferry_core::pg::pg_message(&e))
            }
            Db::Mysql { url, opts, .. } => {
                let mut conn = Self::my(opts, url).await?;
                let mut tx = conn
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let sql = update(ferry_apply::target::sql::question);
                for o in offsets {
                    tx.exec_drop(&sql, (o.next_offset, o.next_offset, group, &o.topic, o.partition))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tx.exec_drop(forget(ferry_apply::target::sql::question), (group,))
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        }
    }
}
