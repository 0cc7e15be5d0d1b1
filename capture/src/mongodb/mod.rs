//! MongoDB capture: collections read once, then the change stream, published
//! to Kafka in Debezium's MongoDB shape (`ferry_core::document`).
//!
//! ```text
//!  run ─► validate (replica set, privileges, collections, images) ─► stored token and snapshot state
//!           │   plan (policy.rs)
//!           ▼
//!   no position (first start, `always`, `when_needed` after history was lost):
//!       cluster time T0 stored; every collection read (snapshot.rs); stream from T0
//!   token stored: collections without a complete snapshot read now; stream after the token
//!           ▼
//!   stream.rs: events in order; the token stored once they are in Kafka; a dropped
//!              connection is reopened after the last stored token
//! ```
//!
//! A collection read after the stream's starting point is harmless: see
//! snapshot.rs for why repeated events cannot leave a target wrong.

pub mod change;
pub mod error;
pub mod snapshot;
pub mod stream;
pub mod validate;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::envelope::Connector;
use ferry_core::metrics::Phase;
use ferry_core::position::SourcePosition;
use ferry_core::registry::RegistryClient;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::offsets::{load_capture, Offsets, Resume, SnapshotState};
use crate::policy::{Scope, SnapshotMode};
use crate::publish::Publisher;
use crate::settings::CaptureSettings;

pub use error::CaptureError;

/// Whether to ask the stream for a document image (`--full-document` for the
/// document after an update, `--before` for the one before a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    Off,
    /// `updateLookup` (after) / `whenAvailable` (before).
    WhenAvailable,
    /// MongoDB 6.0+ images, the collection must record them.
    Required,
}

impl Images {
    /// `--full-document`: `updateLookup`, `required` or `off`.
    pub fn full_document(s: &str) -> Result<Self, String> {
        match s {
            "updateLookup" => Ok(Images::WhenAvailable),
            "required" => Ok(Images::Required),
            "off" => Ok(Images::Off),
            other => Err(format!("--full-document {other:?}: use updateLookup, required or off")),
        }
    }

    /// `--before`: `whenAvailable`, `required` or `off`.
    pub fn before(s: &str) -> Result<Self, String> {
        match s {
            "whenAvailable" => Ok(Images::WhenAvailable),
            "required" => Ok(Images::Required),
            "off" => Ok(Images::Off),
            other => Err(format!("--before {other:?}: use whenAvailable, required or off")),
        }
    }
}

/// Everything `run` needs, already validated by the binary.
#[derive(Debug, Clone)]
pub struct MongoCaptureConfig {
    pub common: CaptureSettings,
    pub full_document: Images,
    pub before: Images,
    /// Documents per snapshot chunk of a large collection.
    pub snapshot_chunk_docs: u64,
}

/// Back-off between reconnects to a source that went away.
const RECONNECT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// A client of `--source`, checked to answer. TLS is the driver's, set in the
/// URL (`tls=true`, `tlsCAFile`, `tlsCertificateKeyFile`).
async fn connect(config: &MongoCaptureConfig) -> Result<Client, CaptureError> {
    ferry_core::tls::install_crypto_provider();
    let url = config.common.source.expose().as_str();
    let mut options = ClientOptions::parse(url).await.map_err(|e| {
        CaptureError::Config(format!(
            "--source {} is not a MongoDB URL ({}): mongodb://USER:PASSWORD@HOST:PORT/?replicaSet=NAME",
            config.common.source,
            error::mongo_message(&e)
        ))
    })?;
    options.app_name.get_or_insert_with(|| "ferry-capture-mongodb".into());
    options.server_selection_timeout.get_or_insert(Duration::from_secs(15));
    Ok(Client::with_options(options)?)
}

