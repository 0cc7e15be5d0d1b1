//! The `<prefix>.message` topic: logical decoding messages, for the outbox
//! pattern.
//!
//! An application writes `pg_logical_emit_message(true, 'orders', payload)` in
//! the same transaction as its own rows; the message reaches Kafka exactly when
//! (and only if) the transaction commits, in commit order with the row events.
//! Debezium's shape: key `{prefix}`, value `{op: "m", ts_ms, source, message:
//! {prefix, content}}`, the content as bytes, untouched.

use apache_avro::types::Value as Avro;
use serde_json::{json, Value as Json};

use crate::codec::{CodecError, RecordSchemas};
use crate::envelope::{source_from_avro, source_schema, source_to_avro, Connector, SourceInfo};
use crate::names::avro_namespace;

/// One logical decoding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// The application's prefix (the first argument of `pg_logical_emit_message`).
    pub prefix: String,
    pub content: Vec<u8>,
    /// Where it was written; `ts_ms` is the commit time (or, outside a
    /// transaction, when Ferry read it).
    pub source: SourceInfo,
    /// When Ferry processed it.
    pub ts_ms: i64,
}

/// Encodes and decodes messages of one capture.
#[derive(Debug)]
pub struct MessageCodec {
    connector: Connector,
    schemas: RecordSchemas,
}

impl MessageCodec {
    pub fn new(prefix: &str, connector: Connector) -> Result<Self, CodecError> {
        let namespace = avro_namespace([prefix, "message"]);
        let key_json = json!({
            "type": "record", "name": "MessageKey", "namespace": namespace,
            "fields": [{"name": "prefix", "type": "string"}],
        });
        let value_json = json!({
            "type": "record", "name": "MessageValue", "namespace": namespace,
            "fields": [
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": "long"},
                {"name": "source", "type": source_schema(connector)},
                {"name": "message", "type": {"type": "record", "name": "Message", "fields": [
                    {"name": "prefix", "type": "string"},
                    {"name": "content", "type": "bytes"},
                ]}},
            ],
        });
        let schemas = RecordSchemas::new("parsing the message schema", key_json, value_json)?;
        Ok(Self { connector, schemas })
    }

    pub fn key_schema_json(&self) -> &Json {
        &self.schemas.key_json
    }

    pub fn value_schema_json(&self) -> &Json {
        &self.schemas.value_json
    }

    pub fn encode_key(&self, prefix: &str) -> Result<Vec<u8>, CodecError> {
        self.schemas
            .key
            .encode(&Avro::Record(vec![("prefix".into(), Avro::String(prefix.to_owned()))]))
    }

    pub fn encode_value(&self, message: &LogicalMessage) -> Result<Vec<u8>, CodecError> {
        self.schemas.value.encode(&Avro::Record(vec![
            ("op".into(), Avro::String("m".into())),
            ("ts_ms".into(), Avro::Long(message.ts_ms)),
            ("source".into(), source_to_avro(&message.source)),
            (
                "message".into(),
                Avro::Record(vec![
                    ("prefix".into(), Avro::String(message.prefix.clone())),
                    ("content".into(), Avro::Bytes(message.content.clone())),
                ]),
            ),
        ]))
    }

    pub fn decode_value(&self, bytes: &[u8]) -> Result<LogicalMessage, CodecError> {
        let record = self.schemas.value.decode_record(bytes, "message")?;
        let Avro::Record(message) = record.get("message")? else {
            return Err(record.bad("message"));
        };
        let (Some((_, Avro::String(prefix))), Some((_, Avro::Bytes(content)))) = (message.first(), message.get(1))
        else {
            return Err(record.bad("message"));
        };
        Ok(LogicalMessage {
            prefix: prefix.clone(),
            content: content.clone(),
            source: source_from_avro(self.connector, record.get("source")?)?,
            ts_ms: record.long("ts_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Snapshot, SourceDetail};
    use crate::position::PgLsn;

    #[test]
    fn messages_round_trip() {
        let codec = MessageCodec::new("shop", Connector::Postgres).unwrap();
        let message = LogicalMessage {
            prefix: "outbox.orders".into(),
            content: vec![0, 159, 146, 150, b'{'],
            source: SourceInfo {
                name: "shop".into(),
                ts_ms: 1_700_000_000_000,
                snapshot: Snapshot::False,
                db: "db".into(),
                detail: SourceDetail::Postgres {
                    schema: Default::default(),
                    table: Default::default(),
                    tx_id: Some(42),
                    lsn: Some(PgLsn(0x16B_3748)),
                },
            },
            ts_ms: 1_700_000_000_005,
        };
        let bytes = codec.encode_value(&message).unwrap();
        assert_eq!(codec.decode_value(&bytes).unwrap(), message);
        assert_eq!(&codec.encode_key("outbox.orders").unwrap()[1..], b"outbox.orders");
    }
}
