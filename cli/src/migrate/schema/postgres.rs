//! PostgreSQL to PostgreSQL: the source's catalog, object by object.
//!
//! ```text
//!  before the load:  the enum types the columns have
//!                    CREATE TABLE (apply's own code: columns, types, NOT NULL, primary key)
//!                    + defaults, and the sequences of serial and identity columns
//!  after the load:   secondary indexes that are not unique
//!  at the end:       unique indexes, foreign keys, the sequences' values
//! ```
//!
//! Each object is its own statement, so one that fails (a default calling a
//! function the target lacks, a foreign key to a table not migrated) is
//! reported and the rest goes on. Tables land in the target's `public`
//! schema, as apply puts them; foreign keys name the tables they reference
//! unqualified, so they resolve there.

use std::collections::BTreeSet;

use ferry_core::meta::{TableId, TableMeta};
use ferry_core::pg::{pg_message, quote_ident, quoted};

use super::Outcome;
use crate::db::Db;

/// What the source has beyond the events' columns, per table.
#[derive(Debug, Clone)]
pub struct Table {
    pub source: TableId,
    pub target: TableId,
    pub meta: TableMeta,
    /// Column names and whether each is an identity column, of the columns
    /// owning a sequence (serial, identity).
    sequences: Vec<(String, bool)>,
    /// Secondary indexes: name, unique, definition on the target table.
    indexes: Vec<(String, bool, String)>,
    /// Foreign keys: name and definition (`FOREIGN KEY (...) REFERENCES t(...)`),
    /// tables unqualified.
    foreign_keys: Vec<(String, String)>,
}

/// The schema of the tables being migrated, read from the source.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: Vec<Table>,
    /// The enum types the tables' columns have: name and labels in order.
    enums: Vec<(String, Vec<String>)>,
}

/// The PostgreSQL client of `db`, or none for another engine.
async fn client(db: &Db) -> Result<Option<tokio_postgres::Client>, String> {
    match db {
        Db::Postgres { url, config } => Db::pg(config, url).await.map(Some),
        _ => Ok(None),
    }
}

