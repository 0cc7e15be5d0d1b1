//! Reading Avro binary directly, for the shapes Ferry writes.
//!
//! apply decodes every event; apache-avro's reader builds a tree of values with
//! an owned name for every record field, which cost more than everything else
//! apply does per event. [`Cursor`] reads the datum straight into Ferry's own
//! types instead, for schemas Ferry derived itself (see
//! [`crate::codec::TableCodec::decode_value`], which checks that and, in debug
//! builds, that both readers agree).
//!
//! A message's bytes come from a topic anyone may write to, so nothing in them
//! is trusted: every length and block count is checked against the bytes
//! actually left before anything is read or allocated (a corrupt varint can
//! claim gigabytes). [`check_lengths`] does the same walk for any schema, so
//! that apache-avro, which would allocate what a length claims (up to 512 MiB),
//! is only ever handed a datum whose lengths fit in it.

use apache_avro::schema::{NamesRef, Schema};

/// The datum ends early or holds something Ferry never writes: the payload is
/// corrupt, which no retry mends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDatum {
    /// A length or block count that claims more than the payload holds.
    #[error("corrupt Avro payload: {what} {claimed} exceeds the {left} bytes left (at byte {at})")]
    TooLong {
        at: usize,
        what: &'static str,
        claimed: u64,
        left: usize,
    },
    #[error("corrupt Avro payload at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
}

/// A position in an Avro datum.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn bad(&self, what: &'static str) -> BadDatum {
        BadDatum::Malformed { at: self.at, what }
    }

    /// The bytes not read yet.
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// A length (`what`) read from the datum, refused when negative or
    /// larger than the bytes left.
    fn length(&mut self, what: &'static str) -> Result<usize, BadDatum> {
        let at = self.at;
        let claimed = u64::try_from(self.long()?).map_err(|_| BadDatum::Malformed {
            at,
            what: "a negative length",
        })?;
        self.fits(at, what, claimed)
    }

    /// An array's or map's block count (a negative one is followed by the
    /// block's size in bytes, checked and skipped), refused when larger than
    /// the bytes left: every item Ferry reads takes at least one byte. 0 ends
    /// the array or map.
    fn block(&mut self, what: &'static str) -> Result<usize, BadDatum> {
        let at = self.at;
        let count = self.long()?;
        if count < 0 {
            self.length("block size")?;
        }
        self.fits(at, what, count.unsigned_abs())
    }

    /// `claimed` (read at `at`) if that many bytes are left.
    fn fits(&self, at: usize, what: &'static str, claimed: u64) -> Result<usize, BadDatum> {
        match usize::try_from(claimed) {
            Ok(n) if n <= self.left() => Ok(n),
            _ => Err(BadDatum::TooLong {
                at,
                what,
                claimed,
                left: self.left(),
            }),
        }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BadDatum> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(self.bad(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// An Avro `long` or `int`: a zig-zag varint.
    pub fn long(&mut self) -> Result<i64, BadDatum> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1, "a truncated number")?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(self.bad("a number longer than 10 bytes"))
    }

    pub fn int(&mut self) -> Result<i32, BadDatum> {
        let at = self.at;
        i32::try_from(self.long()?).map_err(|_| BadDatum::Malformed {
            at,
            what: "an int out of range",
        })
    }

    pub fn boolean(&mut self) -> Result<bool, BadDatum> {
        match self.take(1, "a truncated boolean")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("a boolean that is neither 0 nor 1")),
        }
    }

    pub fn float(&mut self) -> Result<f32, BadDatum> {
        let b = self.take(4, "a truncated float")?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn double(&mut self) -> Result<f64, BadDatum> {
        let b = self.take(8, "a truncated double")?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// Avro `bytes`.
    pub fn bytes(&mut self) -> Result<&'a [u8], BadDatum> {
        let len = self.length("bytes length")?;
        self.take(len, "truncated bytes")
    }

    /// Avro `string`.
    pub fn str(&mut self) -> Result<&'a str, BadDatum> {
        let at = self.at;
        let len = self.length("string length")?;
        std::str::from_utf8(self.take(len, "a truncated string")?).map_err(|_| BadDatum::Malformed {
            at,
            what: "a string that is not UTF-8",
        })
    }

    /// A union's branch.
    pub fn branch(&mut self) -> Result<i64, BadDatum> {
        self.long()
    }

    /// An array of strings.
    pub fn strings(&mut self) -> Result<Vec<String>, BadDatum> {
        let mut out = Vec::new();
        loop {
            let count = self.block("array block count")?;
            if count == 0 {
                return Ok(out);
            }
            for _ in 0..count {
                out.push(self.str()?.to_owned());
            }
        }
    }

    /// Walks one datum of `schema` (named types looked up in `names`),
    /// checking every length and count as the readers above do.
    fn skip(&mut self, schema: &Schema, names: &NamesRef<'_>) -> Result<(), BadDatum> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                self.boolean()?;
            }
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => {
                self.long()?;
            }
            Schema::Float => {
                self.float()?;
            }
            Schema::Double => {
                self.double()?;
            }
            Schema::String => {
                self.str()?;
            }
            Schema::Bytes | Schema::BigDecimal => {
                self.bytes()?;
            }
            Schema::Uuid(uuid) => match uuid {
                apache_avro::schema::UuidSchema::String => {
                    self.str()?;
                }
                apache_avro::schema::UuidSchema::Bytes => {
                    self.bytes()?;
                }
                apache_avro::schema::UuidSchema::Fixed(f) => {
                    self.take(f.size, "a truncated fixed")?;
                }
            },
            Schema::Decimal(d) => match &d.inner {
                apache_avro::schema::InnerDecimalSchema::Fixed(f) => {
                    self.take(f.size, "a truncated fixed")?;
                }
                _ => {
                    self.bytes()?;
                }
            },
            Schema::Fixed(f) | Schema::Duration(f) => {
                self.take(f.size, "a truncated fixed")?;
            }
            Schema::Array(a) => loop {
                match self.block("array block count")? {
                    0 => break,
                    n => (0..n).try_for_each(|_| self.skip(&a.items, names))?,
                }
            },
            Schema::Map(m) => loop {
                match self.block("map block count")? {
                    0 => break,
                    n => (0..n).try_for_each(|_| {
                        self.str()?;
                        self.skip(&m.types, names)
                    })?,
                }
            },
            Schema::Union(u) => {
                let branch = self.long()?;
                let variant = usize::try_from(branch)
                    .ok()
                    .and_then(|b| u.variants().get(b))
                    .ok_or(self.bad("a union branch the schema does not have"))?;
                self.skip(variant, names)?;
            }
            Schema::Record(r) => {
                for field in &r.fields {
                    self.skip(&field.schema, names)?;
                }
            }
            Schema::Ref { name } => {
                let named = names
                    .get(name)
                    .ok_or(self.bad("a reference to an unknown named type"))?;
                self.skip(named, names)?;
            }
        }
        Ok(())
    }
}

