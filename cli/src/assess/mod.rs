//! `ferry assess`: before a migration, what the DMS wizards tell: is the
//! source ready (the capture's own validation: settings, privileges, keys),
//! which tables and how big, which types are converted and into what, which
//! columns may carry large values, how long the full load should take, and
//! what Ferry does not carry over (views, routines, triggers, sequences'
//! values, secondary indexes, foreign keys).
//!
//! One module per source engine gathers the facts; this one renders them.

pub mod mysql;
pub mod postgres;

use ferry_capture::filter::TableFilter;
use ferry_core::meta::{Column, DataType, TableMeta};
use serde::Serialize;

use crate::db::Db;

/// Rows per second a full load runs at end to end, as measured on a 2-core
/// machine (apply is the slower half; README, Performance).
pub const LOAD_ROWS_PER_SECOND: u64 = 70_000;

/// One source table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableFacts {
    pub table: String,
    pub rows_estimate: u64,
    pub bytes: u64,
    pub primary_key: bool,
    /// Columns whose values may be large (text, bytes, JSON, documents).
    pub large_columns: Vec<String>,
}

/// What a source engine's module gathers.
#[derive(Debug)]
pub struct Facts {
    pub engine: &'static str,
    /// The capture's validation, one line per problem.
    pub problems: Vec<String>,
    pub metas: Vec<TableMeta>,
    pub tables: Vec<TableFacts>,
    pub not_migrated: Vec<String>,
    pub excess_privileges: Vec<String>,
}

/// A source type and what it becomes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conversion {
    pub source_type: String,
    pub ferry_type: String,
    /// The type a new target column gets (with `--target`).
    pub target_type: Option<String>,
    pub columns: u64,
}

/// The whole assessment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Assessment {
    pub engine: String,
    /// The capture's validation: each problem with its fix; empty when ready.
    pub problems: Vec<String>,
    pub tables: Vec<TableFacts>,
    pub conversions: Vec<Conversion>,
    /// Objects Ferry does not carry over, each with what to do.
    pub not_migrated: Vec<String>,
    /// What the user may do beyond what capture needs, each with how to take it away.
    pub excess_privileges: Vec<String>,
    pub total_rows: u64,
    pub total_bytes: u64,
    pub estimated_load_seconds: u64,
}

