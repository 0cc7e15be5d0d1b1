//! Avro schemas derived from table metadata, and table metadata read back out of
//! them.
//!
//! A table `shop.public.orders` gets, as Debezium gives it:
//!
//! ```text
//! key    record shop.public.orders.Key       the key columns, not nullable
//! value  record shop.public.orders.Envelope  before/after: ["null", shop.public.orders.Value]
//!                                            source, transaction, op, ts_ms
//! ```
//!
//! Row fields are all nullable in Avro: a delete's old row may carry only the
//! key, and a large value an update did not touch may not be sent at all
//! (listed in the envelope's `unchanged`). A column's NOT NULL is kept in
//! `ferry.not_null`, so a target still creates it NOT NULL.
//!
//! Every row field carries what a target needs to rebuild the column without
//! asking the source: `ferry.column` (the original name; the Avro name is only
//! sanitised), `ferry.type` (the [`DataType`]), `ferry.source_type` (e.g.
//! `numeric(10,2)`) and `ferry.default` when the column has one. The `Value` record
//! carries `ferry.schema`, `ferry.table` and `ferry.key` (key column names), so the
//! value schema alone is enough for [`table_meta`] to give back the [`TableMeta`].

use serde_json::{json, Map, Value as Json};

use crate::envelope::{source_schema, transaction_schema, Connector};
use crate::meta::{Column, DataType, TableId, TableMeta};
use crate::names::{avro_namespace, unique_avro_names};

/// The Avro type of a non-null value of `ty`.
fn type_schema(ty: DataType) -> Json {
    match ty {
        DataType::Boolean => json!("boolean"),
        DataType::Int16 | DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Decimal {
            precision,
            scale,
            special,
        } => {
            let decimal = json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale});
            if special {
                json!([decimal, "string"])
            } else {
                decimal
            }
        }
        DataType::Numeric | DataType::Text => json!("string"),
        DataType::Bytes => json!("bytes"),
        DataType::Date => json!({"type": "int", "logicalType": "date"}),
        DataType::Time => json!({"type": "long", "logicalType": "time-micros"}),
        DataType::Duration => json!("long"),
        DataType::Timestamp => json!({"type": "long", "logicalType": "local-timestamp-micros"}),
        DataType::TimestampTz => json!({"type": "long", "logicalType": "timestamp-micros"}),
        DataType::Uuid => json!({"type": "string", "logicalType": "uuid"}),
    }
}

/// The Avro type of a column: nullable columns are `["null", T]` (flattened when
/// `T` is itself a union).
fn column_type(column: &Column) -> Json {
    let ty = type_schema(column.data_type);
    if !column.nullable {
        return ty;
    }
    match ty {
        Json::Array(branches) => Json::Array(std::iter::once(json!("null")).chain(branches).collect()),
        single => json!(["null", single]),
    }
}

/// A record field for a column. `nullable` is the Avro type's nullability: row
/// fields are always nullable (an old row may carry only the key, an unchanged
/// TOAST value is not sent), key fields never; the column's own NOT NULL
/// travels as `ferry.not_null`.
fn column_field(avro_name: &str, column: &Column, nullable: bool) -> Json {
    let mut field = Map::new();
    field.insert("name".into(), json!(avro_name));
    field.insert(
        "type".into(),
        column_type(&Column {
            nullable,
            ..column.clone()
        }),
    );
    if nullable {
        field.insert("default".into(), Json::Null);
    }
    field.insert("ferry.column".into(), json!(column.name));
    field.insert("ferry.type".into(), json!(column.data_type.to_string()));
    field.insert("ferry.source_type".into(), json!(column.source_type));
    if !column.nullable {
        field.insert("ferry.not_null".into(), json!(true));
    }
    if let Some(default) = &column.default {
        field.insert("ferry.default".into(), json!(default));
    }
    Json::Object(field)
}

/// The namespace of a table's records: `<prefix>.<schema>.<table>`, sanitised.
pub fn table_namespace(prefix: &str, table: &TableId) -> String {
    avro_namespace([prefix, table.schema.as_str(), table.table.as_str()])
}

