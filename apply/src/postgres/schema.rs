//! Target tables from Avro schemas: create them when absent, add the columns a
//! new schema version brings, and refuse changes that would lose data.
//!
//! A PostgreSQL source's own column type (`ferry.source_type`) is used when the
//! target knows it (`numeric(12,4)`, `character varying(10)`, `jsonb`, an enum
//! the operator created in the target), so a PostgreSQL-to-PostgreSQL copy has
//! the very same types. Otherwise the column gets the closest type to Ferry's
//! data type (see [`pg_type`]). The primary key is kept; NOT NULL is kept on
//! create. Columns added later are added nullable, because the rows already in
//! the target have no value for them. Defaults, indexes and foreign keys are
//! not created here (they may name objects the target does not have).
//!
//! Values are read by the target column's own type (the staging tables copy
//! it), so a table the operator created with other (compatible) types works too. A
//! decimal column whose target is narrower than what the source now sends would
//! be rounded, so it stops the table instead.

use ferry_core::envelope::Connector;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use ferry_core::pg::{quote_ident, quoted};
use tokio_postgres::Transaction;

use crate::target::{check_decimal, TargetError};

use super::classify;

/// A column as the target has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// The type to cast text to: the column's type without its modifier (the
    /// assignment then checks lengths instead of an explicit cast cutting them;
    /// `bit` and `character` become `bit varying` and `bpchar`, because
    /// without a length they mean a length of one).
    pub cast: String,
    /// `numeric(p,s)`'s precision and scale.
    pub numeric: Option<(i32, i32)>,
}

/// The closest PostgreSQL type for a Ferry data type.
pub fn pg_type(ty: DataType) -> String {
    match ty {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal { precision, scale, .. } => format!("numeric({precision},{scale})"),
        DataType::Numeric => "numeric".into(),
        DataType::Text => "text".into(),
        DataType::Bytes => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Time => "time".into(),
        DataType::Duration => "interval".into(),
        DataType::Timestamp => "timestamp".into(),
        DataType::TimestampTz => "timestamptz".into(),
        DataType::Uuid => "uuid".into(),
    }
}

/// Whether a unique index of `table` that is checked at once (not deferred)
/// and holds for every row (no predicate) is on exactly `columns`: then an
/// insert of a key already there fails instead of making a second row.
pub async fn unique_on(tx: &Transaction<'_>, table: &TableId, columns: &[&str]) -> Result<bool, TargetError> {
    let mut columns: Vec<&str> = columns.to_vec();
    columns.sort_unstable();
    let row = tx
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM pg_index i
                JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indimmediate
                  AND i.indpred IS NULL AND i.indexprs IS NULL
                  AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                       FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                       WHERE k.n <= i.indnkeyatts) = $3::text[])",
            &[&table.schema, &table.table, &columns],
        )
        .await
        .map_err(|e| classify(&e, table))?;
    Ok(row.get(0))
}

/// The target's columns of `table`, or `None` if it has no such table.
pub async fn columns(tx: &Transaction<'_>, table: &TableId) -> Result<Option<Vec<TargetColumn>>, TargetError> {
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|e| classify(&e, table))?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT a.attname::text,
                    CASE a.atttypid WHEN 'bit'::regtype THEN 'bit varying'
                                    WHEN 'bit[]'::regtype THEN 'bit varying[]'
                                    WHEN 'bpchar'::regtype THEN 'bpchar'
                                    WHEN 'bpchar[]'::regtype THEN 'bpchar[]'
                                    ELSE format_type(a.atttypid, NULL) END,
                    CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4
                         THEN ((a.atttypmod - 4) >> 16) & 65535 END,
                    CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4
                         THEN (a.atttypmod - 4) & 65535 END
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|e| classify(&e, table))?;
    Ok(Some(
        rows.iter()
            .map(|r| TargetColumn {
                name: r.get(0),
                cast: r.get(1),
                numeric: r.get::<_, Option<i32>>(2).zip(r.get::<_, Option<i32>>(3)),
            })
            .collect(),
    ))
}

/// The type a new column gets: the source's own type if the target has it
/// (PostgreSQL sources, and MongoDB collections, whose table names
/// PostgreSQL's `text` and `jsonb`), else the closest one.
///
/// The source type is text from a schema in the registry, which anyone may
/// have written, so it reaches the DDL only if it is [`type_like`] (no string,
/// comment or statement can start in it) and `to_regtype` takes it (it parses
/// as exactly one type name the target has). `to_regtype` raises on some
/// malformed names (before PostgreSQL 16), hence the savepoint: the batch's
/// transaction goes on with the closest type.
async fn column_type(tx: &Transaction<'_>, column: &Column, connector: Connector) -> Result<String, TargetError> {
    let own = &column.source_type;
    if matches!(connector, Connector::Postgres | Connector::Mongodb) && type_like(own) {
        let unavailable = |e: tokio_postgres::Error| TargetError::Unavailable(ferry_core::pg::pg_message(&e));
        tx.batch_execute("SAVEPOINT ferry_type").await.map_err(unavailable)?;
        let known = match tx.query_one("SELECT to_regtype($1) IS NOT NULL", &[own]).await {
            Ok(row) => row.get(0),
            Err(e) if e.as_db_error().is_some() => false,
            Err(e) => return Err(unavailable(e)),
        };
        tx.batch_execute(if known {
            "RELEASE SAVEPOINT ferry_type"
        } else {
            "ROLLBACK TO SAVEPOINT ferry_type"
        })
        .await
        .map_err(unavailable)?;
        if known {
            return Ok(own.clone());
        }
        tracing::debug!(column = %column.name, source_type = %own, "not a type here; using the closest one");
    }
    Ok(pg_type(column.data_type))
}

