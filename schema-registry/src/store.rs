//! Storage in a compacted Kafka topic (default `_ferry_schemas`, one partition).
//!
//! At start the store reads the topic from the beginning to its high watermark,
//! folding every record into [`State`]; only then does the server answer. A
//! background task keeps reading, so every instance sees every other's writes.
//! A write is: produce the record (acks=all), wait until the reader has applied
//! it, and read the verdict the fold gave it. The state therefore only ever
//! holds what is durable in Kafka, and an instance that was fenced (another one
//! claimed the writer role later) learns it from its own rejected write.
//!
//! When the reader reaches the end of the topic (or nothing came for
//! [`IDLE_AFTER`]), it stops fetching for up to [`IDLE_PAUSE`], or until this
//! instance writes: a broker that answers an empty fetch at once instead of
//! holding it for `fetch.wait.max.ms` (the development broker does) would
//! otherwise be asked thousands of times a second, costing a core on each
//! side. Another instance's write is seen at most [`IDLE_PAUSE`] later; this
//! instance's own writes wait for nothing. The reader stops by giving up its
//! assignment and starts again by assigning the next offset it needs.
//! librdkafka's pause and resume looked the same but were not: a resumed
//! partition was fetched again only seconds later (up to 17 s here), so a
//! schema registration waited that long.
//!
//! Writes are one record at a time, one after another (Confluent's registry
//! has a single writer too), so the producer sends each at once
//! (`linger.ms` 0, as Java's default is) rather than waiting to batch: a
//! capture's first start registers two schemas per table, and over 100 new
//! tables that took a third off its start (3.1–3.4 s to 2.1 s here).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use ferry_core::kafka::{ensure_topics, EndIsNoError, KafkaSettings, TopicError, TopicSpec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{watch, Mutex, MutexGuard, Notify};
use tokio::task::JoinHandle;

use crate::state::{RecordKey, RecordValue, State, WriterValue};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time after which the reader stops, if the broker never said it reached the end.
pub const IDLE_AFTER: Duration = Duration::from_millis(100);
/// Longest stop of an idle reader.
pub const IDLE_PAUSE: Duration = Duration::from_millis(250);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the Kafka brokers at {brokers}: {reason}; check --brokers and that the broker runs")]
    Unreachable { brokers: String, reason: String },
    #[error("storage topic: {0}")]
    Topic(#[from] TopicError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the write was not read back from the storage topic within {0:?}")]
    Timeout(Duration),
    #[error("this instance is not the writer{}", .writer.as_ref().map(|w| format!("; send writes to {w}")).unwrap_or_default())]
    NotWriter { writer: Option<String> },
    #[error("could not claim the writer role: another instance claimed it at the same time")]
    ClaimLost,
}

