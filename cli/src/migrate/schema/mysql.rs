//! MySQL/MariaDB to MySQL/MariaDB: the source's own `SHOW CREATE TABLE`,
//! split in three.
//!
//! ```text
//!  before the load:  CREATE TABLE IF NOT EXISTS as the source has it (exact types, defaults,
//!                    AUTO_INCREMENT column, charset, collation, CHECK constraints), without
//!                    its secondary keys, foreign keys and AUTO_INCREMENT= counter
//!  after the load:   ALTER TABLE ADD KEY / FULLTEXT / SPATIAL for each key that is not unique
//!  at the end:       ALTER TABLE ADD UNIQUE KEY, ADD CONSTRAINT ... FOREIGN KEY, AUTO_INCREMENT = the source's
//! ```
//!
//! `SHOW CREATE TABLE` puts each definition on a line of its own, so the
//! split is by line. The table and the tables its foreign keys reference are
//! named unqualified (the source's own database), so they land in the
//! target's database, where apply puts them.

use ferry_core::meta::TableId;
use ferry_core::mysql::quote_ident;
use mysql_async::prelude::Queryable;

use super::Outcome;
use crate::db::Db;

/// One table, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    source: TableId,
    /// `CREATE TABLE IF NOT EXISTS` with the columns, primary key and checks.
    create: String,
    /// Secondary keys: name, unique, definition (`KEY \`k\` (\`c\`)`).
    keys: Vec<(String, bool, String)>,
    /// Foreign keys: name, definition (`CONSTRAINT \`f\` FOREIGN KEY ...`).
    foreign_keys: Vec<(String, String)>,
}

/// The tables being migrated, as the source has them.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    tables: Vec<Table>,
}

/// The connection of `db`, or none for another engine.
async fn conn(db: &Db) -> Result<Option<mysql_async::Conn>, String> {
    match db {
        Db::Mysql { url, opts, .. } => Db::my(opts, url).await.map(Some),
        _ => Ok(None),
    }
}

/// The name in the first backquotes of `def`.
fn name(def: &str) -> String {
    def.split('`').nth(1).unwrap_or_default().to_owned()
}

/// Splits a `SHOW CREATE TABLE` of `source`.
fn split(source: &TableId, show: &str) -> Table {
    let mut lines = show.lines();
    let head = lines.next().unwrap_or_default();
    let mut body: Vec<&str> = lines.collect();
    let tail = body.pop().unwrap_or_default();
    let mut kept = Vec::new();
    let mut keys = Vec::new();
    let mut foreign_keys = Vec::new();
    for line in body {
        let def = line.trim();
        let def = def.strip_suffix(',').unwrap_or(def);
        if def.starts_with("UNIQUE KEY ") {
            keys.push((name(def), true, def.to_owned()));
        } else if ["KEY ", "INDEX ", "FULLTEXT ", "SPATIAL "]
            .iter()
            .any(|k| def.starts_with(k))
        {
            keys.push((name(def), false, def.to_owned()));
        } else if def.starts_with("CONSTRAINT ") && def.contains(" FOREIGN KEY ") {
            foreign_keys.push((name(def), def.to_owned()));
        } else {
            kept.push(format!("  {def}"));
        }
    }
    // The counter is set at the end, where the source's then stands.
    let options: Vec<&str> = tail.split(' ').filter(|o| !o.starts_with("AUTO_INCREMENT=")).collect();
    Table {
        source: source.clone(),
        create: format!(
            "{}\n{}\n{}",
            head.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1),
            kept.join(",\n"),
            options.join(" ")
        ),
        keys,
        foreign_keys,
    }
}

/// Runs one object's statement; `what` goes to the created or the left. An
/// object already there (a resumed migration) counts as created.
async fn step(conn: &mut mysql_async::Conn, sql: &str, what: String, outcome: &mut Outcome) {
    match conn.query_drop(sql).await {
        Ok(()) => outcome.created.push(what),
        // Already there: 1061 duplicate key name, 1826 duplicate foreign key name.
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1061 | 1826) => outcome.created.push(what),
        Err(mysql_async::Error::Server(e)) => outcome.left.push(format!("{what}: {} (error {})", e.message, e.code)),
        Err(e) => outcome.left.push(format!("{what}: {e}")),
    }
}

