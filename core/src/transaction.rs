//! The `<prefix>.transaction` topic: Debezium's transaction metadata.
//!
//! For every source transaction that changed a captured table, capture writes
//! a `BEGIN` record before its first event and an `END` record after its last,
//! keyed by the transaction id (so both land in one partition, in order).
//! `END` carries the number of events and the count per table
//! (`data_collections`), so a consumer can tell when it holds a whole
//! transaction: it has seen `event_count` events whose envelope's
//! `transaction.id` is this id. Transactions that touched no captured table
//! write nothing.

use apache_avro::types::Value as Avro;
use serde_json::{json, Value as Json};

use crate::codec::{CodecError, RecordSchemas};
use crate::names::avro_namespace;

/// Whether a record opens or closes a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Begin,
    End,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Begin => "BEGIN",
            TxStatus::End => "END",
        }
    }
}

/// One record of the transaction topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub status: TxStatus,
    /// The id events carry in their `transaction.id`.
    pub id: String,
    /// Events of the transaction (`END` only).
    pub event_count: Option<i64>,
    /// Events per table, `schema.table` (or `database.table`) (`END` only).
    pub data_collections: Vec<(String, i64)>,
    /// Commit time at the source, ms since the epoch.
    pub ts_ms: i64,
}

fn namespace(prefix: &str) -> String {
    avro_namespace([prefix, "transaction"])
}

/// The key schema: `{id}`.
pub fn key_schema(prefix: &str) -> Json {
    json!({
        "type": "record",
        "name": "TransactionMetadataKey",
        "namespace": namespace(prefix),
        "fields": [{"name": "id", "type": "string"}],
    })
}

/// The value schema, Debezium's `TransactionMetadataValue`.
pub fn value_schema(prefix: &str) -> Json {
    json!({
        "type": "record",
        "name": "TransactionMetadataValue",
        "namespace": namespace(prefix),
        "fields": [
            {"name": "status", "type": "string"},
            {"name": "id", "type": "string"},
            {"name": "event_count", "type": ["null", "long"], "default": null},
            {"name": "data_collections", "type": ["null", {"type": "array", "items": {
                "type": "record",
                "name": "DataCollection",
                "fields": [
                    {"name": "data_collection", "type": "string"},
                    {"name": "event_count", "type": "long"},
                ],
            }}], "default": null},
            {"name": "ts_ms", "type": "long"},
        ],
    })
}

/// Encodes and decodes transaction records.
#[derive(Debug)]
pub struct TransactionCodec {
    schemas: RecordSchemas,
}

impl TransactionCodec {
    pub fn new(prefix: &str) -> Result<Self, CodecError> {
        let schemas = RecordSchemas::new(
            "parsing the transaction schema",
            key_schema(prefix),
            value_schema(prefix),
        )?;
        Ok(Self { schemas })
    }

    pub fn key_schema_json(&self) -> &Json {
        &self.schemas.key_json
    }

    pub fn value_schema_json(&self) -> &Json {
        &self.schemas.value_json
    }

    pub fn encode_key(&self, id: &str) -> Result<Vec<u8>, CodecError> {
        self.schemas
            .key
            .encode(&Avro::Record(vec![("id".into(), Avro::String(id.to_owned()))]))
    }

    pub fn encode_value(&self, record: &TransactionRecord) -> Result<Vec<u8>, CodecError> {
        let collections = match record.status {
            TxStatus::Begin => Avro::Union(0, Box::new(Avro::Null)),
            TxStatus::End => Avro::Union(
                1,
                Box::new(Avro::Array(
                    record
                        .data_collections
                        .iter()
                        .map(|(name, n)| {
                            Avro::Record(vec![
                                ("data_collection".into(), Avro::String(name.clone())),
                                ("event_count".into(), Avro::Long(*n)),
                            ])
                        })
                        .collect(),
                )),
            ),
        };
        self.schemas.value.encode(&Avro::Record(vec![
            ("status".into(), Avro::String(record.status.as_str().into())),
            ("id".into(), Avro::String(record.id.clone())),
            (
                "event_count".into(),
                match record.event_count {
                    None => Avro::Union(0, Box::new(Avro::Null)),
                    Some(n) => Avro::Union(1, Box::new(Avro::Long(n))),
                },
            ),
            ("data_collections".into(), collections),
            ("ts_ms".into(), Avro::Long(record.ts_ms)),
        ]))
    }

    pub fn decode_value(&self, bytes: &[u8]) -> Result<TransactionRecord, CodecError> {
        let record = self.schemas.value.decode_record(bytes, "transaction record")?;
        let status = match record.string("status")? {
            "BEGIN" => TxStatus::Begin,
            "END" => TxStatus::End,
            _ => return Err(record.bad("status")),
        };
        let data_collections = match record.get("data_collections")? {
            Avro::Null => vec![],
            Avro::Array(items) => items
                .iter()
                .map(|item| match item {
                    Avro::Record(f) => match (&f[0].1, &f[1].1) {
                        (Avro::String(name), Avro::Long(n)) => Ok((name.clone(), *n)),
                        _ => Err(record.bad("data_collections")),
                    },
                    _ => Err(record.bad("data_collections")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(record.bad("data_collections")),
        };
        Ok(TransactionRecord {
            status,
            id: record.string("id")?.to_owned(),
            event_count: match record.get("event_count")? {
                Avro::Long(n) => Some(*n),
                Avro::Null => None,
                _ => return Err(record.bad("event_count")),
            },
            data_collections,
            ts_ms: record.long("ts_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let codec = TransactionCodec::new("shop-1").unwrap();
        let begin = TransactionRecord {
            status: TxStatus::Begin,
            id: "771:0/16B3748".into(),
            event_count: None,
            data_collections: vec![],
            ts_ms: 1_700_000_000_000,
        };
        let end = TransactionRecord {
            status: TxStatus::End,
            event_count: Some(3),
            data_collections: vec![("public.orders".into(), 2), ("public.lines".into(), 1)],
            ..begin.clone()
        };
        for record in [begin, end] {
            let bytes = codec.encode_value(&record).unwrap();
            assert_eq!(codec.decode_value(&bytes).unwrap(), record);
        }
        // The key is the id as an Avro string: length 13 zig-zagged, then the bytes.
        let key = codec.encode_key("771:0/16B3748").unwrap();
        assert_eq!(key[0], 26);
        assert_eq!(&key[1..], b"771:0/16B3748");
        assert_eq!(codec.value_schema_json()["namespace"], json!("shop_1.transaction"));
    }
}
