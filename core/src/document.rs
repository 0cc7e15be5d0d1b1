//! MongoDB change events: Debezium's MongoDB shape, where a document travels
//! as one extended-JSON string rather than as a row of columns.
//!
//! ```text
//!  key   <ns>.Key       { id: string }           the _id, relaxed extended JSON
//!  value <ns>.Envelope  { before: string?, after: string?,           canonical extended JSON
//!                         updateDescription: { removedFields, updatedFields, truncatedArrays }?,
//!                         source (connector "mongodb"), transaction?, op, ts_ms }
//! ```
//!
//! Documents are written in *canonical* extended JSON: every BSON type comes
//! back exactly (an int32 stays an int32, a date keeps its milliseconds, a
//! binary its subtype), with fields in the document's own order, which MongoDB
//! treats as significant. The key is the `_id` in *relaxed* extended JSON, so
//! ids MongoDB considers equal (`1` as int32 and as int64) give one key, as its
//! unique index does. [`extjson`] writes both forms by hand because
//! `serde_json`'s map (without `preserve_order`) would sort the fields.
//!
//! A relational target sees a collection as the table of [`collection_meta`]:
//! `id` (the key text) and `doc` (the document as relaxed extended JSON,
//! which reads naturally as JSON: numbers are numbers).

use apache_avro::types::Value as Avro;
use bson::Bson;
use serde_json::{json, Value as Json};

use crate::codec::{CodecError, Fields, RecordSchemas};
use crate::envelope::{
    source_from_avro, source_schema, source_to_avro, transaction_from_avro, transaction_schema, transaction_to_avro,
    Connector, Op, SourceInfo, TransactionBlock,
};
use crate::meta::{Column, DataType, TableId, TableMeta};
use crate::schema::table_namespace;

/// Header of an update event whose document was deleted before capture could
/// look it up (`--full-document updateLookup`): `after` is null, and a delete
/// of the same `_id` follows, so a consumer may pass over it.
pub const DOCUMENT_GONE_HEADER: &str = "ferry.document-gone";

/// Which fields an update changed (MongoDB's `updateDescription`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateDescription {
    /// Dotted paths of removed fields.
    pub removed_fields: Vec<String>,
    /// The changed fields and their new values: a document in canonical
    /// extended JSON, keyed by dotted path.
    pub updated_fields: String,
    /// Arrays shortened by the update: path and new size.
    pub truncated_arrays: Vec<(String, i32)>,
}

/// One change of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentEvent {
    pub op: Op,
    /// The `_id`, relaxed extended JSON: the message key.
    pub id: String,
    /// The document before the change (a pre-image), canonical extended JSON.
    pub before: Option<String>,
    /// The document after the change, canonical extended JSON.
    pub after: Option<String>,
    pub update: Option<UpdateDescription>,
    pub source: SourceInfo,
    /// When Ferry processed it, ms since the epoch.
    pub ts_ms: i64,
    pub transaction: Option<TransactionBlock>,
}

/// A string schema that Kafka Connect and Debezium read as JSON text.
fn json_string() -> Json {
    json!({"type": "string", "connect.name": "io.debezium.data.Json"})
}

/// Encodes and decodes one collection's events.
#[derive(Debug)]
pub struct CollectionCodec {
    id: TableId,
    schemas: RecordSchemas,
}

impl CollectionCodec {
    /// The codec of collection `id` (database, collection) of capture `prefix`.
    pub fn new(prefix: &str, id: &TableId) -> Result<Self, CodecError> {
        Self::in_namespace(&table_namespace(prefix, id), id)
    }

    /// The codec of a value schema [`CollectionCodec::new`] wrote, or `None`
    /// if `json` is another kind of schema.
    pub fn from_value_schema(json: &Json) -> Option<Result<Self, CodecError>> {
        let source = json["fields"].as_array()?.iter().find(|f| f["name"] == "source")?;
        if source["type"]["ferry.connector"] != Connector::Mongodb.name() {
            return None;
        }
        let id = TableId::new(json["ferry.db"].as_str()?, json["ferry.collection"].as_str()?);
        Some(Self::in_namespace(json["namespace"].as_str()?, &id))
    }

