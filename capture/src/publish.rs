//! Publishing change events to Kafka, and acknowledging a source position only
//! once Kafka holds every event up to it.
//!
//! ```text
//!  source ──► Publisher::send(event) ──► idempotent producer (acks=all) ──► <prefix>.<schema>.<table>
//!                 │ counted in the current epoch (delivery.rs)
//!                 ▼
//!             Publisher::checkpoint(position) closes the epoch ──► acknowledger task, in order:
//!                 1. wait until every message of the epoch (and earlier ones) is delivered
//!                 2. store the position in the offsets topic (acks=all)
//!                 3. publish it on `acknowledged()`: the source may now free its log
//! ```
//!
//! [`Publisher::store_after_sent`] stores any other record (a snapshot's
//! per-table progress) the same way: once every event sent before it is in
//! Kafka. Checkpoints that are ready together are stored together: only the
//! newest position of a batch is written, so a source committing many small
//! transactions costs one offsets write per broker round trip, not one each.
//!
//! A failed delivery stops the acknowledger for good: no later position is ever
//! acknowledged, so the source keeps its log from the last good position and a
//! restart sends everything after it again (at-least-once into Kafka; apply's
//! stored offsets make it exactly-once into targets). Memory stays bounded: the
//! producer's queue is finite, [`Publisher::send`] waits while it is full, and
//! at most [`MAX_CHECKPOINTS`] checkpoints wait for their deliveries.
//!
//! With `exactly_once` (brokers with transactions), events and positions go
//! into Kafka transactions instead:
//!
//! ```text
//!  send ─► (first message) begin_transaction ─► events ...
//!  checkpoint(position) ─► kept; when due (COMMIT_EVENTS events, or COMMIT_AFTER, and the
//!                          source is between transactions): position record into the offsets
//!                          topic, commit_transaction ─► acknowledged()
//! ```
//!
//! A crash aborts the open transaction (the next start's `init_transactions`
//! fences it), so a `read_committed` consumer sees every source change exactly
//! once, and the stored position is exactly the end of what it sees. A
//! Kafka transaction ends only where a source transaction ends, so one source
//! transaction is never split across two; a snapshot commits every
//! [`COMMIT_EVENTS`] rows (a crash in a table reads that table again, as
//! without transactions).
//!
//! Keys are the primary key (Avro, Confluent wire format), values the envelope;
//! a delete is followed by a tombstone for its key unless turned off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::codec::{CodecError, TableCodec};
use ferry_core::document::{CollectionCodec, DocumentEvent, DOCUMENT_GONE_HEADER};
use ferry_core::envelope::{ChangeEvent, Connector, Op, Snapshot, TRUNCATE_PARTITIONS_HEADER};
use ferry_core::kafka::{ensure_topics, KafkaSettings, TopicError, TopicSpec};
use ferry_core::message::{LogicalMessage, MessageCodec};
use ferry_core::meta::{TableId, TableMeta};
use ferry_core::names::{prefix_topic, table_topic, NameError};
use ferry_core::position::SourcePosition;
use ferry_core::registry::{RegistryClient, RegistryError};
use ferry_core::schema_change::{SchemaChange, SchemaChangeCodec};
use ferry_core::transaction::{TransactionCodec, TransactionRecord};
use ferry_core::value::Datum;
use ferry_core::wire;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::batch::TopicHandle;
use crate::delivery::{Deliveries, Tracking};
use crate::offsets::{Offsets, OffsetsError};
use crate::resend::{self, Resent};

/// Every op, in the order of a table's event counters.
const OPS: [Op; 5] = [Op::Read, Op::Create, Op::Update, Op::Delete, Op::Truncate];

/// Checkpoints that may wait for their deliveries at once.
pub const MAX_CHECKPOINTS: usize = 1024;
/// With transactions: events after which a Kafka transaction is committed at
/// the next checkpoint.
pub const COMMIT_EVENTS: u64 = 50_000;
/// With transactions: age after which a Kafka transaction is committed at the
/// next checkpoint (or the next [`Publisher::tick`] after it).
pub const COMMIT_AFTER: Duration = Duration::from_millis(100);
/// With transactions: how long the brokers keep a transaction open (unless
/// `[kafka] transaction.timeout.ms` says otherwise), and how long to wait for
/// the brokers to start or commit one. A capture killed with a transaction
/// open holds back `read_committed` readers of its topics (the offsets topic
/// included) until it restarts (Apache Kafka then aborts the transaction at
/// once) or the timeout passes.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("topic: {0}")]
    Topic(#[from] TopicError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("Kafka did not take an event for {topic}: {reason}")]
    Delivery { topic: String, reason: String },
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error("no schema registered for table {0}; register_table first")]
    UnknownTable(TableId),
    #[error("the acknowledger stopped: {0}")]
    Stopped(String),
    #[error("the brokers refused Kafka transactions ({0}); start without --exactly-once on a broker without them")]
    NoTransactions(String),
}

