//! Checks the source database before anything is created or streamed, and
//! says in one line per problem what is wrong and what to run.
//!
//! Every check runs, so an operator fixes everything in one go rather than one
//! error per restart. Nothing here changes the database: the slot and
//! publication are created later, once validation passed.

use std::fmt;

use ferry_core::meta::TableId;
use tokio_postgres::Client;

use crate::filter::TableFilter;

/// One thing wrong with the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    InvalidSetting {
        setting: &'static str,
        expected: &'static str,
        actual: String,
        fix: String,
    },
    NoReplicationPrivilege {
        role: String,
    },
    UnknownTable {
        pattern: String,
    },
    NoTables {
        database: String,
    },
    NoIdentity {
        table: TableId,
        identity: char,
    },
    SlotInUse {
        slot: String,
        pid: i32,
    },
    SlotMismatch {
        slot: String,
        what: &'static str,
        actual: String,
        expected: String,
    },
    NoFreeSlot {
        max: i64,
    },
    NoSelect {
        role: String,
        table: TableId,
    },
    /// The publication lacks tables the role cannot add, not owning them.
    PublicationNotPermitted {
        role: String,
        publication: String,
        exists: bool,
        tables: Vec<TableId>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::InvalidSetting {
                setting,
                expected,
                actual,
                fix,
            } => write!(f, "{setting} is {actual}, needs {expected}: {fix}"),
            Problem::NoReplicationPrivilege { role } => write!(
                f,
                "role {role} may not replicate: run ALTER ROLE {role} REPLICATION (as a superuser)"
            ),
            Problem::UnknownTable { pattern } => {
                write!(f, "table {pattern} does not exist: check --tables (schema.table)")
            }
            Problem::NoTables { database } => write!(
                f,
                "no tables to capture in database {database}: check --tables, or create the tables first"
            ),
            Problem::NoIdentity { table, identity } => {
                let what = if *identity == 'n' {
                    "REPLICA IDENTITY NOTHING"
                } else {
                    "no primary key and REPLICA IDENTITY DEFAULT"
                };
                write!(
                    f,
                    "table {table} has {what}: updates and deletes carry no old row; run ALTER TABLE {} REPLICA IDENTITY FULL (or add a primary key)",
                    quoted(table)
                )
            }
            Problem::SlotInUse { slot, pid } => write!(
                f,
                "replication slot {slot} is in use by process {pid}: stop that capture, or choose another --slot"
            ),
            Problem::SlotMismatch {
                slot,
                what,
                actual,
                expected,
            } => write!(
                f,
                "replication slot {slot} has {what} {actual}, not {expected}: choose another --slot, or drop it with SELECT pg_drop_replication_slot('{slot}')"
            ),
            Problem::NoFreeSlot { max } => write!(
                f,
                "all {max} replication slots are taken: raise max_replication_slots and restart PostgreSQL, or drop an unused slot"
            ),
            Problem::NoSelect { role, table } => write!(
                f,
                "role {role} may not read table {table}: run GRANT SELECT ON {} TO {}",
                quoted(table),
                quote_ident(role)
            ),
            Problem::PublicationNotPermitted {
                role,
                publication,
                exists,
                tables,
            } => {
                let list = tables.iter().map(quoted).collect::<Vec<_>>().join(", ");
                let statement = if *exists {
                    format!("ALTER PUBLICATION {} ADD TABLE {list}", quote_ident(publication))
                } else {
                    format!("CREATE PUBLICATION {} FOR TABLE {list}", quote_ident(publication))
                };
                write!(
                    f,
                    "role {role} does not own {list}, so it cannot publish them: as their owner run {statement}"
                )
            }
        }
    }
}

pub use ferry_core::pg::{quote_ident, quoted};

/// The tables of the database that `filter` includes (ordinary and
/// partitioned tables; system schemas excluded), sorted.
pub async fn included_tables(client: &Client, filter: &TableFilter) -> Result<Vec<TableId>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|t| filter.includes(t))
        .collect())
}

