//! PostgreSQL's COPY text format, as `COPY ... TO STDOUT` writes it: one row
//! per line, columns separated by tabs, `\N` for NULL, and backslash escapes
//! for the bytes that would be ambiguous (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`,
//! `\v`, octal `\NNN`, hex `\xHH`). Unescaped, a value is exactly the text a
//! query returns, so the snapshot parses it with the same code as pgoutput.
//!
//! COPY's data arrives in chunks that do not respect row boundaries; [`Lines`]
//! buffers the incomplete tail.

use std::borrow::Cow;

/// Splits COPY data into rows across chunk boundaries.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// Adds `data` and calls `row` for every row it completes.
    pub fn feed<E>(&mut self, data: &[u8], mut row: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut rest = data;
        if !self.buf.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.buf.extend_from_slice(rest);
                return Ok(());
            };
            self.buf.extend_from_slice(&rest[..end]);
            row(&self.buf)?;
            self.buf.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            row(&rest[..end])?;
            rest = &rest[end + 1..];
        }
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    /// Whether a row was left unfinished (the data ended without its newline).
    pub fn has_partial_row(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// The values of one row: `None` for NULL.
pub fn fields(line: &[u8]) -> impl Iterator<Item = Option<Cow<'_, [u8]>>> {
    line.split(|&b| b == b'\t').map(|field| match field {
        b"\\N" => None,
        f if !f.contains(&b'\\') => Some(Cow::Borrowed(f)),
        f => Some(Cow::Owned(unescape(f))),
    })
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u8;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(chunks: &[&[u8]]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines
                .feed::<()>(chunk, |line| {
                    out.push(fields(line).map(|f| f.map(Cow::into_owned)).collect());
                    Ok(())
                })
                .unwrap();
        }
        assert!(!lines.has_partial_row());
        out
    }

    #[test]
    fn rows_split_across_chunks_and_escapes() {
        let got = rows(&[b"1\ta\\tb\t\\N\n2\t", b"x\\\\y\\nz\t\\101\\x41\\x4\n", b"3\t\t\\\\N\n"]);
        let s = |v: &[u8]| Some(v.to_vec());
        assert_eq!(
            got,
            vec![
                vec![s(b"1"), s(b"a\tb"), None],
                vec![s(b"2"), s(b"x\\y\nz"), s(b"AA\x04")],
                // An empty string is not NULL, and an escaped backslash before N is text.
                vec![s(b"3"), s(b""), s(b"\\N")],
            ]
        );
    }

    #[test]
    fn a_row_without_its_newline_is_noticed() {
        let mut lines = Lines::default();
        lines.feed::<()>(b"1\t2", |_| Ok(())).unwrap();
        assert!(lines.has_partial_row());
    }
}
