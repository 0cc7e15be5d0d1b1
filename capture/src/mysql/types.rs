//! MySQL/MariaDB column types: what each becomes on the wire, and how its
//! values are read from a snapshot (text protocol) and from the binlog.
//!
//! A column is described twice: by `information_schema.COLUMNS` when capture
//! starts ([`from_information_schema`]) and by each table map event's full
//! metadata while streaming ([`from_table_map`]). Both give the same [`Kind`]
//! for the same column ([`same_shape`]), so starting the stream registers no
//! new schema version. A value is read by [`from_text`] (snapshot, `SELECT`
//! over the text protocol) or [`from_binlog`] (rows events); both give the same
//! [`Datum`] for the same stored value.
//!
//! | MySQL / MariaDB | Ferry [`DataType`] | Avro |
//! |---|---|---|
//! | `TINYINT`, `TINYINT UNSIGNED`, `SMALLINT`, `BOOLEAN`/`TINYINT(1)` | `int16` | `int` |
//! | `SMALLINT UNSIGNED`, `MEDIUMINT` (both), `INT` | `int32` | `int` |
//! | `INT UNSIGNED`, `BIGINT` | `int64` | `long` |
//! | `BIGINT UNSIGNED` | `decimal(20,0)` | `bytes`, logical `decimal` |
//! | `DECIMAL(p,s)` (p ≤ 65) | `decimal(p,s)` | `bytes`, logical `decimal` |
//! | `FLOAT` | `float32` | `float` |
//! | `DOUBLE`, `REAL` | `float64` | `double` |
//! | `BIT(1)` | `boolean` | `boolean` |
//! | `BIT(n)`, n > 1 | `bytes` (⌈n/8⌉ bytes, big-endian) | `bytes` |
//! | `CHAR`, `VARCHAR`, `*TEXT` (utf8mb4, utf8mb3, latin1, ascii) | `text` | `string` |
//! | `BINARY`, `VARBINARY`, `*BLOB` | `bytes` | `bytes` |
//! | `DATE` | `date` | `int`, logical `date` |
//! | `DATETIME(0..6)` | `timestamp` (wall clock) | `long`, logical `local-timestamp-micros` |
//! | `TIMESTAMP(0..6)` | `timestamptz` (UTC) | `long`, logical `timestamp-micros` |
//! | `TIME(0..6)` | `duration` (signed µs) | `long` |
//! | `YEAR` | `int32` | `int` |
//! | `ENUM(...)` | `text` (the member) | `string` |
//! | `SET(...)` | `text` (`a,b` in definition order) | `string` |
//! | `JSON` (MySQL) | `text` (JSON text), source type `json` | `string` |
//! | `JSON` (MariaDB: `LONGTEXT` + `json_valid` check) | `text`, source type `longtext` | `string` |
//! | `GEOMETRY`, `POINT`, `LINESTRING`, `POLYGON`, `MULTI*`, `GEOMETRYCOLLECTION` | `bytes` (WKB, or EWKB when the SRID is not 0) | `bytes` |
//!
//! Anything else (MariaDB `UUID`, `INET4`, `INET6`, `VECTOR`, the pre-5.0
//! `DECIMAL`, text in another character set) is a [`TypeError`] naming the
//! column and its type: capture refuses the table rather than guess.
//!
//! Choices:
//!
//! - **`TINYINT(1)` stays a number** (`int16`), as Debezium does by default:
//!   MySQL's `BOOLEAN` is `TINYINT(1)`, which can hold -128..127, and the binlog
//!   does not tell the two apart.
//! - **Zero dates** (`0000-00-00`, `0000-00-00 00:00:00`, partial zeros such as
//!   `2020-00-15`, and the invalid dates `ALLOW_INVALID_DATES` lets in, such as
//!   `2020-02-30`) are no instant. Like Debezium, such a value becomes `NULL`
//!   in a nullable column and the epoch (`1970-01-01`, `1970-01-01 00:00:00`) in
//!   a `NOT NULL` one, and each is counted in `ferry_capture_zero_dates_total`.
//!   The zero `TIMESTAMP` is stored as second 0, which no real `TIMESTAMP` can
//!   be (they start at `1970-01-01 00:00:01` UTC), so it is read the same way.
//! - **Geometry**: MySQL stores a 4-byte little-endian SRID before the WKB.
//!   The SRID is stripped; when it is not 0 the value becomes EWKB (PostGIS's
//!   form: the SRID flag `0x20000000` in the type word, the SRID after it), so
//!   nothing is lost and PostGIS reads it directly.
//! - **latin1** is MySQL's latin1, which is Windows-1252 with the five bytes
//!   cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) mapped to the C1
//!   controls of the same code: every byte decodes, as the server itself
//!   converts them.
//! - **JSON**: MySQL's binary JSON (binlog) is printed as MySQL prints JSON
//!   (`{"a": 1, "b": [1, 2]}`, keys in stored order) so it matches the text the
//!   snapshot reads; MariaDB's JSON is text already.
//! - Text is read as it is stored; nothing is trimmed (a `CHAR` column's
//!   trailing spaces are dropped by the server in both paths). The binlog
//!   drops a `BINARY(n)` value's trailing zero bytes; they are put back, as the
//!   snapshot reads them.
//!
//! Binlog facts this relies on (checked against MariaDB 10.11 by
//! `tests/tests/capture_mysql_types.rs`):
//!
//! - The table map's character set field has one slot per text or binary
//!   string column in MySQL, and also one per `GEOMETRY` column in MariaDB.
//!   The two are told apart by the column visibility field, which MySQL
//!   8.0.23+ always writes with full metadata and MariaDB never does; a
//!   geometry slot that is not `binary` is an error, never a guess. (MySQL
//!   8.0.1..8.0.22 is read as MariaDB: only a table with a `GEOMETRY` column
//!   before a text column would be misread, and then most likely refused.)
//! - Both give `YEAR` a bit in the signedness field, as mysql_common assumes.
//! - mysql_common 0.37 does not sign-extend a negative `MEDIUMINT` (-1 arrives
//!   as 16777215), so integers are read back from their bits with the
//!   column's own signedness.
//!
//! What the snapshot must do for [`from_text`] to be exact (capture's snapshot
//! connection does this):
//!
//! - `SET time_zone = '+00:00'`, so a `TIMESTAMP` prints in UTC;
//! - `character_set_results` utf8mb4 (mysql_async's default), so text of
//!   every character set arrives as UTF-8;
//! - select each column with [`select_expr`]: `FLOAT` and `DOUBLE` are printed
//!   by the server rounded (`FLOAT` to 6 digits), so they are selected as
//!   `CAST(col AS DOUBLE)`, which prints the shortest text that reads back to
//!   the same double.

use std::fmt;

use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use ferry_core::value::{Datum, Decimal};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::jsonb;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

/// A column as the source describes it, from `information_schema` (at start)
/// or from a table map event's full metadata (while streaming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    /// The default as SQL text, when `information_schema` gives one.
    pub default: Option<String>,
    /// The source's type text, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub source_type: String,
}

/// The character set of a text column: how its stored bytes decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    Utf8mb4,
    /// `utf8` before MySQL 8.0.30 and MariaDB 10.6.
    Utf8mb3,
    /// MySQL's latin1: Windows-1252, every byte defined (see the module docs).
    Latin1,
    Ascii,
}

impl Charset {
    /// The charset of a `CHARACTER_SET_NAME`; `None` for `binary` and unknown ones.
    pub fn from_name(name: &str) -> Option<Charset> {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" => Some(Charset::Utf8mb4),
            "utf8mb3" | "utf8" => Some(Charset::Utf8mb3),
            "latin1" => Some(Charset::Latin1),
            "ascii" => Some(Charset::Ascii),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8mb4 => "utf8mb4",
            Charset::Utf8mb3 => "utf8mb3",
            Charset::Latin1 => "latin1",
            Charset::Ascii => "ascii",
        }
    }

    /// Bytes per character at most (a `VARCHAR(n)`'s binlog length is `n` × this).
    fn max_len(self) -> u32 {
        match self {
            Charset::Utf8mb4 => 4,
            Charset::Utf8mb3 => 3,
            Charset::Latin1 | Charset::Ascii => 1,
        }
    }

    /// The stored bytes as text; an error names the first byte that is not valid.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        match self {
            Charset::Utf8mb4 | Charset::Utf8mb3 => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| format!("not {} (invalid byte at offset {})", self.name(), e.valid_up_to())),
            Charset::Latin1 => Ok(bytes.iter().map(|&b| latin1_char(b)).collect()),
            Charset::Ascii => match bytes.iter().position(|b| !b.is_ascii()) {
                None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
                Some(at) => Err(format!("not ascii (byte 0x{:02x} at offset {at})", bytes[at])),
            },
        }
    }
}

/// What a collation id (table map charset metadata) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collation {
    Text(Charset),
    Binary,
}

