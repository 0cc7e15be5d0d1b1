//! Target tables from Avro schemas: create them when absent, add the columns a
//! new schema version brings, and refuse changes that would lose data.
//!
//! A MySQL/MariaDB source's own column type (`ferry.source_type`) is used when
//! this server has it, so a MariaDB-to-MariaDB copy keeps its types. Other
//! sources get the closest type (see [`closest_type`]); the README has the
//! table. Tables are InnoDB, utf8mb4 with a binary collation that does not pad
//! (`utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL 8), so text
//! compares as the source compares it: `'a'`, `'A'` and `'a '` are three keys.
//! The primary key and NOT NULL are kept on create; columns added later are
//! nullable, because the rows already there have no value for them. Defaults,
//! indexes and foreign keys are not created.
//!
//! DDL commits implicitly in MySQL, so tables are made to fit before the
//! batch's transaction starts; two writers doing it at once both succeed
//! (`IF NOT EXISTS`, a column someone else just added), also when they hold
//! different schema versions of the table: a table another writer created
//! a moment before gets the columns it lacks.

use ferry_core::envelope::Connector;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::target::TargetError;

use super::value::{quote_str, Fit};
use super::{classify, quote_ident, quoted, server_code};

/// The longest `VARCHAR` a key column gets: InnoDB keys hold 3072 bytes, 4 per
/// utf8mb4 character.
const MAX_KEY_CHARS: u32 = 768;

/// Which server this is, for the types it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub mariadb: bool,
    /// Major and minor version.
    pub version: (u32, u32),
}

impl Server {
    /// From `SELECT VERSION()`: `10.11.6-MariaDB-log`, `8.0.36`.
    pub fn parse(version: &str) -> Server {
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse().unwrap_or(0));
        Server {
            mariadb: version.to_ascii_lowercase().contains("mariadb"),
            version: (parts.next().unwrap_or(0), parts.next().unwrap_or(0)),
        }
    }

    /// MariaDB 10.7 and later have a `UUID` type.
    pub fn has_uuid(&self) -> bool {
        self.mariadb && self.version >= (10, 7)
    }

    /// Binary, no padding: every byte of a string counts when comparing.
    pub fn collation(&self) -> &'static str {
        if self.mariadb {
            "utf8mb4_nopad_bin"
        } else if self.version >= (8, 0) {
            "utf8mb4_0900_bin"
        } else {
            "utf8mb4_bin"
        }
    }
}

/// A column as the target has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// `DATA_TYPE`, lower case: `decimal`, `datetime`, `longtext`.
    pub data_type: String,
    /// `DECIMAL`'s precision and scale.
    pub decimal: Option<(u32, u32)>,
    /// Fractional digits of a temporal column.
    pub fraction: Option<u32>,
}

impl TargetColumn {
    /// What values for this column must be checked against.
    pub fn fit(&self) -> Fit {
        match (self.data_type.as_str(), self.decimal, self.fraction) {
            ("decimal", Some((precision, scale)), _) => Fit::Decimal { precision, scale },
            ("datetime" | "timestamp" | "time", _, Some(digits)) => Fit::Fraction(digits),
            (
                "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
                | "geometrycollection",
                _,
                _,
            ) => Fit::Geometry,
            _ => Fit::Any,
        }
    }
}

/// The closest type for a column of another engine (`key`: part of the
/// primary key, which InnoDB cannot make of `LONGTEXT`), or why there is none.
pub fn closest_type(column: &Column, key: bool) -> Result<String, String> {
    Ok(match column.data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal { precision, scale, .. } if precision <= 65 && scale <= 30 && scale <= precision => {
            format!("DECIMAL({precision},{scale})")
        }
        DataType::Decimal { precision, scale, .. } => {
            return Err(format!(
                "{} numeric({precision},{scale}) does not fit MariaDB's DECIMAL (at most 65 digits, 30 after the \
                 point): create the table beforehand with this column as DECIMAL(65,30) (values that do not fit \
                 are then rejected rows) or LONGTEXT (the exact text), and restart",
                column.source_type
            ))
        }
        DataType::Numeric => "DECIMAL(65,30)".into(),
        DataType::Text if key => format!("VARCHAR({})", declared_length(&column.source_type).unwrap_or(255)),
        DataType::Text => "LONGTEXT".into(),
        DataType::Bytes if key => "VARBINARY(255)".into(),
        DataType::Bytes => "LONGBLOB".into(),
        DataType::Date => "DATE".into(),
        DataType::Time | DataType::Duration => "TIME(6)".into(),
        DataType::Timestamp | DataType::TimestampTz => "DATETIME(6)".into(),
        // Not MariaDB's UUID: it refuses some of the 2^128 values PostgreSQL
        // holds (a version nibble past 5 with variant bits 0xx, e.g.
        // eccbc87e-4b5c-e2fe-2830-8fd9f2a7baf3).
        DataType::Uuid => "CHAR(36)".into(),
    })
}