/// Captures until `shutdown` resolves (or, with `initial_only`, until the
/// snapshot is in Kafka). A snapshot that loses the source starts again in
/// this process ([`crate::restarting_snapshots`]): from the stored starting
/// point, the collections not yet recorded read again.
pub async fn run(config: MongoCaptureConfig, shutdown: impl Future<Output = ()>) -> Result<(), CaptureError> {
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
    config: &MongoCaptureConfig,
    shutdown: impl Future<Output = ()>,
    phase: &tokio::sync::watch::Sender<Phase>,
    status: &std::sync::Arc<ferry_core::status::Reporter>,
) -> Result<(), CaptureError> {
    let client = connect(config).await?;
    let collections = validate::validate(&client, &config.common.tables, config.full_document, config.before).await?;
    ferry_core::names::table_topics(&config.common.prefix, &collections).map_err(crate::publish::PublishError::from)?;

    let offsets = Offsets::open(&config.common.kafka, &config.common.offsets_topic).await?;
    let Resume {
        position: mut stored,
        mut state,
        state_key,
    } = load_capture(&offsets, &config.common.prefix, Connector::Mongodb).await?;

    let registry = Arc::new(RegistryClient::with_access(&config.common.registry)?);
    let mut publisher = Publisher::start(config.common.publisher(Connector::Mongodb), registry).await?;
    status.follow(publisher.acknowledged());
    for id in &collections {
        publisher.register_collection(id.clone()).await?;
    }

    tokio::pin!(shutdown);
    let mut available = true;
    let mut backoff = RECONNECT.0;
    loop {
        let plan = config.common.snapshot.plan(stored.is_some(), available);
        let spec = |at| snapshot::SnapshotSpec {
            prefix: &config.common.prefix,
            state_key: &state_key,
            chunk_docs: config.snapshot_chunk_docs,
            workers: config.common.snapshot_workers,
            at,
        };
        let start = match (plan.snapshot, stored.take()) {
            (Scope::Missing, Some(start)) => {
                let missing: Vec<_> = collections.iter().filter(|c| state.get(c).is_none()).cloned().collect();
                if !missing.is_empty() {
                    phase.send_replace(Phase::Snapshot);
                    tracing::info!(
                        collections = missing.len(),
                        "snapshot of the collections not yet read starting"
                    );
                    let at = snapshot::cluster_time(&client).await?;
                    // The stream from the stored start carries every change
                    // since the interrupted reading: nothing to truncate.
                    let reread = HashSet::new();
                    if let Err(e) =
                        snapshot::run(&spec(at), &client, &missing, reread, &mut publisher, &mut state).await
                    {
                        return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
                    }
                }
                start
            }
            (scope, _) => {
                state = SnapshotState::default();
                let at = snapshot::cluster_time(&client).await?;
                let start = SourcePosition::Mongodb {
                    token: None,
                    cluster_time: Some(at),
                };
                // The stream starts here whatever happens to the snapshot.
                publisher.checkpoint(start.clone()).await?;
                if scope == Scope::Nothing {
                    for id in &collections {
                        state.complete(id.clone(), start.clone());
                    }
                    publisher.store_after_sent(state_key.clone(), &state).await?;
                } else {
                    let reread = publisher.tables_with_messages(&collections).await?;
                    phase.send_replace(Phase::Snapshot);
                    tracing::info!(collections = collections.len(), t = at.t, i = at.i, "snapshot starting");
                    if let Err(e) =
                        snapshot::run(&spec(at), &client, &collections, reread, &mut publisher, &mut state).await
                    {
                        return Err(crate::settle(publisher, e, CaptureError::is_reconnectable).await);
                    }
                }
                start
            }
        };
        if !plan.stream {
            break;
        }
        phase.send_replace(Phase::Streaming);
        let mut streamer = stream::Streamer::new(config, start);
        let ended = streamer.run(&client, &mut publisher, &mut shutdown).await;
        stored = Some(streamer.checkpointed.clone());
        match ended {
            Ok(stream::Ended::Shutdown) => break,
            Ok(stream::Ended::Invalidated) => backoff = RECONNECT.0,
            Ok(stream::Ended::Reread(collection)) => {
                state.forget(&collection);
                publisher.store_after_sent(state_key.clone(), &state).await?;
                read_one(config, &client, &collection, &mut publisher, &mut state, &state_key).await?;
            }
            Err(CaptureError::HistoryLost { .. })
                if config.common.snapshot == SnapshotMode::WhenNeeded && available =>
            {
                tracing::warn!("the oplog no longer holds the stored resume token: reading every collection again");
                available = false;
                stored = None;
            }
            Err(e) if e.is_reconnectable() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "change stream lost; resuming after the last checkpoint");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT.1);
            }
            Err(e) => return Err(e),
        }
    }
    phase.send_replace(Phase::Stopping);
    publisher.finish().await?;
    Ok(())
}

/// Reads one collection now (renamed into the include list).
async fn read_one(
    config: &MongoCaptureConfig,
    client: &Client,
    collection: &ferry_core::meta::TableId,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
    state_key: &str,
) -> Result<(), CaptureError> {
    let at = snapshot::cluster_time(client).await?;
    let spec = snapshot::SnapshotSpec {
        prefix: &config.common.prefix,
        state_key,
        chunk_docs: config.snapshot_chunk_docs,
        workers: config.common.snapshot_workers,
        at,
    };
    let reread = publisher.tables_with_messages(std::slice::from_ref(collection)).await?;
    snapshot::run(
        &spec,
        client,
        std::slice::from_ref(collection),
        reread,
        publisher,
        state,
    )
    .await?;
    Ok(())
}
