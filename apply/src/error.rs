//! Why apply stopped, split the way an operator acts on it: retryable errors
//! (the broker, registry or target went away, or a rebalance moved a partition)
//! make the pipeline start over from the offsets stored in the target after a
//! back-off; permanent ones (bad configuration, an event the target refuses
//! with `--on-error fail`, an unsafe schema change) stop it with a line that
//! says what to fix.

use ferry_core::registry::RegistryError;
use rdkafka::error::KafkaError;

use crate::target::{Rejected, TargetError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// An event that cannot be applied, with `--on-error fail`.
    #[error("{reason}, at {at}, key {key}; fix the target or run with --on-error dlq to set such events aside")]
    Poison { at: String, key: String, reason: String },
    /// A message that is not a change event apply can read (no Confluent
    /// header, a schema id the registry does not know, a corrupt datum), with
    /// `--on-error fail`: no target change mends it, so the hint differs.
    #[error(
        "the message at {at} (key {key}) cannot be decoded: {reason}; apply stopped before it: run with --on-error dlq \
         to set such messages aside"
    )]
    Undecodable { at: String, key: String, reason: String },
    #[error("dead-letter topic {topic}: {reason}")]
    DeadLetter { topic: String, reason: String },
    #[error("the Kafka consumer stopped")]
    ConsumerStopped,
}

impl ApplyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Target(e) => e.is_retryable(),
            ApplyError::Registry(e) => e.is_retryable(),
            // librdkafka refused its configuration (a property it does not know).
            ApplyError::Kafka(KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)) => false,
            ApplyError::Kafka(_) | ApplyError::DeadLetter { .. } | ApplyError::ConsumerStopped => true,
            ApplyError::Config(_) | ApplyError::Poison { .. } | ApplyError::Undecodable { .. } => false,
        }
    }
}

impl From<Rejected> for ApplyError {
    fn from(r: Rejected) -> Self {
        ApplyError::Poison {
            at: r.at.to_string(),
            key: r.key,
            reason: format!("table {}: the target rejected a row: {}", r.table, r.reason),
        }
    }
}
