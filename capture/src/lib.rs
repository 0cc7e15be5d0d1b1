//! Ferry's capture sources, one module per source database, and what they
//! share: publishing events to Kafka ([`publish`]) and keeping the position
//! each capture reached ([`offsets`]).

pub mod delivery;
pub mod filter;
pub mod mongodb;
pub mod mysql;
pub mod offsets;
pub mod policy;
pub mod postgres;
pub mod publish;
pub mod resend;
pub mod settings;
pub mod snapshot;
pub mod transaction;

/// Runs `work`, a source's capture, with what every capture has around it:
/// `/metrics` and `/health` (its phase goes to `work`) and status reports to
/// `_ferry_status`, the last of which says how it ended. `config_error` makes
/// the source's error of a bad `--metrics`.
pub async fn supervised<E, F, Fut>(
    common: &settings::CaptureSettings,
    config_error: fn(String) -> E,
    work: F,
) -> Result<(), E>
where
    E: std::fmt::Display,
    F: FnOnce(
        tokio::sync::watch::Sender<ferry_core::metrics::Phase>,
        std::sync::Arc<ferry_core::status::Reporter>,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let phase = ferry_core::metrics::start(common.metrics).await.map_err(config_error)?;
    let status = std::sync::Arc::new(
        ferry_core::status::Reporter::start(&common.kafka, "capture", &common.prefix, phase.subscribe()).await,
    );
    let result = work(phase, std::sync::Arc::clone(&status)).await;
    status.finish(result.as_ref().err().map(ToString::to_string)).await;
    result
}

/// Milliseconds since the epoch, now: an event's `ts_ms`.
pub use ferry_core::now_ms;
