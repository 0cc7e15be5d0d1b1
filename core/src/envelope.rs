//! The change event: Debezium's envelope (`before`, `after`, `source`, `op`,
//! `ts_ms`, `transaction`), as SPEC.md fixes it.
//!
//! The `source` block differs per connector, with Debezium's field names, so a
//! consumer written for Debezium reads Ferry's events unchanged. The fields of
//! each connector's block are listed once, in [`source_fields`]; the schema and
//! the encoder both walk that list, so the two cannot drift apart.

use std::borrow::Cow;

use apache_avro::types::Value as Avro;
use serde_json::{json, Value as Json};

use crate::codec::CodecError;
use crate::codec::{write_long, write_string};
use crate::position::PgLsn;
use crate::read::{BadDatum, Cursor};
use crate::value::Datum;

pub use smol_str::SmolStr;

/// The version Ferry writes into `source.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Header of a truncate event: how many partitions of its topic received a
/// copy. A truncate goes to every partition, so that apply can empty the table
/// once all of them have reached it (see `ferry-apply`'s barriers).
pub const TRUNCATE_PARTITIONS_HEADER: &str = "ferry.partitions";

/// The kind of source that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connector {
    Postgres,
    Mysql,
    Mongodb,
}

impl Connector {
    /// Debezium's connector name, written to `source.connector`.
    pub fn name(self) -> &'static str {
        match self {
            Connector::Postgres => "postgresql",
            Connector::Mysql => "mysql",
            Connector::Mongodb => "mongodb",
        }
    }

    pub fn parse(name: &str) -> Option<Connector> {
        [Connector::Postgres, Connector::Mysql, Connector::Mongodb]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read by a snapshot.
    Read,
    Create,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }

    pub fn parse(code: &str) -> Option<Op> {
        [Op::Read, Op::Create, Op::Update, Op::Delete, Op::Truncate]
            .into_iter()
            .find(|op| op.code() == code)
    }
}

/// `source.snapshot`: whether the event came from a snapshot, and whether it was
/// the snapshot's last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Snapshot {
    True,
    Last,
    False,
    Incremental,
}

impl Snapshot {
    pub fn as_str(self) -> &'static str {
        match self {
            Snapshot::True => "true",
            Snapshot::Last => "last",
            Snapshot::False => "false",
            Snapshot::Incremental => "incremental",
        }
    }

    pub fn parse(s: &str) -> Option<Snapshot> {
        [Snapshot::True, Snapshot::Last, Snapshot::False, Snapshot::Incremental]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The connector-specific part of `source`: where in the source's log the event is.
///
/// Its names and the [`SourceInfo`]'s are [`SmolStr`]s: every event carries
/// them, and a name of up to 23 bytes (a prefix, a database, a table, a binlog
/// file) is kept inline, so a capture building an event and an apply reading
/// one allocate nothing for them (as `String`s they were five allocations per
/// event, a sixth of apply's instructions once freeing on the writer's thread
/// was counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDetail {
    Postgres {
        schema: SmolStr,
        table: SmolStr,
        tx_id: Option<i64>,
        lsn: Option<PgLsn>,
    },
    Mysql {
        table: Option<SmolStr>,
        server_id: i64,
        gtid: Option<SmolStr>,
        file: SmolStr,
        pos: i64,
        row: i32,
        thread: Option<i64>,
        query: Option<SmolStr>,
    },
    Mongodb {
        collection: SmolStr,
        ord: i32,
        resume_token: Option<SmolStr>,
        lsid: Option<SmolStr>,
        txn_number: Option<i64>,
    },
}

impl SourceDetail {
    pub fn connector(&self) -> Connector {
        match self {
            SourceDetail::Postgres { .. } => Connector::Postgres,
            SourceDetail::Mysql { .. } => Connector::Mysql,
            SourceDetail::Mongodb { .. } => Connector::Mongodb,
        }
    }
}

/// The `source` block of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The topic prefix (Debezium's logical server name).
    pub name: SmolStr,
    /// Commit time at the source, ms since the epoch.
    pub ts_ms: i64,
    pub snapshot: Snapshot,
    pub db: SmolStr,
    pub detail: SourceDetail,
}

/// The `transaction` block: which source transaction the event belongs to and
/// its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionBlock {
    pub id: SmolStr,
    /// Position of the event among all events of the transaction, from 1.
    pub total_order: i64,
    /// Position of the event among the transaction's events of the same table, from 1.
    pub data_collection_order: i64,
}

