//! PostgreSQL's COPY binary format, for the snapshot of tables whose every
//! column has a type read here ([`Binary`]).
//!
//! Text is what pgoutput sends, so the stream parses text, and so can the
//! snapshot (`copy.rs`). But parsing text was most of a snapshot worker's
//! CPU: digits, dates and escapes, where the binary format gives integers,
//! microseconds and raw bytes. A table with any other column (arrays,
//! intervals, json, enums, domains, ...) is read as text: its values are then
//! parsed by the same code as the stream's.
//!
//! Each value read here equals what its text gives; a test reads one table of
//! edge values both ways on the server and compares.
//!
//! ```text
//!  stream: "PGCOPY\n\xff\r\n\0", flags i32, extension length i32, extension
//!          per row: field count i16, per field: length i32 (-1: NULL), bytes
//!          trailer: field count -1
//! ```

use ferry_core::meta::DataType;
use ferry_core::value::{Datum, Decimal, Special};

use crate::postgres::types::PgType;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (Ferry's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i64 = 10_957;
const EPOCH_MICROS: i64 = EPOCH_DAYS * 86_400 * 1_000_000;

/// A column type the binary format is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, char(n): the characters as the text format has them.
    Text,
    Bytea,
    Date,
    /// timestamp and timestamptz: microseconds since 2000-01-01.
    Timestamp,
    Uuid,
}

/// How `ty` is read in the binary format, if it is.
pub fn binary_form(ty: &PgType) -> Option<Binary> {
    let name = ty.source_type.as_str();
    // Only the built-in types themselves: a domain or an array has its own name.
    Some(match (ty.data_type, name) {
        (DataType::Boolean, "boolean") => Binary::Bool,
        (DataType::Int16, "smallint") => Binary::Int2,
        (DataType::Int32, "integer") => Binary::Int4,
        (DataType::Int64, "bigint") => Binary::Int8,
        (DataType::Float32, "real") => Binary::Float4,
        (DataType::Float64, "double precision") => Binary::Float8,
        (DataType::Decimal { .. } | DataType::Numeric, n) if n.starts_with("numeric") && !n.ends_with(']') => {
            Binary::Numeric
        }
        (DataType::Text, "text") => Binary::Text,
        (DataType::Text, n) if n.starts_with("character") && !n.ends_with(']') => Binary::Text,
        (DataType::Bytes, "bytea") => Binary::Bytea,
        (DataType::Date, "date") => Binary::Date,
        (DataType::Timestamp | DataType::TimestampTz, n) if n.starts_with("timestamp") && !n.ends_with(']') => {
            Binary::Timestamp
        }
        (DataType::Uuid, "uuid") => Binary::Uuid,
        _ => return None,
    })
}

