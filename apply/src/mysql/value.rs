//! Values as MariaDB/MySQL SQL literals.
//!
//! Rows go to the server as multi-row statements in the text protocol, each
//! value a literal. The session runs with `NO_BACKSLASH_ESCAPES` (see
//! [`super::SESSION`]), so a string literal is its text between quotes with
//! each quote doubled — nothing else is special — and bytes are hex literals.
//!
//! A value is never altered on the way in: what MariaDB cannot hold (dates and
//! timestamps outside years 1 to 9999 or infinite, NaN and infinite numbers,
//! times past ±838:59:59.999999) is refused here with the reason, and so is a
//! value the target column would round without an error even in strict mode (a
//! decimal with more fractional digits than the column's scale, a time with
//! more fractional digits than the column's precision). Everything else that
//! does not fit (a string too long, a number out of range) the server refuses
//! in strict mode.

use std::fmt::Write;

use ferry_core::value::Datum;

use crate::calendar::{civil, push_padded, write_clock, MICROS_PER_DAY};

/// The longest MariaDB `TIME`: 838:59:59.999999.
const MAX_TIME_MICROS: i64 = ((838 * 60 + 59) * 60 + 59) * 1_000_000 + 999_999;

/// What the target column needs checked or wrapped beyond its literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Any,
    /// `DECIMAL(precision, scale)`: more fractional digits would be rounded,
    /// more integer digits do not fit.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// A temporal column keeping this many fractional digits of a second.
    Fraction(u32),
    /// A spatial column: the bytes are WKB.
    Geometry,
}

/// Appends `s` as a string literal (with `NO_BACKSLASH_ESCAPES`).
pub fn write_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('\'');
    if s.contains('\'') {
        for part in s.split_inclusive('\'') {
            out.push_str(part);
            if part.ends_with('\'') {
                out.push('\'');
            }
        }
    } else {
        out.push_str(s);
    }
    out.push('\'');
}

/// `s` as a string literal.
pub fn quote_str(s: &str) -> String {
    let mut out = String::new();
    write_str(s, &mut out);
    out
}

/// Appends `datum` as a literal for a column that needs `fit`, or says why
/// MariaDB cannot hold it unchanged (nothing useful is left in `out` then).
pub fn write_literal(datum: &Datum, fit: Fit, out: &mut String) -> Result<(), String> {
    match datum {
        Datum::Null => out.push_str("NULL"),
        Datum::Bool(b) => out.push(if *b { '1' } else { '0' }),
        Datum::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        // The float's exact value as a double, which the server rounds back to
        // the very same float.
        Datum::Float32(f) => float(f64::from(*f), out)?,
        Datum::Float64(f) => float(*f, out)?,
        Datum::Decimal(d) => {
            if let Fit::Decimal { precision, scale } = fit {
                let Some(exact) = d.rescale(scale) else {
                    return Err(format!(
                        "{} has more than {scale} digits after the point: DECIMAL({precision},{scale}) would round it",
                        clip(&d.to_string())
                    ));
                };
                if exact.precision() > precision {
                    return Err(format!(
                        "{} does not fit DECIMAL({precision},{scale})",
                        clip(&d.to_string())
                    ));
                }
            }
            // Quoted: a long unquoted literal would be read as a double.
            out.push('\'');
            let _ = write!(out, "{d}");
            out.push('\'');
        }
        Datum::Special(s) => {
            return Err(format!(
                "{} cannot be stored: MariaDB's DECIMAL has no NaN or infinities",
                s.as_str()
            ))
        }
        Datum::Text(s) => write_str(s, out),
        Datum::Bytes(b) if fit == Fit::Geometry => {
            let (wkb, srid) = split_ewkb(b);
            out.push_str("ST_GeomFromWKB(");
            hex(&wkb, out);
            if srid != 0 {
                let _ = write!(out, ", {srid}");
            }
            out.push(')');
        }
        Datum::Bytes(b) => hex(b, out),
        Datum::Date(d) => {
            let days = i64::from(*d);
            if matches!(*d, i32::MAX | i32::MIN) {
                return Err(format!(
                    "date {} cannot be stored: MariaDB's DATE has no infinities",
                    infinity(*d == i32::MAX)
                ));
            }
            out.push('\'');
            date(days, out, "DATE")?;
            out.push('\'');
        }
        Datum::Time(t) => {
            if t.abs() > MAX_TIME_MICROS {
                let mut shown = String::new();
                write_clock(*t, &mut shown);
                return Err(format!(
                    "time {shown} is outside MariaDB's TIME range (-838:59:59.999999 to 838:59:59.999999)"
                ));
            }
            fraction(*t, fit)?;
            out.push('\'');
            write_clock(*t, out);
            out.push('\'');
        }
        Datum::Timestamp(t) => {
            if matches!(*t, i64::MAX | i64::MIN) {
                return Err(format!(
                    "timestamp {} cannot be stored: MariaDB's DATETIME has no infinities",
                    infinity(*t == i64::MAX)
                ));
            }
            fraction(*t, fit)?;
            let (days, micros) = (t.div_euclid(MICROS_PER_DAY), t.rem_euclid(MICROS_PER_DAY));
            out.push('\'');
            date(days, out, "DATETIME")?;
            out.push(' ');
            write_clock(micros, out);
            out.push('\'');
        }
        Datum::Uuid(u) => {
            out.push('\'');
            out.push_str(u.hyphenated().encode_lower(&mut [0; 36]));
            out.push('\'');
        }
    }
    Ok(())
}

