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
pub mod settings;
pub mod snapshot;
pub mod transaction;

/// Milliseconds since the epoch, now: an event's `ts_ms`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
