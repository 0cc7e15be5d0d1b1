//! Encoding and decoding a table's events to and from Avro bytes.
//!
//! A [`TableCodec`] is built once per table version: capture builds it from the
//! table metadata it read from the source ([`TableCodec::new`]); apply builds it
//! from the writer's value schema fetched from the registry
//! ([`TableCodec::from_value_schema`]). Both ends then agree on every value,
//! because both go through [`crate::value`].

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::Value as Json;

use crate::envelope::{
    read_source, read_transaction, source_from_avro, source_to_avro, transaction_from_avro, transaction_to_avro,
    write_source, write_transaction, ChangeEvent, Connector, MalformedBlock, Op,
};
use crate::meta::{DataType, TableId, TableMeta};
use crate::names::unique_avro_names;
use crate::read::{check_lengths, BadDatum, Cursor};
use crate::schema::{envelope_schema, key_schema, table_meta, NotAnEnvelope};
use crate::value::{from_avro, to_avro, to_avro_branch, Datum, Decimal, Special, ValueError};

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("table {table}, column {column:?}: {reason}")]
    Value {
        table: TableId,
        column: String,
        reason: ValueError,
    },
    #[error("table {table}: a row has {got} values, the table has {expected} columns")]
    Arity {
        table: TableId,
        expected: usize,
        got: usize,
    },
    #[error("table {table}: derived Avro schema is invalid: {source}")]
    Schema {
        table: TableId,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("Avro {action} failed: {source}")]
    Avro {
        action: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error(transparent)]
    NotAnEnvelope(#[from] NotAnEnvelope),
    #[error(transparent)]
    Malformed(#[from] MalformedBlock),
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("Ferry does not write Avro values of this kind: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Datum(#[from] BadDatum),
}

/// A parsed schema and the means to write values of it.
///
/// Ferry's values are built field by field in schema order from the same
/// metadata the schema comes from, so they are written by [`write_datum`], a
/// direct encoder that needs no schema: apache-avro's writer builds a hash map
/// and qualified names for every record it writes, which cost more than the
/// rest of an event's encoding. In debug builds (every test) each value is
/// also validated and written by apache-avro's writer, resolved once here, and
/// the two encodings must be byte for byte the same.
#[ouroboros::self_referencing]
pub struct Encoder {
    schema: Schema,
    #[borrows(schema)]
    #[covariant]
    writer: GenericDatumWriter<'this>,
    /// Resolved once: resolving the schema's names per datum cost more than
    /// reading it.
    #[borrows(schema)]
    #[covariant]
    reader: GenericDatumReader<'this>,
    /// The schema's named types, for [`check_lengths`] before `reader` reads.
    #[borrows(schema)]
    #[covariant]
    names: ResolvedSchema<'this>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("schema", self.borrow_schema()).finish()
    }
}

impl Encoder {
    /// The encoder of `json`, or why it is not a valid Avro schema.
    pub fn parse(json: &Json) -> Result<Self, apache_avro::Error> {
        let schema = Schema::parse(json)?;
        EncoderTryBuilder {
            schema,
            writer_builder: |schema: &Schema| {
                GenericDatumWriter::builder(schema)
                    .validate(cfg!(debug_assertions))
                    .build()
            },
            reader_builder: |schema: &Schema| GenericDatumReader::builder(schema).build(),
            names_builder: |schema: &Schema| ResolvedSchema::new(schema),
        }
        .try_build()
    }

    pub fn schema(&self) -> &Schema {
        self.borrow_schema()
    }

    /// `value` in Avro binary.
    pub fn encode(&self, value: &Avro) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        write_datum(value, &mut out)?;
        if cfg!(debug_assertions) {
            let mut reference = Vec::new();
            self.borrow_writer()
                .write_value_ref(&mut reference, value)
                .map_err(|e| CodecError::Avro {
                    action: "encoding",
                    source: Box::new(e),
                })?;
            assert_eq!(out, reference, "write_datum disagrees with apache-avro on {value:?}");
        }
        Ok(out)
    }

    /// The record encoded in `bytes`, its fields looked up by name; `block`
    /// names it in errors.
    pub fn decode_record(&self, bytes: &[u8], block: &'static str) -> Result<Fields, CodecError> {
        match self.decode(bytes)? {
            Avro::Record(fields) => Ok(Fields { block, fields }),
            _ => Err(CodecError::Malformed(MalformedBlock {
                block,
                field: "(not a record)".into(),
            })),
        }
    }

    /// The value encoded in `bytes`, whose lengths are checked first: a
    /// corrupt one is an error, not an allocation of what it claims. A
    /// message is one datum: bytes after it are corruption too, as the direct
    /// reader ([`TableCodec::decode_value`]) finds them.
    pub fn decode(&self, bytes: &[u8]) -> Result<Avro, CodecError> {
        check_lengths(self.schema(), self.borrow_names().get_names(), bytes)?;
        let avro = |e| CodecError::Avro {
            action: "decoding",
            source: Box::new(e),
        };
        let mut rest = bytes;
        let value = self.borrow_reader().read_value(&mut rest).map_err(avro)?;
        if !rest.is_empty() {
            return Err(BadDatum::Malformed {
                at: bytes.len() - rest.len(),
                what: "bytes after the datum",
            }
            .into());
        }
        Ok(value)
    }
}

