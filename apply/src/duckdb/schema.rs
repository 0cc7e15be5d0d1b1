//! Target tables from Avro schemas: the mirror table of a source table and its
//! change history, created when absent, given the columns a new schema version
//! brings, and refusing changes that would lose data.
//!
//! Each [`DataType`] has one DuckDB type (see [`column_type`]; the README has
//! the table), chosen so that every value arrives unchanged: decimals keep
//! their precision and scale (past DuckDB's 38 digits, and for PostgreSQL's
//! unconstrained `numeric`, the exact text), timestamps stay microseconds,
//! MySQL's signed `TIME` is an `INTERVAL`. A mirror table keeps the source's
//! NOT NULL but declares no primary key (see [`ensure_mirror`]); a history
//! table (`<table>__history`) has only nullable source columns, as a delete
//! or a truncate leaves most of them empty. Columns added later are nullable: the rows already there have
//! no value for them.
//!
//! Tables are made to fit in their own transaction, before the batch's, by
//! the writer whose turn it is (see the parent module: writers take turns).

use duckdb::Connection;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};

use crate::target::TargetError;

use super::{classify, quote_ident, quoted};

/// DuckDB's widest `DECIMAL`.
const MAX_DECIMAL_DIGITS: u32 = 38;

/// The columns every history table starts with, before the source's own.
pub const HISTORY_COLUMNS: &[(&str, &str)] = &[
    ("__op", "VARCHAR NOT NULL"),
    ("__source_ts", "TIMESTAMPTZ"),
    ("__topic", "VARCHAR NOT NULL"),
    ("__partition", "INTEGER NOT NULL"),
    ("__offset", "BIGINT NOT NULL"),
    ("__tx_id", "VARCHAR"),
    ("__unchanged", "VARCHAR"),
];

/// The history table of `table`: `<table>__history`, in the same schema.
pub fn history_table(table: &TableId) -> TableId {
    TableId::new(table.schema.clone(), format!("{}__history", table.table))
}

/// The DuckDB type of a source column.
pub fn column_type(column: &Column) -> String {
    match column.data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal { precision, scale, .. } if precision <= MAX_DECIMAL_DIGITS && scale <= precision => {
            format!("DECIMAL({precision},{scale})")
        }
        // Wider than DuckDB's DECIMAL, or each value with its own scale: the
        // exact decimal text (NaN and infinities included).
        DataType::Decimal { .. } | DataType::Numeric | DataType::Text => "VARCHAR".into(),
        DataType::Bytes => "BLOB".into(),
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Duration => "INTERVAL".into(),
        DataType::Timestamp => "TIMESTAMP".into(),
        DataType::TimestampTz => "TIMESTAMPTZ".into(),
        DataType::Uuid => "UUID".into(),
    }
}

/// A column as the target has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// DuckDB's name of its type: `DECIMAL(10,2)`, `VARCHAR`, `TIMESTAMP WITH TIME ZONE`.
    pub data_type: String,
    /// `DECIMAL`'s precision and scale.
    pub decimal: Option<(u32, u32)>,
}