/// One row change, in the column order of its table's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub before: Option<Vec<Datum>>,
    pub after: Option<Vec<Datum>>,
    pub source: SourceInfo,
    /// When Ferry processed the event, ms since the epoch.
    pub ts_ms: i64,
    pub transaction: Option<TransactionBlock>,
    /// Columns whose new value was not sent because it did not change
    /// (PostgreSQL TOAST): null in `after`; targets keep what they have.
    pub unchanged: Vec<String>,
}

/// A `source` field's Avro shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    OptStr,
    Long,
    OptLong,
    Int,
}

/// The value of one `source` field, borrowed from the event when encoding.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Str(Cow<'a, str>),
    OptStr(Option<Cow<'a, str>>),
    Long(i64),
    OptLong(Option<i64>),
    Int(i32),
}

impl Field<'_> {
    fn kind(&self) -> Kind {
        match self {
            Field::Str(_) => Kind::Str,
            Field::OptStr(_) => Kind::OptStr,
            Field::Long(_) => Kind::Long,
            Field::OptLong(_) => Kind::OptLong,
            Field::Int(_) => Kind::Int,
        }
    }

    fn to_avro(&self) -> Avro {
        let opt = |v: Option<Avro>| match v {
            None => Avro::Union(0, Box::new(Avro::Null)),
            Some(v) => Avro::Union(1, Box::new(v)),
        };
        match self {
            Field::Str(s) => Avro::String(s.to_string()),
            Field::OptStr(s) => opt(s.as_ref().map(|s| Avro::String(s.to_string()))),
            Field::Long(l) => Avro::Long(*l),
            Field::OptLong(l) => opt(l.map(Avro::Long)),
            Field::Int(i) => Avro::Int(*i),
        }
    }

    fn from_avro(kind: Kind, value: &Avro) -> Option<Field<'static>> {
        let value = match value {
            Avro::Union(_, inner) => inner.as_ref(),
            v => v,
        };
        Some(match (kind, value) {
            (Kind::Str, Avro::String(s)) => Field::Str(Cow::Owned(s.clone())),
            (Kind::OptStr, Avro::String(s)) => Field::OptStr(Some(Cow::Owned(s.clone()))),
            (Kind::OptStr, Avro::Null) => Field::OptStr(None),
            (Kind::Long, Avro::Long(l)) => Field::Long(*l),
            (Kind::OptLong, Avro::Long(l)) => Field::OptLong(Some(*l)),
            (Kind::OptLong, Avro::Null) => Field::OptLong(None),
            (Kind::Int, Avro::Int(i)) => Field::Int(*i),
            _ => return None,
        })
    }
}

/// The fields of `source`, in schema order, with their values.
fn source_fields(info: &SourceInfo) -> Vec<(&'static str, Field<'_>)> {
    fn s(v: &str) -> Field<'_> {
        Field::Str(Cow::Borrowed(v))
    }
    fn opt(v: &Option<SmolStr>) -> Field<'_> {
        Field::OptStr(v.as_deref().map(Cow::Borrowed))
    }
    let mut fields = vec![
        ("version", Field::Str(Cow::Borrowed(VERSION))),
        ("connector", Field::Str(Cow::Borrowed(info.detail.connector().name()))),
        ("name", s(&info.name)),
        ("ts_ms", Field::Long(info.ts_ms)),
        ("snapshot", Field::Str(Cow::Borrowed(info.snapshot.as_str()))),
        ("db", s(&info.db)),
    ];
    match &info.detail {
        SourceDetail::Postgres {
            schema,
            table,
            tx_id,
            lsn,
        } => fields.extend([
            ("schema", s(schema)),
            ("table", s(table)),
            ("txId", Field::OptLong(*tx_id)),
            // Debezium writes the LSN as a long. LSNs are u64; the bits are kept
            // as they are, so even one past 2^63 comes back exactly.
            ("lsn", Field::OptLong(lsn.map(|l| l.0 as i64))),
        ]),
        SourceDetail::Mysql {
            table,
            server_id,
            gtid,
            file,
            pos,
            row,
            thread,
            query,
        } => fields.extend([
            ("table", opt(table)),
            ("server_id", Field::Long(*server_id)),
            ("gtid", opt(gtid)),
            ("file", s(file)),
            ("pos", Field::Long(*pos)),
            ("row", Field::Int(*row)),
            ("thread", Field::OptLong(*thread)),
            ("query", opt(query)),
        ]),
        SourceDetail::Mongodb {
            collection,
            ord,
            resume_token,
            lsid,
            txn_number,
        } => fields.extend([
            ("collection", s(collection)),
            ("ord", Field::Int(*ord)),
            ("resume_token", opt(resume_token)),
            ("lsid", opt(lsid)),
            ("txnNumber", Field::OptLong(*txn_number)),
        ]),
    }
    fields
}