/// Writes an Avro `long` (or `int`): zig-zag, then a varint.
pub(crate) fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Writes Avro `bytes`: the length, then the bytes.
pub(crate) fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// Writes an Avro `string`.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    write_bytes(s.as_bytes(), out);
}

/// Writes `value` in Avro's binary encoding, for the shapes Ferry's schemas
/// use: records with their fields in schema order, unions with their branch,
/// arrays, bytes-backed decimals and string-backed uuids.
pub fn write_datum(value: &Avro, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match value {
        Avro::Null => {}
        Avro::Boolean(b) => out.push(u8::from(*b)),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => write_long(i64::from(*i), out),
        Avro::Long(l)
        | Avro::TimeMicros(l)
        | Avro::TimestampMillis(l)
        | Avro::TimestampMicros(l)
        | Avro::TimestampNanos(l)
        | Avro::LocalTimestampMillis(l)
        | Avro::LocalTimestampMicros(l)
        | Avro::LocalTimestampNanos(l) => write_long(*l, out),
        Avro::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
        Avro::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Avro::Bytes(b) => write_bytes(b, out),
        Avro::String(s) => write_bytes(s.as_bytes(), out),
        Avro::Uuid(u) => write_bytes(u.hyphenated().to_string().as_bytes(), out),
        Avro::Decimal(d) => write_bytes(
            &Vec::<u8>::try_from(d).map_err(|e| CodecError::Avro {
                action: "encoding a decimal",
                source: Box::new(e),
            })?,
            out,
        ),
        Avro::Union(branch, inner) => {
            write_long(i64::from(*branch), out);
            write_datum(inner, out)?;
        }
        Avro::Record(fields) => {
            for (_, field) in fields {
                write_datum(field, out)?;
            }
        }
        Avro::Enum(index, _) => write_long(i64::from(*index), out),
        Avro::Array(items) => {
            if !items.is_empty() {
                write_long(items.len() as i64, out);
                for item in items {
                    write_datum(item, out)?;
                }
            }
            out.push(0);
        }
        other => {
            return Err(CodecError::Unsupported(format!("{other:?}")));
        }
    }
    Ok(())
}

/// A decoded record's fields.
#[derive(Debug)]
pub struct Fields {
    block: &'static str,
    fields: Vec<(String, Avro)>,
}

impl Fields {
    /// The error for a missing or malformed `field`.
    pub fn bad(&self, field: &str) -> CodecError {
        CodecError::Malformed(MalformedBlock {
            block: self.block,
            field: field.to_owned(),
        })
    }

    /// The field `name`, a union's branch taken out.
    pub fn get(&self, name: &str) -> Result<&Avro, CodecError> {
        match self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v) {
            Some(Avro::Union(_, inner)) => Ok(inner),
            Some(v) => Ok(v),
            None => Err(self.bad(name)),
        }
    }

    /// The string field `name`.
    pub fn string(&self, name: &str) -> Result<&str, CodecError> {
        match self.get(name)? {
            Avro::String(s) => Ok(s),
            _ => Err(self.bad(name)),
        }
    }

    /// The long field `name`.
    pub fn long(&self, name: &str) -> Result<i64, CodecError> {
        match self.get(name)? {
            Avro::Long(l) => Ok(*l),
            _ => Err(self.bad(name)),
        }
    }
}

fn parse(table: &TableId, json: &Json) -> Result<Encoder, CodecError> {
    Encoder::parse(json).map_err(|e| CodecError::Schema {
        table: table.clone(),
        source: Box::new(e),
    })
}