/// The target's columns of `table`, or `None` if it has no such table.
pub fn columns(conn: &Connection, table: &TableId) -> Result<Option<Vec<TargetColumn>>, TargetError> {
    let err = |e| classify(&e, table);
    let mut statement = conn
        .prepare_cached(
            "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns
             WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?
             ORDER BY ordinal_position",
        )
        .map_err(err)?;
    let rows = statement
        .query_map([&table.schema, &table.table], |r| {
            let data_type: String = r.get(1)?;
            let precision: Option<i64> = r.get(2)?;
            let scale: Option<i64> = r.get(3)?;
            let small = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
            Ok(TargetColumn {
                name: r.get(0)?,
                decimal: data_type
                    .starts_with("DECIMAL")
                    .then(|| small(precision).zip(small(scale)))
                    .flatten(),
                data_type,
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok((!rows.is_empty()).then_some(rows))
}

/// Makes the mirror table of `meta` fit it: created if absent, missing columns
/// added. Returns the table's columns.
///
/// No `PRIMARY KEY`: DuckDB's index takes a key deleted and inserted again in
/// one transaction for a duplicate (a truncate and the same keys again in one
/// batch failed so), and every batch deletes a key before inserting it, so
/// keys stay unique without it.
pub fn ensure_mirror(conn: &Connection, target: &TableId, meta: &TableMeta) -> Result<Vec<TargetColumn>, TargetError> {
    let mut defs = Vec::new();
    for c in &meta.columns {
        let null = if c.nullable { "" } else { " NOT NULL" };
        defs.push(format!("{} {}{null}", quote_ident(&c.name), column_type(c)));
    }
    ensure(conn, target, meta, defs)
}

/// Makes the history table of `mirror` fit `meta` (see [`HISTORY_COLUMNS`]).
pub fn ensure_history(conn: &Connection, mirror: &TableId, meta: &TableMeta) -> Result<Vec<TargetColumn>, TargetError> {
    let mut defs: Vec<String> = HISTORY_COLUMNS
        .iter()
        .map(|(name, ty)| format!("{} {ty}", quote_ident(name)))
        .collect();
    for c in &meta.columns {
        defs.push(format!("{} {}", quote_ident(&c.name), column_type(c)));
    }
    ensure(conn, &history_table(mirror), meta, defs)
}

/// Creates `target` with `defs` if absent, else adds the columns of `meta`
/// it lacks and checks its decimals are wide enough.
fn ensure(
    conn: &Connection,
    target: &TableId,
    meta: &TableMeta,
    defs: Vec<String>,
) -> Result<Vec<TargetColumn>, TargetError> {
    let name = quoted(target);
    let ddl = |e| match classify(&e, target) {
        TargetError::Rejected(m) => TargetError::Permanent(m),
        other => other,
    };
    match columns(conn, target)? {
        Some(existing) => {
            let mut added = false;
            for c in &meta.columns {
                match existing.iter().find(|t| t.name == c.name) {
                    None => {
                        conn.execute_batch(&format!(
                            "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}",
                            quote_ident(&c.name),
                            column_type(c)
                        ))
                        .map_err(ddl)?;
                        tracing::info!(table = %target, column = %c.name, "added a column the source added");
                        added = true;
                    }
                    Some(t) => {
                        let widen = |p, s| {
                            format!(
                                "ALTER TABLE {name} ALTER {} TYPE DECIMAL({p},{s})",
                                quote_ident(&c.name)
                            )
                        };
                        crate::target::check_decimal(target, c, t.decimal, "DECIMAL", widen)?;
                    }
                }
            }
            if !added {
                return Ok(existing);
            }
        }
        None => {
            conn.execute_batch(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE IF NOT EXISTS {name} ({})",
                quote_ident(&target.schema),
                defs.join(", ")
            ))
            .map_err(ddl)?;
            tracing::info!(table = %target, "created the target table");
        }
    }
    columns(conn, target)?
        .ok_or_else(|| TargetError::Unavailable(format!("table {target} vanished while it was made to fit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_duckdb_type_that_keeps_its_values() {
        let dec = |precision, scale| DataType::Decimal {
            precision,
            scale,
            special: false,
        };
        for (data_type, want) in [
            (DataType::Boolean, "BOOLEAN"),
            (DataType::Int16, "SMALLINT"),
            (DataType::Int32, "INTEGER"),
            (DataType::Int64, "BIGINT"),
            (DataType::Float32, "FLOAT"),
            (DataType::Float64, "DOUBLE"),
            (dec(10, 2), "DECIMAL(10,2)"),
            (dec(38, 38), "DECIMAL(38,38)"),
            (dec(39, 2), "VARCHAR"),
            (DataType::Numeric, "VARCHAR"),
            (DataType::Text, "VARCHAR"),
            (DataType::Bytes, "BLOB"),
            (DataType::Date, "DATE"),
            (DataType::Time, "TIME"),
            (DataType::Duration, "INTERVAL"),
            (DataType::Timestamp, "TIMESTAMP"),
            (DataType::TimestampTz, "TIMESTAMPTZ"),
            (DataType::Uuid, "UUID"),
        ] {
            assert_eq!(column_type(&Column::new("c", data_type, "x")), want, "{data_type}");
        }
        assert_eq!(
            history_table(&TableId::new("main", "orders")),
            TableId::new("main", "orders__history")
        );
    }
}
