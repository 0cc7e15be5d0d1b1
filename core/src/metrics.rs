//! Prometheus metrics and health for Ferry's long-running binaries.
//!
//! Every binary records through the `metrics` facade into one process-wide
//! Prometheus recorder ([`prometheus`]). Capture and apply serve it with
//! [`serve`] on `--metrics HOST:PORT`: `GET /metrics` in Prometheus' text
//! format, and `GET /health`, which answers 200 with the phase (`snapshot`,
//! `streaming`) while the process works and 503 while it starts or stops, so
//! an orchestrator restarts only what is really down. Metric names start with
//! the binary's part (`ferry_capture_...`) and are listed in the README.

use std::future::Future;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a process is doing, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Snapshot,
    Streaming,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
            Phase::Stopping => "stopping",
        }
    }

    fn healthy(self) -> bool {
        matches!(self, Phase::Snapshot | Phase::Streaming)
    }
}

/// The process-wide Prometheus recorder (several servers in one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; ours then stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(Clone)]
struct Served {
    metrics: PrometheusHandle,
    phase: watch::Receiver<Phase>,
}

async fn render(State(s): State<Served>) -> String {
    s.metrics.render()
}

async fn health(State(s): State<Served>) -> (StatusCode, String) {
    let phase = *s.phase.borrow();
    let code = if phase.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{{\"status\":\"{}\"}}\n", phase.as_str()))
}

/// Serves `/metrics` and `/health` on `addr`, when given, for as long as the
/// returned sender lives (the process's work); the sender sets the phase
/// `/health` reports. The error names the flag and the address.
pub async fn start(addr: Option<std::net::SocketAddr>) -> Result<watch::Sender<Phase>, String> {
    let (phase, phases) = watch::channel(Phase::Starting);
    if let Some(addr) = addr {
        spawn_server(addr, phases)
            .await
            .map_err(|e| format!("cannot serve --metrics on {addr}: {e}"))?;
    }
    Ok(phase)
}

/// Serves `/metrics` and `/health` on `addr` in the background, for as long as
/// the sender of `phases` lives (the process's work), or fails to bind.
pub async fn spawn_server(addr: std::net::SocketAddr, phases: watch::Receiver<Phase>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut stopped = phases.clone();
    tokio::spawn(async move {
        let until_done = async move { while stopped.changed().await.is_ok() {} };
        if let Err(e) = serve(listener, phases, until_done).await {
            tracing::warn!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    phase: watch::Receiver<Phase>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/health", get(health))
        .with_state(Served {
            metrics: prometheus(),
            phase,
        });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