/// The row record `<ns>.Value`, as it appears inside the envelope.
pub fn row_schema(prefix: &str, meta: &TableMeta) -> Json {
    let names = unique_avro_names(meta.columns.iter().map(|c| c.name.as_str()));
    let fields: Vec<Json> = meta
        .columns
        .iter()
        .zip(&names)
        .map(|(c, n)| column_field(n, c, true))
        .collect();
    json!({
        "type": "record",
        "name": "Value",
        "namespace": table_namespace(prefix, &meta.id),
        "fields": fields,
        "ferry.schema": meta.id.schema,
        "ferry.table": meta.id.table,
        "ferry.key": meta.key_columns().map(|c| c.name.as_str()).collect::<Vec<_>>(),
    })
}

/// The key record `<ns>.Key` of the key columns, or `None` for a keyless table.
/// Key fields are never nullable: a key identifies a row.
pub fn key_schema(prefix: &str, meta: &TableMeta) -> Option<Json> {
    if meta.key.is_empty() {
        return None;
    }
    let all_names = unique_avro_names(meta.columns.iter().map(|c| c.name.as_str()));
    let fields: Vec<Json> = meta
        .key
        .iter()
        .map(|&i| column_field(&all_names[i], &meta.columns[i], false))
        .collect();
    Some(json!({
        "type": "record",
        "name": "Key",
        "namespace": table_namespace(prefix, &meta.id),
        "fields": fields,
    }))
}

