//! Ferry's capture sources, one module per source database, and what they
//! share: publishing events to Kafka ([`publish`]) and keeping the position
//! each capture reached ([`offsets`]).

mod batch;
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

use std::future::Future;
use std::time::Duration;

use ferry_core::metrics::Phase;
use futures::future::{FutureExt, Shared};
use tokio::sync::watch;

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

/// Back-off between reconnects to a source that went away.
pub(crate) const RECONNECT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Runs `attempt`, a capture, until it ends; when it loses the source
/// during the snapshot (`lost` says which errors are that), it runs again in
/// this process after a back-off, exactly as a restart of the process would:
/// from what Kafka holds, reading the unfinished tables again. Each attempt
/// gets its own handle on `shutdown`. (The stream reconnects on its own.)
pub(crate) async fn restarting_snapshots<S, E, Fut>(
    phase: &watch::Sender<Phase>,
    shutdown: S,
    lost: fn(&E) -> bool,
    mut attempt: impl FnMut(Shared<S>) -> Fut,
) -> Result<(), E>
where
    S: Future<Output = ()>,
    E: std::fmt::Display,
    Fut: Future<Output = Result<(), E>>,
{
    let shutdown = shutdown.shared();
    let restarts = metrics::counter!("ferry_capture_reconnects_total");
    let mut backoff = RECONNECT.0;
    loop {
        let error = match attempt(shutdown.clone()).await {
            Err(e) if *phase.borrow() == Phase::Snapshot && lost(&e) => e,
            done => return done,
        };
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64,
            "lost the source during the snapshot; starting again from what Kafka holds");
        tokio::select! {
            () = shutdown.clone() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RECONNECT.1);
        restarts.increment(1);
    }
}

/// `error`, a snapshot's, once everything the snapshot sent is in Kafka
/// (and the positions before it are stored) when the error was the source
/// going away (`lost`): capture then starts again in this process, and the
/// old producer's messages must not land among the new ones (a table's
/// second reading starts with a truncate, which an older row arriving after
/// it would outlive).
pub(crate) async fn settle<E: From<publish::PublishError>>(
    publisher: publish::Publisher,
    error: E,
    lost: fn(&E) -> bool,
) -> E {
    if !lost(&error) {
        return error;
    }
    match publisher.finish().await {
        Ok(()) => error,
        Err(e) => e.into(),
    }
}

/// Milliseconds since the epoch, now: an event's `ts_ms`.
pub use ferry_core::now_ms;