/// Whether `name` is made only of what a type name is made of: words,
/// numbers (a negative scale too, as in `numeric(5,-2)`), quoted
/// identifiers, `( ) , . [ ]` and spaces. No quote, slash, colon, semicolon
/// or dash other than a minus sign outside a quoted identifier, so neither a
/// string, a comment, a cast nor another statement can begin in it.
fn type_like(name: &str) -> bool {
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            _ if quoted => {
                if c.is_control() {
                    return false;
                }
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '$' | '(' | ')' | ',' | '.' | '[' | ']' | ' ') => {}
            '-' if chars.peek().is_some_and(char::is_ascii_digit) => {}
            _ => return false,
        }
    }
    !quoted && !name.trim().is_empty()
}

/// Makes the target table fit `meta`: created if absent, missing columns added.
/// Runs in the batch's transaction, under a lock per table, so writers creating
/// the same table at once take turns and a failed batch takes its DDL with it.
pub async fn ensure(
    tx: &Transaction<'_>,
    target: &TableId,
    meta: &TableMeta,
    connector: Connector,
) -> Result<Vec<TargetColumn>, TargetError> {
    let name = quoted(target);
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&name])
        .await
        .map_err(|e| classify(&e, target))?;
    let ddl_error = |e: tokio_postgres::Error| {
        TargetError::Permanent(format!("table {target}: {}", ferry_core::pg::pg_message(&e)))
    };
    let existing = match columns(tx, target).await? {
        Some(existing) => existing,
        None => {
            let mut defs = Vec::new();
            for c in &meta.columns {
                let null = if c.nullable { "" } else { " NOT NULL" };
                defs.push(format!(
                    "{} {}{null}",
                    quote_ident(&c.name),
                    column_type(tx, c, connector).await?
                ));
            }
            if !meta.key.is_empty() {
                let key: Vec<_> = meta.key.iter().map(|&i| quote_ident(&meta.columns[i].name)).collect();
                defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
            }
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {name} ({})",
                quote_ident(&target.schema),
                defs.join(", ")
            );
            tx.batch_execute(&sql).await.map_err(ddl_error)?;
            tracing::info!(table = %target, "created the target table");
            return columns(tx, target)
                .await?
                .ok_or_else(|| TargetError::Permanent(format!("table {target} vanished after CREATE TABLE")));
        }
    };
    let mut added = false;
    for c in &meta.columns {
        match existing.iter().find(|t| t.name == c.name) {
            None => {
                let sql = format!(
                    "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}",
                    quote_ident(&c.name),
                    column_type(tx, c, connector).await?
                );
                tx.batch_execute(&sql).await.map_err(ddl_error)?;
                tracing::info!(table = %target, column = %c.name, "added a column the source added");
                added = true;
            }
            Some(t) => check_numeric(target, c, t)?,
        }
    }
    if added {
        return columns(tx, target)
            .await?
            .ok_or_else(|| TargetError::Permanent(format!("table {target} vanished after ALTER TABLE")));
    }
    Ok(existing)
}

/// A decimal the target column would round is a definite error.
fn check_numeric(table: &TableId, source: &Column, target: &TargetColumn) -> Result<(), TargetError> {
    let numeric = target
        .numeric
        .and_then(|(p, s)| Some((u32::try_from(p).ok()?, u32::try_from(s).ok()?)));
    check_decimal(table, source, numeric, "numeric", |p, s| {
        format!(
            "ALTER TABLE {} ALTER COLUMN {} TYPE numeric({p},{s})",
            quoted(table),
            quote_ident(&source.name)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_type_shaped_names_reach_the_ddl() {
        for ok in [
            "integer",
            "numeric(12,4)",
            "character varying(10)[]",
            "timestamp(3) with time zone",
            "public.\"Mood \"\"x\"\"; --\"",
            "\"Ünïcødé 表\"",
            "interval day to second(3)",
            "numeric(5,-2)",
        ] {
            assert!(type_like(ok), "{ok}");
        }
        for bad in [
            "int; DROP TABLE victim",
            "int -- comment",
            "int --1",
            "int -",
            "int /* c */",
            "'x'",
            "a::b",
            "\"unclosed",
            "",
            "int\n",
        ] {
            assert!(!type_like(bad), "{bad}");
        }
    }

    #[test]
    fn narrower_decimals_are_refused() {
        let column = Column::new(
            "amount",
            DataType::Decimal {
                precision: 12,
                scale: 4,
                special: false,
            },
            "numeric(12,4)",
        );
        let target = |numeric| TargetColumn {
            name: "amount".into(),
            cast: "numeric".into(),
            numeric,
        };
        let t = TableId::new("public", "t");
        assert!(check_numeric(&t, &column, &target(Some((12, 4)))).is_ok());
        assert!(check_numeric(&t, &column, &target(Some((20, 6)))).is_ok());
        assert!(check_numeric(&t, &column, &target(None)).is_ok());
        let err = check_numeric(&t, &column, &target(Some((12, 2))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("numeric(12,2)") && err.contains("ALTER TABLE"), "{err}");
        assert!(check_numeric(&t, &column, &target(Some((10, 4)))).is_err());
    }
}