/// `X'...'`.
fn hex(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(3 + 2 * bytes.len());
    out.push_str("X'");
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out.push('\'');
}

/// PostGIS's EWKB flag in a WKB type word: an SRID follows it.
const EWKB_SRID: u32 = 0x2000_0000;

/// WKB and its SRID from WKB (SRID 0) or EWKB with an SRID, the forms MySQL
/// capture sends a geometry in.
fn split_ewkb(bytes: &[u8]) -> (std::borrow::Cow<'_, [u8]>, u32) {
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if bytes[0] == 1 {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    match (word(1), word(5)) {
        (Some(ty), Some(srid)) if ty & EWKB_SRID != 0 => {
            let ty = ty & !EWKB_SRID;
            let mut wkb = Vec::with_capacity(bytes.len() - 4);
            wkb.push(bytes[0]);
            wkb.extend(if bytes[0] == 1 {
                ty.to_le_bytes()
            } else {
                ty.to_be_bytes()
            });
            wkb.extend(&bytes[9..]);
            (wkb.into(), srid)
        }
        _ => (bytes.into(), 0),
    }
}

/// A long value shortened for a message: its first 40 characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}... ({} characters)", &s[..at], s.chars().count()),
        None => s.to_owned(),
    }
}

fn infinity(positive: bool) -> &'static str {
    if positive {
        "infinity"
    } else {
        "-infinity"
    }
}

fn float(f: f64, out: &mut String) -> Result<(), String> {
    if !f.is_finite() {
        return Err(format!(
            "{} cannot be stored: MariaDB's FLOAT and DOUBLE hold finite numbers only",
            if f.is_nan() { "NaN" } else { infinity(f > 0.0) }
        ));
    }
    if f == 0.0 && f.is_sign_negative() {
        return Err("-0 cannot be stored: MariaDB's FLOAT and DOUBLE keep no negative zero (it would be 0)".into());
    }
    let _ = write!(out, "{f:e}");
    Ok(())
}