/// A `source` block of each connector with placeholder values, from which the
/// schema (names and kinds) is read.
fn template(connector: Connector) -> SourceInfo {
    let detail = match connector {
        Connector::Postgres => SourceDetail::Postgres {
            schema: SmolStr::default(),
            table: SmolStr::default(),
            tx_id: None,
            lsn: None,
        },
        Connector::Mysql => SourceDetail::Mysql {
            table: None,
            server_id: 0,
            gtid: None,
            file: SmolStr::default(),
            pos: 0,
            row: 0,
            thread: None,
            query: None,
        },
        Connector::Mongodb => SourceDetail::Mongodb {
            collection: SmolStr::default(),
            ord: 0,
            resume_token: None,
            lsid: None,
            txn_number: None,
        },
    };
    SourceInfo {
        name: SmolStr::default(),
        ts_ms: 0,
        snapshot: Snapshot::False,
        db: SmolStr::default(),
        detail,
    }
}

/// The Avro schema of a connector's `source` record.
pub fn source_schema(connector: Connector) -> Json {
    let fields: Vec<Json> = source_fields(&template(connector))
        .into_iter()
        .map(|(name, field)| match field.kind() {
            Kind::Str if name == "snapshot" => json!({"name": name, "type": "string", "default": "false"}),
            Kind::Str => json!({"name": name, "type": "string"}),
            Kind::Long => json!({"name": name, "type": "long"}),
            Kind::Int => json!({"name": name, "type": "int"}),
            Kind::OptStr => json!({"name": name, "type": ["null", "string"], "default": null}),
            Kind::OptLong => json!({"name": name, "type": ["null", "long"], "default": null}),
        })
        .collect();
    json!({
        "type": "record",
        "name": "Source",
        "namespace": format!("io.ferry.connector.{}", connector.name()),
        "fields": fields,
        "ferry.connector": connector.name(),
    })
}

/// The Avro schema of the `transaction` block.
pub fn transaction_schema() -> Json {
    json!({
        "type": "record",
        "name": "TransactionBlock",
        "namespace": "io.ferry",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"},
        ],
    })
}

/// Writes the `source` record of `info` in Avro binary: field by field, in
/// [`source_fields`]' order, without listing them first (every event writes
/// one; listing took a twelfth of a snapshot's CPU). Debug builds check each
/// event's encoding against apache-avro's of [`source_to_avro`].
pub(crate) fn write_source(info: &SourceInfo, out: &mut Vec<u8>) {
    fn opt_string(v: Option<&str>, out: &mut Vec<u8>) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(2);
                write_string(v, out);
            }
        }
    }
    fn opt_long(v: Option<i64>, out: &mut Vec<u8>) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(2);
                write_long(v, out);
            }
        }
    }
    write_string(VERSION, out);
    write_string(info.detail.connector().name(), out);
    write_string(&info.name, out);
    write_long(info.ts_ms, out);
    write_string(info.snapshot.as_str(), out);
    write_string(&info.db, out);
    match &info.detail {
        SourceDetail::Postgres {
            schema,
            table,
            tx_id,
            lsn,
        } => {
            write_string(schema, out);
            write_string(table, out);
            opt_long(*tx_id, out);
            opt_long(lsn.map(|l| l.0 as i64), out);
        }
        SourceDetail::Mysql {
            table,
            server_id,
            gtid,
            file,
            pos,
            row,
            thread,
            query,
        } => {
            opt_string(table.as_deref(), out);
            write_long(*server_id, out);
            opt_string(gtid.as_deref(), out);
            write_string(file, out);
            write_long(*pos, out);
            write_long(i64::from(*row), out);
            opt_long(*thread, out);
            opt_string(query.as_deref(), out);
        }
        SourceDetail::Mongodb {
            collection,
            ord,
            resume_token,
            lsid,
            txn_number,
        } => {
            write_string(collection, out);
            write_long(i64::from(*ord), out);
            opt_string(resume_token.as_deref(), out);
            opt_string(lsid.as_deref(), out);
            opt_long(*txn_number, out);
        }
    }
}

