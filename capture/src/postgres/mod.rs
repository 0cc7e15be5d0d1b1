//! PostgreSQL capture: a consistent snapshot, then logical decoding with
//! pgoutput, published to Kafka.
//!
//! ```text
//!  run ─► validate (one line per problem) ─► publication ─► stored position and snapshot state
//!           │                                                   │
//!           │       plan (policy.rs): which tables to snapshot, stream or not
//!           ▼
//!   new slot (first start, `always`, `when_needed` after a lost slot):
//!       slot created with an exported snapshot at L; L stored; every table read in it
//!   slot kept (restart): tables without a complete snapshot (interrupted, or
//!       added to the include list) read in a temporary slot's snapshot at S
//!           ▼
//!   stream.rs: START_REPLICATION from the stored position; changes published
//!              (a table read at S skips what committed before S); the slot's
//!              flush LSN follows what Kafka acknowledged
//! ```
//!
//! The slot is only told a position once every event up to it, and the
//! position itself, are durable in Kafka ([`crate::publish`]); a restart
//! resumes from the stored position, so nothing committed is lost. Without
//! broker transactions delivery into Kafka is at-least-once: a crash between
//! publishing a transaction and storing its position sends that transaction
//! again on restart, and a crash in a table's snapshot reads that table again
//! (apply's stored offsets keep targets exactly-once).

pub mod binary;
pub mod catalog;
pub mod copy;
pub mod error;
pub mod pgoutput;
pub mod replication;
pub mod rows;
pub mod snapshot;
pub mod stream;
pub mod types;
pub mod validate;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::envelope::Connector;
use ferry_core::meta::TableId;
use ferry_core::metrics::Phase;
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::registry::RegistryClient;
use pgwire_replication::{Lsn, ReplicationClient};

use crate::offsets::{load_capture, Offsets, Resume, SnapshotState};
use crate::policy::Scope;
use crate::publish::Publisher;
use crate::settings::CaptureSettings;
use crate::RECONNECT;

pub use error::CaptureError;