/// The key and value schemas of a topic of fixed-shape records
/// (`<prefix>.transaction`, `<prefix>.message`), as JSON and parsed.
#[derive(Debug)]
pub struct RecordSchemas {
    pub key_json: Json,
    pub key: Encoder,
    pub value_json: Json,
    pub value: Encoder,
}

impl RecordSchemas {
    /// `what` names the record in the error if a schema does not parse.
    pub fn new(what: &'static str, key_json: Json, value_json: Json) -> Result<Self, CodecError> {
        let parse = |json: &Json| {
            Encoder::parse(json).map_err(|e| CodecError::Avro {
                action: what,
                source: Box::new(e),
            })
        };
        Ok(Self {
            key: parse(&key_json)?,
            value: parse(&value_json)?,
            key_json,
            value_json,
        })
    }
}

/// The schemas of one version of one table, parsed and ready to encode with.
#[derive(Debug)]
pub struct TableCodec {
    meta: TableMeta,
    connector: Connector,
    field_names: Vec<String>,
    key_json: Option<Json>,
    key: Option<Encoder>,
    value_json: Json,
    value: Encoder,
    /// The value schema is laid out as Ferry derives it, so events are read
    /// by [`TableCodec::read_event`] rather than by apache-avro.
    direct: bool,
}

impl TableCodec {
    /// The codec of a source table, for the topic prefix `prefix`.
    pub fn new(prefix: &str, meta: TableMeta, connector: Connector) -> Result<Self, CodecError> {
        let key_json = key_schema(prefix, &meta);
        let key = key_json.as_ref().map(|j| parse(&meta.id, j)).transpose()?;
        let value_json = envelope_schema(prefix, &meta, connector);
        let value = parse(&meta.id, &value_json)?;
        Ok(Self {
            field_names: unique_avro_names(meta.columns.iter().map(|c| c.name.as_str())),
            meta,
            connector,
            key_json,
            key,
            value_json,
            value,
            direct: true,
        })
    }

    /// The codec for events written with the value schema `json` (apply side).
    /// Such a codec decodes; it has no key schema.
    pub fn from_value_schema(json: &Json) -> Result<Self, CodecError> {
        let (meta, connector) = table_meta(json)?;
        let value = parse(&meta.id, json)?;
        Ok(Self {
            direct: ferry_layout(json, &meta, connector),
            field_names: unique_avro_names(meta.columns.iter().map(|c| c.name.as_str())),
            meta,
            connector,
            key_json: None,
            key: None,
            value_json: json.clone(),
            value,
        })
    }

    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    /// The kind of source the events come from.
    pub fn connector(&self) -> Connector {
        self.connector
    }

    /// The key schema to register under `<topic>-key`; `None` for a keyless table.
    pub fn key_schema_json(&self) -> Option<&Json> {
        self.key_json.as_ref()
    }

    /// The value schema to register under `<topic>-value`.
    pub fn value_schema_json(&self) -> &Json {
        &self.value_json
    }