/// A time whose microseconds the column would round.
fn fraction(micros: i64, fit: Fit) -> Result<(), String> {
    if let Fit::Fraction(digits @ 0..=5) = fit {
        if micros % 10_i64.pow(6 - digits) != 0 {
            return Err(format!(
                "the value has microseconds, which a column with {digits} fractional digits would round"
            ));
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` of `days` after 1970-01-01, for years 1 to 9999 (MariaDB's
/// range for `kind`).
fn date(days: i64, out: &mut String, kind: &str) -> Result<(), String> {
    let (y, m, d) = civil(days);
    if !(1..=9999).contains(&y) {
        let shown = if y <= 0 {
            format!("{:04}-{m:02}-{d:02} BC", 1 - y)
        } else {
            format!("{y}-{m:02}-{d:02}")
        };
        return Err(format!("{shown} is outside MariaDB's {kind} range (years 1 to 9999)"));
    }
    // Years 1 to 9999, as checked above.
    push_padded(out, y as u64, 4);
    out.push('-');
    push_padded(out, m.into(), 2);
    out.push('-');
    push_padded(out, d.into(), 2);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::value::Special;

    fn lit(d: Datum, fit: Fit) -> Result<String, String> {
        let mut out = String::new();
        write_literal(&d, fit, &mut out).map(|()| out)
    }

    fn ok(d: Datum) -> String {
        lit(d, Fit::Any).unwrap()
    }

    #[test]
    fn strings_double_their_quotes_only() {
        assert_eq!(quote_str(""), "''");
        assert_eq!(quote_str("it's"), "'it''s'");
        assert_eq!(quote_str("''"), "''''''");
        assert_eq!(quote_str("back\\slash\n日本 🚀"), "'back\\slash\n日本 🚀'");
        assert_eq!(ok(Datum::Bytes(vec![0, 0xff, b'\''])), "X'00ff27'");
        assert_eq!(ok(Datum::Bytes(vec![])), "X''");
        assert_eq!(
            lit(Datum::Bytes(vec![1]), Fit::Geometry).unwrap(),
            "ST_GeomFromWKB(X'01')"
        );
        assert_eq!(ok(Datum::Null), "NULL");
        assert_eq!(ok(Datum::Bool(true)), "1");
        assert_eq!(ok(Datum::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(
            ok(Datum::Uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".parse().unwrap())),
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"
        );
    }

    #[test]
    fn numbers_are_exact_or_refused() {
        assert_eq!(ok(Datum::Float64(0.1)), "1e-1");
        assert_eq!(ok(Datum::Float64(0.0)), "0e0");
        assert!(lit(Datum::Float32(-0.0), Fit::Any)
            .unwrap_err()
            .contains("negative zero"));
        // A float's exact value, which reads back as the same float.
        assert_eq!(ok(Datum::Float32(0.1)), "1.0000000149011612e-1");
        assert_eq!(ok(Datum::Float32(1e-45)), "1.401298464324817e-45");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(lit(Datum::Float64(bad), Fit::Any).unwrap_err().contains("finite"));
        }
        let dec = |s: &str| Datum::Decimal(s.parse().unwrap());
        assert_eq!(ok(dec("-12.3400")), "'-12.3400'");
        let fit = Fit::Decimal { precision: 6, scale: 2 };
        assert_eq!(lit(dec("1234.5000"), fit).unwrap(), "'1234.5000'");
        assert_eq!(lit(dec("-0.01"), fit).unwrap(), "'-0.01'");
        assert_eq!(lit(dec("0"), fit).unwrap(), "'0'");
        assert!(lit(dec("1.234"), fit).unwrap_err().contains("would round"));
        assert!(lit(dec("12345.1"), fit).unwrap_err().contains("does not fit"));
        let long = format!("0.{}1", "0".repeat(100));
        let err = lit(dec(&long), fit).unwrap_err();
        assert!(
            err.starts_with("0.00000000000000000000000000000000000000... (103 characters) has"),
            "{err}"
        );
        let err = lit(Datum::Special(Special::NaN), Fit::Any).unwrap_err();
        assert!(err.starts_with("NaN cannot be stored"), "{err}");
    }

    #[test]
    fn dates_and_times_within_mariadb_ranges() {
        assert_eq!(ok(Datum::Date(0)), "'1970-01-01'");
        assert_eq!(ok(Datum::Date(-719_162)), "'0001-01-01'");
        assert_eq!(ok(Datum::Date(2_932_896)), "'9999-12-31'");
        assert!(lit(Datum::Date(2_932_897), Fit::Any)
            .unwrap_err()
            .contains("10000-01-01"));
        let err = lit(Datum::Date(-719_163), Fit::Any).unwrap_err();
        assert!(err.starts_with("0001-12-31 BC is outside"), "{err}");
        assert!(lit(Datum::Date(i32::MAX), Fit::Any).unwrap_err().contains("infinity"));
        assert_eq!(ok(Datum::Time(86_400_000_000)), "'24:00:00.000000'");
        assert_eq!(ok(Datum::Time(-MAX_TIME_MICROS)), "'-838:59:59.999999'");
        assert!(lit(Datum::Time(MAX_TIME_MICROS + 1), Fit::Any).is_err());
        assert_eq!(ok(Datum::Timestamp(-1)), "'1969-12-31 23:59:59.999999'");
        assert!(lit(Datum::Timestamp(i64::MIN), Fit::Any)
            .unwrap_err()
            .contains("-infinity"));
        assert!(lit(Datum::Timestamp(-62_135_596_800_000_001), Fit::Any).is_err());
        assert_eq!(
            lit(Datum::Timestamp(1_000_000), Fit::Fraction(0)).unwrap(),
            "'1970-01-01 00:00:01.000000'"
        );
        assert!(lit(Datum::Timestamp(1_000_100), Fit::Fraction(3))
            .unwrap_err()
            .contains("3 fractional"));
        assert_eq!(
            lit(Datum::Time(1_001_000), Fit::Fraction(3)).unwrap(),
            "'00:00:01.001000'"
        );
    }
}