/// COPY's binary data is not as the format says.
#[derive(Debug, thiserror::Error)]
#[error("COPY's binary data: {0}")]
pub struct Malformed(&'static str);

/// Splits COPY binary data into rows across chunk boundaries.
#[derive(Debug, Default)]
pub struct Tuples {
    buf: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl Tuples {
    /// Adds `data` and calls `row` with the fields of every row it completes.
    pub fn feed<E: From<Malformed>>(
        &mut self,
        data: &[u8],
        mut row: impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.buf.is_empty() {
            let used = self.split(data, &mut row)?;
            self.buf.extend_from_slice(&data[used..]);
        } else {
            self.buf.extend_from_slice(data);
            let buf = std::mem::take(&mut self.buf);
            let used = self.split(&buf, &mut row)?;
            self.buf = buf;
            self.buf.drain(..used);
        }
        Ok(())
    }

    /// Whether the data ended before its trailer.
    pub fn unfinished(&self) -> bool {
        !self.ended || !self.buf.is_empty()
    }

    /// Calls `row` for each complete row of `data`; returns the bytes used.
    fn split<E: From<Malformed>>(
        &mut self,
        data: &[u8],
        row: &mut impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut at = 0;
        if !self.header_read {
            let Some(extension) = data.get(SIGNATURE.len() + 4..SIGNATURE.len() + 8) else {
                return Ok(0);
            };
            if !data.starts_with(SIGNATURE) {
                return Err(Malformed("no signature").into());
            }
            let extension =
                usize::try_from(be_i32(extension)).map_err(|_| Malformed("a negative header extension length"))?;
            let header = SIGNATURE.len() + 8 + extension;
            if data.len() < header {
                return Ok(0);
            }
            self.header_read = true;
            at = header;
        }
        while let Some(count) = data.get(at..at + 2) {
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count < 0 {
                self.ended = true;
                return Ok(at + 2);
            }
            let Some(end) = row_end(data, at + 2, count) else {
                break;
            };
            row(Fields {
                data: &data[at + 2..end],
            })?;
            at = end;
        }
        Ok(at)
    }
}

/// The end of the row whose `count` fields start at `from`, if `data` holds it.
fn row_end(data: &[u8], from: usize, count: i16) -> Option<usize> {
    let mut at = from;
    for _ in 0..count {
        let len = be_i32(data.get(at..at + 4)?);
        at += 4 + usize::try_from(len).unwrap_or(0);
    }
    (at <= data.len()).then_some(at)
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// One row's fields: `None` for NULL.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let len = be_i32(self.data.get(..4)?);
        let (value, rest) = match usize::try_from(len) {
            Ok(len) => (Some(&self.data[4..4 + len]), &self.data[4 + len..]),
            Err(_) => (None, &self.data[4..]),
        };
        self.data = rest;
        Some(value)
    }
}

/// The value of `bytes`, a non-NULL field of type `b`; the error is the reason.
pub fn decode(b: Binary, bytes: &[u8]) -> Result<Datum, String> {
    let fixed = |n: usize| {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(format!("expected {n} bytes in the binary format, got {}", bytes.len()))
        }
    };
    Ok(match b {
        Binary::Bool => Datum::Bool(fixed(1)?[0] != 0),
        Binary::Int2 => Datum::Int(i16::from_be_bytes(array(fixed(2)?)).into()),
        Binary::Int4 => Datum::Int(i32::from_be_bytes(array(fixed(4)?)).into()),
        Binary::Int8 => Datum::Int(i64::from_be_bytes(array(fixed(8)?))),
        Binary::Float4 => Datum::Float32(f32::from_be_bytes(array(fixed(4)?))),
        Binary::Float8 => Datum::Float64(f64::from_be_bytes(array(fixed(8)?))),
        Binary::Numeric => numeric(bytes)?,
        Binary::Text => Datum::Text(
            std::str::from_utf8(bytes)
                .map_err(|e| format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()))?
                .to_owned(),
        ),
        Binary::Bytea => Datum::Bytes(bytes.to_vec()),
        Binary::Date => Datum::Date(match i32::from_be_bytes(array(fixed(4)?)) {
            d @ (i32::MAX | i32::MIN) => d,
            d => i32::try_from(i64::from(d) + EPOCH_DAYS).map_err(|_| "date out of range")?,
        }),
        Binary::Timestamp => Datum::Timestamp(match i64::from_be_bytes(array(fixed(8)?)) {
            t @ (i64::MAX | i64::MIN) => t,
            t => t.checked_add(EPOCH_MICROS).ok_or("timestamp out of range")?,
        }),
        Binary::Uuid => Datum::Uuid(uuid::Uuid::from_bytes(array(fixed(16)?))),
    })
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(b);
    a
}