/// Everything `run` needs, already validated by the binary.
#[derive(Debug, Clone)]
pub struct PgCaptureConfig {
    pub common: CaptureSettings,
    /// Heap pages per snapshot chunk.
    pub snapshot_chunk_pages: i64,
    pub slot: String,
    pub publication: String,
    /// How often to write a heartbeat into the WAL; `None`: never.
    pub heartbeat: Option<Duration>,
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
/// snapshot is in Kafka). A snapshot that loses the source starts again in
/// this process ([`crate::restarting_snapshots`]).
pub async fn run(config: PgCaptureConfig, shutdown: impl Future<Output = ()>) -> Result<(), CaptureError> {
    let common = config.common.clone();
    crate::supervised(&common, CaptureError::Config, |phase, status| async move {
        crate::restarting_snapshots(&phase, shutdown, CaptureError::is_reconnectable, |shutdown| {
            capture(&config, shutdown, &phase, &status)
        })
        .await
    })
    .await
}

async fn capture(
    config: &PgCaptureConfig,
    shutdown: impl Future<Output = ()>,
    phase: &tokio::sync::watch::Sender<Phase>,
    status: &std::sync::Arc<ferry_core::status::Reporter>,
) -> Result<(), CaptureError> {
    let client = replication::connect(&config.common.source).await?;
    let (tables, problems) =
        validate::validate(&client, &config.common.tables, &config.slot, &config.publication).await?;
    if !problems.is_empty() {
        return Err(CaptureError::Invalid(problems));
    }
    ferry_core::names::table_topics(&config.common.prefix, &tables).map_err(crate::publish::PublishError::from)?;
    let database: String = client.query_one("SELECT current_database()::text", &[]).await?.get(0);
    replication::ensure_publication(&client, &config.publication, &tables).await?;

    let offsets = Offsets::open(&config.common.kafka, &config.common.offsets_topic).await?;
    let Resume {
        position,
        mut state,
        state_key,
    } = load_capture(&offsets, &config.common.prefix, Connector::Postgres).await?;
    let stored_lsn = match position {
        Some(SourcePosition::Postgres { lsn }) => Some(lsn),
        _ => None,
    };
    let slot_exists = replication::slot_exists(&client, &config.slot).await?;
    let plan = config.common.snapshot.plan(stored_lsn.is_some(), slot_exists);
    if stored_lsn.is_some() && !slot_exists && plan.snapshot != Scope::All {
        return Err(CaptureError::Config(format!(
            "replication slot {} is gone, and with it the changes since the stored position {}; \
             start with --snapshot when_needed (or always) to read the tables again",
            config.slot,
            stored_lsn.unwrap_or_default()
        )));
    }

    let registry = Arc::new(RegistryClient::with_access(&config.common.registry)?);
    let mut publisher = Publisher::start(config.common.publisher(Connector::Postgres), registry).await?;
    status.follow(publisher.acknowledged());
    for table in &tables {
        publisher
            .register_table(catalog::table_meta(&client, table).await?)
            .await?;
    }

    let new_slot = plan.snapshot == Scope::All || !slot_exists;
    let mut repl = replication::replication(
        &config.common.source,
        &config.slot,
        &config.publication,
        if new_slot {
            None
        } else {
            stored_lsn.map(|lsn| replication::Start { from: lsn, acked: lsn })
        },
    )
    .await?;
    let spec = |snapshot_name, at| snapshot::SnapshotSpec {
        source: &config.common.source,
        snapshot_name,
        at,
        prefix: &config.common.prefix,
        database: &database,
        workers: config.common.snapshot_workers,
        chunk_pages: config.snapshot_chunk_pages,
        state_key: &state_key,
    };
    let from = if new_slot {
        let (consistent, snapshot_name) = replication::create_slot(&mut repl, &config.slot, slot_exists).await?;
        // The stream starts here whatever happens to the snapshot.
        publisher
            .checkpoint(SourcePosition::Postgres { lsn: consistent })
            .await?;
        state = SnapshotState::default();
        if plan.snapshot != Scope::Nothing {
            // Everything read again from a new starting point (`always`, a
            // slot gone): the changes between the old position and this one
            // are not in the log any more, so a table whose topic holds
            // events is truncated first (see crate::snapshot), or a row
            // deleted meanwhile would outlive its delete in targets.
            let reread = publisher.tables_with_messages(&tables).await?;
            phase.send_replace(Phase::Snapshot);
            tracing::info!(%consistent, tables = tables.len(), "snapshot starting");
            if let Err(e) = snapshot::run(
                &spec(&snapshot_name, consistent),
                &tables,
                reread,
                &mut publisher,
                &mut state,
            )
            .await
            {
                return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
            }
        } else {
            // `never`: no snapshot; every table counts as read from here.
            for table in &tables {
                state.complete(table.clone(), SourcePosition::Postgres { lsn: consistent });
            }
            publisher.store_after_sent(state_key.clone(), &state).await?;
        }
        consistent
    } else {
        let missing: Vec<TableId> = tables.iter().filter(|t| state.get(t).is_none()).cloned().collect();
        if plan.snapshot == Scope::Missing && !missing.is_empty() {
            // Read again after an interrupted snapshot: truncated first
            // (see crate::snapshot).
            let reread = publisher.tables_with_messages(&missing).await?;
            let (mut session, at, snapshot_name) =
                replication::temporary_snapshot(&config.common.source, &config.slot, &config.publication).await?;
            phase.send_replace(Phase::Snapshot);
            tracing::info!(%at, tables = missing.len(), "snapshot of the tables not yet read starting");
            if let Err(e) = snapshot::run(&spec(&snapshot_name, at), &missing, reread, &mut publisher, &mut state).await
            {
                return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
            }
            // Ending the session drops its temporary slot.
            session.abort();
        }
        stored_lsn.unwrap_or_default()
    };

    let acked = publisher.acknowledged();
    if !plan.stream {
        // `initial_only`: the slot stays at its consistent point for a later start.
        publisher.finish().await?;
        repl.abort();
        return Ok(());
    }
    repl.start().await?;
    tracing::info!(from = %from, slot = %config.slot, "streaming");
    let snapshotted_at: HashMap<TableId, PgLsn> = state
        .done
        .iter()
        .filter_map(|t| match t.at {
            SourcePosition::Postgres { lsn } => Some((t.table.clone(), lsn)),
            _ => None,
        })
        .collect();
    phase.send_replace(Phase::Streaming);
    let mut streamer = stream::Streamer::new(
        client,
        &config.common.prefix,
        &database,
        &config.slot,
        config.heartbeat,
        from,
        snapshotted_at,
    );
    tokio::pin!(shutdown);
    let repl = stream_reconnecting(config, &mut streamer, repl, &mut publisher, &mut shutdown).await?;
    // A clean stop: wait until everything sent is in Kafka, then tell the slot.
    phase.send_replace(Phase::Stopping);
    publisher.finish().await?;
    let last = acked.borrow().clone();
    if let (Some(mut repl), Some(SourcePosition::Postgres { lsn })) = (repl, last) {
        repl.update_applied_lsn(Lsn(lsn.0));
        tracing::info!(%lsn, "acknowledged up to");
        repl.shutdown().await?;
    }
    Ok(())
}

/// Streams until `shutdown`, reopening lost connections (with back-off)
/// after the last checkpoint sent (see `stream.rs`). Gives back the
/// replication session, if one is open, for the final acknowledgement.
async fn stream_reconnecting(
    config: &PgCaptureConfig,
    streamer: &mut stream::Streamer<'_>,
    mut repl: ReplicationClient,
    publisher: &mut Publisher,
    mut shutdown: impl Future<Output = ()> + Unpin,
) -> Result<Option<ReplicationClient>, CaptureError> {
    let reconnects = metrics::counter!("ferry_capture_reconnects_total");
    loop {
        let lost = match streamer.run(repl, publisher, &mut shutdown).await {
            Ok(repl) => return Ok(Some(repl)),
            Err(e) if e.is_reconnectable() => e,
            Err(e) => return Err(e),
        };
        tracing::warn!(error = %lost, from = %streamer.checkpointed(), "lost the source; resuming after the last checkpoint");
        streamer.interrupted();
        let mut backoff = RECONNECT.0;
        repl = loop {
            tokio::select! {
                () = &mut shutdown => return Ok(None),
                () = tokio::time::sleep(backoff) => {}
            }
            // Nothing acknowledged yet: the slot is told nothing (0 never moves it).
            let acked = match publisher.acknowledged().borrow().clone() {
                Some(SourcePosition::Postgres { lsn }) => lsn,
                _ => PgLsn::default(),
            };
            match reopen(config, streamer.checkpointed(), acked).await {
                Ok((client, repl)) => {
                    streamer.client = client;
                    break repl;
                }
                Err(e) if e.is_reconnectable() => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the source; retrying");
                    backoff = (backoff * 2).min(RECONNECT.1);
                }
                Err(e) => return Err(e),
            }
        };
        reconnects.increment(1);
        tracing::info!(from = %streamer.checkpointed(), "streaming again");
    }
}

/// A new query connection and a started replication session from `from`,
/// telling the slot that Kafka holds everything up to `acked`.
async fn reopen(
    config: &PgCaptureConfig,
    from: PgLsn,
    acked: PgLsn,
) -> Result<(tokio_postgres::Client, ReplicationClient), CaptureError> {
    let client = replication::connect(&config.common.source).await?;
    let mut repl = replication::replication(
        &config.common.source,
        &config.slot,
        &config.publication,
        Some(replication::Start { from, acked }),
    )
    .await?;
    repl.start().await?;
    Ok((client, repl))
}
