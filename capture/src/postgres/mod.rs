//! PostgreSQL capture: a consistent snapshot, then logical decoding with
//! pgoutput, published to Kafka.
//!
//! ```text
//!  run ─► validate (one line per problem) ─► publication ─► stored offset?
//!           │                                                   │
//!           │       plan (policy.rs): snapshot? stream?  ◄──────┘
//!           ▼
//!   snapshot.rs: slot (re)created with an exported snapshot, tables read in it,
//!                checkpoint at the consistent point
//!           ▼
//!   stream.rs:   START_REPLICATION from the stored position; changes published;
//!                the slot's flush LSN follows what Kafka acknowledged
//! ```
//!
//! The slot is only told a position once every event up to it, and the
//! position itself, are durable in Kafka ([`crate::publish`]); a restart
//! resumes from the stored position, so nothing committed is lost. Without
//! broker transactions delivery into Kafka is at-least-once: a crash between
//! publishing a transaction and storing its position sends that transaction
//! again on restart (apply's stored offsets keep targets exactly-once).
//!
//! Built so far (issue 4): validation, catalog, type mapping, pgoutput
//! decoding, snapshot in one worker, streaming, schema versions from Relation
//! messages, unchanged TOAST values marked in `unchanged`. Not yet: parallel
//! snapshot chunks and resuming an interrupted snapshot, the
//! `<prefix>.transaction` topic, heartbeats on a database whose changes are
//! all elsewhere, metrics and progress, transactional producing.

pub mod catalog;
pub mod error;
pub mod pgoutput;
pub mod replication;
pub mod rows;
pub mod snapshot;
pub mod stream;
pub mod types;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use ferry_core::config::SecretUrl;
use ferry_core::envelope::Connector;
use ferry_core::kafka::KafkaSettings;
use ferry_core::position::SourcePosition;
use ferry_core::registry::RegistryClient;
use pgwire_replication::Lsn;

use crate::filter::TableFilter;
use crate::offsets::Offsets;
use crate::policy::SnapshotMode;
use crate::publish::{Publisher, PublisherSettings};

pub use error::CaptureError;

/// Everything `run` needs, already validated by the binary.
#[derive(Debug, Clone)]
pub struct PgCaptureConfig {
    pub source: SecretUrl,
    pub kafka: KafkaSettings,
    pub registry: SecretUrl,
    pub prefix: String,
    pub tables: TableFilter,
    pub snapshot: SnapshotMode,
    pub slot: String,
    pub publication: String,
    pub partitions: i32,
    pub tombstones: bool,
    pub transaction_topic: bool,
    pub offsets_topic: String,
}

impl PgCaptureConfig {
    /// Ferry's default slot and publication name for a prefix: `ferry_<prefix>`.
    pub fn default_name(prefix: &str) -> String {
        let clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("ferry_{clean}")
    }
}

/// Captures until `shutdown` resolves (or, with `initial_only`, until the
/// snapshot is in Kafka).
pub async fn run(config: PgCaptureConfig, shutdown: impl Future<Output = ()>) -> Result<(), CaptureError> {
    let client = replication::connect(&config.source).await?;
    let (tables, problems) = validate::validate(&client, &config.tables, &config.slot).await?;
    if !problems.is_empty() {
        return Err(CaptureError::Invalid(problems));
    }
    let database: String = client.query_one("SELECT current_database()::text", &[]).await?.get(0);
    replication::ensure_publication(&client, &config.publication, &tables).await?;

    let offsets = Offsets::open(&config.kafka, &config.offsets_topic).await?;
    let stored: Option<SourcePosition> = offsets.load(&config.prefix).await?;
    let stored_lsn = match stored {
        Some(SourcePosition::Postgres { lsn }) => Some(lsn),
        Some(other) => {
            return Err(CaptureError::Config(format!(
                "the offsets topic holds a non-PostgreSQL position for prefix {}: {other:?}; use another --prefix",
                config.prefix
            )))
        }
        None => None,
    };
    let slot_exists = replication::slot_exists(&client, &config.slot).await?;
    let plan = config.snapshot.plan(stored_lsn.is_some(), slot_exists);

    let registry = Arc::new(RegistryClient::new(&config.registry)?);
    let mut publisher = Publisher::start(
        PublisherSettings {
            kafka: config.kafka.clone(),
            prefix: config.prefix.clone(),
            connector: Connector::Postgres,
            partitions: config.partitions,
            tombstones: config.tombstones,
            transaction_topic: config.transaction_topic,
            offsets_topic: config.offsets_topic.clone(),
        },
        registry,
    )
    .await?;
    for table in &tables {
        publisher
            .register_table(catalog::table_meta(&client, table).await?)
            .await?;
    }

    let start = if plan.snapshot { None } else { stored_lsn };
    let mut repl = replication::replication(&config.source, &config.slot, &config.publication, start).await?;
    let from = if plan.snapshot {
        let (consistent, snapshot_name) = replication::create_slot(&mut repl, &config.slot, slot_exists).await?;
        tracing::info!(%consistent, tables = tables.len(), "snapshot starting");
        let spec = snapshot::SnapshotSpec {
            source: &config.source,
            snapshot_name: &snapshot_name,
            consistent,
            prefix: &config.prefix,
            database: &database,
        };
        snapshot::run(&spec, &tables, &mut publisher).await?;
        consistent
    } else {
        if !slot_exists {
            // `never`: no snapshot, the stream starts now.
            replication::create_slot(&mut repl, &config.slot, false).await?;
        }
        stored_lsn.unwrap_or_default()
    };

    let acked = publisher.acknowledged();
    if plan.stream {
        repl.start().await?;
        tracing::info!(from = %from, slot = %config.slot, "streaming");
        repl = stream::Streamer::new(&client, &config.prefix, &database, from)
            .run(repl, &mut publisher, shutdown)
            .await?;
    }
    // A clean stop: wait until everything sent is in Kafka, then tell the slot.
    publisher.finish().await?;
    let last = acked.borrow().clone();
    if let Some(SourcePosition::Postgres { lsn }) = last {
        repl.update_applied_lsn(Lsn(lsn.0));
        tracing::info!(%lsn, "acknowledged up to");
    }
    repl.shutdown().await?;
    Ok(())
}