pub(crate) fn source_to_avro(info: &SourceInfo) -> Avro {
    Avro::Record(
        source_fields(info)
            .into_iter()
            .map(|(name, field)| (name.to_owned(), field.to_avro()))
            .collect(),
    )
}

/// A `source` or `transaction` record that does not match Ferry's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {block} block: field {field:?}")]
pub struct MalformedBlock {
    pub block: &'static str,
    pub field: String,
}

fn record_fields(value: &Avro) -> &[(String, Avro)] {
    match value {
        Avro::Record(fields) => fields,
        Avro::Union(_, inner) => record_fields(inner),
        _ => &[],
    }
}

pub(crate) fn source_from_avro(connector: Connector, value: &Avro) -> Result<SourceInfo, MalformedBlock> {
    let record = record_fields(value);
    let mut fields = Decoded(std::collections::HashMap::new());
    for (name, field) in source_fields(&template(connector)) {
        let bad = || MalformedBlock {
            block: "source",
            field: name.to_owned(),
        };
        let raw = record.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(bad)?;
        fields
            .0
            .insert(name, Field::from_avro(field.kind(), raw).ok_or_else(bad)?);
    }
    fields.into_source(connector)
}

/// The `source` record at `cursor`, written with [`source_schema`] of
/// `connector`: its fields in [`source_fields`]' order (a test holds the two
/// together), read without building the record.
pub(crate) fn read_source(connector: Connector, c: &mut Cursor<'_>) -> Result<SourceInfo, CodecError> {
    fn opt<'a, T>(
        c: &mut Cursor<'a>,
        read: impl FnOnce(&mut Cursor<'a>) -> Result<T, BadDatum>,
    ) -> Result<Option<T>, BadDatum> {
        match c.branch()? {
            0 => Ok(None),
            1 => read(c).map(Some),
            _ => Err(c.bad("a union branch Ferry does not write")),
        }
    }
    let string = |c: &mut Cursor<'_>| c.str().map(SmolStr::new);
    // Known from the schema: skipped, not checked.
    let _version = c.bytes()?;
    let _connector = c.bytes()?;
    let name = string(c)?;
    let ts_ms = c.long()?;
    let snapshot = Snapshot::parse(c.str()?).ok_or(MalformedBlock {
        block: "source",
        field: "snapshot".into(),
    })?;
    let db = string(c)?;
    let detail = match connector {
        Connector::Postgres => SourceDetail::Postgres {
            schema: string(c)?,
            table: string(c)?,
            tx_id: opt(c, Cursor::long)?,
            lsn: opt(c, Cursor::long)?.map(|l| PgLsn(l as u64)),
        },
        Connector::Mysql => SourceDetail::Mysql {
            table: opt(c, string)?,
            server_id: c.long()?,
            gtid: opt(c, string)?,
            file: string(c)?,
            pos: c.long()?,
            row: c.int()?,
            thread: opt(c, Cursor::long)?,
            query: opt(c, string)?,
        },
        Connector::Mongodb => SourceDetail::Mongodb {
            collection: string(c)?,
            ord: c.int()?,
            resume_token: opt(c, string)?,
            lsid: opt(c, string)?,
            txn_number: opt(c, Cursor::long)?,
        },
    };
    Ok(SourceInfo {
        name,
        ts_ms,
        snapshot,
        db,
        detail,
    })
}

/// The `transaction` block at `cursor`.
pub(crate) fn read_transaction(cursor: &mut Cursor<'_>) -> Result<Option<TransactionBlock>, BadDatum> {
    match cursor.branch()? {
        0 => Ok(None),
        1 => Ok(Some(TransactionBlock {
            id: SmolStr::new(cursor.str()?),
            total_order: cursor.long()?,
            data_collection_order: cursor.long()?,
        })),
        _ => Err(cursor.bad("a union branch Ferry does not write")),
    }
}

/// `source` fields already checked against the template's kinds, taken out by name.
struct Decoded(std::collections::HashMap<&'static str, Field<'static>>);

