//! A DuckDB file as a target of `ferry`: `duckdb://PATH` (`duckdb:///abs/x.duckdb`,
//! `duckdb://./rel.duckdb` or `duckdb://rel.duckdb`).
//!
//! DuckDB lets one process open a file to write and nobody else meanwhile.
//! So a file is opened once per process ([`Duck::connect`], the very
//! [`DuckConnect`] `ferry-apply-duckdb` uses) and `ferry migrate` hands that
//! one instance to its apply and reads progress and validates through
//! connections cloned from it. `ferry validate` of a file that a running
//! `ferry-apply-duckdb` holds says so and names what to stop.
//!
//! DuckDB calls block; they run on the blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use ferry_apply::duckdb::{DuckConnect, DuckFile, DuckOptions, DEFAULT_SCHEMA};
use ferry_apply::target::{sql, OFFSETS_TABLE};
use ferry_core::meta::TableId;

use super::{Rows, StoredOffset, BATCH};

/// A DuckDB file, opened on first use and shared by every clone.
#[derive(Debug, Clone)]
pub struct Duck {
    pub path: PathBuf,
    open: Arc<Mutex<Option<Arc<DuckConnect>>>>,
}

impl Duck {
    /// The file a `duckdb://` URL names; `flag` names it in errors.
    pub fn parse(url: &str, flag: &str) -> Result<Duck, String> {
        let path = url
            .strip_prefix("duckdb://")
            .ok_or_else(|| format!("{flag} {url}: a DuckDB file is duckdb://PATH"))?;
        let file = DuckFile::try_from(path.to_owned()).map_err(|e| format!("{flag} {url}: {e}"))?;
        Ok(Duck {
            path: file.0,
            open: Arc::default(),
        })
    }

    /// The file's one database instance in this process, opened (and
    /// created) by the first call.
    pub fn connect(&self) -> Result<Arc<DuckConnect>, String> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = open.as_ref() {
            return Ok(Arc::clone(db));
        }
        let db = Arc::new(DuckConnect::open(DuckFile(self.path.clone()), DuckOptions::default())?);
        *open = Some(Arc::clone(&db));
        Ok(db)
    }

    /// Runs `work` on a new connection, on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(Connection) -> Result<T, duckdb::Error> + Send + 'static,
    ) -> Result<T, String> {
        let conn = self.connect()?.connection().map_err(|e| e.to_string())?;
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || work(conn))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{path}: {e}"))
    }

    /// The column names of table `id`, or none if it has no such table.
    pub async fn column_names(&self, id: &TableId) -> Result<Vec<String>, String> {
        let (schema, table) = (id.schema.clone(), id.table.clone());
        self.with(move |conn| {
            let mut statement = conn.prepare(
                "SELECT column_name FROM information_schema.columns
                 WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            )?;
            let names = statement.query_map([schema, table], |row| row.get(0))?;
            names.collect()
        })
        .await
    }

    /// Streams the rows `sql` selects (every column as text) to `tx` in batches.
    pub async fn scan(&self, sql: String, tx: Rows) -> Result<(), String> {
        self.with(move |conn| {
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([])?;
            let width = rows.as_ref().map_or(0, |s| s.column_count());
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(row) = rows.next()? {
                batch.push(
                    (0..width)
                        .map(|i| row.get::<_, Option<String>>(i))
                        .collect::<Result<_, _>>()?,
                );
                if batch.len() == BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return Ok(());
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
            Ok(())
        })
        .await
    }

    /// The offsets apply group `group` stored in the file (none before its first batch).
    pub async fn group_offsets(&self, group: &str) -> Result<Vec<StoredOffset>, String> {
        let group = group.to_owned();
        let offsets = TableId::new(DEFAULT_SCHEMA, OFFSETS_TABLE);
        if self.column_names(&offsets).await?.is_empty() {
            return Err(format!(
                "{} holds no Ferry offsets (no table {OFFSETS_TABLE}): is it the target of ferry-apply-duckdb?",
                self.path.display()
            ));
        }
        self.with(move |conn| {
            let mut statement = conn.prepare(&sql::load_offsets(OFFSETS_TABLE, sql::question))?;
            let rows = statement.query_map([group], |row| {
                Ok(StoredOffset {
                    topic: row.get(0)?,
                    partition: row.get(1)?,
                    next_offset: row.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stores `offsets` for `group` and forgets its truncate barriers, in one transaction.
    pub async fn move_group(
        &self,
        group: &str,
        offsets: &[StoredOffset],
        update: String,
        forget: String,
    ) -> Result<(), String> {
        let (group, offsets) = (group.to_owned(), offsets.to_vec());
        self.with(move |mut conn| {
            let tx = conn.transaction()?;
            for o in &offsets {
                tx.execute(
                    &update,
                    duckdb::params![o.next_offset, o.next_offset, group, o.topic, o.partition],
                )?;
            }
            tx.execute(&forget, [&group])?;
            tx.commit()
        })
        .await
    }
}

/// The `SELECT` list, `ORDER BY` list and table of a validation scan: each
/// column as text the way `canon.rs` reads it, keys ordered as
/// `canon::compare_keys` orders them.
pub fn select_parts(
    id: &TableId,
    columns: &[ferry_core::meta::Column],
    key: &[usize],
    numeric: impl Fn(&ferry_core::meta::Column) -> bool,
) -> (Vec<String>, Vec<String>, String) {
    use ferry_core::meta::DataType;
    let q = |c: &ferry_core::meta::Column| ferry_apply::duckdb::quote_ident(&c.name);
    let list = columns
        .iter()
        .map(|c| match c.data_type {
            DataType::Bytes => format!("hex({})", q(c)),
            // Microseconds: INTERVAL's own text is `1 day 02:00:00`.
            DataType::Duration => format!("CAST(CAST(round(epoch({}) * 1000000) AS BIGINT) AS VARCHAR)", q(c)),
            // In UTC whatever the session's time zone.
            DataType::TimestampTz => format!("strftime(make_timestamp(epoch_us({})), '%Y-%m-%d %H:%M:%S.%f')", q(c)),
            _ => format!("CAST({} AS VARCHAR)", q(c)),
        })
        .collect();
    let order = key
        .iter()
        .map(|&i| {
            let c = &columns[i];
            match c.data_type {
                // A decimal too wide for DuckDB is kept as its text.
                DataType::Decimal { .. } | DataType::Numeric => format!("TRY_CAST({} AS DOUBLE), {0}", q(c)),
                _ if numeric(c) => q(c),
                DataType::Bytes => q(c),
                _ => format!("CAST({} AS VARCHAR)", q(c)),
            }
        })
        .collect();
    (list, order, ferry_apply::duckdb::quoted(id))
}