impl PublishError {
    /// Whether a restart may succeed where this failed (brokers or registry down),
    /// as opposed to a definite problem with the data or the configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublishError::Registry(e) => e.is_retryable(),
            PublishError::Kafka(_) | PublishError::Delivery { .. } | PublishError::Offsets(_) => true,
            PublishError::Stopped(_) => true,
            PublishError::NoTransactions(_) => false,
            PublishError::Codec(_) | PublishError::Name(_) | PublishError::Topic(_) | PublishError::UnknownTable(_) => {
                false
            }
        }
    }
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub kafka: KafkaSettings,
    pub prefix: String,
    pub connector: Connector,
    /// Partitions of the table topics Ferry creates.
    pub partitions: i32,
    /// Write a tombstone after each delete.
    pub tombstones: bool,
    /// Write BEGIN and END records to `<prefix>.transaction`.
    pub transaction_topic: bool,
    /// Events and positions in Kafka transactions (the brokers must have them).
    pub exactly_once: bool,
    pub offsets_topic: String,
}

/// How a topic's events are encoded: rows of a table, or documents of a
/// MongoDB collection.
#[derive(Debug)]
enum TopicCodec {
    Table(TableCodec),
    Collection(CollectionCodec),
}

/// A table's (or collection's) topic and registered schema ids.
#[derive(Debug)]
struct TableTopic {
    codec: TopicCodec,
    topic: String,
    key_id: Option<u32>,
    value_id: u32,
    /// Partitions of the topic: a truncate goes to each.
    partitions: i32,
    /// For handing the producer many messages at once.
    handle: TopicHandle,
    /// `ferry_capture_events_total` of the table, per op (in [`OPS`] order),
    /// and `ferry_capture_bytes_total`.
    events: [metrics::Counter; 5],
    bytes: metrics::Counter,
}

impl TableTopic {
    /// Counts `events` events of `op` of `bytes` bytes in all.
    fn count(&self, op: Op, events: u64, bytes: usize) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            self.events[i].increment(events);
        }
        self.bytes.increment(bytes as u64);
    }
}

/// An event in the wire format: its key (none for a keyless table) and value,
/// framed, one after the other in one buffer: one allocation per event,
/// which a snapshot's worker makes and the publisher's thread frees.
#[derive(Debug)]
pub struct Encoded {
    bytes: Vec<u8>,
    /// Where the value starts; the key is what comes before it (a framed
    /// key is never empty, so 0 means none).
    value: usize,
}

impl Encoded {
    pub fn key(&self) -> Option<&[u8]> {
        (self.value > 0).then(|| &self.bytes[..self.value])
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes[self.value..]
    }
}

/// Encodes one table's events as the publisher would, anywhere (see
/// [`Publisher::encoder`]).
pub struct TableEncoder {
    topic: Arc<TableTopic>,
    table: TableId,
}

impl std::fmt::Debug for TableEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TableEncoder").field(&self.topic.topic).finish()
    }
}

impl TableEncoder {
    pub fn encode(&self, event: &ChangeEvent) -> Result<Encoded, PublishError> {
        encode(&self.topic, &self.table, event)
    }
}

/// `event` of `table`: its key (of its row after, else before) and value, framed.
fn encode(t: &TableTopic, table: &TableId, event: &ChangeEvent) -> Result<Encoded, PublishError> {
    let TopicCodec::Table(codec) = &t.codec else {
        return Err(PublishError::UnknownTable(table.clone()));
    };
    // Room for a narrow row's key and envelope.
    let mut bytes = Vec::with_capacity(288);
    let key_row: Option<&[Datum]> = event.after.as_deref().or(event.before.as_deref());
    if let (Some(row), Some(id)) = (key_row, t.key_id) {
        wire::frame_into(id, &mut bytes);
        if !codec.encode_key_into(row, &mut bytes)? {
            bytes.clear();
        }
    }
    let value = bytes.len();
    wire::frame_into(t.value_id, &mut bytes);
    codec.encode_value_into(event, &mut bytes)?;
    Ok(Encoded { bytes, value })
}

