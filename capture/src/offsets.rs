//! Capture offsets: where each capture stands, kept in Kafka.
//!
//! One compacted topic (`_ferry_offsets` by default, one partition) holds one
//! record per capture, keyed by its topic prefix, whose value is the JSON the
//! source wrote last (its [`ferry_core::position::SourcePosition`] and, during a
//! snapshot, per-table progress). Keeping offsets next to the events means the
//! position and the events it covers live and die with the same cluster.
//!
//! A position is written only after every event up to it was acknowledged by
//! the brokers (see [`crate::publish`]), so on restart a capture resumes from a
//! point whose events are all in Kafka.

use std::time::Duration;

use ferry_core::kafka::{ensure_topics, KafkaSettings, TopicError, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default offsets topic.
pub const DEFAULT_TOPIC: &str = "_ferry_offsets";

const TIMEOUT: Duration = Duration::from_secs(30);

/// Reading or writing offsets failed.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("offsets topic: {0}")]
    Topic(#[from] TopicError),
    #[error("offsets topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("offsets record for {key:?} is not valid JSON for this capture: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The offsets topic.
pub struct Offsets {
    kafka: KafkaSettings,
    topic: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for Offsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offsets")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Offsets {
    /// Opens the offsets topic, creating it if needed.
    pub async fn open(kafka: &KafkaSettings, topic: &str) -> Result<Self, OffsetsError> {
        ensure_topics(
            &kafka.admin()?,
            &[TopicSpec {
                name: topic.to_owned(),
                partitions: 1,
                compacted: true,
            }],
        )
        .await?;
        Ok(Self {
            kafka: kafka.clone(),
            topic: topic.to_owned(),
            producer: kafka.producer().create()?,
        })
    }

    /// The last value stored under `key`, if any.
    pub async fn load<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, OffsetsError> {
        let consumer: BaseConsumer = self.kafka.consumer("_ferry_offsets_reader").create()?;
        let (low, high) = consumer.fetch_watermarks(&self.topic, 0, TIMEOUT)?;
        if high <= low {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let mut last: Option<Vec<u8>> = None;
        let deadline = std::time::Instant::now() + TIMEOUT;
        // The last record sits at high - 1: compaction never removes the newest one.
        loop {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                if std::time::Instant::now() > deadline {
                    return Err(OffsetsError::Kafka(KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    )));
                }
                continue;
            };
            let message = message?;
            if message.key() == Some(key.as_bytes()) {
                last = message.payload().map(<[u8]>::to_vec);
            }
            if message.offset() >= high - 1 {
                break;
            }
        }
        last.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| OffsetsError::Corrupt {
                key: key.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// Stores `value` under `key` and waits until the brokers acknowledged it.
    pub async fn store(&self, key: &str, value: &impl Serialize) -> Result<(), OffsetsError> {
        let payload = serde_json::to_vec(value).map_err(|e| OffsetsError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        self.producer
            .send(FutureRecord::to(&self.topic).key(key).payload(&payload), TIMEOUT)
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }
}
