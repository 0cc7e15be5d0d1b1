//! Capture offsets: where each capture stands, kept in Kafka.
//!
//! One compacted topic (`_ferry_offsets` by default, one partition) holds two
//! records per capture: under its topic prefix, the position streaming resumes
//! from (a [`ferry_core::position::SourcePosition`] as JSON); under
//! `<prefix>/snapshot`, which tables' snapshots are complete in Kafka and at
//! which position each was read ([`SnapshotState`]). The two are written apart
//! because the first changes with every transaction and the second only when a
//! table's snapshot completes. Keeping offsets next to the events means the
//! position and the events it covers live and die with the same cluster.
//!
//! A position is written only after every event up to it was acknowledged by
//! the brokers (see [`crate::publish`]), so on restart a capture resumes from a
//! point whose events are all in Kafka.

use std::collections::HashMap;
use std::time::Duration;

use ferry_core::envelope::Connector;
use ferry_core::kafka::{ensure_topics, EndIsNoError, KafkaSettings, TopicError, TopicSpec};
use ferry_core::meta::TableId;
use ferry_core::position::SourcePosition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Default offsets topic.
pub const DEFAULT_TOPIC: &str = "_ferry_offsets";

const TIMEOUT: Duration = Duration::from_secs(30);

/// The key of a capture's [`SnapshotState`]. Prefixes hold no `/` (they name
/// topics), so it cannot be another capture's prefix.
pub fn snapshot_key(prefix: &str) -> String {
    format!("{prefix}/snapshot")
}

/// Tables whose snapshot is complete in Kafka. A table's stream events from
/// before its snapshot's position are already in the snapshot, so the stream
/// skips them; a table of the include list that is not here is snapshotted
/// (an interrupted snapshot resumes, a table added later is read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    pub done: Vec<TableSnapshot>,
}

/// One table's completed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSnapshot {
    pub table: TableId,
    /// The position the snapshot was read at.
    pub at: SourcePosition,
}

impl SnapshotState {
    pub fn get(&self, table: &TableId) -> Option<&SourcePosition> {
        self.done.iter().find(|t| &t.table == table).map(|t| &t.at)
    }

    /// Forgets `table`'s snapshot: it is read again.
    pub fn forget(&mut self, table: &TableId) {
        self.done.retain(|t| &t.table != table);
    }

    /// Records `table` as read at `at` (replacing an earlier snapshot of it).
    pub fn complete(&mut self, table: TableId, at: SourcePosition) {
        self.done.retain(|t| t.table != table);
        self.done.push(TableSnapshot { table, at });
    }
}

/// Reading or writing offsets failed.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("offsets topic: {0}")]
    Topic(#[from] TopicError),
    #[error("offsets topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("offsets record for {key:?} is not valid JSON for this capture: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the offsets topic holds a {found} position for prefix {prefix}, not a {wanted} one; use another --prefix"
    )]
    OtherSource {
        prefix: String,
        found: &'static str,
        wanted: &'static str,
    },
}

/// What a capture stored before: where it stood and which tables it read.
#[derive(Debug)]
pub struct Resume {
    /// Its position, of its own connector.
    pub position: Option<SourcePosition>,
    pub state: SnapshotState,
    /// The key `state` is stored under.
    pub state_key: String,
}

/// Loads what the capture of `prefix` (a `connector` source) stored, in one
/// read; a position of another kind of source is an error naming the fix.
pub async fn load_capture(offsets: &Offsets, prefix: &str, connector: Connector) -> Result<Resume, OffsetsError> {
    let state_key = snapshot_key(prefix);
    let stored = offsets.load_all(&[prefix, &state_key]).await?;
    let position: Option<SourcePosition> = stored.get(prefix)?;
    if let Some(p) = &position {
        if p.connector() != connector {
            return Err(OffsetsError::OtherSource {
                prefix: prefix.to_owned(),
                found: p.connector().name(),
                wanted: connector.name(),
            });
        }
    }
    Ok(Resume {
        position,
        state: stored.get(&state_key)?.unwrap_or_default(),
        state_key,
    })
}

/// Values read from the offsets topic, by key.
#[derive(Debug)]
pub struct Stored(HashMap<String, Vec<u8>>);

impl Stored {
    /// The value under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, OffsetsError> {
        self.0
            .get(key)
            .map(|bytes| {
                serde_json::from_slice(bytes).map_err(|e| OffsetsError::Corrupt {
                    key: key.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
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
        self.load_all(&[key]).await?.get(key)
    }

    /// The last values stored under each of `keys`, in one read of the topic.
    pub async fn load_all(&self, keys: &[&str]) -> Result<Stored, OffsetsError> {
        // The end is where the consumer says so: with transactions the last
        // offsets are commit markers, which a reader never receives.
        let consumer: BaseConsumer<EndIsNoError> = self
            .kafka
            .consumer("_ferry_offsets_reader")
            .set("enable.partition.eof", "true")
            .create_with_context(EndIsNoError)?;
        let (low, high) = consumer.fetch_watermarks(&self.topic, 0, TIMEOUT)?;
        let mut last = Stored(HashMap::new());
        if high <= low {
            return Ok(last);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                if std::time::Instant::now() > deadline {
                    return Err(OffsetsError::Kafka(KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    )));
                }
                continue;
            };
            let message = match message {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(_)) => break,
                Err(e) => return Err(e.into()),
            };
            if let Some(key) = keys.iter().find(|k| message.key() == Some(k.as_bytes())) {
                match message.payload() {
                    Some(value) => last.0.insert((*key).to_owned(), value.to_vec()),
                    None => last.0.remove(*key),
                };
            }
        }
        Ok(last)
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
