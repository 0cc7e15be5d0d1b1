//! Schema migration for `ferry migrate` between databases of one engine: the
//! source's tables as the source has them, not only as the events describe
//! them (which is what apply creates on its own: columns, types, NOT NULL,
//! primary key).
//!
//! ```text
//!  before the load:  tables with their defaults (and sequences, auto-increments)
//!  after the load:   secondary indexes that are not unique (cheaper once than row by row)
//!  at the end:       unique indexes, foreign keys, sequence and auto-increment values
//! ```
//!
//! Unique indexes and foreign keys wait for the end (the full load's end, or
//! the cutover, once the target validated equal) because apply keeps the
//! order of changes per key, not across keys or tables: while changes flow,
//! a child row may arrive before its parent, and two rows that swap a unique
//! value may be applied one before the other. Once the target has every
//! change, both hold as they do in the source. Each object is created on
//! its own: one that fails is reported, with the reason, as left to the
//! operator, and the rest goes on. Every statement can run again, so a
//! resumed migration repeats the steps harmlessly.
//!
//! One module per engine: `postgres.rs` reads the catalog object by object,
//! `mysql.rs` splits the source's own `SHOW CREATE TABLE`.

mod mysql;
mod postgres;

use ferry_capture::filter::TableFilter;

use crate::db::Db;

/// What a step did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub created: Vec<String>,
    /// Objects not created, each with the reason.
    pub left: Vec<String>,
}

impl Outcome {
    /// The report lines of a step.
    pub fn render(&self, step: &str) -> String {
        let mut out = format!("schema, {step}: {} created", self.created.len());
        if !self.created.is_empty() {
            out.push_str(&format!(" ({})", self.created.join(", ")));
        }
        out.push('\n');
        for l in &self.left {
            out.push_str(&format!("schema, {step}: left to the operator: {l}\n"));
        }
        out
    }

    fn absorb(&mut self, other: Outcome) {
        self.created.extend(other.created);
        self.left.extend(other.left);
    }
}

/// The schema of the tables being migrated, read from the source when some
/// target has its engine.
#[derive(Debug, Clone, Default)]
pub enum Schema {
    /// Apply creates the tables from the events.
    #[default]
    Events,
    Postgres(postgres::Schema),
    Mysql(mysql::Schema),
}

impl Schema {
    /// Reads the schema of the source's tables that `tables` includes.
    pub async fn read(source: Option<&Db>, targets: &[&Db], tables: &str) -> Result<Schema, String> {
        let same = |f: fn(&Db) -> bool| targets.iter().any(|t| f(t));
        let Some(source) = source else {
            return Ok(Schema::Events);
        };
        let filter = || TableFilter::parse(tables).map_err(|e| e.to_string());
        match source {
            Db::Postgres { .. } if same(|t| matches!(t, Db::Postgres { .. })) => {
                let ids = source.tables(&filter()?).await?;
                postgres::Schema::read(source, &ids, "public")
                    .await
                    .map(Schema::Postgres)
            }
            Db::Mysql { .. } if same(|t| matches!(t, Db::Mysql { .. })) => {
                let ids = source.tables(&filter()?).await?;
                mysql::Schema::read(source, &ids).await.map(Schema::Mysql)
            }
            _ => Ok(Schema::Events),
        }
    }

    /// Before the load: the tables, their defaults and what generates keys.
    pub async fn create_tables(&self, target: &Db) -> Result<Outcome, String> {
        match self {
            Schema::Events => Ok(Outcome::default()),
            Schema::Postgres(s) => s.create_tables(target).await,
            Schema::Mysql(s) => s.create_tables(target).await,
        }
    }

    /// After the load: the secondary indexes that are not unique.
    pub async fn create_indexes(&self, target: &Db) -> Result<Outcome, String> {
        match self {
            Schema::Events => Ok(Outcome::default()),
            Schema::Postgres(s) => s.create_indexes(target, false).await,
            Schema::Mysql(s) => s.create_keys(target, false).await,
        }
    }

    /// At the end, once the target equals the source: the indexes that are
    /// not unique unless `indexed` (a cutover may come before the load was
    /// in), unique indexes, foreign keys, and where the source's sequences
    /// or auto-increments stand.
    pub async fn finish(&self, source: &Db, target: &Db, indexed: bool) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        if !indexed {
            outcome.absorb(self.create_indexes(target).await?);
        }
        outcome.absorb(match self {
            Schema::Events => Outcome::default(),
            Schema::Postgres(s) => s.finish(source, target).await?,
            Schema::Mysql(s) => s.finish(source, target).await?,
        });
        Ok(outcome)
    }
}
