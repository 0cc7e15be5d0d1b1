//! The dead-letter topic (`--on-error dlq`): events that cannot be applied are
//! set aside there, as Kafka Connect does, and apply goes on.
//!
//! Each dead letter is the original message (key and value bytes unchanged, so
//! it can be replayed once the cause is fixed) with headers saying where it came
//! from and why: `ferry.error`, `ferry.topic`, `ferry.partition`, `ferry.offset`,
//! `ferry.group`. A dead letter is durable in Kafka before the target commits
//! the offset past its event, so none is lost; a crash between the two writes it
//! twice (at-least-once, like any Kafka producer without transactions).
//!
//! The writers do not keep message bytes once decoded, so a row the target
//! rejects is read back from its topic by position, which costs one fetch and
//! only happens on this error path.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::batch::Position;
use crate::error::ApplyError;
use crate::settings::ApplySettings;

/// How long reading a rejected message back may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The dead-letter producer.
pub struct DeadLetters {
    producer: FutureProducer,
    settings: ApplySettings,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.settings.dlq_topic)
            .finish()
    }
}

impl DeadLetters {
    /// Creates the dead-letter topic if needed.
    pub async fn new(settings: &ApplySettings) -> Result<Self, ApplyError> {
        let fail = |reason: String| ApplyError::DeadLetter {
            topic: settings.dlq_topic.clone(),
            reason,
        };
        let admin = settings.kafka.admin()?;
        ferry_core::kafka::ensure_topics(
            &admin,
            &[ferry_core::kafka::TopicSpec {
                name: settings.dlq_topic.clone(),
                partitions: 1,
                compacted: false,
            }],
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            producer: settings.kafka.producer().create()?,
            settings: settings.clone(),
        })
    }

    fn fail(&self, reason: impl std::fmt::Display) -> ApplyError {
        ApplyError::DeadLetter {
            topic: self.settings.dlq_topic.clone(),
            reason: reason.to_string(),
        }
    }

    /// Writes one dead letter and waits until Kafka holds it.
    pub async fn send(
        &self,
        at: &Position,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        reason: &str,
    ) -> Result<(), ApplyError> {
        let partition = at.partition.to_string();
        let offset = at.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ferry.error",
                value: Some(reason),
            })
            .insert(Header {
                key: "ferry.topic",
                value: Some(&*at.topic),
            })
            .insert(Header {
                key: "ferry.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "ferry.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "ferry.group",
                value: Some(&self.settings.group),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.dlq_topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer
            .send(record, Duration::from_secs(60))
            .await
            .map_err(|(e, _)| self.fail(e))?;
        metrics::counter!("ferry_apply_dead_letters_total", "topic" => at.topic.to_string()).increment(1);
        tracing::warn!(%at, reason, topic = %self.settings.dlq_topic, "event set aside in the dead-letter topic");
        Ok(())
    }

    /// Reads the message at `at` back from Kafka and writes it as a dead letter.
    pub async fn send_from_log(&self, at: &Position, reason: &str) -> Result<(), ApplyError> {
        let config = self
            .settings
            .kafka
            .consumer(&format!("{}.dead-letters", self.settings.group));
        let wanted = at.clone();
        let (key, value) = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&wanted.topic, wanted.partition, Offset::Offset(wanted.offset))
                .map_err(|e| e.to_string())?;
            consumer.assign(&tpl).map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + FETCH_TIMEOUT;
            while std::time::Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) if m.offset() == wanted.offset => {
                        return Ok((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                    }
                    Some(Ok(m)) if m.offset() > wanted.offset => break,
                    _ => {}
                }
            }
            Err(format!("cannot read {wanted} back"))
        })
        .await
        .map_err(|e| self.fail(e))?
        .map_err(|e| self.fail(e))?;
        self.send(at, key.as_deref(), value.as_deref(), reason).await
    }
}
