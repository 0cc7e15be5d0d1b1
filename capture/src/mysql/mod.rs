//! MySQL/MariaDB capture: a consistent snapshot, then the row binlog,
//! published to Kafka.
//!
//! ```text
//!  run ─► validate (one line per problem) ─► stored position and snapshot state
//!           │
//!           │   plan (policy.rs): which tables to snapshot, stream or not
//!           ▼
//!   no position (first start, `always`, `when_needed` after a purge):
//!       snapshots opened at binlog position S (snapshot.rs); S stored; every table read
//!   position P stored: tables without a complete snapshot read at a new S
//!           ▼
//!   binlog.rs: from the stored position (by GTID on MariaDB); a table read at S
//!              skips what committed before S; a dropped connection or a
//!              restarting server is reconnected from the last checkpoint
//! ```
//!
//! The stored position moves only once every event before it is in Kafka
//! ([`crate::publish`]), so nothing committed is lost; without broker
//! transactions a crash may send the last transactions again (apply's stored
//! offsets keep targets exactly-once).

pub mod binlog;
pub mod error;
pub mod snapshot;
pub mod types;
pub mod validate;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use ferry_core::envelope::Connector;
use ferry_core::meta::TableId;
use ferry_core::metrics::Phase;
use ferry_core::position::{BinlogPosition, SourcePosition};
use ferry_core::registry::RegistryClient;
use mysql_async::prelude::Queryable;

use crate::offsets::{load_capture, Offsets, Resume, SnapshotState};
use crate::policy::Scope;
use crate::publish::Publisher;
use crate::settings::CaptureSettings;
use crate::RECONNECT;

pub use binlog::Start;
pub use error::CaptureError;

/// Everything `run` needs, already validated by the binary.
#[derive(Debug, Clone)]
pub struct MysqlCaptureConfig {
    pub common: CaptureSettings,
    /// Rows per snapshot chunk of a large table.
    pub snapshot_chunk_rows: u64,
    /// The id capture registers with as a replica.
    pub server_id: u32,
}