/// A topic of fixed-schema records (`<prefix>.transaction`, `<prefix>.message`)
/// and its registered schema ids.
#[derive(Debug)]
struct RecordTopic<C> {
    codec: C,
    topic: String,
    key_id: u32,
    value_id: u32,
}

impl<C> RecordTopic<C> {
    /// Creates the topic `<prefix>.<suffix>` and registers its schemas.
    async fn create(
        publisher: &Publisher,
        suffix: &str,
        codec: C,
        schemas: impl Fn(&C) -> (&serde_json::Value, &serde_json::Value),
    ) -> Result<Self, PublishError> {
        let topic = prefix_topic(&publisher.settings.prefix, suffix)?;
        create_topic(&publisher.admin, &topic, publisher.settings.partitions).await?;
        let (key, value) = schemas(&codec);
        Ok(Self {
            key_id: publisher.registry.register(&format!("{topic}-key"), key).await?,
            value_id: publisher.registry.register(&format!("{topic}-value"), value).await?,
            codec,
            topic,
        })
    }
}

/// What to store once the deliveries before it are done.
enum Record {
    /// The source's position, under the prefix; acknowledged to the source.
    Position(SourcePosition),
    /// Another record of the offsets topic.
    Other { key: String, value: serde_json::Value },
}

struct Checkpoint {
    record: Record,
    /// The epoch of the messages it covers (and every earlier one).
    epoch: u64,
}

/// A Kafka transaction being filled, and the records it will commit.
#[derive(Debug)]
struct KafkaTransaction {
    acked: watch::Sender<Option<SourcePosition>>,
    offsets_topic: String,
    open: Option<std::time::Instant>,
    events: u64,
    /// Events since the last checkpoint: a commit waits for the next one.
    since_checkpoint: u64,
    position: Option<SourcePosition>,
    others: Vec<(String, serde_json::Value)>,
}

