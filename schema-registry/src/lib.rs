//! `ferry-schema-registry`: a Confluent Schema Registry compatible server whose
//! only storage is a compacted Kafka topic.
//!
//! ```text
//!   HTTP (Confluent REST API) ──► api ──► store.write ──► Kafka topic _ferry_schemas
//!                                  ▲                            │
//!                                  └── state (in memory) ◄── fold ◄─ read from offset 0, forever
//! ```
//!
//! Every instance folds the same topic into the same state ([`state`]), so
//! several instances against one topic agree on every id. The last instance to
//! start (unless `--read-only`) holds the writer role; the others serve reads
//! and refuse writes with error 50004, naming the writer's URL. See
//! [`state`] for how writers are fenced and why compaction cannot lose data.

pub mod api;
pub mod compat;
pub mod state;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use ferry_core::config::Secret;
use ferry_core::kafka::KafkaSettings;
use ferry_core::metrics::prometheus;
use tokio::net::TcpListener;

use crate::api::App;
use crate::store::{Store, StoreError};

/// Default storage topic.
pub const DEFAULT_TOPIC: &str = "_ferry_schemas";

/// What `run` needs, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub topic: String,
    /// Never claim the writer role: serve reads, refuse writes.
    pub read_only: bool,
    /// Require HTTP basic auth with this user and password.
    pub basic_auth: Option<(String, Secret)>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// The URL other instances tell clients to write to; defaults to the listen address.
    pub advertised_url: Option<String>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<tls::TlsFiles>,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the registry on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Checked before anything else, so a bad certificate fails fast.
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let url = match &config.advertised_url {
        Some(u) => u.clone(),
        None => format!("{scheme}://{}", listener.local_addr()?),
    };
    let store = Store::open(&config.kafka, &config.topic, &url, config.read_only).await?;
    let auth = config.basic_auth.as_ref().map(|(user, password)| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
        format!("Basic {token}")
    });
    let app = Arc::new(App {
        store,
        auth,
        metrics: prometheus(),
    });
    tracing::info!(%url, topic = %config.topic, read_only = config.read_only, "schema registry serving");
    let router = api::router(app, config.max_body);
    match acceptor {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, router)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await?,
    }
    Ok(())
}