/// Runs every check; an empty list means the source is ready.
pub async fn validate(
    client: &Client,
    filter: &TableFilter,
    slot: &str,
    publication: &str,
) -> Result<(Vec<TableId>, Vec<Problem>), tokio_postgres::Error> {
    let mut problems = Vec::new();

    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal_level != "logical" {
        problems.push(Problem::InvalidSetting {
            setting: "wal_level",
            expected: "logical",
            actual: wal_level,
            fix: "run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL".into(),
        });
    }

    let role = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let role_name: String = role.get(0);
    if !role.get::<_, bool>(1) {
        problems.push(Problem::NoReplicationPrivilege {
            role: role_name.clone(),
        });
    }

    let tables = included_tables(client, filter).await?;
    problems.extend(
        filter
            .unmatched(&tables)
            .into_iter()
            .map(|pattern| Problem::UnknownTable { pattern }),
    );
    if tables.is_empty() {
        let database: String = client.query_one("SELECT current_database()::text", &[]).await?.get(0);
        problems.push(Problem::NoTables { database });
    }

    let publication_exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication])
        .await?
        .is_some();
    let mut unpublishable = Vec::new();
    for table in &tables {
        // Publishing a table takes owning it (membership of its owner role).
        let row = client
            .query_one(
                "SELECT c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                        has_table_privilege(c.oid, 'SELECT'),
                        pg_has_role(c.relowner, 'USAGE'),
                        EXISTS (SELECT 1 FROM pg_publication_tables p
                                WHERE p.pubname = $2 AND p.schemaname = n.nspname AND p.tablename = c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = $1::text::regclass",
                &[&quoted(table), &publication],
            )
            .await?;
        let identity: String = row.get(0);
        let has_key: bool = row.get(1);
        if !row.get::<_, bool>(2) {
            problems.push(Problem::NoSelect {
                role: role_name.clone(),
                table: table.clone(),
            });
        }
        if !row.get::<_, bool>(3) && !row.get::<_, bool>(4) {
            unpublishable.push(table.clone());
        }
        let identity = identity.chars().next().unwrap_or('d');
        if identity == 'n' || (identity == 'd' && !has_key) {
            problems.push(Problem::NoIdentity {
                table: table.clone(),
                identity,
            });
        }
    }

    if !unpublishable.is_empty() {
        problems.push(Problem::PublicationNotPermitted {
            role: role_name,
            publication: publication.to_owned(),
            exists: publication_exists,
            tables: unpublishable,
        });
    }

    let database: String = client.query_one("SELECT current_database()::text", &[]).await?.get(0);
    match client
        .query_opt(
            "SELECT active_pid, plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
    {
        Some(row) => {
            if let Some(pid) = row.get::<_, Option<i32>>(0) {
                problems.push(Problem::SlotInUse {
                    slot: slot.to_owned(),
                    pid,
                });
            }
            let plugin: Option<String> = row.get(1);
            if plugin.as_deref() != Some("pgoutput") {
                problems.push(Problem::SlotMismatch {
                    slot: slot.to_owned(),
                    what: "plugin",
                    actual: plugin.unwrap_or_else(|| "none (a physical slot)".into()),
                    expected: "pgoutput".into(),
                });
            }
            let slot_db: Option<String> = row.get(2);
            if slot_db.as_deref().is_some_and(|d| d != database) {
                problems.push(Problem::SlotMismatch {
                    slot: slot.to_owned(),
                    what: "database",
                    actual: slot_db.unwrap_or_default(),
                    expected: database,
                });
            }
        }
        None => {
            let row = client
                .query_one(
                    "SELECT current_setting('max_replication_slots')::bigint, (SELECT count(*) FROM pg_replication_slots)",
                    &[],
                )
                .await?;
            let (max, used): (i64, i64) = (row.get(0), row.get(1));
            if used >= max {
                problems.push(Problem::NoFreeSlot { max });
            }
        }
    }
    Ok((tables, problems))
}