/// A numeric: digit count i16, weight i16 (of the first base-10000 digit),
/// sign u16, display scale u16, then the base-10000 digits (i16 each).
fn numeric(bytes: &[u8]) -> Result<Datum, String> {
    let word = |i: usize| {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a numeric cut short".to_owned())
    };
    let (count, weight, sign, scale) = (word(0)?, word(1)? as i16, word(2)?, word(3)?);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(Datum::Special(Special::NaN)),
        0xD000 => return Ok(Datum::Special(Special::Infinity)),
        0xF000 => return Ok(Datum::Special(Special::NegInfinity)),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    };
    let digits = (0..usize::from(count))
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, _>>()?;
    if let Some(d) = small_numeric(&digits, weight, scale) {
        return Ok(Datum::Decimal(Decimal::from_unscaled(
            if negative { -d } else { d },
            u32::from(scale),
        )));
    }
    numeric_text(negative, &digits, weight, scale)
        .parse::<Decimal>()
        .map(Datum::Decimal)
        .map_err(|e| e.to_string())
}

/// The unscaled value (at `scale`) of base-10000 `digits` whose first has
/// `weight`, if it fits an `i128`.
fn small_numeric(digits: &[u16], weight: i16, scale: u16) -> Option<i128> {
    let whole = digits
        .iter()
        .try_fold(0i128, |v, &d| v.checked_mul(10_000)?.checked_add(i128::from(d)))?;
    // `whole` counts in units of 10000^-(groups after the point).
    let after = i32::try_from(digits.len()).ok()? - 1 - i32::from(weight);
    let shift = i32::from(scale) - 4 * after;
    if whole == 0 {
        return Some(0);
    }
    if shift >= 0 {
        whole.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)
    } else {
        let divisor = 10i128.checked_pow(shift.unsigned_abs())?;
        (whole % divisor == 0).then_some(whole / divisor)
    }
}

