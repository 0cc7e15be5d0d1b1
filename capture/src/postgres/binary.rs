//! PostgreSQL's COPY binary format, for the snapshot of tables whose every
//! column has a type read here ([`binary_form`]; the values themselves are
//! read by [`ferry_core::pgbinary`], which apply writes them with).
//!
//! Text is what pgoutput sends, so the stream parses text, and so can the
//! snapshot (`copy.rs`). But parsing text was most of a snapshot worker's
//! CPU: digits, dates and escapes, where the binary format gives integers,
//! microseconds and raw bytes. A table with any other column (arrays,
//! intervals, enums, domains, ...) is read as text: its values are then
//! parsed by the same code as the stream's.
//!
//! Each value read here equals what its text gives; a test reads one table of
//! edge values both ways on the server and compares.

use ferry_core::meta::DataType;
use ferry_core::pgbinary::{Binary, SIGNATURE};

use crate::postgres::types::PgType;

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
        (DataType::Text, "text" | "json") => Binary::Text,
        (DataType::Text, "jsonb") => Binary::Jsonb,
        (DataType::Text, n) if n.starts_with("character") && !n.ends_with(']') => Binary::Text,
        (DataType::Bytes, "bytea") => Binary::Bytea,
        (DataType::Date, "date") => Binary::Date,
        (DataType::Time, n) if n.starts_with("time") && n.ends_with("without time zone") => Binary::Time,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        use ferry_core::value::Datum;
        use futures::StreamExt;
        use tokio_postgres::NoTls;

        use super::*;
        use crate::postgres::catalog::table_meta;
        use crate::postgres::copy::Lines;
        use crate::postgres::replication::SESSION_OPTIONS;
        use crate::postgres::rows::{CopyRows, PgTable};

        /// Each column's values, one per row (NULL where a list is shorter).
        const COLUMNS: [(&str, &str, &[&str]); 19] = [
            ("j", "json", &[r#"'{"b": 1,  "a": [1, 2.50]}'"#, "'[]'"]),
            (
                "jb",
                "jsonb",
                &[r#"'{"b": 1,  "a": [1, 2.50], "c": "\\t"}'"#, "'null'", "'\"ü\"'"],
            ),
            ("tm", "time", &["'00:00'", "'24:00'", "'12:34:56.789001'"]),
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