/// The character set of a collation id, for the character sets Ferry reads.
/// Ids are MariaDB 10.11's (including its UCA 14 collations at 2048+) and
/// MySQL 8's (255..=323 are its utf8mb4 `_0900_` collations, 76 is
/// `utf8mb3_tolower_ci`); the two agree below 256.
fn collation(id: u16) -> Option<Collation> {
    use Charset::*;
    Some(match id {
        63 => Collation::Binary,
        5 | 8 | 15 | 31 | 47..=49 | 94 | 1032 | 1071 => Collation::Text(Latin1),
        11 | 65 | 1035 | 1089 => Collation::Text(Ascii),
        33 | 76 | 83 | 192..=215 | 223 | 576..=578 | 1057 | 1107 | 1216 | 1238 | 2048..=2303 => {
            Collation::Text(Utf8mb3)
        }
        45 | 46 | 224..=247 | 255..=323 | 608..=610 | 1069 | 1070 | 1248 | 1270 | 2304..=2559 => {
            Collation::Text(Utf8mb4)
        }
        _ => return None,
    })
}

/// MySQL's latin1 byte `b` as a character: cp1252, with its five holes as C1 controls.
fn latin1_char(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
        '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}',
        '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
        '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9f => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// The normalised type of a column: everything needed to decode its values.
///
/// Only what both `information_schema` and a table map event tell is kept
/// here (no display widths, no `VARCHAR` lengths), so the two descriptions of
/// one column compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `TINYINT` (1 byte) .. `BIGINT` (8 bytes); `MEDIUMINT` is 3.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    /// `DECIMAL(p,s)`, p ≤ 65, s ≤ 30.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Float,
    Double,
    /// `BIT(n)`, 1 ≤ n ≤ 64.
    Bit {
        bits: u32,
    },
    /// `CHAR`, `VARCHAR`, `*TEXT` (and MariaDB's `JSON`).
    Text {
        charset: Charset,
    },
    /// `VARBINARY`, `*BLOB`.
    Bytes,
    /// `BINARY(len)`: the binlog drops its trailing zero bytes, which are put back.
    Binary {
        len: u32,
    },
    /// MySQL's binary `JSON`.
    Json,
    /// Zero dates become `NULL` when `nullable`, else the epoch.
    Date {
        nullable: bool,
    },
    DateTime {
        fsp: u8,
        nullable: bool,
    },
    Timestamp {
        fsp: u8,
        nullable: bool,
    },
    Time {
        fsp: u8,
    },
    Year,
    Enum {
        members: Vec<String>,
    },
    Set {
        members: Vec<String>,
    },
    Geometry,
}

impl Kind {
    /// Ferry's data type for values of this kind.
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Int { bytes: 1, .. }
            | Kind::Int {
                bytes: 2,
                unsigned: false,
            } => DataType::Int16,
            Kind::Int { bytes: 2 | 3, .. }
            | Kind::Int {
                bytes: 4,
                unsigned: false,
            } => DataType::Int32,
            Kind::Int { unsigned: false, .. } | Kind::Int { bytes: 4, .. } => DataType::Int64,
            Kind::Int { .. } => DataType::Decimal {
                precision: 20,
                scale: 0,
                special: false,
            },
            Kind::Decimal { precision, scale } => DataType::Decimal {
                precision: *precision,
                scale: *scale,
                special: false,
            },
            Kind::Float => DataType::Float32,
            Kind::Double => DataType::Float64,
            Kind::Bit { bits: 1 } => DataType::Boolean,
            Kind::Bit { .. } | Kind::Bytes | Kind::Binary { .. } | Kind::Geometry => DataType::Bytes,
            Kind::Text { .. } | Kind::Json | Kind::Enum { .. } | Kind::Set { .. } => DataType::Text,
            Kind::Date { .. } => DataType::Date,
            Kind::DateTime { .. } => DataType::Timestamp,
            Kind::Timestamp { .. } => DataType::TimestampTz,
            Kind::Time { .. } => DataType::Duration,
            Kind::Year => DataType::Int32,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Int { bytes, unsigned } => {
                f.write_str(int_name(*bytes))?;
                if *unsigned {
                    f.write_str(" unsigned")?;
                }
                Ok(())
            }
            Kind::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Kind::Float => f.write_str("float"),
            Kind::Double => f.write_str("double"),
            Kind::Bit { bits } => write!(f, "bit({bits})"),
            Kind::Text { charset } => write!(f, "text ({})", charset.name()),
            Kind::Bytes => f.write_str("binary string"),
            Kind::Binary { len } => write!(f, "binary({len})"),
            Kind::Json => f.write_str("json"),
            Kind::Date { .. } => f.write_str("date"),
            Kind::DateTime { fsp, .. } => write!(f, "datetime({fsp})"),
            Kind::Timestamp { fsp, .. } => write!(f, "timestamp({fsp})"),
            Kind::Time { fsp } => write!(f, "time({fsp})"),
            Kind::Year => f.write_str("year"),
            Kind::Enum { members } => write!(f, "enum({})", quote_members(members)),
            Kind::Set { members } => write!(f, "set({})", quote_members(members)),
            Kind::Geometry => f.write_str("geometry"),
        }
    }
}

fn int_name(bytes: u8) -> &'static str {
    match bytes {
        1 => "tinyint",
        2 => "smallint",
        3 => "mediumint",
        4 => "int",
        _ => "bigint",
    }
}

