//! The `<prefix>.schema-changes` topic: a MySQL/MariaDB source's schema over
//! time, Debezium's schema history in a readable shape.
//!
//! Two kinds of record, in binlog order, keyed by database (one partition per
//! database keeps its history in order):
//! - a DDL statement the binlog carried (`ddl` set), at its position;
//! - a new schema version Ferry registered for a table (`table` and
//!   `schema_id` set: the registry id of the table topic's value schema),
//!   written before the first event that uses it.
//!
//! Together they answer "when did this table change, by which statement, and
//! which schema do events from then on carry".

use apache_avro::types::Value as Avro;
use serde_json::{json, Value as Json};

use crate::codec::{CodecError, RecordSchemas};
use crate::envelope::{source_from_avro, source_schema, source_to_avro, Connector, SourceInfo};
use crate::names::avro_namespace;

/// One record of the schema-changes topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    /// The database the statement ran in, or the table belongs to.
    pub database: String,
    /// The DDL statement, as the binlog carries it.
    pub ddl: Option<String>,
    /// The table of a new schema version.
    pub table: Option<String>,
    /// The registry id of the table's new value schema.
    pub schema_id: Option<u32>,
    /// Where in the source's log; `ts_ms` is the statement's time.
    pub source: SourceInfo,
    /// When Ferry processed it.
    pub ts_ms: i64,
}

/// Encodes and decodes schema-change records of one capture.
#[derive(Debug)]
pub struct SchemaChangeCodec {
    connector: Connector,
    schemas: RecordSchemas,
}

impl SchemaChangeCodec {
    pub fn new(prefix: &str, connector: Connector) -> Result<Self, CodecError> {
        let namespace = avro_namespace([prefix, "schema-changes"]);
        let key_json = json!({
            "type": "record", "name": "SchemaChangeKey", "namespace": namespace,
            "fields": [{"name": "databaseName", "type": "string"}],
        });
        let value_json = json!({
            "type": "record", "name": "SchemaChangeValue", "namespace": namespace,
            "fields": [
                {"name": "source", "type": source_schema(connector)},
                {"name": "ts_ms", "type": "long"},
                {"name": "databaseName", "type": "string"},
                {"name": "ddl", "type": ["null", "string"], "default": null},
                {"name": "table", "type": ["null", "string"], "default": null},
                {"name": "schemaId", "type": ["null", "long"], "default": null},
            ],
        });
        let schemas = RecordSchemas::new("parsing the schema-change schema", key_json, value_json)?;
        Ok(Self { connector, schemas })
    }

    pub fn key_schema_json(&self) -> &Json {
        &self.schemas.key_json
    }

    pub fn value_schema_json(&self) -> &Json {
        &self.schemas.value_json
    }

    pub fn encode_key(&self, database: &str) -> Result<Vec<u8>, CodecError> {
        self.schemas.key.encode(&Avro::Record(vec![(
            "databaseName".into(),
            Avro::String(database.to_owned()),
        )]))
    }

    pub fn encode_value(&self, change: &SchemaChange) -> Result<Vec<u8>, CodecError> {
        let optional = |v: Option<Avro>| match v {
            Some(v) => Avro::Union(1, Box::new(v)),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        self.schemas.value.encode(&Avro::Record(vec![
            ("source".into(), source_to_avro(&change.source)),
            ("ts_ms".into(), Avro::Long(change.ts_ms)),
            ("databaseName".into(), Avro::String(change.database.clone())),
            ("ddl".into(), optional(change.ddl.clone().map(Avro::String))),
            ("table".into(), optional(change.table.clone().map(Avro::String))),
            (
                "schemaId".into(),
                optional(change.schema_id.map(|id| Avro::Long(id.into()))),
            ),
        ]))
    }

    pub fn decode_value(&self, bytes: &[u8]) -> Result<SchemaChange, CodecError> {
        let record = self.schemas.value.decode_record(bytes, "schema change")?;
        let text = |name: &str| match record.get(name) {
            Ok(Avro::String(s)) => Ok(Some(s.clone())),
            Ok(Avro::Null) => Ok(None),
            _ => Err(record.bad(name)),
        };
        let schema_id = match record.get("schemaId")? {
            Avro::Long(id) => Some(u32::try_from(*id).map_err(|_| record.bad("schemaId"))?),
            Avro::Null => None,
            _ => return Err(record.bad("schemaId")),
        };
        Ok(SchemaChange {
            database: record.string("databaseName")?.to_owned(),
            ddl: text("ddl")?,
            table: text("table")?,
            schema_id,
            source: source_from_avro(self.connector, record.get("source")?)?,
            ts_ms: record.long("ts_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Snapshot, SourceDetail};

    #[test]
    fn schema_changes_round_trip() {
        let codec = SchemaChangeCodec::new("shop", Connector::Mysql).unwrap();
        let source = SourceInfo {
            name: "shop".into(),
            ts_ms: 1_700_000_000_000,
            snapshot: Snapshot::False,
            db: "inventory".into(),
            detail: SourceDetail::Mysql {
                table: None,
                server_id: 1,
                gtid: Some("0-1-42".into()),
                file: "mysql-bin.000003".into(),
                pos: 1234,
                row: 0,
                thread: None,
                query: None,
            },
        };
        for change in [
            SchemaChange {
                database: "inventory".into(),
                ddl: Some("ALTER TABLE items ADD COLUMN note TEXT".into()),
                table: None,
                schema_id: None,
                source: source.clone(),
                ts_ms: 1_700_000_000_005,
            },
            SchemaChange {
                database: "inventory".into(),
                ddl: None,
                table: Some("items".into()),
                schema_id: Some(17),
                source,
                ts_ms: 1_700_000_000_006,
            },
        ] {
            let bytes = codec.encode_value(&change).unwrap();
            assert_eq!(codec.decode_value(&bytes).unwrap(), change);
        }
        apache_avro::Schema::parse(codec.key_schema_json()).unwrap();
    }
}