/// The value schema: the Debezium envelope around the row record.
pub fn envelope_schema(prefix: &str, meta: &TableMeta, connector: Connector) -> Json {
    let ns = table_namespace(prefix, &meta.id);
    json!({
        "type": "record",
        "name": "Envelope",
        "namespace": ns,
        "fields": [
            {"name": "before", "type": ["null", row_schema(prefix, meta)], "default": null},
            {"name": "after", "type": ["null", format!("{ns}.Value")], "default": null},
            {"name": "source", "type": source_schema(connector)},
            {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {"name": "unchanged", "type": {"type": "array", "items": "string"}, "default": [],
             "doc": "Columns whose value did not change and was not sent (PostgreSQL TOAST): null in `after`, to be left as they are."},
        ],
    })
}

/// A value schema that [`table_meta`] cannot read: not one Ferry wrote, or damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Ferry envelope schema: {0}")]
pub struct NotAnEnvelope(pub String);

/// The table metadata a value schema written by [`envelope_schema`] describes,
/// and the connector that wrote it.
pub fn table_meta(envelope: &Json) -> Result<(TableMeta, Connector), NotAnEnvelope> {
    let err = |what: &str| NotAnEnvelope(what.to_owned());
    let fields = envelope["fields"].as_array().ok_or_else(|| err("no fields"))?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .ok_or_else(|| err(&format!("no field {name:?}")))
    };
    let row = &field("before")?["type"][1];
    let connector = field("source")?["type"]["ferry.connector"]
        .as_str()
        .and_then(Connector::parse)
        .ok_or_else(|| err("source record names no known connector"))?;
    let text = |v: &Json, what: &str| v.as_str().map(str::to_owned).ok_or_else(|| err(what));
    let id = TableId::new(
        text(&row["ferry.schema"], "no ferry.schema")?,
        text(&row["ferry.table"], "no ferry.table")?,
    );
    let columns = row["fields"]
        .as_array()
        .ok_or_else(|| err("row has no fields"))?
        .iter()
        .map(|f| {
            let data_type: DataType = text(&f["ferry.type"], "field without ferry.type")?
                .parse()
                .map_err(|e: crate::meta::UnknownDataType| err(&e.to_string()))?;
            Ok(Column {
                name: text(&f["ferry.column"], "field without ferry.column")?,
                data_type,
                source_type: text(&f["ferry.source_type"], "field without ferry.source_type")?,
                nullable: !f["ferry.not_null"].as_bool().unwrap_or(false),
                default: f["ferry.default"].as_str().map(str::to_owned),
            })
        })
        .collect::<Result<Vec<_>, NotAnEnvelope>>()?;
    let key: Vec<String> = row["ferry.key"]
        .as_array()
        .ok_or_else(|| err("no ferry.key"))?
        .iter()
        .map(|k| text(k, "key name is not a string"))
        .collect::<Result<_, _>>()?;
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let meta = TableMeta::new(id, columns, &key).map_err(|e| err(&e.to_string()))?;
    Ok((meta, connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn orders() -> TableMeta {
        TableMeta::new(
            TableId::new("public", "Order Items"),
            vec![
                Column::new("id", DataType::Int64, "bigint").not_null(),
                Column::new(
                    "price",
                    DataType::Decimal {
                        precision: 10,
                        scale: 2,
                        special: true,
                    },
                    "numeric(10,2)",
                )
                .with_default("0"),
                Column::new("a b", DataType::Text, "text"),
                Column::new("a_b", DataType::Text, "text").not_null(),
                Column::new("prix_€", DataType::TimestampTz, "timestamp with time zone"),
                Column::new("when", DataType::Date, "date").not_null(),
            ],
            &["id", "a_b"],
        )
        .unwrap()
    }

    #[test]
    fn every_derived_schema_is_valid_avro() {
        let meta = orders();
        for connector in [Connector::Postgres, Connector::Mysql, Connector::Mongodb] {
            let env = envelope_schema("my-app", &meta, connector);
            apache_avro::Schema::parse(&env).unwrap_or_else(|e| panic!("{connector:?}: {e}\n{env:#}"));
        }
        let key = key_schema("my-app", &meta).unwrap();
        apache_avro::Schema::parse(&key).unwrap();
        assert_eq!(key["name"], "Key");
        assert_eq!(key["namespace"], "my_app.public.Order_Items");
        let key_names: Vec<&str> = key["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(key_names, ["id", "a_b_2"]);
    }

    #[test]
    fn nullable_columns_default_to_null_and_specials_flatten() {
        let row = row_schema("p", &orders());
        let fields = row["fields"].as_array().unwrap();
        assert_eq!(fields[0]["type"], json!(["null", "long"]));
        assert_eq!(fields[0]["ferry.not_null"], json!(true));
        assert!(fields[1].get("ferry.not_null").is_none());
        assert_eq!(fields[1]["type"][0], json!("null"));
        assert_eq!(fields[1]["type"][1]["logicalType"], json!("decimal"));
        assert_eq!(fields[1]["type"][2], json!("string"));
        assert_eq!(fields[1]["default"], Json::Null);
        assert_eq!(fields[1]["ferry.default"], json!("0"));
        assert_eq!(fields[4]["name"], json!("prix__"));
        assert_eq!(fields[4]["ferry.column"], json!("prix_€"));
        assert_eq!(fields[4]["type"][1]["logicalType"], json!("timestamp-micros"));
        assert_eq!(fields[5]["name"], json!("when"));
    }

    #[test]
    fn metadata_survives_the_schema() {
        let meta = orders();
        for connector in [Connector::Postgres, Connector::Mysql, Connector::Mongodb] {
            let env = envelope_schema("p", &meta, connector);
            let text = env.to_string();
            let reparsed: Json = serde_json::from_str(&text).unwrap();
            assert_eq!(table_meta(&reparsed).unwrap(), (meta.clone(), connector));
        }
    }

    #[test]
    fn keyless_tables_have_no_key_schema() {
        let meta = TableMeta::new(
            TableId::new("s", "log"),
            vec![Column::new("line", DataType::Text, "text")],
            &[],
        )
        .unwrap();
        assert!(key_schema("p", &meta).is_none());
        let (back, _) = table_meta(&envelope_schema("p", &meta, Connector::Mysql)).unwrap();
        assert!(back.key.is_empty());
    }

    #[test]
    fn foreign_schemas_are_refused() {
        assert!(table_meta(&json!({"type": "record", "name": "x", "fields": []})).is_err());
        assert!(table_meta(&json!("string")).is_err());
        let mut env = envelope_schema("p", &orders(), Connector::Postgres);
        env["fields"][0]["type"][1]["fields"][0]["ferry.type"] = json!("varchar");
        assert!(table_meta(&env).is_err());
    }
}
