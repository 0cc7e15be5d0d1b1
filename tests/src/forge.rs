//! Events a test makes itself instead of a capture: a table's schemas
//! registered in the services' registry under the subjects a capture would
//! use, and its events encoded, framed and produced to its topic as a capture
//! would. For what no capture writes but a topic may hold — schemas whose
//! type names are hostile, payloads whose lengths are corrupt — since apply
//! must not trust what it reads any more than a capture's own output.

use std::time::Duration;

use ferry_core::codec::TableCodec;
use ferry_core::config::SecretUrl;
use ferry_core::envelope::{ChangeEvent, Connector, Op, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::TableMeta;
use ferry_core::registry::RegistryClient;
use ferry_core::value::Datum;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// A table whose schemas are registered, and a producer to its topic.
pub struct Forged {
    pub topic: String,
    codec: TableCodec,
    key_id: Option<u32>,
    value_id: u32,
    producer: BaseProducer,
}

impl std::fmt::Debug for Forged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forged")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Forged {
    /// Registers the schemas of `meta` (as `connector`'s capture under
    /// `prefix` derives them) and returns the table's topic and producer.
    pub async fn register(prefix: &str, meta: TableMeta, connector: Connector) -> Forged {
        let topic = ferry_core::names::table_topic(prefix, &meta.id).expect("a topic name");
        let codec = TableCodec::new(prefix, meta, connector).expect("a codec");
        let registry =
            RegistryClient::new(&SecretUrl::parse(crate::SERVICES_REGISTRY).expect("registry URL")).expect("registry");
        let key_id = match codec.key_schema_json() {
            Some(schema) => Some(
                registry
                    .register(&format!("{topic}-key"), schema)
                    .await
                    .expect("key schema"),
            ),
            None => None,
        };
        let value_id = registry
            .register(&format!("{topic}-value"), codec.value_schema_json())
            .await
            .expect("value schema");
        let producer = ferry_core::kafka::KafkaSettings::new(crate::brokers())
            .producer()
            .create()
            .expect("producer");
        Forged {
            topic,
            codec,
            key_id,
            value_id,
            producer,
        }
    }

    /// The framed key and the Avro datum of the value (not framed yet) of an
    /// insert of `row`.
    pub fn insert(&self, row: Vec<Datum>) -> (Option<Vec<u8>>, Vec<u8>) {
        let meta = self.codec.meta();
        let detail = match self.codec.connector() {
            Connector::Mysql => SourceDetail::Mysql {
                table: Some(meta.id.table.as_str().into()),
                server_id: 1,
                gtid: None,
                file: "forged-bin.000001".into(),
                pos: 4,
                row: 0,
                thread: None,
                query: None,
            },
            _ => SourceDetail::Postgres {
                schema: meta.id.schema.as_str().into(),
                table: meta.id.table.as_str().into(),
                tx_id: None,
                lsn: None,
            },
        };
        let key = self
            .codec
            .encode_key(&row)
            .expect("a key")
            .zip(self.key_id)
            .map(|(datum, id)| ferry_core::wire::encode(id, &datum));
        let event = ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(row),
            source: SourceInfo {
                name: "forged".into(),
                ts_ms: 0,
                snapshot: Snapshot::False,
                db: meta.id.schema.as_str().into(),
                detail,
            },
            ts_ms: 0,
            transaction: None,
            unchanged: Vec::new(),
        };
        (key, self.codec.encode_value(&event).expect("a value"))
    }

    /// The id the value schema was registered under.
    pub fn value_id(&self) -> u32 {
        self.value_id
    }

    /// Frames `datum` with the value schema's id and produces it with `key`.
    pub fn send(&self, key: Option<&[u8]>, datum: &[u8]) {
        self.send_raw(key, Some(&ferry_core::wire::encode(self.value_id, datum)));
    }

    /// Produces `key` and `value` byte for byte, framed or not (no value: a
    /// tombstone).
    pub fn send_raw(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer.send(record).map_err(|(e, _)| e).expect("produce");
        self.producer.flush(Duration::from_secs(10)).expect("flush");
    }

    /// Produces an insert of `row`.
    pub fn send_insert(&self, row: Vec<Datum>) {
        let (key, datum) = self.insert(row);
        self.send(key.as_deref(), &datum);
    }
}