/// `N` of `character varying(N)` / `character(N)` / `varchar(N)`, at most what
/// a key can hold.
fn declared_length(source_type: &str) -> Option<u32> {
    let t = source_type.to_ascii_lowercase();
    let args = ["character varying(", "character(", "varchar(", "char("]
        .iter()
        .find_map(|p| t.strip_prefix(p))?;
    let n: u32 = args.split(')').next()?.trim().parse().ok()?;
    Some(n.clamp(1, MAX_KEY_CHARS))
}

/// Whether `source_type` (a MySQL source's column type, e.g. `int(10)
/// unsigned`, `enum('a','b')`) names a type this server has, in the plain
/// form of [`type_name`], so that it can go into the DDL as it is.
fn known_here(source_type: &str, key: bool, server: Server) -> bool {
    let Some(base) = type_name(source_type) else {
        return false;
    };
    match base.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal" | "numeric" | "float"
        | "double" | "real" | "bit" | "bool" | "boolean" | "char" | "varchar" | "binary" | "varbinary" | "date"
        | "datetime" | "timestamp" | "time" | "year" | "enum" | "set" => true,
        // InnoDB keys cannot be whole text or blob columns.
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "json"
        | "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" => !key,
        "uuid" | "inet6" => server.has_uuid(),
        "inet4" => server.mariadb && server.version >= (10, 10),
        _ => false,
    }
}

/// The lower-case name of `source_type` if it is written as
/// `information_schema` writes a column type — a word, then optionally
/// `(...)` of numbers or string literals separated by commas, then any of
/// `unsigned`, `signed`, `zerofill` — and nothing else: the type comes from a
/// schema in the registry, which anyone may have written, and goes into DDL
/// as it is. A literal with a backslash is refused too: `information_schema`
/// doubles backslashes, which this session (`NO_BACKSLASH_ESCAPES`) would
/// keep doubled.
fn type_name(source_type: &str) -> Option<String> {
    let name_end = source_type
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(source_type.len());
    let (name, mut rest) = source_type.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    if let Some(args) = rest.strip_prefix('(') {
        rest = args;
        loop {
            if let Some(literal) = rest.strip_prefix('\'') {
                let mut end = None;
                let mut chars = literal.char_indices().peekable();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => return None,
                        '\'' if chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                            chars.next();
                        }
                        '\'' => {
                            end = Some(i + 1);
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &literal[end?..];
            } else {
                let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                if digits == 0 {
                    return None;
                }
                rest = &rest[digits..];
            }
            match rest.chars().next()? {
                ',' => rest = &rest[1..],
                ')' => {
                    rest = &rest[1..];
                    break;
                }
                _ => return None,
            }
        }
    }
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    rest.split(' ')
        .filter(|w| !w.is_empty())
        .all(|w| matches!(w.to_ascii_lowercase().as_str(), "unsigned" | "signed" | "zerofill"))
        .then(|| name.to_ascii_lowercase())
}

/// The type a new column gets.
pub fn column_type(column: &Column, key: bool, connector: Connector, server: Server) -> Result<String, String> {
    if connector == Connector::Mysql && known_here(&column.source_type, key, server) {
        return Ok(column.source_type.clone());
    }
    closest_type(column, key)
}

/// The target's columns of `table`, or `None` if it has no such table.
pub async fn columns(conn: &mut Conn, table: &TableId) -> Result<Option<Vec<TargetColumn>>, TargetError> {
    type Row = (String, String, Option<u64>, Option<u64>, Option<u64>);
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            quote_str(&table.schema),
            quote_str(&table.table)
        ))
        .await
        .map_err(|e| classify(&e, table))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let small = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
    Ok(Some(
        rows.into_iter()
            .map(|(name, data_type, precision, scale, fraction)| TargetColumn {
                decimal: (data_type == "decimal")
                    .then(|| small(precision).zip(small(scale)))
                    .flatten(),
                fraction: small(fraction),
                name,
                data_type,
            })
            .collect(),
    ))
}

