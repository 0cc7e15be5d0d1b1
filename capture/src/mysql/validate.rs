//! Checks the source server before anything is read, and says in one line per
//! problem what is wrong and what to run.
//!
//! Every check runs, so an operator fixes everything in one go. Nothing here
//! changes the server. The binlog settings are the ones row-based capture
//! needs: ROW format with FULL images (every column of the old and new row),
//! FULL row metadata (column names, signedness, charsets and keys travel in the
//! binlog itself, so old events decode with the schema they were written
//! with), and no compression (compressed events cannot be read).

use std::fmt;

use ferry_core::meta::{TableId, TableMeta};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::filter::TableFilter;
use crate::mysql::error::CaptureError;
use crate::mysql::types::{self, SourceColumn};

/// One thing wrong with the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    InvalidSetting {
        setting: &'static str,
        expected: &'static str,
        actual: String,
    },
    MissingPrivilege {
        user: String,
        privilege: &'static str,
    },
    UnknownTable {
        pattern: String,
    },
    NoTables,
    UnsupportedColumn {
        table: TableId,
        reason: String,
    },
    ServerIdInUse {
        server_id: u32,
        by: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::InvalidSetting {
                setting,
                expected,
                actual,
            } if *setting == "log_bin" => write!(
                f,
                "log_bin is {actual}, needs {expected}: put log_bin = mysql-bin (and a server_id) \
                 in the server's config file and restart it"
            ),
            Problem::InvalidSetting {
                setting,
                expected,
                actual,
            } => write!(
                f,
                "{setting} is {actual}, needs {expected}: run SET GLOBAL {setting} = {expected} \
                 and put {setting} = {expected} in the server's config file"
            ),
            Problem::MissingPrivilege { user, privilege } => {
                write!(
                    f,
                    "user {user} lacks {privilege}: run GRANT {privilege} ON *.* TO {user}"
                )
            }
            Problem::UnknownTable { pattern } => {
                write!(f, "table {pattern} does not exist: check --tables (database.table)")
            }
            Problem::NoTables => write!(f, "no tables to capture: check --tables, or create the tables first"),
            Problem::UnsupportedColumn { table, reason } => write!(
                f,
                "table {table}: {reason}; leave the table out of --tables or change the column"
            ),
            Problem::ServerIdInUse { server_id, by } => write!(
                f,
                "--server-id {server_id} is already used by {by}: every replica of a server needs \
                 its own id; choose another --server-id"
            ),
        }
    }
}

/// Databases that are the server's own.
const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// The base tables `filter` includes, sorted.
pub async fn included_tables(conn: &mut Conn, filter: &TableFilter) -> Result<Vec<TableId>, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(s, t)| TableId::new(s, t))
        .filter(|t| !SYSTEM.contains(&t.schema.as_str()) && filter.includes(t))
        .collect())
}

/// A table's columns as `information_schema` describes them now, and the
/// positions of its primary key columns.
pub async fn table_columns(
    conn: &mut Conn,
    table: &TableId,
) -> Result<Result<(Vec<SourceColumn>, Vec<usize>), types::TypeError>, mysql_async::Error> {
    type ColumnRow = (String, String, String, Option<String>, String, Option<String>, String);
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_KEY
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&table.schema, &table.table),
        )
        .await?;
    let keys: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (&table.schema, &table.table),
        )
        .await?;
    let mut columns = Vec::with_capacity(rows.len());
    for (name, column_type, data_type, charset, nullable, default, _) in rows {
        match types::from_information_schema(
            &name,
            &column_type,
            &data_type,
            charset.as_deref(),
            nullable == "YES",
            default,
        ) {
            Ok(c) => columns.push(c),
            Err(e) => return Ok(Err(e)),
        }
    }
    let key = keys
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    Ok(Ok((columns, key)))
}

/// A table's columns and metadata as `information_schema` describes them now;
/// a column Ferry cannot carry is an error naming it.
pub async fn table(conn: &mut Conn, id: &TableId) -> Result<(Vec<SourceColumn>, TableMeta), CaptureError> {
    let (columns, key) = table_columns(conn, id).await?.map_err(|error| CaptureError::Type {
        table: id.to_string(),
        error,
    })?;
    let meta = types::table_meta(id.clone(), &columns, key);
    Ok((columns, meta))
}

async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, mysql_async::Error> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await?;
    Ok(row.map(|(_, v)| v))
}

/// How long a replica that went away may stay listed in `SHOW SLAVE HOSTS`:
/// a few of the heartbeats capture asks for.
const REPLICA_GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The host of a replica registered with `server_id`, if any.
///
/// MariaDB lists replicas only to REPLICATION MASTER ADMIN, which capture
/// does not otherwise need: without it, the check is skipped.
async fn replica_with_id(conn: &mut Conn, server_id: u32) -> Result<Option<String>, mysql_async::Error> {
    let hosts: Vec<mysql_async::Row> = match conn.query("SHOW SLAVE HOSTS").await {
        Err(mysql_async::Error::Server(e)) if e.code == ER_SPECIFIC_ACCESS_DENIED => {
            tracing::info!(
                server_id,
                "the user may not list replicas (REPLICATION MASTER ADMIN): whether another replica uses --server-id is not checked"
            );
            return Ok(None);
        }
        result => result?,
    };
    Ok(hosts.into_iter().find_map(|row| {
        let id: Option<u32> = row.get(0);
        (id == Some(server_id)).then(|| row.get::<String, _>(1).unwrap_or_default())
    }))
}