impl Decoded {
    fn into_source(mut self, connector: Connector) -> Result<SourceInfo, MalformedBlock> {
        let fields = &mut self;
        let snapshot = Snapshot::parse(&fields.str("snapshot")).ok_or(MalformedBlock {
            block: "source",
            field: "snapshot".into(),
        })?;
        let detail = match connector {
            Connector::Postgres => SourceDetail::Postgres {
                schema: fields.str("schema"),
                table: fields.str("table"),
                tx_id: fields.opt_long("txId"),
                lsn: fields.opt_long("lsn").map(|l| PgLsn(l as u64)),
            },
            Connector::Mysql => SourceDetail::Mysql {
                table: fields.opt_str("table"),
                server_id: fields.long("server_id"),
                gtid: fields.opt_str("gtid"),
                file: fields.str("file"),
                pos: fields.long("pos"),
                row: fields.int("row"),
                thread: fields.opt_long("thread"),
                query: fields.opt_str("query"),
            },
            Connector::Mongodb => SourceDetail::Mongodb {
                collection: fields.str("collection"),
                ord: fields.int("ord"),
                resume_token: fields.opt_str("resume_token"),
                lsid: fields.opt_str("lsid"),
                txn_number: fields.opt_long("txnNumber"),
            },
        };
        Ok(SourceInfo {
            name: fields.str("name"),
            ts_ms: fields.long("ts_ms"),
            snapshot,
            db: fields.str("db"),
            detail,
        })
    }

    fn str(&mut self, name: &str) -> SmolStr {
        match self.0.remove(name) {
            Some(Field::Str(s)) => SmolStr::new(s),
            _ => SmolStr::default(),
        }
    }

    fn opt_str(&mut self, name: &str) -> Option<SmolStr> {
        match self.0.remove(name) {
            Some(Field::OptStr(s)) => s.map(SmolStr::new),
            _ => None,
        }
    }

    fn long(&mut self, name: &str) -> i64 {
        match self.0.remove(name) {
            Some(Field::Long(l)) => l,
            _ => 0,
        }
    }

    fn opt_long(&mut self, name: &str) -> Option<i64> {
        match self.0.remove(name) {
            Some(Field::OptLong(l)) => l,
            _ => None,
        }
    }

    fn int(&mut self, name: &str) -> i32 {
        match self.0.remove(name) {
            Some(Field::Int(i)) => i,
            _ => 0,
        }
    }
}

pub(crate) fn transaction_to_avro(tx: Option<&TransactionBlock>) -> Avro {
    match tx {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(tx) => Avro::Union(
            1,
            Box::new(Avro::Record(vec![
                ("id".into(), Avro::String(tx.id.to_string())),
                ("total_order".into(), Avro::Long(tx.total_order)),
                ("data_collection_order".into(), Avro::Long(tx.data_collection_order)),
            ])),
        ),
    }
}

/// Writes the optional `transaction` record of an envelope in Avro binary,
/// as [`transaction_to_avro`] and apache-avro would (every event writes one).
pub(crate) fn write_transaction(tx: Option<&TransactionBlock>, out: &mut Vec<u8>) {
    match tx {
        None => out.push(0),
        Some(tx) => {
            out.push(2); // union branch 1, zig-zag encoded
            write_string(&tx.id, out);
            write_long(tx.total_order, out);
            write_long(tx.data_collection_order, out);
        }
    }
}

/// The `source` and `transaction` blocks of an envelope's Avro body written
/// with `writer` (any version of a table's value schema), read without its
/// rows: where in the source's log the event is.
pub fn locate(
    connector: Connector,
    writer: &Json,
    avro: &[u8],
) -> Result<(SourceInfo, Option<TransactionBlock>), CodecError> {
    let reader = crate::codec::Encoder::parse(writer).map_err(|e| CodecError::Avro {
        action: "reading the writer's schema",
        source: Box::new(e),
    })?;
    let value = reader.decode(avro)?;
    let fields = record_fields(&value);
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let source = get("source").ok_or_else(|| MalformedBlock {
        block: "envelope",
        field: "source".into(),
    })?;
    let source = source_from_avro(connector, source)?;
    let transaction = get("transaction").map(transaction_from_avro).transpose()?.flatten();
    Ok((source, transaction))
}