/// Makes the target table fit `meta`: created if absent, missing columns added.
pub async fn ensure(
    conn: &mut Conn,
    target: &TableId,
    meta: &TableMeta,
    connector: Connector,
    server: Server,
) -> Result<Vec<TargetColumn>, TargetError> {
    let name = quoted(target);
    let permanent = |e: String| TargetError::Permanent(format!("table {target}: {e}"));
    let vanished = || TargetError::Unavailable(format!("table {target} vanished while it was made to fit"));
    let existing = match columns(conn, target).await? {
        Some(existing) => existing,
        None => {
            create(conn, target, meta, connector, server).await?;
            // Another writer may have created it a moment before, from another
            // schema version of the table (`IF NOT EXISTS` then did nothing):
            // what it lacks is added below like any new column.
            columns(conn, target).await?.ok_or_else(vanished)?
        }
    };
    let mut added = false;
    for (i, c) in meta.columns.iter().enumerate() {
        match existing.iter().find(|t| t.name == c.name) {
            None => {
                let ty = column_type(c, meta.key.contains(&i), connector, server)
                    .map_err(|e| permanent(format!("column {:?}: {e}", c.name)))?;
                let sql = format!("ALTER TABLE {name} ADD COLUMN {} {ty}", quote_ident(&c.name));
                match conn.query_drop(sql).await {
                    // Another writer added it meanwhile.
                    Err(e) if server_code(&e) == Some(1060) => {}
                    other => other.map_err(|e| ddl_error(&e, target))?,
                }
                tracing::info!(table = %target, column = %c.name, "added a column the source added");
                added = true;
            }
            Some(t) => {
                let widen = |p, s| format!("ALTER TABLE {name} MODIFY {} DECIMAL({p},{s})", quote_ident(&c.name));
                crate::target::check_decimal(target, c, t.decimal, "DECIMAL", widen)?;
            }
        }
    }
    if !added {
        return Ok(existing);
    }
    columns(conn, target).await?.ok_or_else(vanished)
}

/// Creates the table of `meta` unless it exists (and its database unless
/// that exists).
async fn create(
    conn: &mut Conn,
    target: &TableId,
    meta: &TableMeta,
    connector: Connector,
    server: Server,
) -> Result<(), TargetError> {
    let ddl = |e: mysql_async::Error| ddl_error(&e, target);
    let mut defs = Vec::new();
    for (i, c) in meta.columns.iter().enumerate() {
        let ty = column_type(c, meta.key.contains(&i), connector, server)
            .map_err(|e| TargetError::Permanent(format!("table {target}: column {:?}: {e}", c.name)))?;
        let null = if c.nullable { "" } else { " NOT NULL" };
        defs.push(format!("{} {ty}{null}", quote_ident(&c.name)));
    }
    if !meta.key.is_empty() {
        let key: Vec<_> = meta.key.iter().map(|&i| quote_ident(&meta.columns[i].name)).collect();
        defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    // A database named by --table-map may not exist yet; asked first, so
    // that a user with rights on its own database only needs no more.
    let database: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&target.schema,),
        )
        .await
        .map_err(|e| classify(&e, target))?;
    if database.is_none() {
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
            quote_ident(&target.schema)
        ))
        .await
        .map_err(ddl)?;
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={}",
        quoted(target),
        defs.join(", "),
        server.collation()
    ))
    .await
    .map_err(ddl)?;
    // Warning 1050 ("already exists") when another writer was first.
    if conn.get_warnings() == 0 {
        tracing::info!(table = %target, "created the target table");
    }
    Ok(())
}

