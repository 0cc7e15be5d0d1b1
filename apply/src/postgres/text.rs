//! Values in PostgreSQL's text input form.
//!
//! Rows that cannot go in `COPY`'s binary form (see [`super::binary`]) are
//! written in its text form, so every type — built-in, array, enum, domain,
//! range — goes through its own input function, and values
//! that travel as text (`jsonb`, `interval`, `int4range`...) arrive exactly as
//! the source printed them. This module writes the values Ferry carries as
//! Avro types (numbers, dates, times, bytes, uuids) in a form every PostgreSQL
//! reads back exactly: floats in shortest round-trip form, dates with `BC`
//! (year 0 is 1 BC), timestamps to the microsecond, instants in UTC (`+00`).

use std::fmt::Write;

use ferry_core::value::Datum;

use crate::calendar::{civil, push_padded, write_clock, MICROS_PER_DAY};

/// `datum` as PostgreSQL text, `None` for NULL.
pub fn pg_text(datum: &Datum, with_zone: bool) -> Option<String> {
    let mut out = String::new();
    write_pg_text(datum, with_zone, &mut out).then_some(out)
}

/// Appends `datum` as PostgreSQL text to `out`; false (nothing written) for NULL.
pub fn write_pg_text(datum: &Datum, with_zone: bool, out: &mut String) -> bool {
    // Writing into a String cannot fail.
    let _ = match datum {
        Datum::Null => return false,
        Datum::Bool(b) => {
            out.push(if *b { 't' } else { 'f' });
            Ok(())
        }
        Datum::Int(i) => {
            out.push_str(itoa::Buffer::new().format(*i));
            Ok(())
        }
        Datum::Float32(f) => float(f64::from(*f), out, |out| write!(out, "{f:e}")),
        Datum::Float64(f) => float(*f, out, |out| write!(out, "{f:e}")),
        Datum::Decimal(d) => write!(out, "{d}"),
        Datum::Special(s) => {
            out.push_str(s.as_str());
            Ok(())
        }
        Datum::Text(s) => {
            out.push_str(s);
            Ok(())
        }
        Datum::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.reserve(2 + 2 * b.len());
            out.push_str("\\x");
            for byte in b {
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
            Ok(())
        }
        Datum::Date(d) => match *d {
            i32::MAX => write!(out, "infinity"),
            i32::MIN => write!(out, "-infinity"),
            d => {
                date(i64::from(d), out, |_| {});
                Ok(())
            }
        },
        Datum::Time(t) => {
            write_clock(*t, out);
            Ok(())
        }
        Datum::Timestamp(t) => match *t {
            i64::MAX => write!(out, "infinity"),
            i64::MIN => write!(out, "-infinity"),
            t => {
                let (days, micros) = (t.div_euclid(MICROS_PER_DAY), t.rem_euclid(MICROS_PER_DAY));
                date(days, out, |out| {
                    out.push(' ');
                    write_clock(micros, out);
                    if with_zone {
                        out.push_str("+00");
                    }
                });
                Ok(())
            }
        },
        Datum::Uuid(u) => {
            out.push_str(u.hyphenated().encode_lower(&mut [0; 36]));
            Ok(())
        }
    };
    true
}

/// `rows`' values in the schema columns `columns` in `COPY`'s text format;
/// `zones` says, per column copied, whether it is a timestamp with zone.
pub fn copy_text(rows: &[&[Datum]], columns: &[usize], zones: &[bool]) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * columns.len() * 12);
    let mut value = String::new();
    for row in rows {
        for (j, &c) in columns.iter().enumerate() {
            if j > 0 {
                out.push('\t');
            }
            value.clear();
            if !write_pg_text(&row[c], zones[j], &mut value) {
                out.push_str("\\N");
            } else if !value.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
                out.push_str(&value);
            } else {
                for ch in value.chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        ch => out.push(ch),
                    }
                }
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn float(f: f64, out: &mut String, shortest: impl FnOnce(&mut String) -> std::fmt::Result) -> std::fmt::Result {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        return shortest(out);
    }
    Ok(())
}

/// The date `days` after 1970-01-01 as `YYYY-MM-DD`, then what `rest`
/// writes, then ` BC` for years before 1 (PostgreSQL writes the era last).
fn date(days: i64, out: &mut String, rest: impl FnOnce(&mut String)) {
    let (y, m, d) = civil(days);
    let year = if y <= 0 { 1 - y } else { y };
    push_padded(out, year.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(m), 2);
    out.push('-');
    push_padded(out, u64::from(d), 2);
    rest(out);
    if y <= 0 {
        out.push_str(" BC");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::value::Special;

    #[test]
    fn dates_and_times() {
        // PostgreSQL's earliest date, 4714-11-24 BC, is Julian day 0.
        assert_eq!(pg_text(&Datum::Date(-2_440_588), false).unwrap(), "4714-11-24 BC");
        assert_eq!(pg_text(&Datum::Date(-719_163), false).unwrap(), "0001-12-31 BC");
        assert_eq!(pg_text(&Datum::Date(-719_162), false).unwrap(), "0001-01-01");
        assert_eq!(pg_text(&Datum::Date(2_145_042_905), false).unwrap(), "5874897-12-31");
        assert_eq!(pg_text(&Datum::Date(i32::MAX), false).unwrap(), "infinity");
        assert_eq!(pg_text(&Datum::Time(86_400_000_000), false).unwrap(), "24:00:00.000000");
        assert_eq!(pg_text(&Datum::Time(45_296_789_000), false).unwrap(), "12:34:56.789000");
        assert_eq!(
            pg_text(&Datum::Time(-3_020_399_000_001), false).unwrap(),
            "-838:59:59.000001"
        );
        assert_eq!(
            pg_text(&Datum::Timestamp(-1), true).unwrap(),
            "1969-12-31 23:59:59.999999+00"
        );
        assert_eq!(pg_text(&Datum::Timestamp(i64::MIN), false).unwrap(), "-infinity");
        assert_eq!(
            pg_text(&Datum::Timestamp(-62_135_596_800_000_001), false).unwrap(),
            "0001-12-31 23:59:59.999999 BC"
        );
    }

    #[test]
    fn numbers_bytes_and_nulls() {
        assert_eq!(pg_text(&Datum::Null, false), None);
        assert_eq!(pg_text(&Datum::Float64(0.1), false).unwrap(), "1e-1");
        assert_eq!(pg_text(&Datum::Float64(-0.0), false).unwrap(), "-0e0");
        assert_eq!(pg_text(&Datum::Float32(f32::NAN), false).unwrap(), "NaN");
        assert_eq!(pg_text(&Datum::Float32(f32::NEG_INFINITY), false).unwrap(), "-Infinity");
        assert_eq!(pg_text(&Datum::Float32(1e-45), false).unwrap(), "1e-45");
        assert_eq!(pg_text(&Datum::Special(Special::NaN), false).unwrap(), "NaN");
        assert_eq!(pg_text(&Datum::Bytes(vec![0, 0xff, 0x5c]), false).unwrap(), "\\x00ff5c");
        assert_eq!(pg_text(&Datum::Bool(false), false).unwrap(), "f");
    }
}