    fn row_to_avro(&self, row: &[Datum], columns: &[usize], nullable: bool) -> Result<Avro, CodecError> {
        let fields = columns
            .iter()
            .map(|&i| {
                let column = &self.meta.columns[i];
                let datum = &row[i];
                let value = to_avro(datum, column.data_type, nullable).map_err(|reason| self.value_error(i, reason))?;
                Ok((self.field_names[i].clone(), value))
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(Avro::Record(fields))
    }

    /// Writes `datum` as a value of column `i`, as [`to_avro_branch`]
    /// and [`write_datum`] would (the union branch first where there is one), but
    /// without building the Avro value: this runs for every value of every event.
    /// The common types are written directly; the others go through
    /// [`to_avro_branch`], as does every value that does not fit, for its error.
    fn write_column(&self, i: usize, datum: &Datum, nullable: bool, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let ty = self.meta.columns[i].data_type;
        let start = out.len();
        if nullable {
            // The null branch comes first; a value's branch is its own plus one.
            out.push(if matches!(datum, Datum::Null) { 0 } else { 2 });
        } else if matches!(ty, DataType::Decimal { special: true, .. }) {
            out.push(0);
        }
        let direct = match (ty, datum) {
            (_, Datum::Null) => nullable,
            (DataType::Boolean, Datum::Bool(b)) => {
                out.push(u8::from(*b));
                true
            }
            (DataType::Int64, Datum::Int(i)) => {
                write_long(*i, out);
                true
            }
            (DataType::Int32, Datum::Int(i)) if i32::try_from(*i).is_ok() => {
                write_long(*i, out);
                true
            }
            (DataType::Int16, Datum::Int(i)) if i16::try_from(*i).is_ok() => {
                write_long(*i, out);
                true
            }
            (DataType::Float64, Datum::Float64(f)) => {
                out.extend_from_slice(&f.to_le_bytes());
                true
            }
            (DataType::Float32, Datum::Float32(f)) => {
                out.extend_from_slice(&f.to_le_bytes());
                true
            }
            (DataType::Text, Datum::Text(t)) => {
                write_string(t, out);
                true
            }
            (DataType::Bytes, Datum::Bytes(b)) => {
                write_bytes(b, out);
                true
            }
            (DataType::Date, Datum::Date(d)) => {
                write_long(i64::from(*d), out);
                true
            }
            (DataType::Timestamp | DataType::TimestampTz, Datum::Timestamp(t)) => {
                write_long(*t, out);
                true
            }
            (DataType::Decimal { precision, scale, .. }, Datum::Decimal(d)) => {
                match d.rescale(scale).filter(|exact| exact.precision() <= precision) {
                    Some(exact) => {
                        exact.with_signed_bytes_be(|b| write_bytes(b, out));
                        true
                    }
                    None => false,
                }
            }
            (DataType::Uuid, Datum::Uuid(u)) => {
                write_string(u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()), out);
                true
            }
            _ => false,
        };
        if !direct {
            out.truncate(start);
            let (branch, value) = to_avro_branch(datum, ty, nullable).map_err(|reason| self.value_error(i, reason))?;
            if let Some(branch) = branch {
                write_long(i64::from(branch), out);
            }
            write_datum(&value, out)?;
        }
        Ok(())
    }

    fn value_error(&self, column: usize, reason: ValueError) -> CodecError {
        CodecError::Value {
            table: self.meta.id.clone(),
            column: self.meta.columns[column].name.clone(),
            reason,
        }
    }

    fn check_arity(&self, row: &[Datum]) -> Result<(), CodecError> {
        if row.len() != self.meta.columns.len() {
            return Err(CodecError::Arity {
                table: self.meta.id.clone(),
                expected: self.meta.columns.len(),
                got: row.len(),
            });
        }
        Ok(())
    }

    /// The Avro key of `row` (a full row in column order), or `None` for a keyless table.
    pub fn encode_key(&self, row: &[Datum]) -> Result<Option<Vec<u8>>, CodecError> {
        let mut out = Vec::with_capacity(16);
        Ok(self.encode_key_into(row, &mut out)?.then_some(out))
    }

    /// Appends the Avro key of `row` to `out`; false (nothing written) for a
    /// keyless table.
    pub fn encode_key_into(&self, row: &[Datum], out: &mut Vec<u8>) -> Result<bool, CodecError> {
        let Some(key) = &self.key else {
            return Ok(false);
        };
        self.check_arity(row)?;
        let start = out.len();
        for &i in &self.meta.key {
            self.write_column(i, &row[i], false, out)?;
        }
        if cfg!(debug_assertions) {
            assert_eq!(
                out[start..],
                key.encode(&self.row_to_avro(row, &self.meta.key, false)?)?,
                "direct key encoding differs"
            );
        }
        Ok(true)
    }

    /// The Avro value (envelope) of `event`.
    ///
    /// Written field by field without building the envelope as an Avro value
    /// (this runs for every event); debug builds also build it and check that
    /// both give the same bytes.
    pub fn encode_value(&self, event: &ChangeEvent) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        self.encode_value_into(event, &mut out)?;
        Ok(out)
    }