/// The registry's durable state and the means to change it.
pub struct Store {
    state: Arc<RwLock<State>>,
    /// The next offset the reader will apply.
    applied: watch::Receiver<i64>,
    producer: FutureProducer,
    topic: String,
    instance: String,
    seq: AtomicU64,
    /// This instance's writer epoch; `None` for a read-only instance.
    epoch: Option<u64>,
    writes: Mutex<()>,
    /// Wakes a paused reader when this instance writes.
    wake: Arc<Notify>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("topic", &self.topic)
            .field("instance", &self.instance)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn encode_value(value: &RecordValue) -> Vec<u8> {
    let json = match value {
        RecordValue::Writer(v) => serde_json::to_vec(v),
        RecordValue::Schema(v) => serde_json::to_vec(v),
        RecordValue::Config(v) => serde_json::to_vec(v),
        RecordValue::Mode(v) => serde_json::to_vec(v),
    };
    // Serialising plain structs of strings and numbers cannot fail.
    json.unwrap_or_default()
}

fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(RecordKey, Option<RecordValue>), serde_json::Error> {
    let key: RecordKey = serde_json::from_slice(key)?;
    let Some(value) = value else {
        return Ok((key, None));
    };
    let value = match &key {
        RecordKey::Writer { .. } => RecordValue::Writer(serde_json::from_slice(value)?),
        RecordKey::Schema { .. } => RecordValue::Schema(serde_json::from_slice(value)?),
        RecordKey::Config { .. } => RecordValue::Config(serde_json::from_slice(value)?),
        RecordKey::Mode { .. } => RecordValue::Mode(serde_json::from_slice(value)?),
    };
    Ok((key, Some(value)))
}

impl Store {
    /// Opens the store: creates the topic if needed, reads it to the end, and,
    /// unless `read_only`, claims the writer role for `url`.
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        url: &str,
        read_only: bool,
    ) -> Result<Arc<Store>, StoreError> {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let consumer: StreamConsumer<EndIsNoError> = kafka
            .consumer(&format!("_ferry_registry_{instance}"))
            // The reader stops at the end of the topic (see the module's docs).
            .set("enable.partition.eof", "true")
            .create_with_context(EndIsNoError)?;
        let unreachable = |e: KafkaError| StoreError::Unreachable {
            brokers: kafka.brokers.clone(),
            reason: e.to_string(),
        };
        consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(unreachable)?;
        let admin = kafka.admin()?;
        ensure_topics(
            &admin,
            &[TopicSpec {
                name: topic.to_owned(),
                partitions: 1,
                compacted: true,
            }],
        )
        .await?;
        let (_, high) = consumer.fetch_watermarks(topic, 0, TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;

        let state = Arc::new(RwLock::new(State::new(instance.clone())));
        let (applied_tx, applied) = watch::channel(0i64);
        let wake = Arc::new(Notify::new());
        let reader = tokio::spawn(read_forever(
            consumer,
            topic.to_owned(),
            Arc::clone(&state),
            applied_tx,
            Arc::clone(&wake),
        ));
        let mut config = kafka.producer();
        if !kafka.options.contains_key("linger.ms") {
            // Writes go one at a time, each waited for: a linger of 5 ms
            // (Ferry's producers' default) was most of each write's time.
            config.set("linger.ms", "0");
        }
        let producer: FutureProducer = config.create()?;
        let mut store = Store {
            state,
            applied,
            producer,
            topic: topic.to_owned(),
            instance,
            seq: AtomicU64::new(0),
            epoch: None,
            writes: Mutex::new(()),
            wake,
            reader,
        };
        store.wait_applied(high - 1).await?;
        tracing::info!(topic, records = high, "storage topic read");
        if !read_only {
            store.claim(url).await?;
        }
        Ok(Arc::new(store))
    }

    async fn claim(&mut self, url: &str) -> Result<(), StoreError> {
        let epoch = self.state().epoch() + 1;
        let value = RecordValue::Writer(WriterValue {
            instance: self.instance.clone(),
            url: url.to_owned(),
        });
        let offset = self.produce(&RecordKey::Writer { epoch }, Some(&value)).await?;
        self.wait_applied(offset).await?;
        let won = self.state().writer().is_some_and(|w| w.instance == self.instance) && self.state().epoch() == epoch;
        if !won {
            return Err(StoreError::ClaimLost);
        }
        tracing::info!(epoch, "claimed the writer role");
        self.epoch = Some(epoch);
        Ok(())
    }

    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Serialises read-decide-write sequences: hold it from reading the state
    /// a write depends on until the write was applied.
    pub async fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// The epoch to stamp on records, or why this instance may not write.
    pub fn writer_epoch(&self) -> Result<u64, StoreError> {
        match self.epoch {
            Some(e) if e == self.state().epoch() => Ok(e),
            _ => Err(StoreError::NotWriter {
                writer: self.state().writer().map(|w| w.url.clone()),
            }),
        }
    }

    /// A write id no other record has.
    pub fn write_id(&self) -> String {
        format!("{}-{}", self.instance, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    async fn produce(&self, key: &RecordKey, value: Option<&RecordValue>) -> Result<i64, StoreError> {
        let key = serde_json::to_vec(key).unwrap_or_default();
        let value = value.map(encode_value);
        let mut record = FutureRecord::to(&self.topic).key(&key).partition(0);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let delivery = self.producer.send(record, TIMEOUT).await.map_err(|(e, _)| e)?;
        self.wake.notify_one();
        Ok(delivery.offset)
    }

    async fn wait_applied(&self, offset: i64) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        tokio::time::timeout(TIMEOUT, applied.wait_for(|next| *next > offset))
            .await
            .map_err(|_| StoreError::Timeout(TIMEOUT))?
            .map_err(|_| StoreError::Timeout(TIMEOUT))?;
        Ok(())
    }

    /// Writes records in order and waits until they were applied; true if the
    /// fold accepted every one. Tombstones (`None`) are always applied.
    pub async fn write(&self, records: &[(RecordKey, Option<RecordValue>)]) -> Result<bool, StoreError> {
        let mut last = -1;
        for (key, value) in records {
            last = self.produce(key, value.as_ref()).await?;
        }
        self.wait_applied(last).await?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let accepted = records
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|_| k))
            .filter_map(|k| match k {
                RecordKey::Schema { write, .. } | RecordKey::Config { write, .. } | RecordKey::Mode { write, .. } => {
                    Some(write)
                }
                RecordKey::Writer { .. } => None,
            })
            .map(|w| state.verdict(w).unwrap_or(false))
            .collect::<Vec<_>>();
        Ok(accepted.into_iter().all(|a| a))
    }
}

async fn read_forever(
    consumer: StreamConsumer<EndIsNoError>,
    topic: String,
    state: Arc<RwLock<State>>,
    applied: watch::Sender<i64>,
    wake: Arc<Notify>,
) {
    loop {
        let received = match tokio::time::timeout(IDLE_AFTER, consumer.recv()).await {
            Ok(Err(KafkaError::PartitionEOF(_))) | Err(_) => {
                let next = *applied.borrow();
                stop_while_idle(&consumer, &topic, next, &wake).await;
                continue;
            }
            Ok(received) => received,
        };
        match received {
            Ok(m) => {
                let offset = m.offset();
                // Already applied: fetched before the reader last stopped.
                if offset < *applied.borrow() {
                    continue;
                }
                match m.key().map(|k| decode(k, m.payload())) {
                    Some(Ok((key, value))) => state.write().unwrap_or_else(|e| e.into_inner()).apply(&key, value),
                    Some(Err(e)) => tracing::warn!(offset, error = %e, "skipping a record that is not Ferry's"),
                    None => tracing::warn!(offset, "skipping a record without a key"),
                }
                applied.send_replace(offset + 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the storage topic failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Stops fetching until this instance writes or [`IDLE_PAUSE`] passed, then
/// fetches again from `next`.
async fn stop_while_idle(consumer: &StreamConsumer<EndIsNoError>, topic: &str, next: i64, wake: &Notify) {
    if let Err(e) = consumer.unassign() {
        tracing::warn!(error = %e, "stopping the storage topic's reader failed");
        return;
    }
    let _ = tokio::time::timeout(IDLE_PAUSE, wake.notified()).await;
    let mut assignment = TopicPartitionList::new();
    let assigned = assignment
        .add_partition_offset(topic, 0, Offset::Offset(next))
        .and_then(|()| consumer.assign(&assignment));
    if let Err(e) = assigned {
        tracing::warn!(error = %e, "restarting the storage topic's reader failed");
    }
}