/// "Access denied; you need (at least one of) the ... privilege(s)".
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

/// The server settings row-based capture needs, and their values.
const SETTINGS: [(&str, &str); 5] = [
    ("log_bin", "ON"),
    ("binlog_format", "ROW"),
    ("binlog_row_image", "FULL"),
    ("binlog_row_metadata", "FULL"),
    ("log_bin_compress", "OFF"),
];

/// The settings among [`SETTINGS`] that are wrong, given the server's values
/// in the same order (`None`: the server has no such variable).
fn setting_problems(values: &[Option<String>]) -> Vec<Problem> {
    SETTINGS
        .iter()
        .zip(values)
        .filter_map(|(&(setting, expected), actual)| match actual {
            Some(actual) if !actual.eq_ignore_ascii_case(expected) => Some(Problem::InvalidSetting {
                setting,
                expected,
                actual: actual.clone(),
            }),
            // MySQL has no log_bin_compress; before 8.0.1 no row metadata.
            None if setting == "binlog_row_metadata" => Some(Problem::InvalidSetting {
                setting,
                expected,
                actual: "not available (MySQL 8.0.1 / MariaDB 10.5 or later needed)".into(),
            }),
            _ => None,
        })
        .collect()
}

/// Runs every check; an empty list of problems means the source is ready.
/// Returns the included tables as they are now.
pub async fn validate(
    conn: &mut Conn,
    filter: &TableFilter,
    server_id: u32,
    mariadb: bool,
) -> Result<(Vec<TableMeta>, Vec<Problem>), mysql_async::Error> {
    let mut values = Vec::new();
    for (setting, _) in SETTINGS {
        values.push(variable(conn, setting).await?);
    }
    let mut problems = setting_problems(&values);

    let user: String = conn.query_first("SELECT CURRENT_USER()").await?.unwrap_or_default();
    let grants: Vec<String> = conn.query("SHOW GRANTS").await?;
    let global: Vec<&String> = grants.iter().filter(|g| g.contains(" ON *.* ")).collect();
    let has = |privilege: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(privilege))
    };
    let quoted_user = match user.split_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => user.clone(),
    };
    let monitor: &'static str = if mariadb {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    let monitor_ok = has(monitor) || has("REPLICATION CLIENT") || has("SUPER");
    for (privilege, ok) in [
        ("REPLICATION SLAVE", has("REPLICATION SLAVE")),
        (monitor, monitor_ok),
        ("SELECT", has("SELECT")),
    ] {
        if !ok {
            problems.push(Problem::MissingPrivilege {
                user: quoted_user.clone(),
                privilege,
            });
        }
    }

    let own: Option<u32> = conn.query_first("SELECT @@server_id").await?;
    if own == Some(server_id) {
        problems.push(Problem::ServerIdInUse {
            server_id,
            by: "the source server itself (@@server_id)".into(),
        });
    }
    if monitor_ok {
        // A capture killed a moment ago stays listed until the server notices
        // (at its next heartbeat): look again for a few seconds before saying so.
        let deadline = std::time::Instant::now() + REPLICA_GONE_WITHIN;
        loop {
            let by = replica_with_id(conn, server_id).await?;
            match by {
                Some(host) if std::time::Instant::now() >= deadline => {
                    problems.push(Problem::ServerIdInUse {
                        server_id,
                        by: format!("a replica connected from {host}"),
                    });
                    break;
                }
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
                None => break,
            }
        }
    }

    let tables = included_tables(conn, filter).await?;
    problems.extend(
        filter
            .unmatched(&tables)
            .into_iter()
            .map(|pattern| Problem::UnknownTable { pattern }),
    );
    if tables.is_empty() {
        problems.push(Problem::NoTables);
    }
    let mut metas = Vec::with_capacity(tables.len());
    for table in tables {
        match table_columns(conn, &table).await? {
            Ok((columns, key)) => metas.push(types::table_meta(table, &columns, key)),
            Err(e) => problems.push(Problem::UnsupportedColumn {
                table,
                reason: e.to_string(),
            }),
        }
    }
    Ok((metas, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: [Option<&str>; 5]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_owned)).collect()
    }

    #[test]
    fn each_wrong_setting_is_one_line_naming_value_and_fix() {
        let ready = values([Some("ON"), Some("ROW"), Some("FULL"), Some("FULL"), Some("OFF")]);
        assert!(setting_problems(&ready).is_empty());
        // MySQL: no log_bin_compress at all.
        let mysql = values([Some("ON"), Some("ROW"), Some("FULL"), Some("FULL"), None]);
        assert!(setting_problems(&mysql).is_empty());
        let wrong = values([Some("OFF"), Some("MIXED"), Some("MINIMAL"), Some("MINIMAL"), Some("ON")]);
        let lines: Vec<String> = setting_problems(&wrong).iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[1],
            "binlog_format is MIXED, needs ROW: run SET GLOBAL binlog_format = ROW \
             and put binlog_format = ROW in the server's config file"
        );
        assert!(
            lines[0].contains("restart"),
            "log_bin cannot be set at run time: {}",
            lines[0]
        );
        for (line, (setting, _)) in lines.iter().zip(SETTINGS) {
            assert!(line.starts_with(setting) && !line.contains('\n'), "{line}");
        }
        let old = values([Some("ON"), Some("ROW"), Some("FULL"), None, None]);
        assert!(setting_problems(&old)[0].to_string().contains("not available"));
    }
}