/// A failed DDL statement: a refusal is permanent, not a rejected row.
fn ddl_error(e: &mysql_async::Error, target: &TableId) -> TargetError {
    match classify(e, target) {
        TargetError::Rejected(m) => TargetError::Permanent(m),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARIADB: Server = Server {
        mariadb: true,
        version: (10, 11),
    };
    const MYSQL: Server = Server {
        mariadb: false,
        version: (8, 0),
    };

    fn ty(data_type: DataType, source_type: &str, key: bool, connector: Connector) -> Result<String, String> {
        column_type(&Column::new("c", data_type, source_type), key, connector, MARIADB)
    }

    #[test]
    fn versions_parse() {
        assert_eq!(Server::parse("10.11.19-MariaDB-0+deb12u1-log"), MARIADB);
        assert_eq!(Server::parse("8.0.36"), MYSQL);
        assert_eq!(Server::parse("5.5.5-10.6.1-MariaDB").version, (5, 5));
        assert!(!Server::parse("10.6.1-MariaDB").has_uuid());
        assert_eq!(MYSQL.collation(), "utf8mb4_0900_bin");
    }

    #[test]
    fn other_engines_get_the_closest_type() {
        let pg = Connector::Postgres;
        let dec = |precision, scale| DataType::Decimal {
            precision,
            scale,
            special: true,
        };
        for (data_type, source, key, want) in [
            (DataType::Boolean, "boolean", false, "BOOLEAN"),
            (DataType::Int16, "smallint", false, "SMALLINT"),
            (DataType::Int32, "integer", false, "INT"),
            (DataType::Int64, "bigint", true, "BIGINT"),
            (DataType::Float32, "real", false, "FLOAT"),
            (DataType::Float64, "double precision", false, "DOUBLE"),
            (dec(12, 4), "numeric(12,4)", false, "DECIMAL(12,4)"),
            (dec(65, 30), "numeric(65,30)", false, "DECIMAL(65,30)"),
            (DataType::Numeric, "numeric", false, "DECIMAL(65,30)"),
            (DataType::Text, "text", false, "LONGTEXT"),
            (DataType::Text, "character varying(10)", false, "LONGTEXT"),
            (DataType::Text, "character varying(10)", true, "VARCHAR(10)"),
            (DataType::Text, "character varying(5000)", true, "VARCHAR(768)"),
            (DataType::Text, "character(3)", true, "VARCHAR(3)"),
            (DataType::Text, "text", true, "VARCHAR(255)"),
            (DataType::Text, "jsonb", false, "LONGTEXT"),
            (DataType::Bytes, "bytea", false, "LONGBLOB"),
            (DataType::Bytes, "bytea", true, "VARBINARY(255)"),
            (DataType::Date, "date", false, "DATE"),
            (DataType::Time, "time without time zone", false, "TIME(6)"),
            (DataType::Duration, "time", false, "TIME(6)"),
            (DataType::Timestamp, "timestamp without time zone", false, "DATETIME(6)"),
            (DataType::TimestampTz, "timestamp with time zone", false, "DATETIME(6)"),
            (DataType::Uuid, "uuid", false, "CHAR(36)"),
            // A PostgreSQL type name is never taken as a MySQL one.
            (DataType::Int32, "int", false, "INT"),
            (DataType::Text, "enum('a')", false, "LONGTEXT"),
        ] {
            assert_eq!(ty(data_type, source, key, pg).unwrap(), want, "{source}");
        }
        let err = ty(dec(1000, 500), "numeric(1000,500)", false, pg).unwrap_err();
        assert!(err.contains("DECIMAL(65,30)") && err.contains("LONGTEXT"), "{err}");
        assert!(ty(dec(40, 35), "numeric(40,35)", false, pg).is_err());
    }

    #[test]
    fn a_mysql_source_keeps_its_types() {
        let my = Connector::Mysql;
        for (data_type, source, key) in [
            (DataType::Int64, "int(10) unsigned", true),
            (DataType::Text, "enum('a','b')", false),
            (DataType::Text, "varchar(20)", true),
            (DataType::Text, "json", false),
            (DataType::Bytes, "geometry", false),
            (DataType::Int16, "year(4)", false),
            (DataType::Duration, "time(3)", false),
            (DataType::TimestampTz, "timestamp(6)", false),
        ] {
            assert_eq!(ty(data_type, source, key, my).unwrap(), source);
        }
        // Anything but a plain type is never pasted into DDL.
        for hostile in [
            "int(10) unsigned; DROP TABLE victim",
            "int -- x",
            "int/**/",
            "enum('a\\'); DROP TABLE victim; --')",
            "enum('a'",
            "varchar(20) CHARACTER SET latin1",
            "int(1e3)",
            "(1)",
        ] {
            assert_eq!(type_name(hostile), None, "{hostile}");
            assert!(
                !ty(DataType::Text, hostile, false, my).unwrap().contains("victim"),
                "{hostile}"
            );
        }
        assert_eq!(type_name("enum('a''b',';--')").as_deref(), Some("enum"));
        assert_eq!(type_name("decimal(10,2) unsigned zerofill").as_deref(), Some("decimal"));
        // Not a key of InnoDB, not a type here: the closest type instead.
        assert_eq!(ty(DataType::Text, "text", true, my).unwrap(), "VARCHAR(255)");
        assert_eq!(ty(DataType::Text, "something(1)", false, my).unwrap(), "LONGTEXT");
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
            "decimal(12,4)",
        );
        let target = |decimal| TargetColumn {
            name: "amount".into(),
            data_type: "decimal".into(),
            decimal,
            fraction: None,
        };
        let t = TableId::new("db", "t");
        let check = |decimal| {
            let widen = |p, s| format!("MODIFY DECIMAL({p},{s})");
            crate::target::check_decimal(&t, &column, target(decimal).decimal, "DECIMAL", widen)
        };
        assert!(check(Some((12, 4))).is_ok());
        assert!(check(Some((20, 6))).is_ok());
        let err = check(Some((12, 2))).unwrap_err().to_string();
        assert!(
            err.contains("DECIMAL(12,2)") && err.contains("(MODIFY DECIMAL(12,4))"),
            "{err}"
        );
        assert!(check(Some((10, 4))).is_err());
        assert_eq!(
            target(Some((12, 4))).fit(),
            Fit::Decimal {
                precision: 12,
                scale: 4
            }
        );
    }
}