/// Sends events; see the module docs.
pub struct Publisher {
    settings: PublisherSettings,
    producer: Arc<ThreadedProducer<Tracking>>,
    /// The open Kafka transaction, with `exactly_once`.
    transaction: Option<KafkaTransaction>,
    deliveries: Arc<Deliveries>,
    /// Messages sent now belong to this epoch; a checkpoint closes it.
    epoch: u64,
    /// For creating table topics; one client for every table.
    admin: AdminClient<DefaultClientContext>,
    registry: Arc<RegistryClient>,
    tables: HashMap<TableId, Arc<TableTopic>>,
    /// Keyless tables' last events in Kafka, without `exactly_once`.
    resent: Resent,
    /// `ferry_capture_resent_dropped_total`: events of keyless tables not sent
    /// again after a restart or a reconnection.
    resent_dropped: metrics::Counter,
    transactions: Option<RecordTopic<TransactionCodec>>,
    /// MySQL/MariaDB: `<prefix>.schema-changes`.
    schema_changes: Option<RecordTopic<SchemaChangeCodec>>,
    /// Created with the first logical message.
    messages: Option<RecordTopic<MessageCodec>>,
    /// `ferry_capture_lag_ms`: source commit to Ferry, of the last streamed event.
    lag_ms: metrics::Gauge,
    checkpoints: mpsc::Sender<Checkpoint>,
    acknowledged: watch::Receiver<Option<SourcePosition>>,
    /// Taken when awaited; why it stopped is then kept in `stopped`.
    acknowledger: Option<JoinHandle<Result<(), PublishError>>>,
    stopped: Option<String>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.settings.prefix)
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub async fn start(settings: PublisherSettings, registry: Arc<RegistryClient>) -> Result<Self, PublishError> {
        let offsets = Offsets::open(&settings.kafka, &settings.offsets_topic).await?;
        let tracking = Tracking::default();
        let deliveries = Arc::clone(&tracking.0);
        let (acked, acknowledged) = watch::channel(None);
        let (producer, transaction, acked) = if settings.exactly_once {
            let mut config = settings
                .kafka
                .transactional_producer(&format!("ferry-capture-{}", settings.prefix));
            if !settings.kafka.options.contains_key("transaction.timeout.ms") {
                config.set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string());
            }
            let producer: Arc<ThreadedProducer<Tracking>> = Arc::new(config.create_with_context(tracking)?);
            let p = Arc::clone(&producer);
            tokio::task::spawn_blocking(move || p.init_transactions(TRANSACTION_TIMEOUT))
                .await
                .map_err(|e| PublishError::Stopped(e.to_string()))?
                .map_err(|e| PublishError::NoTransactions(e.to_string()))?;
            let transaction = KafkaTransaction {
                acked,
                offsets_topic: settings.offsets_topic.clone(),
                open: None,
                events: 0,
                since_checkpoint: 0,
                position: None,
                others: Vec::new(),
            };
            (producer, Some(transaction), watch::channel(None).0)
        } else {
            (
                Arc::new(settings.kafka.producer().create_with_context(tracking)?),
                None,
                acked,
            )
        };
        let (checkpoints, pending) = mpsc::channel(MAX_CHECKPOINTS);
        let acknowledger = tokio::spawn(acknowledge(
            pending,
            Arc::clone(&deliveries),
            offsets,
            settings.prefix.clone(),
            acked,
        ));
        let mut publisher = Self {
            admin: settings.kafka.admin()?,
            settings,
            producer,
            transaction,
            deliveries,
            epoch: 0,
            registry,
            tables: HashMap::new(),
            resent: Resent::default(),
            resent_dropped: metrics::counter!("ferry_capture_resent_dropped_total"),
            transactions: None,
            schema_changes: None,
            messages: None,
            lag_ms: metrics::gauge!("ferry_capture_lag_ms"),
            checkpoints,
            acknowledged,
            acknowledger: Some(acknowledger),
            stopped: None,
        };
        if publisher.settings.transaction_topic {
            let codec = TransactionCodec::new(&publisher.settings.prefix)?;
            publisher.transactions = Some(
                RecordTopic::create(&publisher, "transaction", codec, |c| {
                    (c.key_schema_json(), c.value_schema_json())
                })
                .await?,
            );
        }
        if publisher.settings.connector == Connector::Mysql {
            let codec = SchemaChangeCodec::new(&publisher.settings.prefix, Connector::Mysql)?;
            publisher.schema_changes = Some(
                RecordTopic::create(&publisher, "schema-changes", codec, |c| {
                    (c.key_schema_json(), c.value_schema_json())
                })
                .await?,
            );
        }
        Ok(publisher)
    }

    /// Registers (a new version of) a table's schemas and creates its topic;
    /// returns the value schema's registry id. Call before the first event of
    /// the table and whenever its shape changes.
    pub async fn register_table(&mut self, meta: TableMeta) -> Result<u32, PublishError> {
        let id = meta.id.clone();
        let keyless = meta.key.is_empty();
        let codec = TableCodec::new(&self.settings.prefix, meta, self.settings.connector)?;
        let value_id = self.register(id.clone(), TopicCodec::Table(codec)).await?;
        if keyless && self.transaction.is_none() && !self.resent.follows(&id) {
            let topic = &self.topic_of(&id)?.topic;
            let last =
                resend::last_in_kafka(&self.settings.kafka, &self.registry, self.settings.connector, topic).await?;
            self.resent.follow(id, last);
        }
        Ok(value_id)
    }

    /// Registers a MongoDB collection's schemas and creates its topic.
    pub async fn register_collection(&mut self, id: TableId) -> Result<u32, PublishError> {
        let codec = CollectionCodec::new(&self.settings.prefix, &id)?;
        self.register(id, TopicCodec::Collection(codec)).await
    }

    async fn register(&mut self, id: TableId, codec: TopicCodec) -> Result<u32, PublishError> {
        let topic = table_topic(&self.settings.prefix, &id)?;
        // A table that appeared after the start (see `ferry_core::names`).
        if let Some((other, _)) = self.tables.iter().find(|(other, t)| t.topic == topic && **other != id) {
            return Err(NameError::collision(topic, other, &id).into());
        }
        let (key_schema, value_schema) = match &codec {
            TopicCodec::Table(c) => (c.key_schema_json(), c.value_schema_json()),
            TopicCodec::Collection(c) => (Some(c.key_schema_json()), c.value_schema_json()),
        };
        let partitions = create_topic(&self.admin, &topic, self.settings.partitions).await?;
        let key_id = match key_schema {
            Some(schema) => Some(self.registry.register(&format!("{topic}-key"), schema).await?),
            None => None,
        };
        let value_id = self.registry.register(&format!("{topic}-value"), value_schema).await?;
        let label = id.to_string();
        let handle = TopicHandle::new(&self.producer, &topic)?;
        self.tables.insert(
            id,
            Arc::new(TableTopic {
                codec,
                topic,
                key_id,
                value_id,
                partitions,
                handle,
                events: OPS.map(
                    |op| metrics::counter!("ferry_capture_events_total", "table" => label.clone(), "op" => op.code()),
                ),
                bytes: metrics::counter!("ferry_capture_bytes_total", "table" => label),
            }),
        );
        Ok(value_id)
    }

    /// Those of `tables` whose topic holds messages: a snapshot reading them
    /// now reads them again (after an interrupted reading, one whose start
    /// was never stored, `--snapshot always` or a lost position), so each
    /// gets a truncate before its rows (see `crate::snapshot`).
    pub async fn tables_with_messages(&self, tables: &[TableId]) -> Result<HashSet<TableId>, PublishError> {
        let mut with = HashSet::new();
        for table in tables {
            if self.has_messages(table)? {
                with.insert(table.clone());
            }
        }
        Ok(with)
    }

    fn has_messages(&self, table: &TableId) -> Result<bool, PublishError> {
        let topic = table_topic(&self.settings.prefix, table)?;
        let client = self.admin.inner();
        let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(30))?;
        for t in metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
        {
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(&topic, p.id(), Duration::from_secs(30))?;
                if high > low {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The metadata of a registered table.
    pub fn table(&self, id: &TableId) -> Option<&TableMeta> {
        match &self.tables.get(id)?.codec {
            TopicCodec::Table(codec) => Some(codec.meta()),
            TopicCodec::Collection(_) => None,
        }
    }

    /// Whether collection `id` is registered.
    pub fn has_collection(&self, id: &TableId) -> bool {
        self.tables
            .get(id)
            .is_some_and(|t| matches!(t.codec, TopicCodec::Collection(_)))
    }

    fn topic_of(&self, table: &TableId) -> Result<Arc<TableTopic>, PublishError> {
        self.tables
            .get(table)
            .map(Arc::clone)
            .ok_or_else(|| PublishError::UnknownTable(table.clone()))
    }

    /// Queues one event of table `table` (and its tombstone after a delete).
    /// Waits while the producer's queue is full.
    pub async fn send(&mut self, table: &TableId, event: &ChangeEvent) -> Result<(), PublishError> {
        if self.resent.sent_before(table, event) {
            self.resent_dropped.increment(1);
            return Ok(());
        }
        let t = self.topic_of(table)?;
        let encoded = encode(&t, table, event)?;
        let lag = (event.source.snapshot == Snapshot::False).then_some(event.ts_ms - event.source.ts_ms);
        self.publish(&t, encoded.key(), encoded.value(), event.op, lag, None)
            .await
    }

    /// The encoder of table `table`'s events, for encoding away from the
    /// publisher (a snapshot's workers, in parallel).
    pub fn encoder(&self, table: &TableId) -> Result<TableEncoder, PublishError> {
        Ok(TableEncoder {
            topic: self.topic_of(table)?,
            table: table.clone(),
        })
    }

    /// Queues snapshot events that a [`TableEncoder`] of `table` encoded, in
    /// order. A worker's whole batch at once, in one call to the producer
    /// (see the `batch` module) and counted once, since this runs for every
    /// row of a snapshot.
    pub async fn send_encoded(&mut self, table: &TableId, events: &[&Encoded]) -> Result<(), PublishError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let t = self.topic_of(table)?;
        // One table's events: all keyed, or all not.
        let partition = partition_of(first.key());
        let mut rest = events;
        while !rest.is_empty() {
            self.begin()?;
            let epoch = self.epoch;
            self.deliveries.sending(epoch, rest.len() as u64);
            let produced = t
                .handle
                .produce(rest.iter().map(|e| (e.key(), e.value())), partition, epoch as usize);
            self.deliveries.refused(epoch, (rest.len() - produced.queued) as u64);
            self.sent(produced.queued as u64);
            if let Some(e) = produced.error {
                return Err(e.into());
            }
            // The rest found the queue full: wait for room.
            rest = &rest[produced.queued..];
            if !rest.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let bytes = events.iter().map(|e| e.bytes.len()).sum();
        t.count(Op::Read, events.len() as u64, bytes);
        Ok(())
    }

    /// Queues one event of MongoDB collection `collection` (and its tombstone
    /// after a delete); `gone`: an update whose document was deleted before
    /// it could be looked up (see [`DOCUMENT_GONE_HEADER`]).
    pub async fn send_document(
        &mut self,
        collection: &TableId,
        event: &DocumentEvent,
        gone: bool,
    ) -> Result<(), PublishError> {
        let t = self.topic_of(collection)?;
        let (TopicCodec::Collection(codec), Some(key_id)) = (&t.codec, t.key_id) else {
            return Err(PublishError::UnknownTable(collection.clone()));
        };
        let key = (event.op != Op::Truncate)
            .then(|| codec.encode_key(&event.id))
            .transpose()?;
        let key = key.map(|k| wire::encode(key_id, &k));
        let value = wire::encode(t.value_id, &codec.encode_value(event)?);
        let key = key.as_deref();
        let lag = (event.source.snapshot == Snapshot::False).then_some(event.ts_ms - event.source.ts_ms);
        let headers = gone.then(|| {
            OwnedHeaders::new().insert(Header {
                key: DOCUMENT_GONE_HEADER,
                value: Some("true"),
            })
        });
        self.publish(&t, key, &value, event.op, lag, headers).await
    }

    /// Queues an encoded event: a truncate into every partition, a delete
    /// followed by its tombstone.
    async fn publish(
        &mut self,
        t: &TableTopic,
        key: Option<&[u8]>,
        value: &[u8],
        op: Op,
        lag_ms: Option<i64>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), PublishError> {
        t.count(op, 1, value.len() + key.map_or(0, <[u8]>::len));
        if let Some(lag) = lag_ms {
            self.lag_ms.set(lag as f64);
        }
        if op == Op::Truncate {
            // Into every partition, each copy saying how many there are, so
            // apply can empty the table once every partition has reached it:
            // nothing written before it survives, nothing written after is lost.
            let header = t.partitions.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: TRUNCATE_PARTITIONS_HEADER,
                value: Some(&header),
            });
            for p in 0..t.partitions {
                self.enqueue(&t.topic, None, Some(value), Some(p), Some(&headers))
                    .await?;
            }
            return Ok(());
        }
        self.enqueue(&t.topic, key, Some(value), partition_of(key), headers.as_ref())
            .await?;
        if op == Op::Delete && self.settings.tombstones && key.is_some() {
            self.enqueue(&t.topic, key, None, None, None).await?;
        }
        Ok(())
    }

    /// Queues a record of the transaction topic (nothing when it is turned off).
    pub async fn send_transaction(&mut self, record: &TransactionRecord) -> Result<(), PublishError> {
        let Some(t) = &self.transactions else {
            return Ok(());
        };
        let key = wire::encode(t.key_id, &t.codec.encode_key(&record.id)?);
        let value = wire::encode(t.value_id, &t.codec.encode_value(record)?);
        let topic = t.topic.clone();
        self.enqueue(&topic, Some(&key), Some(&value), None, None).await
    }

    /// Queues a record of `<prefix>.schema-changes` (a source without one: nothing).
    pub async fn send_schema_change(&mut self, change: &SchemaChange) -> Result<(), PublishError> {
        let Some(t) = &self.schema_changes else {
            return Ok(());
        };
        let key = wire::encode(t.key_id, &t.codec.encode_key(&change.database)?);
        let value = wire::encode(t.value_id, &t.codec.encode_value(change)?);
        let topic = t.topic.clone();
        self.enqueue(&topic, Some(&key), Some(&value), None, None).await
    }

    /// Queues a logical decoding message on `<prefix>.message`.
    pub async fn send_message(&mut self, message: &LogicalMessage) -> Result<(), PublishError> {
        let t = match self.messages.take() {
            Some(t) => t,
            None => {
                let codec = MessageCodec::new(&self.settings.prefix, self.settings.connector)?;
                RecordTopic::create(self, "message", codec, |c| (c.key_schema_json(), c.value_schema_json())).await?
            }
        };
        let key = wire::encode(t.key_id, &t.codec.encode_key(&message.prefix)?);
        let value = wire::encode(t.value_id, &t.codec.encode_value(message)?);
        let sent = self.enqueue(&t.topic, Some(&key), Some(&value), None, None).await;
        self.messages = Some(t);
        sent
    }

    /// Hands one message to the producer, waiting while its queue is full.
    async fn enqueue(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: Option<i32>,
        headers: Option<&OwnedHeaders>,
    ) -> Result<(), PublishError> {
        while !self.produce(topic, key, value, partition, headers)? {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Hands one message to the producer; false, with nothing sent, when its
    /// queue is full.
    fn produce(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: Option<i32>,
        headers: Option<&OwnedHeaders>,
    ) -> Result<bool, PublishError> {
        self.begin()?;
        let epoch = self.epoch;
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, epoch as usize);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        self.deliveries.sending(epoch, 1);
        match self.producer.send(record) {
            Ok(()) => {
                self.sent(1);
                Ok(true)
            }
            Err((e, _)) => {
                self.deliveries.refused(epoch, 1);
                if e == KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// With transactions, begins one if none is open: messages are about to
    /// be sent.
    fn begin(&mut self) -> Result<(), PublishError> {
        if let Some(t) = &mut self.transaction {
            if t.open.is_none() {
                self.producer.begin_transaction()?;
                t.open = Some(std::time::Instant::now());
                tracing::debug!("Kafka transaction begun");
            }
        }
        Ok(())
    }

    /// With transactions, counts `messages` the producer took into the open one.
    fn sent(&mut self, messages: u64) {
        if let Some(t) = &mut self.transaction {
            t.events += messages;
            t.since_checkpoint += messages;
        }
    }

    /// Marks `position` as covering every event sent so far: it is acknowledged
    /// once they are all in Kafka. Waits while too many checkpoints are pending.
    pub async fn checkpoint(&mut self, position: SourcePosition) -> Result<(), PublishError> {
        self.queue(Record::Position(position)).await
    }

    /// Stores `value` under `key` in the offsets topic once every event sent
    /// so far is in Kafka. The source's acknowledged position does not move.
    pub async fn store_after_sent(&mut self, key: String, value: &impl serde::Serialize) -> Result<(), PublishError> {
        let value = serde_json::to_value(value).map_err(|e| OffsetsError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        self.queue(Record::Other { key, value }).await
    }

    async fn queue(&mut self, record: Record) -> Result<(), PublishError> {
        if let Some(t) = &mut self.transaction {
            match record {
                Record::Position(p) => t.position = Some(p),
                Record::Other { key, value } => {
                    t.others.retain(|(k, _)| *k != key);
                    t.others.push((key, value));
                }
            }
            t.since_checkpoint = 0;
            return self.commit(false).await;
        }
        let epoch = self.epoch;
        self.epoch += 1;
        if self.checkpoints.send(Checkpoint { record, epoch }).await.is_err() {
            // The acknowledger stopped: report why, not merely that it did.
            return Err(self.failed().await);
        }
        Ok(())
    }

    /// With transactions, commits the open Kafka transaction if it is due and
    /// ends at a checkpoint (call it now and then: a quiet source sends
    /// nothing that would). Without, nothing to do.
    pub async fn tick(&mut self) -> Result<(), PublishError> {
        self.commit(false).await
    }

    /// With transactions, commits what a snapshot sent so far, which has no
    /// position of its own to wait for. Without, nothing to do.
    pub async fn commit_snapshot_rows(&mut self) -> Result<(), PublishError> {
        if let Some(t) = &mut self.transaction {
            t.since_checkpoint = 0;
        }
        self.commit(true).await
    }

    /// Commits the open transaction when it ends at a checkpoint and is due
    /// (or `now`): the pending offsets records first, inside it.
    async fn commit(&mut self, now: bool) -> Result<(), PublishError> {
        let Some(t) = &mut self.transaction else {
            return Ok(());
        };
        let pending = t.position.is_some() || !t.others.is_empty();
        let due = match t.open {
            None => pending,
            Some(opened) => now || t.events >= COMMIT_EVENTS || opened.elapsed() >= COMMIT_AFTER,
        };
        if !due || t.since_checkpoint > 0 {
            return Ok(());
        }
        let position = t.position.take();
        let mut records = std::mem::take(&mut t.others);
        if let Some(p) = &position {
            let value = serde_json::to_value(p).map_err(|e| OffsetsError::Corrupt {
                key: self.settings.prefix.clone(),
                reason: e.to_string(),
            })?;
            records.push((self.settings.prefix.clone(), value));
        }
        let topic = t.offsets_topic.clone();
        for (key, value) in records {
            self.enqueue(
                &topic,
                Some(key.as_bytes()),
                Some(value.to_string().as_bytes()),
                None,
                None,
            )
            .await?;
        }
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.commit_transaction(TRANSACTION_TIMEOUT))
            .await
            .map_err(|e| PublishError::Stopped(e.to_string()))??;
        tracing::debug!(?position, "Kafka transaction committed");
        if let Some(t) = &mut self.transaction {
            t.open = None;
            t.events = 0;
            t.since_checkpoint = 0;
            if let Some(p) = position {
                t.acked.send_replace(Some(p));
            }
        }
        Ok(())
    }

    /// The last position whose events are all durable in Kafka and which is
    /// stored in the offsets topic.
    pub fn acknowledged(&self) -> watch::Receiver<Option<SourcePosition>> {
        self.acknowledged.clone()
    }

    /// Waits for every checkpoint so far to be acknowledged, then stops.
    pub async fn finish(mut self) -> Result<(), PublishError> {
        self.commit(true).await?;
        // Still open: it ends inside a source transaction, so it cannot be
        // committed; its events come again after a restart (their position
        // was not stored). Abort it now rather than leave it to the broker,
        // whose readers stay behind it until the next start fences it or,
        // on brokers that do not fence, until its timeout minutes later.
        if self.transaction.as_ref().is_some_and(|t| t.open.is_some()) {
            let producer = Arc::clone(&self.producer);
            tokio::task::spawn_blocking(move || producer.abort_transaction(TRANSACTION_TIMEOUT))
                .await
                .map_err(|e| PublishError::Stopped(e.to_string()))??;
            tracing::debug!("Kafka transaction aborted at the stop");
            if let Some(t) = &mut self.transaction {
                t.open = None;
            }
        }
        drop(self.checkpoints);
        match self.acknowledger.take() {
            Some(task) => task.await.map_err(|e| PublishError::Stopped(e.to_string()))?,
            None => Err(PublishError::Stopped(self.stopped.take().unwrap_or_default())),
        }
    }

    /// Resolves with the acknowledger's error once it stops early; never
    /// otherwise. After the first call, the reason comes back as `Stopped`.
    pub async fn failed(&mut self) -> PublishError {
        let Some(task) = self.acknowledger.take() else {
            return PublishError::Stopped(self.stopped.clone().unwrap_or_default());
        };
        let error = match task.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => PublishError::Stopped("no more checkpoints".into()),
            Err(e) => PublishError::Stopped(e.to_string()),
        };
        self.stopped = Some(error.to_string());
        error
    }
}

/// The partition an event's key asks for: a keyless table's events have no
/// key to keep them in order by, so they all go to partition 0, in source
/// order; the others go where the partitioner puts their key.
fn partition_of(key: Option<&[u8]>) -> Option<i32> {
    key.is_none().then_some(0)
}

/// Creates the topic if needed; its number of partitions (it may have existed
/// with another).
async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
) -> Result<i32, PublishError> {
    let spec = TopicSpec {
        name: name.to_owned(),
        partitions,
        compacted: false,
    };
    ensure_topics(admin, &[spec]).await?;
    let metadata = admin.inner().fetch_metadata(Some(name), Duration::from_secs(30))?;
    match metadata.topics().first().map(|t| t.partitions().len()) {
        Some(n) if n > 0 => Ok(i32::try_from(n).unwrap_or(i32::MAX)),
        _ => Err(PublishError::Delivery {
            topic: name.to_owned(),
            reason: "the brokers report no partitions for it".into(),
        }),
    }
}

async fn acknowledge(
    mut pending: mpsc::Receiver<Checkpoint>,
    deliveries: Arc<Deliveries>,
    offsets: Offsets,
    key: String,
    acked: watch::Sender<Option<SourcePosition>>,
) -> Result<(), PublishError> {
    while let Some(first) = pending.recv().await {
        // Everything already queued joins this batch (bounded by the channel).
        let mut batch = vec![first];
        while let Ok(next) = pending.try_recv() {
            batch.push(next);
        }
        let mut position = None;
        let mut others = Vec::new();
        for Checkpoint { record, epoch } in batch {
            deliveries.wait(epoch).await.map_err(|f| PublishError::Delivery {
                topic: f.topic,
                reason: f.reason,
            })?;
            match record {
                Record::Position(p) => position = Some(p),
                Record::Other { key, value } => others.push((key, value)),
            }
        }
        for (key, value) in others {
            offsets.store(&key, &value).await?;
        }
        if let Some(position) = position {
            offsets.store(&key, &position).await?;
            acked.send_replace(Some(position));
        }
    }
    Ok(())
}