    /// Appends the Avro value of `event` to `out` (see [`TableCodec::encode_value`]).
    pub fn encode_value_into(&self, event: &ChangeEvent, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        for row in [&event.before, &event.after] {
            match row {
                None => out.push(0),
                Some(r) => {
                    self.check_arity(r)?;
                    out.push(2); // union branch 1, zig-zag encoded
                    for (i, datum) in r.iter().enumerate() {
                        self.write_column(i, datum, true, out)?;
                    }
                }
            }
        }
        write_source(&event.source, out);
        write_transaction(event.transaction.as_ref(), out);
        write_bytes(event.op.code().as_bytes(), out);
        write_long(event.ts_ms, out);
        if !event.unchanged.is_empty() {
            write_long(event.unchanged.len() as i64, out);
            for column in &event.unchanged {
                write_bytes(column.as_bytes(), out);
            }
        }
        out.push(0);
        if cfg!(debug_assertions) {
            assert_eq!(
                out[start..],
                self.value.encode(&self.envelope(event)?)?,
                "direct envelope encoding differs"
            );
        }
        Ok(())
    }

    /// The envelope as an Avro value (the reference for [`TableCodec::encode_value`]).
    fn envelope(&self, event: &ChangeEvent) -> Result<Avro, CodecError> {
        let all: Vec<usize> = (0..self.meta.columns.len()).collect();
        let row = |r: &Option<Vec<Datum>>| match r {
            None => Ok::<_, CodecError>(Avro::Union(0, Box::new(Avro::Null))),
            Some(r) => {
                self.check_arity(r)?;
                Ok(Avro::Union(1, Box::new(self.row_to_avro(r, &all, true)?)))
            }
        };
        Ok(Avro::Record(vec![
            ("before".into(), row(&event.before)?),
            ("after".into(), row(&event.after)?),
            ("source".into(), source_to_avro(&event.source)),
            ("transaction".into(), transaction_to_avro(event.transaction.as_ref())),
            ("op".into(), Avro::String(event.op.code().into())),
            ("ts_ms".into(), Avro::Long(event.ts_ms)),
            (
                "unchanged".into(),
                Avro::Array(event.unchanged.iter().map(|c| Avro::String(c.clone())).collect()),
            ),
        ]))
    }