/// Captures until `shutdown` resolves (or, with `initial_only`, until the
/// snapshot is in Kafka). A snapshot that loses the source starts again in
/// this process ([`crate::restarting_snapshots`]).
pub async fn run(config: MysqlCaptureConfig, shutdown: impl Future<Output = ()>) -> Result<(), CaptureError> {
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
    config: &MysqlCaptureConfig,
    shutdown: impl Future<Output = ()>,
    phase: &tokio::sync::watch::Sender<Phase>,
    status: &std::sync::Arc<ferry_core::status::Reporter>,
) -> Result<(), CaptureError> {
    let opts = ferry_core::mysql::opts(&config.common.source, "--source")?;
    let mut conn = ferry_core::mysql::connect(&opts, &config.common.source).await?;
    let mariadb = ferry_core::mysql::is_mariadb(&mut conn).await?;
    let (metas, problems) = validate::validate(&mut conn, &config.common.tables, config.server_id, mariadb).await?;
    if !problems.is_empty() {
        return Err(CaptureError::Invalid(problems));
    }
    let tables: Vec<TableId> = metas.iter().map(|m| m.id.clone()).collect();
    ferry_core::names::table_topics(&config.common.prefix, &tables).map_err(crate::publish::PublishError::from)?;

    let offsets = Offsets::open(&config.common.kafka, &config.common.offsets_topic).await?;
    let Resume {
        position: resumed,
        mut state,
        state_key,
    } = load_capture(&offsets, &config.common.prefix, Connector::Mysql).await?;
    let stored = match resumed {
        Some(SourcePosition::Mysql { binlog, gtids }) => Some(Start { binlog, gtids }),
        _ => None,
    };
    let available = match &stored {
        Some(start) => has_binlog(&mut conn, &start.binlog.file).await?,
        None => true,
    };
    let plan = config.common.snapshot.plan(stored.is_some(), available);
    if let (Some(start), false) = (&stored, available) {
        if plan.snapshot != Scope::All {
            return Err(CaptureError::Purged {
                position: format!("{}:{}", start.binlog.file, start.binlog.pos),
                reason: format!("binlog file {} was purged", start.binlog.file),
            });
        }
    }

    let registry = Arc::new(RegistryClient::with_access(&config.common.registry)?);
    let mut publisher = Publisher::start(config.common.publisher(Connector::Mysql), registry).await?;
    status.follow(publisher.acknowledged());
    for meta in metas {
        publisher.register_table(meta).await?;
    }

    let spec = snapshot::SnapshotSpec {
        prefix: &config.common.prefix,
        state_key: &state_key,
        chunk_rows: config.snapshot_chunk_rows,
    };
    let start = match (plan.snapshot, stored) {
        (Scope::All, _) | (_, None) => {
            state = SnapshotState::default();
            if plan.snapshot == Scope::Nothing {
                // `never`: stream from now; every table counts as read here.
                let (file, pos) = snapshot::master_position(&mut conn).await?;
                let gtids = snapshot::gtids_at(&mut conn, mariadb, &file, pos).await?;
                let start = Start {
                    binlog: BinlogPosition { file, pos, row: 0 },
                    gtids,
                };
                publisher.checkpoint(position(&start)).await?;
                for table in &tables {
                    state.complete(table.clone(), position(&start));
                }
                publisher.store_after_sent(state_key.clone(), &state).await?;
                start
            } else {
                let snapshots =
                    snapshot::open(&opts, &config.common.source, config.common.snapshot_workers, mariadb).await?;
                let start = snapshots.start.clone();
                // Everything read from a new starting point: after a first
                // start killed before it stored its position (rows of its
                // snapshot and nothing saying so), with `always`, or after a
                // purge. The changes since whatever was read before are not
                // in the log, so a table whose topic holds events is
                // truncated first (see crate::snapshot), or a row deleted
                // meanwhile would outlive its delete in targets.
                let reread = publisher.tables_with_messages(&tables).await?;
                // The stream starts here whatever happens to the snapshot.
                publisher.checkpoint(position(&start)).await?;
                phase.send_replace(Phase::Snapshot);
                tracing::info!(file = %start.binlog.file, pos = start.binlog.pos, tables = tables.len(), "snapshot starting");
                if let Err(e) = snapshot::run(&spec, snapshots, &tables, reread, &mut publisher, &mut state).await {
                    return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
                }
                start
            }
        }
        (scope, Some(stored)) => {
            let missing: Vec<TableId> = tables.iter().filter(|t| state.get(t).is_none()).cloned().collect();
            if scope == Scope::Missing && !missing.is_empty() {
                // Read again after an interrupted snapshot: truncated first
                // (see crate::snapshot).
                let reread = publisher.tables_with_messages(&missing).await?;
                let snapshots =
                    snapshot::open(&opts, &config.common.source, config.common.snapshot_workers, mariadb).await?;
                phase.send_replace(Phase::Snapshot);
                tracing::info!(tables = missing.len(), "snapshot of the tables not yet read starting");
                if let Err(e) = snapshot::run(&spec, snapshots, &missing, reread, &mut publisher, &mut state).await {
                    return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
                }
            }
            stored
        }
    };
    conn.disconnect().await.ok();

    if !plan.stream {
        publisher.finish().await?;
        return Ok(());
    }
    let snapshotted_at: HashMap<TableId, BinlogPosition> = state
        .done
        .iter()
        .filter_map(|t| match &t.at {
            SourcePosition::Mysql { binlog, .. } if *binlog > start.binlog => Some((t.table.clone(), binlog.clone())),
            _ => None,
        })
        .collect();
    phase.send_replace(Phase::Streaming);
    let mut streamer = binlog::Streamer::new(&config.common.prefix, &config.common.tables, start, snapshotted_at);
    tokio::pin!(shutdown);
    let mut backoff = RECONNECT.0;
    loop {
        let from = streamer.checkpointed.clone();
        let stream = match binlog::open(&opts, &config.common.source, config.server_id, mariadb, &from).await {
            Ok(stream) => stream,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the source; retrying");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT.1);
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::info!(file = %from.binlog.file, pos = from.binlog.pos, gtids = %from.gtids.as_ref().map(ToString::to_string).unwrap_or_default(), "streaming");
        match streamer.run(stream, &mut publisher, &mut shutdown).await {
            Ok(()) => break,
            Err(e) if e.is_reconnectable() => {
                tracing::warn!(error = %e, "binlog stream lost; resuming from the last checkpoint");
                streamer.interrupted();
                backoff = RECONNECT.0;
            }
            Err(e) => return Err(e),
        }
    }
    phase.send_replace(Phase::Stopping);
    publisher.finish().await?;
    Ok(())
}

fn position(start: &Start) -> SourcePosition {
    SourcePosition::Mysql {
        binlog: start.binlog.clone(),
        gtids: start.gtids.clone(),
    }
}

/// Whether the server still has binlog file `file`.
async fn has_binlog(conn: &mut mysql_async::Conn, file: &str) -> Result<bool, CaptureError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows.iter().any(|r| r.get::<String, _>(0).as_deref() == Some(file)))
}