/// `'a','b''c'` as `information_schema` prints members.
fn quote_members(members: &[String]) -> String {
    members
        .iter()
        .map(|m| format!("'{}'", m.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A value or a type Ferry cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

fn unsupported(name: &str, ty: &str, why: &str) -> TypeError {
    TypeError(format!("column `{name}`: type {ty} is not supported ({why})"))
}

/// A column from `information_schema.COLUMNS`: `column_type` is `COLUMN_TYPE`
/// (`int(10) unsigned`, `enum('a','b''c')`), `data_type` is `DATA_TYPE`
/// (`int`), `charset` is `CHARACTER_SET_NAME` (`None` for non-text columns).
pub fn from_information_schema(
    name: &str,
    column_type: &str,
    data_type: &str,
    charset: Option<&str>,
    nullable: bool,
    default: Option<String>,
) -> Result<SourceColumn, TypeError> {
    let ty = column_type.trim();
    let lower = ty.to_ascii_lowercase();
    let unsigned = lower.split_whitespace().any(|w| w == "unsigned");
    let args = lower.find('(').and_then(|open| {
        lower[open + 1..]
            .find(')')
            .map(|close| &lower[open + 1..open + 1 + close])
    });
    let bad = |why: &str| TypeError(format!("column `{name}`: cannot read type {ty:?}: {why}"));
    let numbers = |count: usize| -> Result<Vec<u32>, TypeError> {
        let nums = args
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<u32>().map_err(|_| bad("a number was expected")))
            .collect::<Result<Vec<_>, _>>()?;
        if nums.len() > count {
            return Err(bad("too many arguments"));
        }
        Ok(nums)
    };
    let fsp = || -> Result<u8, TypeError> {
        let n = numbers(1)?.first().copied().unwrap_or(0);
        u8::try_from(n)
            .ok()
            .filter(|n| *n <= 6)
            .ok_or_else(|| bad("precision above 6"))
    };
    let fixed_binary = || -> Result<Kind, TypeError> {
        Ok(Kind::Binary {
            len: numbers(1)?.first().copied().unwrap_or(1),
        })
    };
    let text = || -> Result<Kind, TypeError> {
        match charset {
            Some(c) if c.eq_ignore_ascii_case("binary") && data_type.eq_ignore_ascii_case("char") => fixed_binary(),
            Some(c) if c.eq_ignore_ascii_case("binary") => Ok(Kind::Bytes),
            Some(c) => Charset::from_name(c)
                .map(|charset| Kind::Text { charset })
                .ok_or_else(|| {
                    unsupported(
                        name,
                        ty,
                        &format!("character set {c}; Ferry reads utf8mb4, utf8mb3, latin1 and ascii"),
                    )
                }),
            None => Err(bad("a text column without a character set")),
        }
    };
    let kind = match data_type.to_ascii_lowercase().as_str() {
        "tinyint" => Kind::Int { bytes: 1, unsigned },
        "smallint" => Kind::Int { bytes: 2, unsigned },
        "mediumint" => Kind::Int { bytes: 3, unsigned },
        "int" | "integer" => Kind::Int { bytes: 4, unsigned },
        "bigint" => Kind::Int { bytes: 8, unsigned },
        "decimal" | "numeric" | "fixed" => {
            let nums = numbers(2)?;
            let precision = nums.first().copied().unwrap_or(10);
            let scale = nums.get(1).copied().unwrap_or(0);
            if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                return Err(bad("precision and scale out of range"));
            }
            Kind::Decimal { precision, scale }
        }
        "float" => Kind::Float,
        "double" | "real" | "double precision" => Kind::Double,
        "bit" => {
            let bits = numbers(1)?.first().copied().unwrap_or(1);
            if !(1..=64).contains(&bits) {
                return Err(bad("bit width out of range"));
            }
            Kind::Bit { bits }
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => text()?,
        "binary" => fixed_binary()?,
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Kind::Bytes,
        "date" => Kind::Date { nullable },
        "datetime" => Kind::DateTime { fsp: fsp()?, nullable },
        "timestamp" => Kind::Timestamp { fsp: fsp()?, nullable },
        "time" => Kind::Time { fsp: fsp()? },
        "year" => Kind::Year,
        "enum" => Kind::Enum {
            members: parse_members(ty).map_err(|e| bad(&e))?,
        },
        "set" => Kind::Set {
            members: parse_members(ty).map_err(|e| bad(&e))?,
        },
        "json" => Kind::Json,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => Kind::Geometry,
        other => {
            return Err(unsupported(
                name,
                ty,
                &format!("Ferry has no mapping for {other}; exclude the table or change the column"),
            ))
        }
    };
    Ok(SourceColumn {
        name: name.to_owned(),
        kind,
        nullable,
        default,
        source_type: ty.to_owned(),
    })
}

/// The members of `enum('a','b''c','x\\y')` as `information_schema` prints them.
fn parse_members(ty: &str) -> Result<Vec<String>, String> {
    let open = ty.find('(').ok_or("no member list")?;
    let mut chars = ty[open + 1..].chars().peekable();
    let mut members = Vec::new();
    loop {
        match chars.next() {
            Some('\'') => {}
            Some(')') if members.is_empty() => break,
            _ => return Err("a quoted member was expected".into()),
        }
        let mut member = String::new();
        loop {
            match chars.next().ok_or("unterminated member")? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                '\'' => break,
                '\\' => member.push(match chars.next().ok_or("unterminated member")? {
                    '0' => '\0',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'Z' => '\u{1a}',
                    c => c,
                }),
                c => member.push(c),
            }
        }
        members.push(member);
        match chars.next() {
            Some(',') => {}
            Some(')') => break,
            _ => return Err("`,` or `)` was expected after a member".into()),
        }
    }
    Ok(members)
}

/// The columns of a table map event (needs `binlog_row_metadata=FULL`) and
/// the positions of its primary key columns, in key order. Columns carry no
/// default (the binlog has none): keep `information_schema`'s when
/// [`same_shape`] says nothing changed.
pub fn from_table_map(tme: &TableMapEvent<'_>) -> Result<(Vec<SourceColumn>, Vec<usize>), TypeError> {
    let table = format!("{}.{}", tme.database_name(), tme.table_name());
    let meta_error = |e: std::io::Error| TypeError(format!("table {table}: unreadable table map metadata: {e}"));
    let count =
        usize::try_from(tme.columns_count()).map_err(|_| TypeError(format!("table {table}: too many columns")))?;
    let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(meta_error)?;
    let names = extractor
        .iter_column_name()
        .map(|n| n.map(|n| n.name().into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(meta_error)?;
    if names.len() != count {
        return Err(TypeError(format!(
            "table {table}: the table map has no column names; set binlog_row_metadata=FULL"
        )));
    }
    let mut enum_values = Vec::new();
    let mut set_values = Vec::new();
    let mut geometry_types = Vec::new();
    // MySQL 8.0.23+ always writes column visibility with full metadata; MariaDB never does.
    let mut mysql = false;
    for field in tme.iter_optional_meta() {
        match field.map_err(meta_error)? {
            OptionalMetadataField::ColumnVisibility(_) => mysql = true,
            OptionalMetadataField::EnumStrValue(v) => {
                for members in v.iter_values() {
                    let members = members.map_err(meta_error)?;
                    enum_values.push(
                        members
                            .values()
                            .iter()
                            .map(|m| m.value_raw().to_vec())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for members in v.iter_values() {
                    let members = members.map_err(meta_error)?;
                    set_values.push(
                        members
                            .values()
                            .iter()
                            .map(|m| m.value_raw().to_vec())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            OptionalMetadataField::GeometryType(v) => {
                for t in v.iter_geometry_types() {
                    geometry_types.push(t.map_err(meta_error)?);
                }
            }
            _ => {}
        }
    }
    let mut signedness = extractor.iter_signedness();
    let mut charsets = extractor.iter_charset();
    let mut enum_set_charsets = extractor.iter_enum_and_set_charset();
    let (mut enums, mut sets, mut geometries) = (
        enum_values.into_iter(),
        set_values.into_iter(),
        geometry_types.into_iter(),
    );
    let nulls = tme.null_bitmask();
    let mut columns = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let col_type = tme
            .get_column_type(i)
            .map_err(|e| TypeError(format!("table {table}: column `{name}`: {e}")))?
            .ok_or_else(|| TypeError(format!("table {table}: column `{name}` has no type")))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let nullable = nulls.get(i).is_some_and(|b| *b);
        // Both servers give YEAR a signedness bit (mysql_common's rule).
        let unsigned = if col_type.is_numeric_type() {
            signedness.next().unwrap_or(false)
        } else {
            false
        };
        let charset = if has_charset(col_type, mysql) {
            Some(charsets.next().transpose().map_err(meta_error)?)
        } else if col_type.is_enum_or_set_type() {
            Some(enum_set_charsets.next().transpose().map_err(meta_error)?)
        } else {
            None
        };
        let column_error = |what: String| TypeError(format!("table {table}: column `{name}`: {what}"));
        // A text column's charset: Ok(None) for binary.
        let text_charset = || -> Result<Option<Charset>, TypeError> {
            let id = charset.flatten().ok_or_else(|| {
                column_error("the table map has no character set; set binlog_row_metadata=FULL".into())
            })?;
            match collation(id) {
                Some(Collation::Binary) => Ok(None),
                Some(Collation::Text(c)) => Ok(Some(c)),
                None => Err(column_error(format!(
                    "collation id {id} is not of a character set Ferry reads (utf8mb4, utf8mb3, latin1, ascii)"
                ))),
            }
        };
        let meta_byte = |at: usize| meta.get(at).copied().unwrap_or(0);
        let members = |raw: Option<Vec<Vec<u8>>>| -> Result<Vec<String>, TypeError> {
            let raw =
                raw.ok_or_else(|| column_error("the table map lists no members; set binlog_row_metadata=FULL".into()))?;
            let charset = text_charset()?.unwrap_or(Charset::Utf8mb4);
            raw.iter()
                .map(|m| charset.decode(m).map_err(|e| column_error(format!("member: {e}"))))
                .collect()
        };
        let sign = if unsigned { " unsigned" } else { "" };
        let (kind, source_type) = match col_type {
            ColumnType::MYSQL_TYPE_TINY => (Kind::Int { bytes: 1, unsigned }, format!("tinyint{sign}")),
            ColumnType::MYSQL_TYPE_SHORT => (Kind::Int { bytes: 2, unsigned }, format!("smallint{sign}")),
            ColumnType::MYSQL_TYPE_INT24 => (Kind::Int { bytes: 3, unsigned }, format!("mediumint{sign}")),
            ColumnType::MYSQL_TYPE_LONG => (Kind::Int { bytes: 4, unsigned }, format!("int{sign}")),
            ColumnType::MYSQL_TYPE_LONGLONG => (Kind::Int { bytes: 8, unsigned }, format!("bigint{sign}")),
            ColumnType::MYSQL_TYPE_NEWDECIMAL => {
                let (precision, scale) = (u32::from(meta_byte(0)), u32::from(meta_byte(1)));
                (
                    Kind::Decimal { precision, scale },
                    format!("decimal({precision},{scale}){sign}"),
                )
            }
            ColumnType::MYSQL_TYPE_FLOAT => (Kind::Float, format!("float{sign}")),
            ColumnType::MYSQL_TYPE_DOUBLE => (Kind::Double, format!("double{sign}")),
            ColumnType::MYSQL_TYPE_BIT => {
                let bits = u32::from(meta_byte(1)) * 8 + u32::from(meta_byte(0));
                (Kind::Bit { bits }, format!("bit({bits})"))
            }
            ColumnType::MYSQL_TYPE_STRING => {
                let (b0, b1) = (usize::from(meta_byte(0)), usize::from(meta_byte(1)));
                let len = if b0 & 0x30 != 0x30 {
                    b1 | (((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    b1
                };
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                match text_charset()? {
                    None => (Kind::Binary { len }, format!("binary({len})")),
                    Some(charset) => (Kind::Text { charset }, format!("char({})", len / charset.max_len())),
                }
            }
            ColumnType::MYSQL_TYPE_VARCHAR | ColumnType::MYSQL_TYPE_VAR_STRING => {
                let len = u32::from(meta_byte(0)) | (u32::from(meta_byte(1)) << 8);
                match text_charset()? {
                    None => (Kind::Bytes, format!("varbinary({len})")),
                    Some(charset) => (Kind::Text { charset }, format!("varchar({})", len / charset.max_len())),
                }
            }
            ColumnType::MYSQL_TYPE_BLOB
            | ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB => {
                let size = match meta_byte(0) {
                    1 => "tiny",
                    2 => "",
                    3 => "medium",
                    _ => "long",
                };
                match text_charset()? {
                    None => (Kind::Bytes, format!("{size}blob")),
                    Some(charset) => (Kind::Text { charset }, format!("{size}text")),
                }
            }
            ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => (Kind::Date { nullable }, "date".into()),
            ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => {
                let fsp = if col_type == ColumnType::MYSQL_TYPE_DATETIME2 {
                    meta_byte(0)
                } else {
                    0
                };
                (Kind::DateTime { fsp, nullable }, with_fsp("datetime", fsp))
            }
            ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => {
                let fsp = if col_type == ColumnType::MYSQL_TYPE_TIMESTAMP2 {
                    meta_byte(0)
                } else {
                    0
                };
                (Kind::Timestamp { fsp, nullable }, with_fsp("timestamp", fsp))
            }
            ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => {
                let fsp = if col_type == ColumnType::MYSQL_TYPE_TIME2 {
                    meta_byte(0)
                } else {
                    0
                };
                (Kind::Time { fsp }, with_fsp("time", fsp))
            }
            ColumnType::MYSQL_TYPE_YEAR => (Kind::Year, "year".into()),
            ColumnType::MYSQL_TYPE_ENUM => {
                let kind = Kind::Enum {
                    members: members(enums.next())?,
                };
                let source_type = kind.to_string();
                (kind, source_type)
            }
            ColumnType::MYSQL_TYPE_SET => {
                let kind = Kind::Set {
                    members: members(sets.next())?,
                };
                let source_type = kind.to_string();
                (kind, source_type)
            }
            ColumnType::MYSQL_TYPE_JSON => (Kind::Json, "json".into()),
            ColumnType::MYSQL_TYPE_GEOMETRY => {
                // MariaDB gives geometry a charset slot; it must be binary, or the slots are misread.
                if let Some(Some(id)) = charset {
                    if collation(id) != Some(Collation::Binary) {
                        return Err(column_error(format!(
                            "geometry with collation {id}: the table map's character sets cannot be matched to columns"
                        )));
                    }
                }
                use mysql_async::consts::GeometryType as G;
                let subtype = match geometries.next() {
                    Some(G::GEOM_POINT) => "point",
                    Some(G::GEOM_LINESTRING) => "linestring",
                    Some(G::GEOM_POLYGON) => "polygon",
                    Some(G::GEOM_MULTIPOINT) => "multipoint",
                    Some(G::GEOM_MULTILINESTRING) => "multilinestring",
                    Some(G::GEOM_MULTIPOLYGON) => "multipolygon",
                    Some(G::GEOM_GEOMETRYCOLLECTION) => "geometrycollection",
                    Some(G::GEOM_GEOMETRY) | None => "geometry",
                };
                (Kind::Geometry, subtype.into())
            }
            other => {
                return Err(TypeError(format!(
                    "table {table}: column `{name}`: type {other:?} is not supported"
                )))
            }
        };
        columns.push(SourceColumn {
            name,
            kind,
            nullable,
            default: None,
            source_type,
        });
    }
    let key = extractor
        .iter_primary_key()
        .map(|k| {
            let k = k.map_err(meta_error)?;
            usize::try_from(k)
                .ok()
                .filter(|k| *k < count)
                .ok_or_else(|| TypeError(format!("table {table}: primary key column {k} out of range")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((columns, key))
}

/// Whether a column of type `t` has a slot in the table map's character set
/// field: MariaDB counts `GEOMETRY` (a blob underneath), MySQL does not.
fn has_charset(t: ColumnType, mysql: bool) -> bool {
    t.is_character_type() || (!mysql && t == ColumnType::MYSQL_TYPE_GEOMETRY)
}

fn with_fsp(name: &str, fsp: u8) -> String {
    if fsp == 0 {
        name.to_owned()
    } else {
        format!("{name}({fsp})")
    }
}

/// Whether two descriptions decode values the same way (names and kinds equal).
pub fn same_shape(a: &[SourceColumn], b: &[SourceColumn]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name && x.kind == y.kind)
}

/// Ferry's column for a source column.
pub fn column(c: &SourceColumn) -> Column {
    Column {
        name: c.name.clone(),
        data_type: c.kind.data_type(),
        source_type: c.source_type.clone(),
        nullable: c.nullable,
        default: c.default.clone(),
    }
}

/// The expression a snapshot selects for `c` so that [`from_text`] reads its
/// exact value: the quoted name, except `FLOAT`/`DOUBLE`, which the server
/// prints rounded and so are selected as `CAST(col AS DOUBLE)`.
pub fn select_expr(c: &SourceColumn) -> String {
    let quoted = ferry_core::mysql::quote_ident(&c.name);
    match c.kind {
        Kind::Float | Kind::Double => format!("CAST({quoted} AS DOUBLE)"),
        _ => quoted,
    }
}

/// A table's metadata from its source columns and key positions.
pub fn table_meta(id: TableId, columns: &[SourceColumn], key: Vec<usize>) -> TableMeta {
    TableMeta {
        id,
        columns: columns.iter().map(column).collect(),
        key,
    }
}

/// A value read by a text-protocol query (session `time_zone = '+00:00'`,
/// results in utf8mb4, the column selected with [`select_expr`]). `NULL` is
/// the caller's: this reads non-null values.
pub fn from_text(kind: &Kind, text: &[u8]) -> Result<Datum, TypeError> {
    let fail = |reason: String| {
        TypeError(format!(
            "cannot read {:?} as {kind}: {reason}",
            excerpt(&String::from_utf8_lossy(text))
        ))
    };
    match kind {
        Kind::Bytes => return Ok(Datum::Bytes(text.to_vec())),
        Kind::Binary { len } => return binary(*len, text).map_err(fail),
        Kind::Bit { bits } => return bit(*bits, text).map_err(fail),
        Kind::Geometry => return geometry(text).map_err(fail),
        _ => {}
    }
    let s = std::str::from_utf8(text)
        .map_err(|e| fail(format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    text_value(kind, s).map_err(fail)
}

/// The value of a non-binary kind from its UTF-8 text.
fn text_value(kind: &Kind, s: &str) -> Result<Datum, String> {
    Ok(match kind {
        Kind::Int { bytes, unsigned } => {
            if *unsigned {
                int_unsigned(*bytes, s.parse::<u64>().map_err(|e| e.to_string())?)?
            } else {
                int_signed(*bytes, s.parse::<i64>().map_err(|e| e.to_string())?)?
            }
        }
        Kind::Decimal { precision, scale } => decimal(*precision, *scale, s)?,
        Kind::Float => {
            let d = parse_double(s)?;
            #[allow(clippy::cast_possible_truncation)]
            let f = d as f32;
            if f64::from(f) != d {
                return Err("not the exact value of a FLOAT (select it as CAST(col AS DOUBLE))".into());
            }
            Datum::Float32(f)
        }
        Kind::Double => Datum::Float64(parse_double(s)?),
        Kind::Text { .. } | Kind::Json | Kind::Enum { .. } | Kind::Set { .. } => Datum::Text(s.to_owned()),
        Kind::Date { nullable } => {
            let (y, m, d) = parse_date(s)?;
            date(y, m, d, *nullable)
        }
        Kind::DateTime { nullable, .. } | Kind::Timestamp { nullable, .. } => {
            let (date_part, time_part) = s.split_once(' ').ok_or("no time part")?;
            let (y, mo, d) = parse_date(date_part)?;
            let (neg, h, mi, sec, us) = parse_time(time_part)?;
            if neg || h > 23 {
                return Err("not a time of day".into());
            }
            datetime(y, mo, d, h, mi, sec, us, *nullable)?
        }
        Kind::Time { .. } => {
            let (neg, h, m, sec, us) = parse_time(s)?;
            duration(neg, h, m, sec, us)?
        }
        Kind::Year => {
            let y: i64 = s.parse().map_err(|_| "not a year")?;
            if !(y == 0 || (1901..=2155).contains(&y)) {
                return Err("not a YEAR".into());
            }
            Datum::Int(y)
        }
        Kind::Bit { .. } | Kind::Bytes | Kind::Binary { .. } | Kind::Geometry => {
            unreachable!("binary kinds are read from bytes")
        }
    })
}

/// A value of a binlog rows event.
pub fn from_binlog(kind: &Kind, value: &BinlogValue<'_>) -> Result<Datum, TypeError> {
    let fail = |reason: String| {
        TypeError(format!(
            "cannot read binlog value {} as {kind}: {reason}",
            describe(value)
        ))
    };
    let v = match value {
        BinlogValue::Value(Value::NULL) => return Ok(Datum::Null),
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) if *kind == Kind::Json => {
            let mut out = String::new();
            json_text(j, &mut out).map_err(fail)?;
            return Ok(Datum::Text(out));
        }
        BinlogValue::Jsonb(_) => return Err(fail("a JSON value in a column that is not JSON".into())),
        BinlogValue::JsonDiff(_) => {
            return Err(fail(
                "a partial JSON update; set binlog_row_value_options='' so the binlog carries whole JSON values".into(),
            ))
        }
    };
    let mismatch = || fail("unexpected value for this type".into());
    let result = match (kind, v) {
        (Kind::Int { bytes, unsigned }, Value::Int(i)) => int_bits(*bytes, *unsigned, i128::from(*i)),
        (Kind::Int { bytes, unsigned }, Value::UInt(u)) => int_bits(*bytes, *unsigned, i128::from(*u)),
        (Kind::Decimal { precision, scale }, Value::Bytes(b)) => std::str::from_utf8(b)
            .map_err(|e| e.to_string())
            .and_then(|s| decimal(*precision, *scale, s)),
        (Kind::Float, Value::Float(f)) => Ok(Datum::Float32(*f)),
        (Kind::Double, Value::Double(d)) => Ok(Datum::Float64(*d)),
        (Kind::Bit { bits }, Value::Bytes(b)) => bit(*bits, b),
        (Kind::Text { charset }, Value::Bytes(b)) => charset.decode(b).map(Datum::Text),
        (Kind::Bytes, Value::Bytes(b)) => Ok(Datum::Bytes(b.clone())),
        (Kind::Binary { len }, Value::Bytes(b)) => binary(*len, b),
        (Kind::Json, Value::Bytes(b)) => Charset::Utf8mb4.decode(b).map(Datum::Text),
        (Kind::Geometry, Value::Bytes(b)) => geometry(b),
        (Kind::Date { nullable }, Value::Date(y, m, d, 0, 0, 0, 0)) => Ok(date(i64::from(*y), *m, *d, *nullable)),
        (Kind::DateTime { nullable, .. }, Value::Date(y, mo, d, h, mi, s, us)) => {
            datetime(i64::from(*y), *mo, *d, *h, *mi, *s, *us, *nullable)
        }
        (Kind::Timestamp { nullable, .. }, Value::Bytes(b)) => std::str::from_utf8(b)
            .map_err(|e| e.to_string())
            .and_then(|s| epoch_seconds(s, *nullable)),
        (Kind::Timestamp { nullable, .. }, Value::Int(secs)) => epoch_seconds(&secs.to_string(), *nullable),
        (Kind::Time { .. }, Value::Time(neg, days, h, m, s, us)) => u8::try_from(*days)
            .map_err(|_| "too many days".to_owned())
            .and_then(|days| {
                let hours = u32::from(days) * 24 + u32::from(*h);
                duration(*neg, hours, *m, *s, *us)
            }),
        (Kind::Year, Value::Bytes(b)) => match std::str::from_utf8(b).ok().and_then(|s| s.parse::<i64>().ok()) {
            // The binlog stores year - 1900 in a byte, and 0 is the year 0000.
            Some(1900) => Ok(Datum::Int(0)),
            Some(y) if (1901..=2155).contains(&y) => Ok(Datum::Int(y)),
            _ => Err("not a YEAR".into()),
        },
        (Kind::Year, Value::Int(y)) => Ok(Datum::Int(*y)),
        (Kind::Enum { members }, Value::Int(i)) => match usize::try_from(*i) {
            // Index 0 is the empty string MySQL stores for an invalid member.
            Ok(0) => Ok(Datum::Text(String::new())),
            Ok(i) if i <= members.len() => Ok(Datum::Text(members[i - 1].clone())),
            _ => Err(format!("member {i} of {}", members.len())),
        },
        (Kind::Set { members }, Value::Bytes(mask)) => set_members(members, mask),
        _ => return Err(mismatch()),
    };
    result.map_err(fail)
}

/// A binlog value for an error message.
fn describe(value: &BinlogValue<'_>) -> String {
    match value {
        BinlogValue::Value(Value::Bytes(b)) => format!("{:?}", excerpt(&String::from_utf8_lossy(b))),
        BinlogValue::Value(v) => format!("{v:?}"),
        BinlogValue::Jsonb(_) => "(binary JSON)".into(),
        BinlogValue::JsonDiff(_) => "(partial JSON)".into(),
    }
}

/// The text for an error message: its first 100 characters, `…` marking a cut.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// A binlog integer read by its stored bits. mysql_common decodes an integer
/// with the signedness it reads from the table map under MySQL's rules, and
/// does not sign-extend a negative `MEDIUMINT` (-1 arrives as 16777215); the
/// column's own signedness decides here.
fn int_bits(bytes: u8, unsigned: bool, v: i128) -> Result<Datum, String> {
    let bits = u32::from(bytes) * 8;
    let span = 1i128 << bits;
    if v < -(span / 2) || v >= span {
        return Err(format!("{v} does not fit in {}", int_name(bytes)));
    }
    let raw = v.rem_euclid(span);
    if unsigned {
        int_unsigned(bytes, u64::try_from(raw).map_err(|e| e.to_string())?)
    } else {
        let signed = if raw >= span / 2 { raw - span } else { raw };
        int_signed(bytes, i64::try_from(signed).map_err(|e| e.to_string())?)
    }
}

fn int_signed(bytes: u8, i: i64) -> Result<Datum, String> {
    let bits = u32::from(bytes) * 8;
    let (min, max) = if bits >= 64 {
        (i64::MIN, i64::MAX)
    } else {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    };
    if i < min || i > max {
        return Err(format!("{i} is out of range for {}", int_name(bytes)));
    }
    Ok(Datum::Int(i))
}

fn int_unsigned(bytes: u8, u: u64) -> Result<Datum, String> {
    let bits = u32::from(bytes) * 8;
    if bits < 64 && u >> bits != 0 {
        return Err(format!("{u} is out of range for {} unsigned", int_name(bytes)));
    }
    Ok(match i64::try_from(u) {
        Ok(i) if bits < 64 => Datum::Int(i),
        _ => Datum::Decimal(u.to_string().parse::<Decimal>().map_err(|e| e.to_string())?),
    })
}

/// A decimal at exactly the column's scale, within its precision.
fn decimal(precision: u32, scale: u32, s: &str) -> Result<Datum, String> {
    let d = s.parse::<Decimal>().map_err(|e| e.to_string())?;
    let exact = d
        .rescale(scale)
        .ok_or_else(|| format!("more than {scale} fractional digits"))?;
    if exact.precision() > precision {
        return Err(format!("more than {precision} digits"));
    }
    Ok(Datum::Decimal(exact))
}

/// A double as MySQL prints it (`1e100`, `-0.5`, `5e-324`); no NaN or infinity.
fn parse_double(s: &str) -> Result<f64, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    let d: f64 = if ok {
        s.parse().map_err(|_| "not a number")?
    } else {
        return Err("not a number".into());
    };
    if !d.is_finite() {
        return Err("not a finite number".into());
    }
    Ok(d)
}

/// A `BINARY(len)` value, padded with the zero bytes the binlog leaves out.
fn binary(len: u32, bytes: &[u8]) -> Result<Datum, String> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if bytes.len() > len {
        return Err(format!("{} bytes in binary({len})", bytes.len()));
    }
    let mut out = bytes.to_vec();
    out.resize(len, 0);
    Ok(Datum::Bytes(out))
}

fn bit(bits: u32, bytes: &[u8]) -> Result<Datum, String> {
    let expected = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    if bytes.len() != expected {
        return Err(format!("{} bytes where bit({bits}) has {expected}", bytes.len()));
    }
    Ok(if bits == 1 {
        Datum::Bool(bytes[0] != 0)
    } else {
        Datum::Bytes(bytes.to_vec())
    })
}

/// `YYYY-MM-DD` (zeros allowed, as MySQL prints zero dates).
fn parse_date(s: &str) -> Result<(i64, u8, u8), String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("not a date (YYYY-MM-DD)".into());
    }
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => Ok((i64::from(y), m as u8, d as u8)),
        _ => Err("not a date (YYYY-MM-DD)".into()),
    }
}

/// `[-]H+:MM:SS[.ffffff]`: sign, hours, minutes, seconds, microseconds.
fn parse_time(s: &str) -> Result<(bool, u32, u8, u8, u32), String> {
    let bad = || "not a time ([-]HH:MM:SS[.ffffff])".to_owned();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut parts = hms.split(':');
    let mut field = |max_len: usize| -> Result<u32, String> {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (h, m, sec) = (field(4)?, field(2)?, field(2)?);
    if parts.next().is_some() || m > 59 || sec > 59 {
        return Err(bad());
    }
    if frac.len() > 6 || (body.contains('.') && frac.is_empty()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let us = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse::<u32>().map_err(|_| bad())?
    };
    Ok((neg, h, m as u8, sec as u8, us))
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm);
/// `None` for a month or day that does not exist (zero dates included).
fn days_from_civil(y: i64, m: u8, d: u8) -> Option<i64> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_len = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_len {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// A zero (or invalid) date: `NULL` in a nullable column, else the epoch; counted.
fn zero_date(nullable: bool, epoch: Datum) -> Datum {
    metrics::counter!("ferry_capture_zero_dates_total").increment(1);
    if nullable {
        Datum::Null
    } else {
        epoch
    }
}

fn date(y: i64, m: u8, d: u8, nullable: bool) -> Datum {
    match days_from_civil(y, m, d).and_then(|days| i32::try_from(days).ok()) {
        Some(days) => Datum::Date(days),
        None => zero_date(nullable, Datum::Date(0)),
    }
}

#[allow(clippy::too_many_arguments)]
fn datetime(y: i64, mo: u8, d: u8, h: impl Into<u32>, mi: u8, s: u8, us: u32, nullable: bool) -> Result<Datum, String> {
    let h: u32 = h.into();
    if h > 23 || mi > 59 || s > 59 || us > 999_999 {
        return Err("not a time of day".into());
    }
    Ok(match days_from_civil(y, mo, d) {
        Some(days) => Datum::Timestamp(
            days * MICROS_PER_DAY
                + ((i64::from(h) * 60 + i64::from(mi)) * 60 + i64::from(s)) * MICROS_PER_SECOND
                + i64::from(us),
        ),
        None => zero_date(nullable, Datum::Timestamp(0)),
    })
}

/// A TIMESTAMP from the binlog: `secs[.ffffff]` since the epoch, 0 being the zero timestamp.
fn epoch_seconds(s: &str, nullable: bool) -> Result<Datum, String> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| "not seconds since the epoch")?;
    let us: i64 = if frac.is_empty() {
        0
    } else if frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<6}").parse().map_err(|_| "bad fraction")?
    } else {
        return Err("bad fraction".into());
    };
    if secs == 0 && us == 0 {
        return Ok(zero_date(nullable, Datum::Timestamp(0)));
    }
    Ok(Datum::Timestamp(secs * MICROS_PER_SECOND + us))
}

fn duration(neg: bool, h: u32, m: u8, s: u8, us: u32) -> Result<Datum, String> {
    if m > 59 || s > 59 || us > 999_999 {
        return Err("not a time".into());
    }
    let micros = ((i64::from(h) * 60 + i64::from(m)) * 60 + i64::from(s)) * MICROS_PER_SECOND + i64::from(us);
    Ok(Datum::Time(if neg { -micros } else { micros }))
}

/// A SET's members from its little-endian bitmask, joined by `,` in definition order.
fn set_members(members: &[String], mask: &[u8]) -> Result<Datum, String> {
    let mut out: Vec<&str> = Vec::new();
    for (byte_at, byte) in mask.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                let i = byte_at * 8 + bit;
                out.push(
                    members
                        .get(i)
                        .ok_or_else(|| format!("bit {i} set, but the set has {} members", members.len()))?,
                );
            }
        }
    }
    Ok(Datum::Text(out.join(",")))
}

/// MySQL's geometry (4-byte little-endian SRID, then WKB) as WKB, or EWKB
/// carrying the SRID when it is not 0.
fn geometry(stored: &[u8]) -> Result<Datum, String> {
    if stored.len() < 9 {
        return Err("too short for a geometry (SRID and WKB header)".into());
    }
    let srid = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let wkb = &stored[4..];
    if srid == 0 {
        return Ok(Datum::Bytes(wkb.to_vec()));
    }
    let little = match wkb[0] {
        0 => false,
        1 => true,
        other => return Err(format!("WKB byte order {other}")),
    };
    let ty = [wkb[1], wkb[2], wkb[3], wkb[4]];
    let ty = if little {
        u32::from_le_bytes(ty)
    } else {
        u32::from_be_bytes(ty)
    };
    const EWKB_SRID: u32 = 0x2000_0000;
    let (ty, srid) = if little {
        ((ty | EWKB_SRID).to_le_bytes(), srid.to_le_bytes())
    } else {
        ((ty | EWKB_SRID).to_be_bytes(), srid.to_be_bytes())
    };
    let mut out = Vec::with_capacity(wkb.len() + 4);
    out.push(wkb[0]);
    out.extend_from_slice(&ty);
    out.extend_from_slice(&srid);
    out.extend_from_slice(&wkb[5..]);
    Ok(Datum::Bytes(out))
}

/// MySQL's binary JSON as MySQL prints it: `{"a": 1, "b": [true, null]}`.
fn json_text(v: &jsonb::Value<'_>, out: &mut String) -> Result<(), String> {
    use fmt::Write as _;
    let io = |e: std::io::Error| format!("malformed binary JSON: {e}");
    match v {
        jsonb::Value::Null => out.push_str("null"),
        jsonb::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        jsonb::Value::I16(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::U16(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::I32(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::U32(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::I64(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::U64(x) => write!(out, "{x}").map_err(|e| e.to_string())?,
        jsonb::Value::F64(x) => out.push_str(&json_double(*x)),
        jsonb::Value::String(s) => json_quote(&Charset::Utf8mb4.decode(s.str_raw())?, out),
        jsonb::Value::SmallArray(a) => json_array(a.iter().map(|x| x.map_err(io)), out)?,
        jsonb::Value::LargeArray(a) => json_array(a.iter().map(|x| x.map_err(io)), out)?,
        jsonb::Value::SmallObject(o) => json_object(o.iter().map(|x| x.map_err(io)), out)?,
        jsonb::Value::LargeObject(o) => json_object(o.iter().map(|x| x.map_err(io)), out)?,
        jsonb::Value::Opaque(_) => {
            use mysql_async::binlog::jsonb::{JsonDom, JsonNumber, JsonScalar};
            match v.clone().parse().map_err(io)? {
                JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) => out.push_str(&d.to_string()),
                dom => match serde_json::Value::from(dom) {
                    serde_json::Value::String(s) => json_quote(&s, out),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
    }
    Ok(())
}

fn json_array<'a>(
    items: impl Iterator<Item = Result<jsonb::Value<'a>, String>>,
    out: &mut String,
) -> Result<(), String> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_text(&item?, out)?;
    }
    out.push(']');
    Ok(())
}

fn json_object<'a>(
    entries: impl Iterator<Item = Result<(jsonb::ObjectKey<'a>, jsonb::Value<'a>), String>>,
    out: &mut String,
) -> Result<(), String> {
    out.push('{');
    for (i, entry) in entries.enumerate() {
        let (key, value) = entry?;
        if i > 0 {
            out.push_str(", ");
        }
        json_quote(&Charset::Utf8mb4.decode(key.value_raw())?, out);
        out.push_str(": ");
        json_text(&value, out)?;
    }
    out.push('}');
    Ok(())
}

/// A JSON string as MySQL quotes it.
fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON double as MySQL prints it: the shortest digits that read back,
/// in exponent form outside 1e-5..1e15, and `.0` added to whole numbers.
fn json_double(x: f64) -> String {
    let sci = format!("{x:e}");
    let exp: i32 = sci.split_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    let mut s = if (-5..15).contains(&exp) { format!("{x}") } else { sci };
    if !s.contains(['.', 'e', 'n', 'i']) {
        s.push_str(".0");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Datum {
        Datum::Decimal(s.parse().unwrap())
    }

    fn col(column_type: &str, data_type: &str, charset: Option<&str>) -> Kind {
        from_information_schema("c", column_type, data_type, charset, true, None)
            .unwrap_or_else(|e| panic!("{column_type}: {e}"))
            .kind
    }

    fn bin(v: Value) -> BinlogValue<'static> {
        BinlogValue::Value(v)
    }

    #[test]
    fn integers_map_by_width_and_sign() {
        let cases = [
            ("tinyint(4)", "tinyint", DataType::Int16),
            ("tinyint(1)", "tinyint", DataType::Int16),
            ("tinyint(3) unsigned", "tinyint", DataType::Int16),
            ("smallint(6)", "smallint", DataType::Int16),
            ("smallint(5) unsigned", "smallint", DataType::Int32),
            ("mediumint(9)", "mediumint", DataType::Int32),
            ("mediumint(8) unsigned", "mediumint", DataType::Int32),
            ("int(11)", "int", DataType::Int32),
            ("int(10) unsigned zerofill", "int", DataType::Int64),
            ("bigint(20)", "bigint", DataType::Int64),
            (
                "bigint(20) unsigned",
                "bigint",
                DataType::Decimal {
                    precision: 20,
                    scale: 0,
                    special: false,
                },
            ),
        ];
        for (ct, dt, expected) in cases {
            assert_eq!(col(ct, dt, None).data_type(), expected, "{ct}");
        }
        let bu = col("bigint unsigned", "bigint", None);
        assert_eq!(
            from_text(&bu, b"18446744073709551615").unwrap(),
            dec("18446744073709551615")
        );
        assert_eq!(
            from_binlog(&bu, &bin(Value::UInt(u64::MAX))).unwrap(),
            dec("18446744073709551615")
        );
        assert_eq!(from_text(&bu, b"5").unwrap(), dec("5"));
        let tu = col("tinyint unsigned", "tinyint", None);
        assert_eq!(from_text(&tu, b"255").unwrap(), Datum::Int(255));
        assert_eq!(from_binlog(&tu, &bin(Value::Int(255))).unwrap(), Datum::Int(255));
        assert!(from_text(&tu, b"256").is_err());
        assert!(from_text(&tu, b"-1").is_err());
        let ti = col("tinyint(4)", "tinyint", None);
        assert_eq!(from_text(&ti, b"-128").unwrap(), Datum::Int(-128));
        // A value read as unsigned by mistake is read back by its bits.
        assert_eq!(from_binlog(&ti, &bin(Value::Int(128))).unwrap(), Datum::Int(-128));
        assert!(from_binlog(&ti, &bin(Value::Int(256))).is_err());
        // mysql_common's MEDIUMINT without sign extension, and misread signedness.
        let mi = col("mediumint", "mediumint", None);
        assert_eq!(from_binlog(&mi, &bin(Value::Int(16_777_215))).unwrap(), Datum::Int(-1));
        assert_eq!(
            from_binlog(&mi, &bin(Value::Int(8_388_608))).unwrap(),
            Datum::Int(-8_388_608)
        );
        assert!(from_binlog(&mi, &bin(Value::Int(16_777_216))).is_err());
        assert_eq!(from_binlog(&tu, &bin(Value::Int(-1))).unwrap(), Datum::Int(255));
        let bi = col("bigint", "bigint", None);
        assert_eq!(from_binlog(&bi, &bin(Value::UInt(u64::MAX))).unwrap(), Datum::Int(-1));
        assert_eq!(
            from_binlog(&bu, &bin(Value::Int(-1))).unwrap(),
            dec("18446744073709551615")
        );
        let iu = col("int unsigned", "int", None);
        assert_eq!(
            from_binlog(&iu, &bin(Value::UInt(4_294_967_295))).unwrap(),
            Datum::Int(4_294_967_295)
        );
        let mi = col("mediumint", "mediumint", None);
        assert_eq!(from_text(&mi, b"-8388608").unwrap(), Datum::Int(-8_388_608));
        assert!(from_text(&mi, b"8388608").is_err());
        let bi = col("bigint", "bigint", None);
        assert_eq!(from_text(&bi, b"-9223372036854775808").unwrap(), Datum::Int(i64::MIN));
        assert!(from_text(&bi, b" 1").is_err());
        assert!(from_text(&bi, b"1.0").is_err());
    }

    #[test]
    fn decimals_are_exact() {
        let d = col("decimal(65,30)", "decimal", None);
        assert_eq!(
            d.data_type(),
            DataType::Decimal {
                precision: 65,
                scale: 30,
                special: false
            }
        );
        let max = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        assert_eq!(from_text(&d, max.as_bytes()).unwrap(), dec(&max));
        assert_eq!(
            from_binlog(&d, &bin(Value::Bytes(format!("-{max}").into_bytes()))).unwrap(),
            dec(&format!("-{max}"))
        );
        let money = col("decimal(10,2) unsigned", "decimal", None);
        assert_eq!(from_text(&money, b"1.5").unwrap(), dec("1.50"));
        assert!(from_text(&money, b"1.555").is_err());
        assert!(from_text(&money, b"123456789.00").is_err());
        assert_eq!(
            col("decimal", "decimal", None),
            Kind::Decimal {
                precision: 10,
                scale: 0
            }
        );
    }

    #[test]
    fn floats_need_their_exact_text() {
        let f = col("float", "float", None);
        assert_eq!(from_text(&f, b"0.10000000149011612").unwrap(), Datum::Float32(0.1));
        assert_eq!(
            from_text(&f, b"3.4028234663852886e38").unwrap(),
            Datum::Float32(f32::MAX)
        );
        // What the server prints for a FLOAT without the cast is rounded: refused.
        assert!(from_text(&f, b"0.1").is_err());
        assert_eq!(from_binlog(&f, &bin(Value::Float(0.1))).unwrap(), Datum::Float32(0.1));
        let d = col("double", "double", None);
        assert_eq!(from_text(&d, b"5e-324").unwrap(), Datum::Float64(5e-324));
        assert_eq!(
            from_text(&d, b"-1.7976931348623157e308").unwrap(),
            Datum::Float64(f64::MIN)
        );
        assert!(from_text(&d, b"inf").is_err());
        assert!(from_text(&d, b"NaN").is_err());
        let c = from_information_schema("f", "float", "float", None, true, None).unwrap();
        assert_eq!(select_expr(&c), "CAST(`f` AS DOUBLE)");
        let c = from_information_schema("a`b", "int", "int", None, true, None).unwrap();
        assert_eq!(select_expr(&c), "`a``b`");
    }

    #[test]
    fn bits() {
        let b1 = col("bit(1)", "bit", None);
        assert_eq!(b1.data_type(), DataType::Boolean);
        assert_eq!(from_text(&b1, &[1]).unwrap(), Datum::Bool(true));
        assert_eq!(
            from_binlog(&b1, &bin(Value::Bytes(vec![0]))).unwrap(),
            Datum::Bool(false)
        );
        let b64 = col("bit(64)", "bit", None);
        assert_eq!(from_text(&b64, &[0xff; 8]).unwrap(), Datum::Bytes(vec![0xff; 8]));
        assert!(from_text(&b64, &[1]).is_err());
        let b5 = col("bit(5)", "bit", None);
        assert_eq!(
            from_binlog(&b5, &bin(Value::Bytes(vec![0x15]))).unwrap(),
            Datum::Bytes(vec![0x15])
        );
    }

    #[test]
    fn text_in_every_charset() {
        let utf8 = col("varchar(20)", "varchar", Some("utf8mb4"));
        assert_eq!(from_text(&utf8, "🚀 é".as_bytes()).unwrap(), Datum::Text("🚀 é".into()));
        assert_eq!(from_text(&utf8, b"").unwrap(), Datum::Text(String::new()));
        assert!(from_text(&utf8, &[0xff]).is_err());
        let latin1 = col("varchar(10)", "varchar", Some("latin1"));
        let all: Vec<u8> = (0..=255).collect();
        let Datum::Text(s) = from_binlog(&latin1, &bin(Value::Bytes(all))).unwrap() else {
            panic!()
        };
        assert_eq!(s.chars().count(), 256);
        assert_eq!(s.chars().nth(0x80), Some('€'));
        assert_eq!(s.chars().nth(0x81), Some('\u{81}'));
        assert_eq!(s.chars().nth(0x9f), Some('Ÿ'));
        assert_eq!(s.chars().nth(0xe9), Some('é'));
        let ascii = col("char(3)", "char", Some("ascii"));
        assert!(from_binlog(&ascii, &bin(Value::Bytes(vec![0x80]))).is_err());
        assert_eq!(
            col("text", "text", Some("utf8")),
            Kind::Text {
                charset: Charset::Utf8mb3
            }
        );
        assert_eq!(col("varbinary(3)", "varbinary", None), Kind::Bytes);
        assert_eq!(col("char(3)", "char", Some("binary")), Kind::Binary { len: 3 });
        let b4 = col("binary(4)", "binary", None);
        assert_eq!(b4, Kind::Binary { len: 4 });
        assert_eq!(
            from_binlog(&b4, &bin(Value::Bytes(vec![0, 0xff]))).unwrap(),
            Datum::Bytes(vec![0, 0xff, 0, 0])
        );
        assert_eq!(
            from_text(&b4, &[0, 0xff, 0, 0]).unwrap(),
            Datum::Bytes(vec![0, 0xff, 0, 0])
        );
        assert!(from_text(&b4, &[0; 5]).is_err());
        assert!(
            from_information_schema("c", "varchar(3)", "varchar", Some("sjis"), true, None)
                .unwrap_err()
                .0
                .contains("sjis")
        );
        let blob = col("blob", "blob", None);
        assert_eq!(from_text(&blob, &[0, 0xff]).unwrap(), Datum::Bytes(vec![0, 0xff]));
        // MariaDB JSON is longtext; MySQL JSON is json.
        assert_eq!(col("longtext", "longtext", Some("utf8mb4")).data_type(), DataType::Text);
        assert_eq!(col("json", "json", None), Kind::Json);
    }

    #[test]
    fn dates_and_times() {
        let d = col("date", "date", None);
        assert_eq!(from_text(&d, b"1970-01-01").unwrap(), Datum::Date(0));
        assert_eq!(from_text(&d, b"2024-02-29").unwrap(), Datum::Date(19782));
        assert_eq!(from_text(&d, b"1000-01-01").unwrap(), Datum::Date(-354_285));
        assert_eq!(from_text(&d, b"0001-01-01").unwrap(), Datum::Date(-719_162));
        assert_eq!(
            from_binlog(&d, &bin(Value::Date(2024, 2, 29, 0, 0, 0, 0))).unwrap(),
            Datum::Date(19782)
        );
        assert!(from_text(&d, b"2024-2-29").is_err());
        let dt = col("datetime(6)", "datetime", None);
        assert_eq!(dt, Kind::DateTime { fsp: 6, nullable: true });
        let t = 1_709_251_199_500_000;
        assert_eq!(
            from_text(&dt, b"2024-02-29 23:59:59.500000").unwrap(),
            Datum::Timestamp(t)
        );
        assert_eq!(
            from_binlog(&dt, &bin(Value::Date(2024, 2, 29, 23, 59, 59, 500_000))).unwrap(),
            Datum::Timestamp(t)
        );
        assert_eq!(
            from_text(&dt, b"1969-12-31 23:59:59.999999").unwrap(),
            Datum::Timestamp(-1)
        );
        assert!(from_text(&dt, b"2024-02-29 24:00:00").is_err());
        let ts = col("timestamp(3)", "timestamp", None);
        assert_eq!(
            from_text(&ts, b"2038-01-19 03:14:07.123").unwrap(),
            Datum::Timestamp(2_147_483_647_123_000)
        );
        assert_eq!(
            from_binlog(&ts, &bin(Value::Bytes(b"2147483647.123000".to_vec()))).unwrap(),
            Datum::Timestamp(2_147_483_647_123_000)
        );
        assert_eq!(
            from_binlog(&ts, &bin(Value::Bytes(b"1".to_vec()))).unwrap(),
            Datum::Timestamp(1_000_000)
        );
        let tm = col("time(6)", "time", None);
        let longest = (838 * 3600 + 59 * 60 + 59) * 1_000_000;
        assert_eq!(from_text(&tm, b"-838:59:59.000000").unwrap(), Datum::Time(-longest));
        assert_eq!(from_text(&tm, b"838:59:59").unwrap(), Datum::Time(longest));
        assert_eq!(from_text(&tm, b"-00:00:00.5").unwrap(), Datum::Time(-500_000));
        assert_eq!(
            from_binlog(&tm, &bin(Value::Time(true, 34, 22, 59, 59, 0))).unwrap(),
            Datum::Time(-longest)
        );
        assert_eq!(
            from_binlog(&tm, &bin(Value::Time(true, 0, 0, 0, 0, 500_000))).unwrap(),
            Datum::Time(-500_000)
        );
        assert!(from_text(&tm, b"12:60:00").is_err());
        let y = col("year(4)", "year", None);
        assert_eq!(from_text(&y, b"0000").unwrap(), Datum::Int(0));
        assert_eq!(
            from_binlog(&y, &bin(Value::Bytes(b"1900".to_vec()))).unwrap(),
            Datum::Int(0)
        );
        assert_eq!(
            from_binlog(&y, &bin(Value::Bytes(b"2155".to_vec()))).unwrap(),
            Datum::Int(2155)
        );
        assert!(from_text(&y, b"1900").is_err());
    }

    #[test]
    fn zero_dates_are_null_or_the_epoch() {
        let nullable = Kind::Date { nullable: true };
        let not_null = Kind::Date { nullable: false };
        for z in [&b"0000-00-00"[..], b"2020-00-15", b"2020-02-30", b"2020-01-00"] {
            assert_eq!(from_text(&nullable, z).unwrap(), Datum::Null);
            assert_eq!(from_text(&not_null, z).unwrap(), Datum::Date(0));
        }
        assert_eq!(
            from_binlog(&not_null, &bin(Value::Date(0, 0, 0, 0, 0, 0, 0))).unwrap(),
            Datum::Date(0)
        );
        let dt = Kind::DateTime {
            fsp: 0,
            nullable: false,
        };
        assert_eq!(from_text(&dt, b"0000-00-00 00:00:00").unwrap(), Datum::Timestamp(0));
        let ts = Kind::Timestamp { fsp: 0, nullable: true };
        assert_eq!(from_text(&ts, b"0000-00-00 00:00:00").unwrap(), Datum::Null);
        assert_eq!(
            from_binlog(&ts, &bin(Value::Bytes(b"0".to_vec()))).unwrap(),
            Datum::Null
        );
        // A real value is never the zero date: year 0 exists.
        assert_eq!(from_text(&nullable, b"0000-01-01").unwrap(), Datum::Date(-719_528));
    }

    #[test]
    fn enums_and_sets() {
        let e = col("enum('a','b''c','x\\\\y','é')", "enum", Some("latin1"));
        let members = vec!["a".to_owned(), "b'c".into(), "x\\y".into(), "é".into()];
        assert_eq!(
            e,
            Kind::Enum {
                members: members.clone()
            }
        );
        assert_eq!(e.to_string(), "enum('a','b''c','x\\\\y','é')");
        assert_eq!(from_binlog(&e, &bin(Value::Int(2))).unwrap(), Datum::Text("b'c".into()));
        assert_eq!(
            from_binlog(&e, &bin(Value::Int(0))).unwrap(),
            Datum::Text(String::new())
        );
        assert!(from_binlog(&e, &bin(Value::Int(5))).is_err());
        assert_eq!(from_text(&e, "é".as_bytes()).unwrap(), Datum::Text("é".into()));
        let s = col("set('r','g','b')", "set", Some("utf8mb4"));
        assert_eq!(
            from_binlog(&s, &bin(Value::Bytes(vec![0b101]))).unwrap(),
            Datum::Text("r,b".into())
        );
        assert_eq!(
            from_binlog(&s, &bin(Value::Bytes(vec![0]))).unwrap(),
            Datum::Text(String::new())
        );
        assert!(from_binlog(&s, &bin(Value::Bytes(vec![0b1000]))).is_err());
        assert_eq!(parse_members("enum('')").unwrap(), vec![String::new()]);
        assert_eq!(
            parse_members("set('a,b','\\n')").unwrap(),
            vec!["a,b".to_owned(), "\n".into()]
        );
        assert!(parse_members("enum('a'").is_err());
    }

    #[test]
    fn geometry_is_wkb_or_ewkb() {
        let g = col("point", "point", None);
        let wkb_point = [1u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40];
        let mut stored = vec![0, 0, 0, 0];
        stored.extend_from_slice(&wkb_point);
        assert_eq!(from_text(&g, &stored).unwrap(), Datum::Bytes(wkb_point.to_vec()));
        let mut with_srid = vec![0xe6, 0x10, 0, 0];
        with_srid.extend_from_slice(&wkb_point);
        let mut ewkb = vec![1u8, 1, 0, 0, 0x20, 0xe6, 0x10, 0, 0];
        ewkb.extend_from_slice(&wkb_point[5..]);
        assert_eq!(
            from_binlog(&g, &bin(Value::Bytes(with_srid))).unwrap(),
            Datum::Bytes(ewkb)
        );
        // Big-endian WKB keeps its order.
        let be = [0xe6, 0x10, 0, 0, 0, 0, 0, 0, 1, 9, 9];
        assert_eq!(
            from_text(&g, &be).unwrap(),
            Datum::Bytes(vec![0, 0x20, 0, 0, 1, 0, 0, 0x10, 0xe6, 9, 9])
        );
        assert!(from_text(&g, &[0, 0, 0]).is_err());
    }

    #[test]
    fn unsupported_types_name_the_column() {
        for (ct, dt) in [
            ("uuid", "uuid"),
            ("inet6", "inet6"),
            ("vector(3)", "vector"),
            ("mystery", "mystery"),
        ] {
            let err = from_information_schema("col_x", ct, dt, None, true, None).unwrap_err();
            assert!(err.0.contains("col_x") && err.0.contains(ct), "{err}");
        }
    }

    #[test]
    fn columns_carry_source_type_and_default() {
        let c = from_information_schema("n", "int(11)", "int", None, false, Some("42".into())).unwrap();
        let col = column(&c);
        assert_eq!(col.data_type, DataType::Int32);
        assert_eq!(col.source_type, "int(11)");
        assert!(!col.nullable);
        assert_eq!(col.default.as_deref(), Some("42"));
    }

    #[test]
    fn json_doubles_print_like_mysql() {
        assert_eq!(json_double(1.0), "1.0");
        assert_eq!(json_double(1.5), "1.5");
        assert_eq!(json_double(-0.25), "-0.25");
        assert_eq!(json_double(1e300), "1e300");
        let mut s = String::new();
        json_quote("a\"\\\n\u{1}é", &mut s);
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