impl Schema {
    /// Reads the schema of `tables` from `source`, each bound for the table
    /// of the same name in `target_schema`; empty unless `source` is PostgreSQL.
    pub async fn read(source: &Db, tables: &[TableId], target_schema: &str) -> Result<Schema, String> {
        let Some(client) = client(source).await? else {
            return Ok(Schema::default());
        };
        // Columns and types as the capture describes them, on this one
        // connection, before the search path below changes how types print.
        let mut metas = Vec::with_capacity(tables.len());
        for id in tables {
            let meta = ferry_capture::postgres::catalog::table_meta(&client, id)
                .await
                .map_err(|e| format!("table {id}: {e}"))?;
            metas.push(meta);
        }
        // Foreign keys then name the tables they reference unqualified, as
        // the target (one schema) has them.
        let schemas: BTreeSet<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
        let path: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
        client
            .query("SELECT set_config('search_path', $1, false)", &[&path.join(", ")])
            .await
            .map_err(|e| pg_message(&e))?;
        let mut out = Vec::with_capacity(tables.len());
        let mut enums: Vec<(String, Vec<String>)> = Vec::new();
        for (id, meta) in tables.iter().zip(metas) {
            let target = TableId::new(target_schema, id.table.clone());
            let sequences = about(
                &client,
                "SELECT a.attname::text, a.attidentity <> '' FROM pg_attribute a
                     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
                       AND pg_get_serial_sequence($1::text, a.attname) IS NOT NULL ORDER BY a.attnum",
                id,
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            // `pg_get_indexdef` names the table (qualified unless the search
            // path shows it): put the target's name there.
            let indexes = about(
                &client,
                "SELECT c.relname::text, i.indisunique, pg_get_indexdef(i.indexrelid),
                            quote_ident(n.nspname) || '.' || quote_ident(t.relname), quote_ident(t.relname)
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                     JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
                     WHERE i.indrelid = $1::text::regclass AND NOT i.indisprimary ORDER BY 1",
                id,
            )
            .await?
            .iter()
            .map(|r| {
                let (index, unique, mut def): (String, bool, String) = (r.get(0), r.get(1), r.get(2));
                let on = format!(" ON {} ", quoted(&target));
                for table in [r.get::<_, String>(3), r.get(4)] {
                    for only in ["", "ONLY "] {
                        let at = format!(" ON {only}{table} ");
                        if def.contains(&at) {
                            def = def.replacen(&at, &on, 1);
                        }
                    }
                }
                let def = def
                    .replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                    .replacen("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", 1);
                (index, unique, def)
            })
            .collect();
            let foreign_keys = about(
                &client,
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
                     WHERE conrelid = $1::text::regclass AND contype = 'f' ORDER BY 1",
                id,
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            for r in about(
                &client,
                "SELECT format_type(t.oid, NULL), array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
                     FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
                     WHERE t.oid IN (SELECT atttypid FROM pg_attribute
                                     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped)
                     GROUP BY t.oid ORDER BY 1",
                id,
            )
            .await?
            {
                let enum_type: (String, Vec<String>) = (r.get(0), r.get(1));
                if !enums.contains(&enum_type) {
                    enums.push(enum_type);
                }
            }
            out.push(Table {
                source: id.clone(),
                target,
                meta,
                sequences,
                indexes,
                foreign_keys,
            });
        }
        Ok(Schema { tables: out, enums })
    }

    /// Before the load: each table with its columns, types, NOT NULL and
    /// primary key (as apply would create it), its defaults and sequences.
    pub async fn create_tables(&self, target: &Db) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let Some(mut client) = client(target).await? else {
            return Ok(outcome);
        };
        for (name, labels) in &self.enums {
            let labels: Vec<String> = labels.iter().map(|l| format!("'{}'", l.replace('\'', "''"))).collect();
            let sql = format!(
                "DO $ferry$ BEGIN CREATE TYPE {name} AS ENUM ({}); EXCEPTION WHEN duplicate_object THEN NULL; END $ferry$",
                labels.join(", ")
            );
            step(&client, &sql, format!("type {name}"), &mut outcome).await;
        }
        for t in &self.tables {
            let tx = client.transaction().await.map_err(|e| pg_message(&e))?;
            ferry_apply::postgres::schema::ensure(&tx, &t.target, &t.meta, ferry_core::envelope::Connector::Postgres)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| pg_message(&e))?;
            outcome.created.push(format!("table {}", t.target));
            let table = quoted(&t.target);
            for (column, identity) in &t.sequences {
                let sql = if *identity {
                    format!(
                        "DO $ferry$ BEGIN ALTER TABLE {table} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY; \
                         EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL; END $ferry$",
                        quote_ident(column)
                    )
                } else {
                    // A serial column: a sequence the column owns, as `serial` makes.
                    let sequence = quoted(&TableId::new(
                        t.target.schema.clone(),
                        format!("{}_{}_seq", t.target.table, column),
                    ));
                    format!(
                        "CREATE SEQUENCE IF NOT EXISTS {sequence} OWNED BY {table}.{col}; \
                         ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT nextval('{}'::regclass)",
                        sequence.replace('\'', "''"),
                        col = quote_ident(column)
                    )
                };
                step(
                    &client,
                    &sql,
                    format!("sequence of {}.{column}", t.target),
                    &mut outcome,
                )
                .await;
            }
            for c in &t.meta.columns {
                let Some(default) = &c.default else { continue };
                if default.starts_with("nextval(") || t.sequences.iter().any(|(s, _)| s == &c.name) {
                    continue;
                }
                let sql = format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    quote_ident(&c.name)
                );
                step(
                    &client,
                    &sql,
                    format!("default of {}.{}", t.target, c.name),
                    &mut outcome,
                )
                .await;
            }
        }
        Ok(outcome)
    }

    /// After the load: the secondary indexes that are not unique (`unique`
    /// false) or those that are.
    pub async fn create_indexes(&self, target: &Db, unique: bool) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let Some(client) = client(target).await? else {
            return Ok(outcome);
        };
        for t in &self.tables {
            for (name, is_unique, def) in t.indexes.iter().filter(|(_, u, _)| *u == unique) {
                let what = format!(
                    "{}index {name} on {}",
                    if *is_unique { "unique " } else { "" },
                    t.target
                );
                step(&client, def, what, &mut outcome).await;
            }
        }
        Ok(outcome)
    }

    /// At the end, once the target equals the source: unique indexes,
    /// foreign keys, and each sequence set where the source's stands.
    pub async fn finish(&self, source: &Db, target: &Db) -> Result<Outcome, String> {
        let mut outcome = self.create_indexes(target, true).await?;
        let (Some(from), Some(client)) = (client(source).await?, client(target).await?) else {
            return Ok(outcome);
        };
        // Referenced tables are named unqualified: the target's schema.
        for t in &self.tables {
            client
                .query(
                    "SELECT set_config('search_path', $1, false)",
                    &[&quote_ident(&t.target.schema)],
                )
                .await
                .map_err(|e| pg_message(&e))?;
            for (name, def) in &t.foreign_keys {
                let sql = format!(
                    "DO $ferry$ BEGIN ALTER TABLE {} ADD CONSTRAINT {} {def}; EXCEPTION WHEN duplicate_object THEN NULL; END $ferry$",
                    quoted(&t.target),
                    quote_ident(name)
                );
                step(
                    &client,
                    &sql,
                    format!("foreign key {name} on {}", t.target),
                    &mut outcome,
                )
                .await;
            }
            for (column, _) in &t.sequences {
                let row = from
                    .query_one(
                        &format!(
                            "SELECT last_value, is_called FROM {}",
                            from.query_one(
                                "SELECT pg_get_serial_sequence($1::text, $2::text)",
                                &[&quoted(&t.source), column]
                            )
                            .await
                            .map_err(|e| pg_message(&e))?
                            .get::<_, String>(0)
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| pg_message(&e))?;
                let (value, called): (i64, bool) = (row.get(0), row.get(1));
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{}', '{}'), {value}, {called})",
                    quoted(&t.target).replace('\'', "''"),
                    column.replace('\'', "''")
                );
                step(
                    &client,
                    &sql,
                    format!("sequence of {}.{column} at {value}", t.target),
                    &mut outcome,
                )
                .await;
            }
        }
        Ok(outcome)
    }
}

/// The rows of a catalog query about table `id` (`$1`: its quoted name).
async fn about(client: &tokio_postgres::Client, sql: &str, id: &TableId) -> Result<Vec<tokio_postgres::Row>, String> {
    client
        .query(sql, &[&quoted(id)])
        .await
        .map_err(|e| format!("table {id}: {}", pg_message(&e)))
}

/// Runs one object's statement; `what` goes to the created or the left.
async fn step(client: &tokio_postgres::Client, sql: &str, what: String, outcome: &mut Outcome) {
    match client.batch_execute(sql).await {
        Ok(()) => outcome.created.push(what),
        Err(e) => outcome.left.push(format!("{what}: {}", pg_message(&e))),
    }
}
