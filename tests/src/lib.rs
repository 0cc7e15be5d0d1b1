//! Helpers shared by Ferry's end-to-end tests.
//!
//! Every test makes its own topics, databases and groups with unique names, so
//! tests run in parallel against one set of services, and waits on conditions
//! with a deadline instead of sleeping. Services are reached on loopback at the
//! addresses `scripts/services` gives them; `FERRY_TEST_BROKERS` overrides the
//! broker's.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The broker the tests run against.
pub fn brokers() -> String {
    std::env::var("FERRY_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Whether the configured broker claims transaction support
/// (`FERRY_BROKER_TRANSACTIONS=true`, set by `scripts/test` for the dev broker).
pub fn broker_claims_transactions() -> bool {
    std::env::var("FERRY_BROKER_TRANSACTIONS").is_ok_and(|v| v == "true" || v == "1")
}

/// A name no other test (or earlier run) uses: `<prefix>_<12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The repository root, for running `scripts/`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