pub(crate) fn transaction_from_avro(value: &Avro) -> Result<Option<TransactionBlock>, MalformedBlock> {
    let record = record_fields(value);
    if record.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| record.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let bad = |field: &str| MalformedBlock {
        block: "transaction",
        field: field.to_owned(),
    };
    let long = |name: &str| match get(name) {
        Some(Avro::Long(l)) => Ok(*l),
        _ => Err(bad(name)),
    };
    Ok(Some(TransactionBlock {
        id: match get("id") {
            Some(Avro::String(s)) => SmolStr::new(s),
            _ => return Err(bad("id")),
        },
        total_order: long("total_order")?,
        data_collection_order: long("data_collection_order")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for op in [Op::Read, Op::Create, Op::Update, Op::Delete, Op::Truncate] {
            assert_eq!(Op::parse(op.code()), Some(op));
        }
        assert_eq!(Op::parse("x"), None);
        for s in [Snapshot::True, Snapshot::Last, Snapshot::False, Snapshot::Incremental] {
            assert_eq!(Snapshot::parse(s.as_str()), Some(s));
        }
        for c in [Connector::Postgres, Connector::Mysql, Connector::Mongodb] {
            assert_eq!(Connector::parse(c.name()), Some(c));
        }
    }

    #[test]
    fn source_blocks_have_debezium_field_names() {
        let names = |c| -> Vec<String> {
            source_schema(c)["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(Connector::Postgres),
            [
                "version",
                "connector",
                "name",
                "ts_ms",
                "snapshot",
                "db",
                "schema",
                "table",
                "txId",
                "lsn"
            ]
        );
        assert!(names(Connector::Mysql).ends_with(&[
            "table".into(),
            "server_id".into(),
            "gtid".into(),
            "file".into(),
            "pos".into(),
            "row".into(),
            "thread".into(),
            "query".into()
        ]));
        assert!(names(Connector::Mongodb).contains(&"ord".to_owned()));
    }

    #[test]
    fn source_and_transaction_round_trip() {
        let infos = [
            SourceInfo {
                name: "shop".into(),
                ts_ms: 1_700_000_000_000,
                snapshot: Snapshot::Last,
                db: "app".into(),
                detail: SourceDetail::Postgres {
                    schema: "public".into(),
                    table: "orders".into(),
                    tx_id: Some(771),
                    lsn: Some(PgLsn(0x16_B374_D848)),
                },
            },
            SourceInfo {
                name: "shop".into(),
                ts_ms: -5,
                snapshot: Snapshot::False,
                db: "shop".into(),
                detail: SourceDetail::Mysql {
                    table: Some("orders".into()),
                    server_id: 1,
                    gtid: Some("0-1-42".into()),
                    file: "mysql-bin.000003".into(),
                    pos: 4,
                    row: 2,
                    thread: None,
                    query: None,
                },
            },
            SourceInfo {
                name: "m".into(),
                ts_ms: 0,
                snapshot: Snapshot::Incremental,
                db: "shop".into(),
                detail: SourceDetail::Mongodb {
                    collection: "orders".into(),
                    ord: 3,
                    resume_token: Some("8263A1".into()),
                    lsid: None,
                    txn_number: Some(9),
                },
            },
        ];
        for info in infos {
            let connector = info.detail.connector();
            let avro = source_to_avro(&info);
            assert_eq!(source_from_avro(connector, &avro).unwrap(), info);
            // The direct reader reads what the writer writes, field for field.
            let mut bytes = Vec::new();
            write_source(&info, &mut bytes);
            // And it writes what apache-avro writes of the block's value.
            let reference = crate::codec::Encoder::parse(&source_schema(connector))
                .unwrap()
                .encode(&avro)
                .unwrap();
            assert_eq!(bytes, reference, "{info:?}");
            let mut cursor = Cursor::new(&bytes);
            assert_eq!(read_source(connector, &mut cursor).unwrap(), info);
            assert!(cursor.is_done());
        }
        let tx = TransactionBlock {
            id: "771:0/16B374D8".into(),
            total_order: 3,
            data_collection_order: 1,
        };
        let schema = crate::codec::Encoder::parse(&json!({"type": "record", "name": "t", "fields": [
            {"name": "transaction", "type": ["null", transaction_schema()]}
        ]}))
        .unwrap();
        for block in [Some(&tx), None] {
            let avro = transaction_to_avro(block);
            let mut bytes = Vec::new();
            write_transaction(block, &mut bytes);
            let reference = schema
                .encode(&Avro::Record(vec![("transaction".into(), avro.clone())]))
                .unwrap();
            assert_eq!(bytes, reference, "{block:?}");
            assert_eq!(transaction_from_avro(&avro).unwrap(), block.cloned());
        }
    }

    #[test]
    fn malformed_source_is_an_error() {
        let bad = Avro::Record(vec![("version".into(), Avro::Long(1))]);
        assert!(source_from_avro(Connector::Postgres, &bad).is_err());
    }
}