impl Schema {
    /// Reads `tables` of `source`.
    pub async fn read(source: &Db, tables: &[TableId]) -> Result<Schema, String> {
        let Some(mut conn) = conn(source).await? else {
            return Ok(Schema::default());
        };
        let mut out = Vec::with_capacity(tables.len());
        for id in tables {
            let show: Option<(String, String)> = conn
                .query_first(format!("SHOW CREATE TABLE {}", ferry_core::mysql::quoted(id)))
                .await
                .map_err(|e| format!("table {id}: {e}"))?;
            let (_, show) = show.ok_or_else(|| format!("table {id}: SHOW CREATE TABLE returned nothing"))?;
            out.push(split(id, &show));
        }
        Ok(Schema { tables: out })
    }

    /// Before the load: each table as the source has it, without its
    /// secondary keys and foreign keys.
    pub async fn create_tables(&self, target: &Db) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let Some(mut conn) = conn(target).await? else {
            return Ok(outcome);
        };
        for t in &self.tables {
            step(&mut conn, &t.create, format!("table {}", t.source.table), &mut outcome).await;
        }
        Ok(outcome)
    }

    /// The secondary keys that are `unique`, or those that are not.
    pub async fn create_keys(&self, target: &Db, unique: bool) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let Some(mut conn) = conn(target).await? else {
            return Ok(outcome);
        };
        for t in &self.tables {
            for (key, is_unique, def) in t.keys.iter().filter(|(_, u, _)| *u == unique) {
                let sql = format!("ALTER TABLE {} ADD {def}", quote_ident(&t.source.table));
                let what = format!(
                    "{}key {key} on {}",
                    if *is_unique { "unique " } else { "" },
                    t.source.table
                );
                step(&mut conn, &sql, what, &mut outcome).await;
            }
        }
        Ok(outcome)
    }

    /// At the end: unique keys, foreign keys, and each AUTO_INCREMENT
    /// counter where the source's stands.
    pub async fn finish(&self, source: &Db, target: &Db) -> Result<Outcome, String> {
        let mut outcome = self.create_keys(target, true).await?;
        let (Some(mut from), Some(mut conn)) = (conn(source).await?, conn(target).await?) else {
            return Ok(outcome);
        };
        for t in &self.tables {
            let table = quote_ident(&t.source.table);
            for (key, def) in &t.foreign_keys {
                let sql = format!("ALTER TABLE {table} ADD {def}");
                step(
                    &mut conn,
                    &sql,
                    format!("foreign key {key} on {}", t.source.table),
                    &mut outcome,
                )
                .await;
            }
            let next: Option<Option<u64>> = from
                .exec_first(
                    "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (&t.source.schema, &t.source.table),
                )
                .await
                .map_err(|e| format!("table {}: {e}", t.source))?;
            if let Some(Some(next)) = next {
                let sql = format!("ALTER TABLE {table} AUTO_INCREMENT = {next}");
                let what = format!("auto-increment of {} at {next}", t.source.table);
                step(&mut conn, &sql, what, &mut outcome).await;
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_create_table_is_split_into_the_table_its_keys_and_its_foreign_keys() {
        let show = "CREATE TABLE `orders` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `customer_id` int(11) NOT NULL,
  `email` varchar(80) DEFAULT 'x,y',
  PRIMARY KEY (`id`),
  UNIQUE KEY `email` (`email`),
  KEY `by_customer` (`customer_id`),
  FULLTEXT KEY `words` (`email`),
  CONSTRAINT `orders_ibfk_1` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE,
  CONSTRAINT `positive` CHECK (`customer_id` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=3001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
        let t = split(&TableId::new("shop", "orders"), show);
        assert_eq!(
            t.create,
            "CREATE TABLE IF NOT EXISTS `orders` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `customer_id` int(11) NOT NULL,
  `email` varchar(80) DEFAULT 'x,y',
  PRIMARY KEY (`id`),
  CONSTRAINT `positive` CHECK (`customer_id` > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
        );
        assert_eq!(
            t.keys,
            [
                ("email".to_owned(), true, "UNIQUE KEY `email` (`email`)".to_owned()),
                (
                    "by_customer".to_owned(),
                    false,
                    "KEY `by_customer` (`customer_id`)".to_owned()
                ),
                ("words".to_owned(), false, "FULLTEXT KEY `words` (`email`)".to_owned()),
            ]
        );
        assert_eq!(
            t.foreign_keys,
            [(
                "orders_ibfk_1".to_owned(),
                "CONSTRAINT `orders_ibfk_1` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE"
                    .to_owned()
            )]
        );
    }
}