    fn in_namespace(ns: &str, id: &TableId) -> Result<Self, CodecError> {
        let key_json = json!({
            "type": "record", "name": "Key", "namespace": ns,
            "fields": [{"name": "id", "type": "string"}],
        });
        let value_json = json!({
            "type": "record", "name": "Envelope", "namespace": ns,
            "ferry.db": id.schema, "ferry.collection": id.table,
            "fields": [
                {"name": "before", "type": ["null", json_string()], "default": null},
                {"name": "after", "type": ["null", json_string()], "default": null},
                {"name": "updateDescription", "default": null, "type": ["null", {
                    "type": "record", "name": "UpdateDescription", "namespace": "io.ferry.connector.mongodb",
                    "fields": [
                        {"name": "removedFields", "type": ["null", {"type": "array", "items": "string"}], "default": null},
                        {"name": "updatedFields", "type": ["null", json_string()], "default": null},
                        {"name": "truncatedArrays", "default": null, "type": ["null", {"type": "array", "items": {
                            "type": "record", "name": "TruncatedArray",
                            "fields": [{"name": "field", "type": "string"}, {"name": "size", "type": "int"}],
                        }}]},
                    ],
                }]},
                {"name": "source", "type": source_schema(Connector::Mongodb)},
                {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": "long"},
            ],
        });
        Ok(Self {
            id: id.clone(),
            schemas: RecordSchemas::new("parsing a collection's schema", key_json, value_json)?,
        })
    }

    /// The collection: database (as `schema`) and collection (as `table`).
    pub fn id(&self) -> &TableId {
        &self.id
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

    /// The `_id` text of an encoded key.
    pub fn decode_key(&self, bytes: &[u8]) -> Result<String, CodecError> {
        Ok(self.schemas.key.decode_record(bytes, "key")?.string("id")?.to_owned())
    }

    pub fn encode_value(&self, event: &DocumentEvent) -> Result<Vec<u8>, CodecError> {
        let text = |s: &Option<String>| optional(s.clone().map(Avro::String));
        let strings = |v: &[String]| Avro::Array(v.iter().cloned().map(Avro::String).collect());
        let update = event.update.as_ref().map(|u| {
            Avro::Record(vec![
                ("removedFields".into(), optional(Some(strings(&u.removed_fields)))),
                (
                    "updatedFields".into(),
                    optional(Some(Avro::String(u.updated_fields.clone()))),
                ),
                (
                    "truncatedArrays".into(),
                    optional(Some(Avro::Array(
                        u.truncated_arrays
                            .iter()
                            .map(|(field, size)| {
                                Avro::Record(vec![
                                    ("field".into(), Avro::String(field.clone())),
                                    ("size".into(), Avro::Int(*size)),
                                ])
                            })
                            .collect(),
                    ))),
                ),
            ])
        });
        self.schemas.value.encode(&Avro::Record(vec![
            ("before".into(), text(&event.before)),
            ("after".into(), text(&event.after)),
            ("updateDescription".into(), optional(update)),
            ("source".into(), source_to_avro(&event.source)),
            ("transaction".into(), transaction_to_avro(event.transaction.as_ref())),
            ("op".into(), Avro::String(event.op.code().to_owned())),
            ("ts_ms".into(), Avro::Long(event.ts_ms)),
        ]))
    }

    /// The event of an encoded value; `id` is its key's text.
    pub fn decode_value(&self, id: String, bytes: &[u8]) -> Result<DocumentEvent, CodecError> {
        let record = self.schemas.value.decode_record(bytes, "document event")?;
        let update = match record.get("updateDescription")? {
            Avro::Null => None,
            Avro::Record(fields) => Some(update_from_avro(fields).ok_or_else(|| record.bad("updateDescription"))?),
            _ => return Err(record.bad("updateDescription")),
        };
        let transaction = transaction_from_avro(record.get("transaction")?)?;
        let op = record.string("op")?;
        Ok(DocumentEvent {
            op: Op::parse(op).ok_or_else(|| CodecError::UnknownOp(op.to_owned()))?,
            id,
            before: optional_text(&record, "before")?,
            after: optional_text(&record, "after")?,
            update,
            source: source_from_avro(Connector::Mongodb, record.get("source")?)?,
            ts_ms: record.long("ts_ms")?,
            transaction,
        })
    }
}

fn optional(v: Option<Avro>) -> Avro {
    match v {
        Some(v) => Avro::Union(1, Box::new(v)),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

fn optional_text(record: &Fields, name: &str) -> Result<Option<String>, CodecError> {
    match record.get(name)? {
        Avro::String(s) => Ok(Some(s.clone())),
        Avro::Null => Ok(None),
        _ => Err(record.bad(name)),
    }
}

fn update_from_avro(fields: &[(String, Avro)]) -> Option<UpdateDescription> {
    let get = |name: &str| match fields.iter().find(|(n, _)| n == name)?.1 {
        Avro::Union(_, ref inner) => Some(inner.as_ref().clone()),
        ref v => Some(v.clone()),
    };
    let removed_fields = match get("removedFields")? {
        Avro::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Avro::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let updated_fields = match get("updatedFields")? {
        Avro::String(s) => s,
        _ => "{}".to_owned(),
    };
    let truncated_arrays = match get("truncatedArrays")? {
        Avro::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Avro::Record(f) => match (f.first().map(|x| &x.1), f.get(1).map(|x| &x.1)) {
                    (Some(Avro::String(field)), Some(Avro::Int(size))) => Some((field.clone(), *size)),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Some(UpdateDescription {
        removed_fields,
        updated_fields,
        truncated_arrays,
    })
}

/// A collection as a relational target holds it: `id` (the key text,
/// primary key) and `doc` (the document as JSON). Their source types are
/// PostgreSQL's names (`text`, `jsonb`), which a PostgreSQL target uses as they
/// are.
pub fn collection_meta(id: &TableId) -> TableMeta {
    let columns = vec![
        Column::new("id", DataType::Text, "text").not_null(),
        Column::new("doc", DataType::Text, "jsonb"),
    ];
    // Two fixed, distinct columns and a key among them: cannot fail.
    TableMeta::new(id.clone(), columns, &["id"]).unwrap_or_else(|e| unreachable!("{e}"))
}

/// A canonical extended-JSON document as relaxed extended JSON (numbers as
/// JSON numbers, recent dates as ISO text), for a target that stores JSON.
pub fn relaxed(canonical: &str) -> Result<String, String> {
    // Bson's own deserializer reads extended JSON and keeps the field order.
    let value: Bson = serde_json::from_str(canonical).map_err(|e| format!("not extended JSON: {e}"))?;
    Ok(extjson::relaxed(&value))
}

/// Extended JSON v2 (MongoDB's specification), written from BSON values with
/// every document's fields in their order.
pub mod extjson {
    use std::fmt::Write;

    use base64::Engine;

    use bson::Bson;

    /// `value` in canonical extended JSON: every type explicit.
    pub fn canonical(value: &Bson) -> String {
        let mut out = String::new();
        write(value, false, &mut out);
        out
    }

    /// `value` in relaxed extended JSON: numbers as JSON numbers, dates from
    /// 1970 to 9999 as ISO-8601 text, everything else as in canonical.
    pub fn relaxed(value: &Bson) -> String {
        let mut out = String::new();
        write(value, true, &mut out);
        out
    }

    fn string(s: &str, out: &mut String) {
        // serde_json's escaping of one string cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }

    fn wrapped(key: &str, inner: impl FnOnce(&mut String), out: &mut String) {
        out.push_str("{\"");
        out.push_str(key);
        out.push_str("\":");
        inner(out);
        out.push('}');
    }

    fn double_text(f: f64) -> String {
        if f.is_nan() {
            "NaN".into()
        } else if f.is_infinite() {
            if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
        } else if f == 0.0 && f.is_sign_negative() {
            "-0.0".into()
        } else if f.fract() == 0.0 && f.abs() < 1e16 {
            format!("{f:.1}")
        } else {
            // Rust prints the shortest text that reads back as the same double.
            format!("{f:?}")
        }
    }

    fn write(value: &Bson, relaxed: bool, out: &mut String) {
        match value {
            Bson::Double(f) if relaxed && f.is_finite() => out.push_str(&double_text(*f)),
            Bson::Double(f) => wrapped("$numberDouble", |o| string(&double_text(*f), o), out),
            Bson::String(s) => string(s, out),
            Bson::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, relaxed, out);
                }
                out.push(']');
            }
            Bson::Document(doc) => {
                out.push('{');
                for (i, (k, v)) in doc.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(k, out);
                    out.push(':');
                    write(v, relaxed, out);
                }
                out.push('}');
            }
            Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Bson::Null => out.push_str("null"),
            Bson::Int32(i) if relaxed => {
                let _ = write!(out, "{i}");
            }
            Bson::Int32(i) => wrapped("$numberInt", |o| string(&i.to_string(), o), out),
            Bson::Int64(i) if relaxed => {
                let _ = write!(out, "{i}");
            }
            Bson::Int64(i) => wrapped("$numberLong", |o| string(&i.to_string(), o), out),
            Bson::DateTime(d) => {
                let ms = d.timestamp_millis();
                let iso = (relaxed && ms >= 0)
                    .then(|| d.try_to_rfc3339_string().ok())
                    .flatten()
                    .filter(|s| s.len() <= 24);
                match iso {
                    Some(iso) => wrapped("$date", |o| string(&iso, o), out),
                    None => wrapped(
                        "$date",
                        |o| wrapped("$numberLong", |o| string(&ms.to_string(), o), o),
                        out,
                    ),
                }
            }
            Bson::ObjectId(oid) => wrapped("$oid", |o| string(&oid.to_hex(), o), out),
            Bson::Decimal128(d) => wrapped("$numberDecimal", |o| string(&d.to_string(), o), out),
            Bson::Binary(b) => {
                let subtype: u8 = b.subtype.into();
                let _ = write!(
                    out,
                    "{{\"$binary\":{{\"base64\":\"{}\",\"subType\":\"{subtype:02x}\"}}}}",
                    base64::engine::general_purpose::STANDARD.encode(&b.bytes)
                );
            }
            Bson::Timestamp(t) => {
                let _ = write!(out, "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}", t.time, t.increment);
            }
            Bson::RegularExpression(r) => {
                let mut options: Vec<char> = r.options.as_str().chars().collect();
                options.sort_unstable();
                out.push_str("{\"$regularExpression\":{\"pattern\":");
                string(r.pattern.as_str(), out);
                out.push_str(",\"options\":");
                string(&options.into_iter().collect::<String>(), out);
                out.push_str("}}");
            }
            Bson::JavaScriptCode(code) => wrapped("$code", |o| string(code, o), out),
            Bson::JavaScriptCodeWithScope(c) => {
                out.push_str("{\"$code\":");
                string(&c.code, out);
                out.push_str(",\"$scope\":");
                write(&Bson::Document(c.scope.clone()), relaxed, out);
                out.push('}');
            }
            Bson::Symbol(s) => wrapped("$symbol", |o| string(s, o), out),
            Bson::Undefined => out.push_str("{\"$undefined\":true}"),
            Bson::MinKey => out.push_str("{\"$minKey\":1}"),
            Bson::MaxKey => out.push_str("{\"$maxKey\":1}"),
            // Deprecated and opaque in the bson crate: its own writer has the
            // fields ($ref, $id), whose order no reader depends on.
            Bson::DbPointer(_) => out.push_str(&value.clone().into_canonical_extjson().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Snapshot, SourceDetail};
    use bson::{doc, oid::ObjectId, Binary, DateTime, Decimal128, Timestamp};

    fn event(op: Op) -> DocumentEvent {
        DocumentEvent {
            op,
            id: r#"{"$oid":"5f1e2d3c4b5a697887766554"}"#.into(),
            before: None,
            after: Some(r#"{"_id":{"$oid":"5f1e2d3c4b5a697887766554"},"qty":{"$numberInt":"5"}}"#.into()),
            update: Some(UpdateDescription {
                removed_fields: vec!["old".into()],
                updated_fields: r#"{"qty":{"$numberInt":"5"}}"#.into(),
                truncated_arrays: vec![("tags".into(), 2)],
            }),
            source: SourceInfo {
                name: "m".into(),
                ts_ms: 1_700_000_000_000,
                snapshot: Snapshot::False,
                db: "shop".into(),
                detail: SourceDetail::Mongodb {
                    collection: "orders".into(),
                    ord: 3,
                    resume_token: Some("8263A1".into()),
                    lsid: Some("3f6c3c8e-8b9f-4d2a-9d8e-1a2b3c4d5e6f".into()),
                    txn_number: Some(7),
                },
            },
            ts_ms: 1_700_000_000_005,
            transaction: Some(TransactionBlock {
                id: "3f6c3c8e-8b9f-4d2a-9d8e-1a2b3c4d5e6f:7".into(),
                total_order: 2,
                data_collection_order: 1,
            }),
        }
    }

    #[test]
    fn events_round_trip_and_the_schema_is_recognised() {
        let id = TableId::new("shop", "orders");
        let codec = CollectionCodec::new("m", &id).unwrap();
        for e in [event(Op::Update), {
            let mut d = event(Op::Delete);
            d.after = None;
            d.update = None;
            d.transaction = None;
            d
        }] {
            let bytes = codec.encode_value(&e).unwrap();
            assert_eq!(codec.decode_value(e.id.clone(), &bytes).unwrap(), e);
        }
        let key = codec.encode_key("1").unwrap();
        assert_eq!(codec.decode_key(&key).unwrap(), "1");
        let again = CollectionCodec::from_value_schema(codec.value_schema_json())
            .unwrap()
            .unwrap();
        assert_eq!(again.id(), &id);
        assert_eq!(again.value_schema_json(), codec.value_schema_json());
        // A table's envelope is not a collection's.
        let table = crate::schema::envelope_schema("m", &collection_meta(&id), Connector::Postgres);
        assert!(CollectionCodec::from_value_schema(&table).is_none());
    }

    #[test]
    fn canonical_extended_json_keeps_types_and_field_order() {
        let d = doc! {
            "z": 1_i32, "a": 1_i64, "m": 1.0_f64, "neg0": -0.0_f64, "big": 1.0e300_f64, "frac": 0.1_f64,
            "oid": ObjectId::parse_str("5f1e2d3c4b5a697887766554").unwrap(),
            "dec": "1234.5678".parse::<Decimal128>().unwrap(),
            "date": DateTime::from_millis(-1), "bin": Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0; 16] },
            "ts": Timestamp { time: 5, increment: 6 }, "nested": [[1_i32, "x"], {"b": null, "a": true}],
        };
        let canonical = extjson::canonical(&Bson::Document(d.clone()));
        assert_eq!(
            canonical,
            concat!(
                r#"{"z":{"$numberInt":"1"},"a":{"$numberLong":"1"},"m":{"$numberDouble":"1.0"},"#,
                r#""neg0":{"$numberDouble":"-0.0"},"big":{"$numberDouble":"1e300"},"frac":{"$numberDouble":"0.1"},"#,
                r#""oid":{"$oid":"5f1e2d3c4b5a697887766554"},"dec":{"$numberDecimal":"1234.5678"},"#,
                r#""date":{"$date":{"$numberLong":"-1"}},"bin":{"$binary":{"base64":"AAAAAAAAAAAAAAAAAAAAAA==","subType":"04"}},"#,
                r#""ts":{"$timestamp":{"t":5,"i":6}},"nested":[[{"$numberInt":"1"},"x"],{"b":null,"a":true}]}"#
            )
        );
        // Read back by the bson crate's parser: the same values in the same order.
        let back: Bson = serde_json::from_str(&canonical).unwrap();
        let Bson::Document(back) = back else { panic!() };
        assert_eq!(back.iter().collect::<Vec<_>>(), d.iter().collect::<Vec<_>>());
    }

    #[test]
    fn relaxed_json_reads_as_plain_json() {
        let canonical = r#"{"_id":{"$numberInt":"7"},"n":{"$numberLong":"9007199254740993"},"d":{"$date":{"$numberLong":"1700000000000"}},"old":{"$date":{"$numberLong":"-1000"}}}"#;
        assert_eq!(
            relaxed(canonical).unwrap(),
            r#"{"_id":7,"n":9007199254740993,"d":{"$date":"2023-11-14T22:13:20Z"},"old":{"$date":{"$numberLong":"-1000"}}}"#
        );
        assert!(relaxed("{not json").is_err());
    }
}