/// The numeric's text, as PostgreSQL prints it (for values beyond `i128`).
fn numeric_text(negative: bool, digits: &[u16], weight: i16, scale: u16) -> String {
    let group = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut s = String::from(if negative { "-" } else { "" });
    if weight < 0 {
        s.push('0');
    } else {
        s.push_str(&group(0).to_string());
        for i in 1..=i32::from(weight) {
            s.push_str(&format!("{:04}", group(i)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(scale) {
            fraction.push_str(&format!("{:04}", group(i)));
            i += 1;
        }
        fraction.truncate(usize::from(scale));
        s.push('.');
        s.push_str(&fraction);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, scale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn dec(s: &str) -> Datum {
        Datum::Decimal(s.parse().unwrap())
    }

    #[test]
    fn numerics_keep_their_scale_and_sign() {
        let cases: [(i16, u16, u16, &[u16], &str); 8] = [
            (0, 0, 2, &[1, 5000], "1.50"),
            (0, 0x4000, 1, &[12, 3000], "-12.3"),
            (1, 0, 0, &[1], "10000"),
            (-1, 0, 4, &[1], "0.0001"),
            (-2, 0, 6, &[1200], "0.000012"),
            (0, 0, 3, &[], "0.000"),
            (1, 0x4000, 2, &[1234, 5678, 9000], "-12345678.90"),
            (9, 0, 0, &[9999; 10], "9999999999999999999999999999999999999999"),
        ];
        for (weight, sign, scale, digits, text) in cases {
            assert_eq!(
                numeric(&numeric_bytes(weight, sign, scale, digits)),
                Ok(dec(text)),
                "{text}"
            );
            assert_eq!(numeric_text(sign == 0x4000, digits, weight, scale), text);
        }
        assert_eq!(
            numeric(&numeric_bytes(0, 0xC000, 0, &[])),
            Ok(Datum::Special(Special::NaN))
        );
        assert_eq!(
            numeric(&numeric_bytes(0, 0xF000, 0, &[])),
            Ok(Datum::Special(Special::NegInfinity))
        );
    }

    #[test]
    fn rows_split_anywhere_come_out_whole() {
        let mut stream = SIGNATURE.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0xaa, 0xbb]);
        for (a, b) in [(Some(&b"x"[..]), None), (Some(&b""[..]), Some(&b"yz"[..]))] {
            stream.extend_from_slice(&2i16.to_be_bytes());
            for field in [a, b] {
                match field {
                    Some(f) => {
                        stream.extend_from_slice(&(f.len() as i32).to_be_bytes());
                        stream.extend_from_slice(f);
                    }
                    None => stream.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        for cut in 0..stream.len() {
            let mut tuples = Tuples::default();
            let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                tuples
                    .feed::<Malformed>(part, |f| {
                        rows.push(f.map(|v| v.map(<[u8]>::to_vec)).collect());
                        Ok(())
                    })
                    .unwrap();
            }
            assert!(!tuples.unfinished(), "cut at {cut}");
            assert_eq!(
                rows,
                vec![
                    vec![Some(b"x".to_vec()), None],
                    vec![Some(vec![]), Some(b"yz".to_vec())]
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn only_the_built_in_types_themselves_are_read_in_binary() {
        for (data_type, name) in [
            (DataType::Text, "integer[]"),
            (DataType::Text, "interval"),
            (DataType::Text, "jsonb"),
            (DataType::Text, "\"char\""),
            (DataType::Text, "character varying[]"),
            (DataType::Int64, "oid"),
            (DataType::Int64, "xid"),
            (DataType::Text, "money"),
        ] {
            let ty = PgType {
                data_type,
                source_type: name.into(),
            };
            assert_eq!(binary_form(&ty), None, "{name}");
        }
    }

    /// Against the real local PostgreSQL: one table of edge values read
    /// with COPY in both formats gives the same values.
    mod server {
        use ferry_core::meta::TableId;
        use futures::StreamExt;
        use tokio_postgres::NoTls;

        use super::*;
        use crate::postgres::catalog::table_meta;
        use crate::postgres::copy::Lines;
        use crate::postgres::replication::SESSION_OPTIONS;
        use crate::postgres::rows::{CopyRows, PgTable};

        /// Each column's values, one per row (NULL where a list is shorter).
        const COLUMNS: [(&str, &str, &[&str]); 16] = [
            ("b", "boolean", &["true", "false"]),
            ("i2", "smallint", &["-32768", "32767", "0"]),
            ("i4", "integer", &["-2147483648", "2147483647"]),
            ("i8", "bigint", &["-9223372036854775808", "9223372036854775807", "-1"]),
            (
                "f4",
                "real",
                &[
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "'-0'",
                    "'1e-45'",
                    "'3.4028235e+38'",
                    "'0.1'",
                ],
            ),
            (
                "f8",
                "double precision",
                &[
                    "'NaN'",
                    "'-Infinity'",
                    "'-0'",
                    "'4.9e-324'",
                    "'1.7976931348623157e308'",
                    "'0.1'",
                ],
            ),
            (
                "n",
                "numeric",
                &[
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "0",
                    "0.000",
                    "-0.0001",
                    "10000",
                    "1.5",
                    "12345678901234567890.123456789",
                    "0.000000000000000000000000000001",
                    "-99999999999999999999999999999999999999.99",
                    "('1' || repeat('0', 60))::numeric",
                    "('0.' || repeat('0', 40) || '17')::numeric",
                ],
            ),
            ("n2", "numeric(12,2)", &["1.50", "-0.01", "9999999999.99", "0"]),
            (
                "t",
                "text",
                &[
                    "''",
                    r"E'tab\there'",
                    r"E'new\nline'",
                    r"E'back\\slash'",
                    "'ünï€😀'",
                    r"'\N'",
                ],
            ),
            ("vc", "varchar(5)", &["'abc'", "''"]),
            ("c", "char(5)", &["'ab'", "'abcde'"]),
            (
                "by",
                "bytea",
                &[
                    "(SELECT decode(string_agg(lpad(to_hex(i), 2, '0'), ''), 'hex') FROM generate_series(0, 255) i)",
                    "''::bytea",
                ],
            ),
            (
                "d",
                "date",
                &[
                    "'infinity'",
                    "'-infinity'",
                    "'4713-01-01 BC'",
                    "'5874897-12-31'",
                    "'2000-01-01'",
                    "'1970-01-01'",
                    "'1999-12-31'",
                    "'0001-01-01 BC'",
                ],
            ),
            (
                "ts",
                "timestamp",
                &[
                    "'infinity'",
                    "'-infinity'",
                    "'4713-01-01 00:00:00 BC'",
                    "'294000-12-31 23:59:59.999999'",
                    "'2000-01-01'",
                    "'1969-12-31 23:59:59.999999'",
                ],
            ),
            (
                "tz",
                "timestamptz(3)",
                &[
                    "'infinity'",
                    "'2000-01-01 00:00:00+05:30'",
                    "'1900-06-30 12:00:00.123-08'",
                    "'0044-03-15 12:00:00+00 BC'",
                ],
            ),
            (
                "u",
                "uuid",
                &[
                    "'00000000-0000-0000-0000-000000000000'",
                    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                ],
            ),
        ];

        async fn rows(client: &tokio_postgres::Client, table: &PgTable, binary: bool) -> Vec<Vec<Datum>> {
            let format = if binary { " (FORMAT binary)" } else { "" };
            let stream = client
                .copy_out(&format!("COPY (SELECT * FROM edge ORDER BY k) TO STDOUT{format}"))
                .await
                .expect("COPY");
            tokio::pin!(stream);
            let mut copied = if binary {
                CopyRows::Binary(Tuples::default())
            } else {
                CopyRows::Text(Lines::default())
            };
            let mut out = Vec::new();
            while let Some(data) = stream.next().await {
                copied
                    .feed(table, &data.expect("COPY data"), |row| {
                        out.push(row);
                        Ok(())
                    })
                    .expect("rows");
            }
            assert!(!copied.unfinished(), "the COPY ended in a row");
            out
        }

        fn same(a: &Datum, b: &Datum) -> bool {
            match (a, b) {
                (Datum::Float32(x), Datum::Float32(y)) => x.to_bits() == y.to_bits(),
                (Datum::Float64(x), Datum::Float64(y)) => x.to_bits() == y.to_bits(),
                _ => a == b,
            }
        }

        #[tokio::test]
        async fn binary_values_equal_their_text() {
            let (client, connection) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .user("postgres")
                .dbname("postgres")
                .options(SESSION_OPTIONS)
                .connect(NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (scripts/services up)");
            tokio::spawn(connection);
            let defs: Vec<String> = COLUMNS.iter().map(|(n, ty, _)| format!("{n} {ty}")).collect();
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE edge (k int PRIMARY KEY, {})",
                    defs.join(", ")
                ))
                .await
                .expect("create");
            let most = COLUMNS.iter().map(|(_, _, v)| v.len()).max().unwrap_or(0);
            for k in 0..=most {
                let values: Vec<&str> = COLUMNS
                    .iter()
                    .map(|(_, _, v)| v.get(k).copied().unwrap_or("NULL"))
                    .collect();
                client
                    .batch_execute(&format!("INSERT INTO edge VALUES ({k}, {})", values.join(", ")))
                    .await
                    .unwrap_or_else(|e| panic!("row {k}: {e}"));
            }
            let meta = table_meta(&client, &TableId::new("pg_temp", "edge"))
                .await
                .expect("columns");
            let table = PgTable::new(meta);
            assert!(table.reads_binary(), "every column of the table has a binary form");
            let (text, binary) = (rows(&client, &table, false).await, rows(&client, &table, true).await);
            assert_eq!(text.len(), most + 1);
            assert_eq!(binary.len(), text.len());
            for (k, (t, b)) in text.iter().zip(&binary).enumerate() {
                for (i, (tv, bv)) in t.iter().zip(b).enumerate() {
                    let column = if i == 0 { "k" } else { COLUMNS[i - 1].0 };
                    assert!(same(tv, bv), "row {k}, column {column}: text {tv:?}, binary {bv:?}");
                }
            }
        }
    }
}