impl Assessment {
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether values of `column` may be large.
fn large(column: &Column) -> bool {
    let t = column.source_type.to_ascii_lowercase();
    matches!(column.data_type, DataType::Bytes)
        || ["text", "json", "xml", "blob", "geometry"]
            .iter()
            .any(|k| t.contains(k))
        || t == "character varying"
}

/// The columns of `meta` whose values may be large.
fn large_columns(meta: &TableMeta) -> Vec<String> {
    meta.columns
        .iter()
        .filter(|c| large(c))
        .map(|c| c.name.clone())
        .collect()
}

/// What to do about `n` foreign keys.
fn foreign_keys(n: i64) -> String {
    format!(
        "{n} foreign keys: not created by apply (rows of one transaction may land in another order); ferry migrate from PostgreSQL into PostgreSQL adds them at the end, otherwise add them after cutover"
    )
}

/// Counts each (source type, Ferry type, target type) of `tables`.
fn conversions(tables: &[TableMeta], target: Option<&Db>, same_engine: bool) -> Vec<Conversion> {
    let mut out: Vec<Conversion> = Vec::new();
    for meta in tables {
        for (i, column) in meta.columns.iter().enumerate() {
            let key = meta.key.contains(&i);
            let target_type = target.map(|t| match t {
                _ if same_engine => column.source_type.clone(),
                Db::Postgres { .. } => ferry_apply::postgres::schema::pg_type(column.data_type),
                Db::Mysql { .. } => {
                    ferry_apply::mysql::schema::closest_type(column, key).unwrap_or_else(|e| format!("(refused: {e})"))
                }
                Db::Duckdb(_) => ferry_apply::duckdb::schema::column_type(column),
            });
            let conversion = Conversion {
                source_type: column.source_type.clone(),
                ferry_type: column.data_type.to_string(),
                target_type,
                columns: 1,
            };
            match out.iter_mut().find(|c| {
                (&c.source_type, &c.ferry_type, &c.target_type)
                    == (&conversion.source_type, &conversion.ferry_type, &conversion.target_type)
            }) {
                Some(c) => c.columns += 1,
                None => out.push(conversion),
            }
        }
    }
    out.sort();
    out
}

/// Assesses `source` (and, with `target`, what its columns become there;
/// a PostgreSQL source for capture through `publication`).
pub async fn assess(
    source: &Db,
    target: Option<&Db>,
    filter: &TableFilter,
    publication: &str,
) -> Result<Assessment, String> {
    let Facts {
        engine,
        problems,
        metas,
        tables: facts,
        not_migrated,
        excess_privileges,
    } = match source {
        Db::Postgres { url, config } => postgres::facts(config, url, filter, publication).await?,
        Db::Mysql { url, opts, .. } => mysql::facts(opts, url, source.default_schema(), filter).await?,
        Db::Duckdb(_) => return Err(source.not_a_source()),
    };
    let same_engine = matches!(
        (source, target),
        (Db::Postgres { .. }, Some(Db::Postgres { .. })) | (Db::Mysql { .. }, Some(Db::Mysql { .. }))
    );
    let total_rows = facts.iter().map(|t| t.rows_estimate).sum();
    Ok(Assessment {
        engine: engine.to_owned(),
        problems,
        conversions: conversions(&metas, target, same_engine),
        not_migrated,
        excess_privileges,
        total_bytes: facts.iter().map(|t| t.bytes).sum(),
        estimated_load_seconds: total_rows / LOAD_ROWS_PER_SECOND,
        total_rows,
        tables: facts,
    })
}

/// A number of bytes for people.
fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// The assessment as a report for people.
pub fn render(a: &Assessment) -> String {
    let mut out = format!("Source: {}\n\n", a.engine);
    out.push_str("Readiness for change data capture:\n");
    if a.ready() {
        out.push_str("  ready: every setting, privilege and table key capture needs is in place\n");
    }
    for p in &a.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    if !a.excess_privileges.is_empty() {
        out.push_str("\nPrivileges beyond what capture needs (least privilege):\n");
    }
    for p in &a.excess_privileges {
        out.push_str(&format!("  - {p}\n"));
    }
    out.push_str(&format!(
        "\nTables: {} ({} rows, {} estimated)\n",
        a.tables.len(),
        a.total_rows,
        size(a.total_bytes)
    ));
    for t in &a.tables {
        out.push_str(&format!(
            "  {:<40} {:>12} rows {:>12}{}\n",
            t.table,
            t.rows_estimate,
            size(t.bytes),
            if t.primary_key {
                ""
            } else {
                "  NO PRIMARY KEY: updates and deletes need every column to find a row"
            }
        ));
        if !t.large_columns.is_empty() {
            out.push_str(&format!(
                "      may hold large values: {}\n",
                t.large_columns.join(", ")
            ));
        }
    }
    out.push_str("\nTypes and how they are carried (source type -> Ferry type -> new target column):\n");
    for c in &a.conversions {
        out.push_str(&format!(
            "  {:<32} -> {:<16}{}  ({} columns)\n",
            c.source_type,
            c.ferry_type,
            c.target_type.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default(),
            c.columns
        ));
    }
    out.push_str(&format!(
        "\nEstimated full load: about {} s at {} rows/s (measured end to end on a 2-core machine)\n",
        a.estimated_load_seconds, LOAD_ROWS_PER_SECOND
    ));
    out.push_str("\nNot migrated by Ferry (left to the operator):\n");
    if a.not_migrated.is_empty() {
        out.push_str("  nothing\n");
    }
    for n in &a.not_migrated {
        out.push_str(&format!("  - {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::meta::TableId;

    #[test]
    fn conversions_are_counted_per_source_and_target_type() {
        let meta = TableMeta::new(
            TableId::new("shop", "t"),
            vec![
                Column::new("id", DataType::Int32, "int(11)").not_null(),
                Column::new("a", DataType::Boolean, "tinyint(1)"),
                Column::new("b", DataType::Boolean, "tinyint(1)"),
                Column::new("j", DataType::Text, "json"),
            ],
            &["id"],
        )
        .unwrap();
        let target = Db::parse("postgres://u@h/db", "--target").unwrap();
        let c = conversions(&[meta], Some(&target), false);
        let boolean = c.iter().find(|c| c.source_type == "tinyint(1)").unwrap();
        assert_eq!((boolean.target_type.as_deref(), boolean.columns), (Some("boolean"), 2));
        assert!(large(&Column::new("j", DataType::Text, "json")));
        assert!(!large(&Column::new("id", DataType::Int32, "int(11)")));
        assert_eq!(size(1536), "1.5 KiB");
    }
}