/// Checks that `bytes` is one datum of `schema` whose every length and block
/// count fits in the bytes left, so that a reader that allocates what a
/// length claims can be handed it safely.
pub fn check_lengths(schema: &Schema, names: &NamesRef<'_>, bytes: &[u8]) -> Result<(), BadDatum> {
    let mut c = Cursor::new(bytes);
    c.skip(schema, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{write_bytes, write_long};

    #[test]
    fn reads_what_the_writer_writes() {
        let mut out = Vec::new();
        for n in [0, -1, 1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
            write_long(n, &mut out);
        }
        write_bytes("héllo".as_bytes(), &mut out);
        out.extend_from_slice(&1.5f32.to_le_bytes());
        out.push(1);
        let mut c = Cursor::new(&out);
        for n in [0, -1, 1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
            assert_eq!(c.long().unwrap(), n);
        }
        assert_eq!(c.str().unwrap(), "héllo");
        assert_eq!(c.float().unwrap(), 1.5);
        assert!(c.boolean().unwrap());
        assert!(c.is_done());
        assert!(c.long().is_err());
        assert!(Cursor::new(&[0x80; 11]).long().is_err());
        assert!(Cursor::new(&[10, b'a']).str().is_err());
    }

    fn long(n: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_long(n, &mut out);
        out
    }

    #[test]
    fn lengths_and_counts_past_the_end_are_refused_by_name() {
        let mut huge = long(3 << 30);
        huge.extend_from_slice(b"abc");
        let err = Cursor::new(&huge).str().unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt Avro payload: string length 3221225472 exceeds the 3 bytes left (at byte 0)"
        );
        assert!(matches!(
            Cursor::new(&huge).bytes(),
            Err(BadDatum::TooLong {
                what: "bytes length",
                ..
            })
        ));
        assert!(matches!(
            Cursor::new(&long(-1)).bytes(),
            Err(BadDatum::Malformed { .. })
        ));
        let err = Cursor::new(&long(1 << 50)).strings().unwrap_err().to_string();
        assert!(
            err.contains("array block count 1125899906842624 exceeds the 0 bytes left"),
            "{err}"
        );
        // A negative count (followed by the block's size), even the most negative one.
        let mut blocks = long(i64::MIN);
        blocks.extend(long(1));
        assert!(matches!(Cursor::new(&blocks).strings(), Err(BadDatum::TooLong { .. })));
        let mut one = long(-1);
        one.extend(long(2));
        one.extend(long(1));
        one.push(b'x');
        one.push(0);
        assert_eq!(Cursor::new(&one).strings().unwrap(), vec!["x"]);
    }

    #[test]
    fn any_schema_is_walked_with_its_lengths_checked() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "r", "fields": [
                {"name": "m", "type": {"type": "map", "values": "long"}},
                {"name": "u", "type": ["null", {"type": "record", "name": "r2", "fields": [{"name": "b", "type": "bytes"}]}]},
                {"name": "a", "type": {"type": "array", "items": "r2"}},
                {"name": "f", "type": {"type": "fixed", "name": "f4", "size": 4}}
            ]}"#,
        )
        .unwrap();
        let resolved = apache_avro::schema::ResolvedSchema::new(&schema).unwrap();
        let names = resolved.get_names();
        let mut good = long(1);
        write_bytes(b"k", &mut good);
        good.extend(long(7));
        good.extend(long(0));
        good.extend(long(1));
        write_bytes(b"xyz", &mut good);
        good.extend(long(0));
        good.extend_from_slice(b"ffff");
        check_lengths(&schema, names, &good).unwrap();
        let map_count = [long(1 << 40), long(0)].concat();
        let err = check_lengths(&schema, names, &map_count).unwrap_err().to_string();
        assert!(err.contains("map block count 1099511627776 exceeds"), "{err}");
        let mut array_count = long(0);
        array_count.extend(long(0));
        array_count.extend(long(1 << 40));
        let err = check_lengths(&schema, names, &array_count).unwrap_err().to_string();
        assert!(err.contains("array block count"), "{err}");
        assert!(check_lengths(&schema, names, &good[..good.len() - 1]).is_err());
        let mut branch = good.clone();
        branch[5] = 4;
        assert!(check_lengths(&schema, names, &branch).is_err());
    }
}