    fn row_from_avro(&self, value: &Avro) -> Result<Option<Vec<Datum>>, CodecError> {
        let fields = match value {
            Avro::Union(_, inner) => return self.row_from_avro(inner),
            Avro::Null => return Ok(None),
            Avro::Record(fields) => fields,
            other => {
                return Err(CodecError::Malformed(MalformedBlock {
                    block: "row",
                    field: format!("{other:?}"),
                }))
            }
        };
        self.meta
            .columns
            .iter()
            .zip(&self.field_names)
            .map(|(column, name)| {
                let raw = fields.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
                    CodecError::Malformed(MalformedBlock {
                        block: "row",
                        field: name.clone(),
                    })
                })?;
                from_avro(raw, column.data_type).map_err(|reason| CodecError::Value {
                    table: self.meta.id.clone(),
                    column: column.name.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The event encoded in `bytes` (an Avro datum without the wire-format header).
    ///
    /// Read directly when the schema is laid out as Ferry derives it (debug
    /// builds also read it with apache-avro and compare), else with apache-avro.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<ChangeEvent, CodecError> {
        if !self.direct {
            return self.decode_generic(bytes);
        }
        let event = self.read_event(bytes)?;
        if cfg!(debug_assertions) {
            // Compared as printed: a NaN is not equal to itself.
            let generic = self.decode_generic(bytes)?;
            assert_eq!(
                format!("{event:?}"),
                format!("{generic:?}"),
                "the direct reader disagrees with apache-avro"
            );
        }
        Ok(event)
    }

    fn read_event(&self, bytes: &[u8]) -> Result<ChangeEvent, CodecError> {
        let mut c = Cursor::new(bytes);
        let before = self.read_row(&mut c)?;
        let after = self.read_row(&mut c)?;
        let source = read_source(self.connector, &mut c)?;
        let transaction = read_transaction(&mut c)?;
        let op = c.str()?;
        let op = Op::parse(op).ok_or_else(|| CodecError::UnknownOp(op.to_owned()))?;
        let ts_ms = c.long()?;
        let unchanged = c.strings()?;
        if !c.is_done() {
            return Err(c.bad("bytes after the envelope").into());
        }
        Ok(ChangeEvent {
            op,
            before,
            after,
            source,
            ts_ms,
            transaction,
            unchanged,
        })
    }

    /// A nullable row: each column a union of null and its type.
    fn read_row(&self, c: &mut Cursor<'_>) -> Result<Option<Vec<Datum>>, CodecError> {
        match c.branch()? {
            0 => return Ok(None),
            1 => {}
            _ => return Err(c.bad("a row union branch Ferry does not write").into()),
        }
        let mut row = Vec::with_capacity(self.meta.columns.len());
        for (i, column) in self.meta.columns.iter().enumerate() {
            let branch = c.branch()?;
            let datum = match (column.data_type, branch) {
                (_, 0) => Datum::Null,
                (DataType::Decimal { special: true, .. }, 2) => {
                    let text = c.str()?;
                    Datum::Special(Special::parse(text).ok_or_else(|| {
                        self.value_error(
                            i,
                            ValueError::Decode {
                                expected: column.data_type,
                                got: text.to_owned(),
                            },
                        )
                    })?)
                }
                (_, 1) => read_value(c, column.data_type).map_err(|e| match e {
                    CodecError::Value { reason, .. } => self.value_error(i, reason),
                    other => other,
                })?,
                _ => return Err(c.bad("a column union branch Ferry does not write").into()),
            };
            row.push(datum);
        }
        Ok(Some(row))
    }

    fn decode_generic(&self, bytes: &[u8]) -> Result<ChangeEvent, CodecError> {
        let Avro::Record(fields) = self.value.decode(bytes)? else {
            return Err(CodecError::Malformed(MalformedBlock {
                block: "envelope",
                field: "(not a record)".into(),
            }));
        };
        let get = |name: &str| {
            fields.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
                CodecError::Malformed(MalformedBlock {
                    block: "envelope",
                    field: name.to_owned(),
                })
            })
        };
        let op = match get("op")? {
            Avro::String(code) => Op::parse(code).ok_or_else(|| CodecError::UnknownOp(code.clone()))?,
            other => return Err(CodecError::UnknownOp(format!("{other:?}"))),
        };
        let ts_ms = match get("ts_ms")? {
            Avro::Long(t) => *t,
            _ => {
                return Err(CodecError::Malformed(MalformedBlock {
                    block: "envelope",
                    field: "ts_ms".into(),
                }))
            }
        };
        let unchanged = match get("unchanged")? {
            Avro::Array(items) => items
                .iter()
                .map(|i| match i {
                    Avro::String(s) => Ok(s.clone()),
                    _ => Err(CodecError::Malformed(MalformedBlock {
                        block: "envelope",
                        field: "unchanged".into(),
                    })),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(CodecError::Malformed(MalformedBlock {
                    block: "envelope",
                    field: "unchanged".into(),
                }))
            }
        };
        Ok(ChangeEvent {
            op,
            before: self.row_from_avro(get("before")?)?,
            after: self.row_from_avro(get("after")?)?,
            source: source_from_avro(self.connector, get("source")?)?,
            ts_ms,
            transaction: transaction_from_avro(get("transaction")?)?,
            unchanged,
        })
    }
}

/// A non-null value of type `ty` at `c`, as [`crate::value::from_avro`] gives it.
fn read_value(c: &mut Cursor<'_>, ty: DataType) -> Result<Datum, CodecError> {
    let decode = |got: &str| CodecError::Value {
        table: TableId::new("", ""),
        column: String::new(),
        reason: ValueError::Decode {
            expected: ty,
            got: got.to_owned(),
        },
    };
    Ok(match ty {
        DataType::Boolean => Datum::Bool(c.boolean()?),
        DataType::Int16 | DataType::Int32 => Datum::Int(i64::from(c.int()?)),
        DataType::Int64 => Datum::Int(c.long()?),
        DataType::Float32 => Datum::Float32(c.float()?),
        DataType::Float64 => Datum::Float64(c.double()?),
        DataType::Decimal { scale, .. } => Datum::Decimal(Decimal::from_signed_bytes_be(c.bytes()?, scale)),
        DataType::Numeric => {
            let text = c.str()?;
            match Special::parse(text) {
                Some(s) => Datum::Special(s),
                None => Datum::Decimal(text.parse().map_err(|_| decode(text))?),
            }
        }
        DataType::Text => Datum::Text(c.str()?.to_owned()),
        DataType::Bytes => Datum::Bytes(c.bytes()?.to_vec()),
        DataType::Date => Datum::Date(c.int()?),
        DataType::Time | DataType::Duration => Datum::Time(c.long()?),
        DataType::Timestamp | DataType::TimestampTz => Datum::Timestamp(c.long()?),
        DataType::Uuid => {
            let text = c.str()?;
            Datum::Uuid(text.parse().map_err(|_| decode(text))?)
        }
    })
}

/// Whether an envelope schema is laid out exactly as [`envelope_schema`]
/// writes it for `meta`: the direct reader relies on the field order and on
/// every row field being `["null", T]` (or `["null", decimal, "string"]`).
fn ferry_layout(json: &Json, meta: &TableMeta, connector: Connector) -> bool {
    let Some(fields) = json["fields"].as_array() else {
        return false;
    };
    let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
    if names != ["before", "after", "source", "transaction", "op", "ts_ms", "unchanged"] {
        return false;
    }
    let row = &fields[0]["type"][1];
    let Some(row_fields) = row["fields"].as_array() else {
        return false;
    };
    let rows_match = row_fields.len() == meta.columns.len()
        && row_fields.iter().zip(&meta.columns).all(|(f, c)| {
            f["ferry.column"] == c.name.as_str()
                && f["type"][0] == "null"
                && f["type"].as_array().map(Vec::len)
                    == Some(if matches!(c.data_type, DataType::Decimal { special: true, .. }) {
                        3
                    } else {
                        2
                    })
        });
    let source_names = |schema: &Json| -> Vec<String> {
        schema["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    rows_match
        && row["namespace"]
            .as_str()
            .is_some_and(|ns| fields[1]["type"][1] == format!("{ns}.Value").as_str())
        && source_names(&fields[2]["type"]) == source_names(&crate::envelope::source_schema(connector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Snapshot, SourceDetail, SourceInfo, TransactionBlock};
    use crate::meta::{Column, DataType};
    use crate::position::PgLsn;
    use crate::value::{Decimal, Special};

    fn meta() -> TableMeta {
        TableMeta::new(
            TableId::new("public", "Ünïcode table"),
            vec![
                Column::new("id", DataType::Int32, "integer").not_null(),
                Column::new(
                    "amount",
                    DataType::Decimal {
                        precision: 12,
                        scale: 3,
                        special: true,
                    },
                    "numeric(12,3)",
                ),
                Column::new("note", DataType::Text, "text"),
                Column::new("raw", DataType::Bytes, "bytea").not_null(),
                Column::new("at", DataType::TimestampTz, "timestamptz"),
                Column::new("n", DataType::Numeric, "numeric"),
            ],
            &["id"],
        )
        .unwrap()
    }

    fn source() -> SourceInfo {
        SourceInfo {
            name: "app".into(),
            ts_ms: 1_234,
            snapshot: Snapshot::False,
            db: "db".into(),
            detail: SourceDetail::Postgres {
                schema: "public".into(),
                table: "Ünïcode table".into(),
                tx_id: Some(7),
                lsn: Some(PgLsn(99)),
            },
        }
    }

    fn row(id: i64, note: Option<&str>) -> Vec<Datum> {
        vec![
            Datum::Int(id),
            Datum::Decimal("-12.500".parse::<Decimal>().unwrap()),
            note.map_or(Datum::Null, |n| Datum::Text(n.into())),
            Datum::Bytes(vec![0, 255, 10]),
            Datum::Timestamp(-86_400_000_001),
            Datum::Special(Special::NaN),
        ]
    }

    #[test]
    fn events_round_trip_through_bytes() {
        let codec = TableCodec::new("app", meta(), Connector::Postgres).unwrap();
        let events = [
            ChangeEvent {
                op: Op::Update,
                before: Some(row(1, None)),
                after: Some(row(1, Some(""))),
                source: source(),
                ts_ms: 5_678,
                transaction: Some(TransactionBlock {
                    id: "7:0/63".into(),
                    total_order: 1,
                    data_collection_order: 1,
                }),
                unchanged: vec!["n".into()],
            },
            ChangeEvent {
                op: Op::Delete,
                before: Some(row(2, Some("x"))),
                after: None,
                source: source(),
                ts_ms: 1,
                transaction: None,
                unchanged: vec![],
            },
            ChangeEvent {
                op: Op::Truncate,
                before: None,
                after: None,
                source: source(),
                ts_ms: 1,
                transaction: None,
                unchanged: vec![],
            },
        ];
        let apply_side = TableCodec::from_value_schema(codec.value_schema_json()).unwrap();
        assert_eq!(apply_side.meta(), codec.meta());
        assert!(apply_side.direct, "Ferry's own schema is read directly");
        let mut reordered = codec.value_schema_json().clone();
        reordered["fields"].as_array_mut().unwrap().swap(4, 5);
        assert!(!TableCodec::from_value_schema(&reordered).unwrap().direct);
        for event in events {
            let bytes = codec.encode_value(&event).unwrap();
            assert_eq!(apply_side.decode_value(&bytes).unwrap(), event);
        }
    }

    #[test]
    fn a_corrupt_length_is_refused_before_anything_is_allocated() {
        let codec = TableCodec::new("app", meta(), Connector::Postgres).unwrap();
        let event = ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(row(1, Some("hello"))),
            source: source(),
            ts_ms: 1,
            transaction: None,
            unchanged: vec![],
        };
        let good = codec.encode_value(&event).unwrap();
        // The note's length (5, zig-zag 10) claims a terabyte instead.
        let at = good.windows(6).position(|w| w == b"\x0ahello").unwrap();
        let mut bad = good[..at].to_vec();
        write_long(1 << 40, &mut bad);
        bad.extend_from_slice(&good[at + 1..]);
        let direct = TableCodec::from_value_schema(codec.value_schema_json()).unwrap();
        let mut reordered = codec.value_schema_json().clone();
        reordered["fields"].as_array_mut().unwrap().swap(4, 5);
        let generic = TableCodec::from_value_schema(&reordered).unwrap();
        for reader in [&direct, &generic] {
            let err = reader.decode_value(&bad).unwrap_err().to_string();
            assert!(
                err.starts_with("corrupt Avro payload: string length 1099511627776 exceeds the ")
                    && err.contains(" bytes left"),
                "{err}"
            );
        }
        // apache-avro itself is never handed it.
        let err = generic.value.decode(&bad).unwrap_err();
        assert!(matches!(err, CodecError::Datum(BadDatum::TooLong { .. })), "{err}");
        // Bytes after a whole envelope are corruption to either reader.
        let trailing = [good.as_slice(), b"junk"].concat();
        let err = direct.decode_value(&trailing).unwrap_err().to_string();
        assert!(err.starts_with("corrupt Avro payload at byte "), "{err}");
        let err = direct.value.decode(&trailing).unwrap_err();
        assert!(matches!(err, CodecError::Datum(BadDatum::Malformed { .. })), "{err}");
    }

    #[test]
    fn keys_hold_only_key_columns() {
        let codec = TableCodec::new("app", meta(), Connector::Postgres).unwrap();
        let key = codec.encode_key(&row(300, None)).unwrap().unwrap();
        // An Avro int is zig-zag varint encoded: 300 -> 600 -> [0xd8, 0x04].
        assert_eq!(key, vec![0xd8, 0x04]);
        let keyless = TableMeta::new(
            TableId::new("s", "t"),
            vec![Column::new("a", DataType::Text, "text")],
            &[],
        )
        .unwrap();
        let codec = TableCodec::new("app", keyless, Connector::Mysql).unwrap();
        assert_eq!(codec.encode_key(&[Datum::Text("a".into())]).unwrap(), None);
        assert!(codec.key_schema_json().is_none());
    }

    #[test]
    fn rows_may_lack_values_keys_may_not() {
        let codec = TableCodec::new("app", meta(), Connector::Postgres).unwrap();
        // A delete's old row with only the key (REPLICA IDENTITY DEFAULT).
        let mut key_only = vec![Datum::Null; 6];
        key_only[0] = Datum::Int(1);
        let event = ChangeEvent {
            op: Op::Delete,
            before: Some(key_only.clone()),
            after: None,
            source: source(),
            ts_ms: 0,
            transaction: None,
            unchanged: vec![],
        };
        let bytes = codec.encode_value(&event).unwrap();
        assert_eq!(codec.decode_value(&bytes).unwrap(), event);
        assert!(codec.encode_key(&key_only).unwrap().is_some());
        // A key without its value is refused, naming table and column.
        let err = codec.encode_key(&vec![Datum::Null; 6]).unwrap_err().to_string();
        assert_eq!(
            err,
            "table public.Ünïcode table, column \"id\": null in a NOT NULL column"
        );
        let short = ChangeEvent {
            after: Some(vec![Datum::Int(1)]),
            ..event
        };
        assert!(matches!(
            codec.encode_value(&short),
            Err(CodecError::Arity {
                expected: 6,
                got: 1,
                ..
            })
        ));
        assert!(codec.decode_value(&[0xff, 0xff]).is_err());
        assert!(codec.decode_value(&[]).is_err());
    }
}
