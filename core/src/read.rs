//! Reading Avro binary directly, for the shapes Ferry writes.
//!
//! apply decodes every event; apache-avro's reader builds a tree of values with
//! an owned name for every record field, which cost more than everything else
//! apply does per event. [`Cursor`] reads the datum straight into Ferry's own
//! types instead, for schemas Ferry derived itself (see
//! [`crate::codec::TableCodec::decode_value`], which checks that and, in debug
//! builds, that both readers agree).

/// The datum ends early or holds something Ferry never writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Avro datum is malformed at byte {at}: {what}")]
pub struct BadDatum {
    pub at: usize,
    pub what: &'static str,
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
        BadDatum { at: self.at, what }
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
        i32::try_from(self.long()?).map_err(|_| BadDatum {
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
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| self.bad("a negative length"))?;
        self.take(len, "truncated bytes")
    }

    /// Avro `string`.
    pub fn str(&mut self) -> Result<&'a str, BadDatum> {
        let at = self.at;
        std::str::from_utf8(self.bytes()?).map_err(|_| BadDatum {
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
            let mut count = self.long()?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                count = -count;
                self.long()?;
            }
            for _ in 0..count {
                out.push(self.str()?.to_owned());
            }
        }
    }
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
}
