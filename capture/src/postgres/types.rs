//! PostgreSQL column types and values, mapped to Ferry's source-neutral ones.
//!
//! pgoutput sends each column's type as an OID and a type modifier (in the
//! Relation message) and each value in the type's **text output format** (the
//! `t` tuple entries). [`pg_type`] maps the type to a [`DataType`] and keeps
//! PostgreSQL's own name for it (`format_type(oid, typmod)`, read from the
//! catalog by capture) as `source_type`; [`parse_text`] turns a value's text into
//! a [`Datum`]. Nothing is rounded, truncated or guessed: a text that is not
//! exactly one of the forms PostgreSQL prints is a [`TypeError`] naming the type
//! and the text.
//!
//! Choices:
//!
//! - **Text form, not binary.** pgoutput v1 sends text only, and the text form is
//!   exact for every type once the session is pinned (below); values are parsed
//!   by hand rather than with a date library because PostgreSQL's ranges
//!   (dates to 5874897 AD, timestamps to 294276 AD, 4713 BC) exceed chrono's.
//! - **`numeric(p,s)` allows specials.** PostgreSQL accepts `NaN` in a
//!   constrained numeric column (`Infinity` only in an unconstrained one, but
//!   both are read wherever they appear), so such a column is
//!   `Decimal { special: true }`. A typmod whose scale is negative (PostgreSQL
//!   15: `numeric(5,-2)`) or larger than the precision has no Avro decimal form,
//!   so such a column falls back to [`DataType::Numeric`], the exact text.
//! - **Kept as text**, with the type name in `source_type`: `money` (its text
//!   depends on `lc_monetary`, so no number can be read from it safely),
//!   `interval` (months, days and microseconds are separate fields that no
//!   single Avro duration keeps exactly), `timetz` (a time with an offset),
//!   arrays (PostgreSQL's array literal keeps dimensions, lower bounds and
//!   `NULL` elements exactly: `{{1,NULL},{3,4}}`), and json, jsonb, xml,
//!   network, bit string, geometric, range, text search, enum, domain and
//!   composite types and anything unknown: each in PostgreSQL's own text, which
//!   a PostgreSQL target can cast straight back. Text must be UTF-8
//!   (`server_encoding` UTF8); other bytes are an error, never a lossy
//!   conversion.
//! - `oid` and `xid` are unsigned 32-bit and travel as `Int64`.
//! - Timestamps count microseconds from 1970 in an `i64`, which ends at
//!   294247-01-10 04:00:54.775807 (taken by `infinity`'s sentinel), while
//!   PostgreSQL's go on to 294276 AD: a value in those last 29 years is an error.
//!
//! Pinned session settings this relies on (capture sets them on its
//! connections): `DateStyle=ISO` (dates `2024-02-29`, `0044-03-15 BC`),
//! `TimeZone=UTC` (timestamptz printed with `+00`; other offsets such as
//! `+05:30`, `-08` or `+00:19:32` are read too), `IntervalStyle=iso_8601`
//! (intervals as `P1Y2M3DT4H5M6.789S`), `bytea_output=hex` (`\x0a0b`; the
//! legacy escape format is read too), and `extra_float_digits` at its default
//! of 1 or above, which since PostgreSQL 12 prints the shortest text that reads
//! back to the same float, so parsing it as `f32`/`f64` is exact.

use ferry_core::meta::DataType;
use ferry_core::value::{Datum, Decimal, Special};

// Built-in pg_type OIDs (src/include/catalog/pg_type.dat).
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const XID: u32 = 28;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;

/// `VARHDRSZ`: numeric's typmod is `((precision << 16) | scale) + 4`.
const VARHDRSZ: i32 = 4;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// How a PostgreSQL column travels: Ferry's data type and the source type name kept in the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub data_type: DataType,
    pub source_type: String,
}

/// A value's text is not what its type prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// `text` is cut to its first 100 characters.
    #[error("cannot read {text:?} as {source_type}: {reason}")]
    Unparsable {
        source_type: String,
        text: String,
        reason: String,
    },
    /// `text` is the value with invalid bytes shown as U+FFFD, cut to 100 characters.
    #[error("cannot read {text:?} as {source_type}: not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        source_type: String,
        text: String,
        valid_up_to: usize,
    },
}

/// Maps a column's type. `type_oid` and `type_modifier` as pgoutput's Relation message gives them
/// (typmod -1 = none). `type_name` is the type's name as `format_type(oid, typmod)` prints it
/// (e.g. "numeric(10,2)", "character varying(20)", "timestamp with time zone", "integer[]", "mood");
/// capture reads it from the catalog and passes it in; it becomes `source_type` verbatim.
pub fn pg_type(type_oid: u32, type_modifier: i32, type_name: &str) -> PgType {
    let data_type = match type_oid {
        BOOL => DataType::Boolean,
        INT2 => DataType::Int16,
        INT4 => DataType::Int32,
        INT8 | OID | XID => DataType::Int64,
        FLOAT4 => DataType::Float32,
        FLOAT8 => DataType::Float64,
        NUMERIC => numeric_type(type_modifier),
        BYTEA => DataType::Bytes,
        DATE => DataType::Date,
        TIME => DataType::Time,
        TIMESTAMP => DataType::Timestamp,
        TIMESTAMPTZ => DataType::TimestampTz,
        UUID => DataType::Uuid,
        // money, text family, timetz, interval, json, arrays, enums, domains, ...
        _ => DataType::Text,
    };
    PgType {
        data_type,
        source_type: type_name.to_owned(),
    }
}

/// `numeric(p,s)` from its typmod; `numeric` when there is none or it has no
/// Avro decimal form (negative scale, scale above precision).
fn numeric_type(typmod: i32) -> DataType {
    if typmod < VARHDRSZ {
        return DataType::Numeric;
    }
    let packed = typmod - VARHDRSZ;
    let precision = (packed >> 16) & 0xffff;
    // The scale is an 11-bit signed field in PostgreSQL 15; read the low 16 bits as i16.
    let scale = i32::from((packed & 0xffff) as u16 as i16);
    if precision == 0 || scale < 0 || scale > precision {
        return DataType::Numeric;
    }
    DataType::Decimal {
        precision: precision.unsigned_abs(),
        scale: scale.unsigned_abs(),
        special: true,
    }
}

/// Converts a value in PostgreSQL's text output format to a Datum for a column of type `ty`
/// (as returned by pg_type for the same column). Never rounds, truncates or guesses: a text
/// that does not parse is an error naming the type and the text.
pub fn parse_text(ty: &PgType, text: &[u8]) -> Result<Datum, TypeError> {
    if ty.data_type == DataType::Bytes {
        return parse_bytea(text)
            .map(Datum::Bytes)
            .map_err(|reason| TypeError::Unparsable {
                source_type: ty.source_type.clone(),
                text: excerpt(&String::from_utf8_lossy(text)),
                reason,
            });
    }
    let s = std::str::from_utf8(text).map_err(|e| TypeError::NotUtf8 {
        source_type: ty.source_type.clone(),
        text: excerpt(&String::from_utf8_lossy(text)),
        valid_up_to: e.valid_up_to(),
    })?;
    parse_str(ty.data_type, s).map_err(|reason| TypeError::Unparsable {
        source_type: ty.source_type.clone(),
        text: excerpt(s),
        reason,
    })
}

/// The text for an error message: its first 100 characters, `…` marking a cut.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// The value of UTF-8 text `s`; the error is the reason.
fn parse_str(data_type: DataType, s: &str) -> Result<Datum, String> {
    Ok(match data_type {
        DataType::Boolean => match s {
            "t" => Datum::Bool(true),
            "f" => Datum::Bool(false),
            _ => return Err("a boolean is printed as t or f".into()),
        },
        DataType::Int16 => Datum::Int(s.parse::<i16>().map_err(|e| e.to_string())?.into()),
        DataType::Int32 => Datum::Int(s.parse::<i32>().map_err(|e| e.to_string())?.into()),
        DataType::Int64 => Datum::Int(s.parse::<i64>().map_err(|e| e.to_string())?),
        DataType::Float32 => Datum::Float32(parse_float::<f32>(s)?),
        DataType::Float64 => Datum::Float64(parse_float::<f64>(s)?),
        DataType::Decimal { .. } | DataType::Numeric => match Special::parse(s) {
            Some(special) => Datum::Special(special),
            None => Datum::Decimal(s.parse::<Decimal>().map_err(|e| e.to_string())?),
        },
        DataType::Text => Datum::Text(s.to_owned()),
        DataType::Bytes => Datum::Bytes(parse_bytea(s.as_bytes())?),
        DataType::Date => Datum::Date(parse_date(s)?),
        DataType::Time | DataType::Duration => Datum::Time(parse_time(s)?),
        DataType::Timestamp => Datum::Timestamp(parse_timestamp(s, false)?),
        DataType::TimestampTz => Datum::Timestamp(parse_timestamp(s, true)?),
        DataType::Uuid => Datum::Uuid(uuid::Uuid::try_parse(s).map_err(|e| e.to_string())?),
    })
}

/// A float as PostgreSQL prints it: `NaN`, `Infinity`, `-Infinity`, or a plain
/// decimal with an optional exponent (`-1.5`, `3.4028235e+38`). A finite text
/// that would overflow to infinity or underflow to zero is an error.
fn parse_float<F>(s: &str) -> Result<F, String>
where
    F: std::str::FromStr + Into<f64> + Copy,
    F::Err: std::fmt::Display,
{
    match s {
        "NaN" | "Infinity" | "-Infinity" => {
            return s.parse::<F>().map_err(|e| e.to_string());
        }
        _ => {}
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || !exponent_ok {
        return Err("not a floating-point number".into());
    }
    let value = s.parse::<F>().map_err(|e| e.to_string())?;
    let wide: f64 = value.into();
    if wide.is_infinite() {
        return Err("out of range: it would overflow to infinity".into());
    }
    if wide == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err("out of range: it would underflow to zero".into());
    }
    Ok(value)
}

/// bytea in hex format (`\x0a0b`, `\x` is empty) or, when it does not start
/// with `\x`, the legacy escape format (`\\` and octal `\ooo`).
fn parse_bytea(text: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(hex) = text.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return Err("hex bytea has an odd number of digits".into());
        }
        return hex
            .chunks_exact(2)
            .map(|pair| match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => Ok((hi << 4) | lo),
                _ => Err("hex bytea has a character that is not a hex digit".to_owned()),
            })
            .collect();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', more @ ..] => {
                out.push(b'\\');
                rest = more;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', more @ ..] => {
                out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                rest = more;
            }
            _ => return Err("escape bytea has a backslash not followed by \\ or three octal digits".into()),
        }
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Days since 1970-01-01 of an ISO date (`2024-02-29`, `0044-03-15 BC`, `infinity`).
fn parse_date(s: &str) -> Result<i32, String> {
    match s {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (body, bc) = strip_bc(s);
    let days = parse_ymd(body, bc)?;
    match i32::try_from(days) {
        Ok(d) if d != i32::MAX && d != i32::MIN => Ok(d),
        _ => Err("date out of range".into()),
    }
}

/// Microseconds since midnight of `HH:MM:SS[.ffffff]`; `24:00:00` is allowed.
fn parse_time(s: &str) -> Result<i64, String> {
    let (h, m, sec, micros) = parse_hms(s)?;
    if h > 24 || (h == 24 && (m, sec, micros) != (0, 0, 0)) {
        return Err("time of day out of range".into());
    }
    Ok(time_micros(h, m, sec, micros))
}

/// Microseconds since 1970-01-01 of `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]`;
/// the offset is required when `with_offset` (timestamptz, result in UTC) and not
/// allowed otherwise. `infinity` / `-infinity` are `i64::MAX` / `i64::MIN`.
fn parse_timestamp(s: &str, with_offset: bool) -> Result<i64, String> {
    match s {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (body, bc) = strip_bc(s);
    let (date, rest) = body
        .split_once(' ')
        .ok_or("expected a date and a time separated by a space")?;
    let (time, offset_seconds) = if with_offset {
        let at = rest.find(['+', '-']).ok_or("expected a UTC offset such as +00")?;
        (&rest[..at], parse_offset(&rest[at..])?)
    } else {
        (rest, 0)
    };
    let days = parse_ymd(date, bc)?;
    let (h, m, sec, micros) = parse_hms(time)?;
    if h > 23 {
        return Err("hour out of range".into());
    }
    let local = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(time_micros(h, m, sec, micros));
    let utc = local - i128::from(offset_seconds) * i128::from(MICROS_PER_SECOND);
    match i64::try_from(utc) {
        Ok(t) if t != i64::MAX && t != i64::MIN => Ok(t),
        _ => Err("timestamp out of range".into()),
    }
}

/// The text before a trailing ` BC`, and whether there was one.
fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (s, false),
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (year of at least four digits, the
/// proleptic Gregorian calendar; `bc`: the year is before Christ, so year 1 BC is
/// astronomical year 0).
fn parse_ymd(s: &str, bc: bool) -> Result<i64, String> {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("expected a date YYYY-MM-DD".into());
    };
    if y.len() < 4 || y.len() > 9 {
        return Err("expected a year of 4 to 9 digits".into());
    }
    let year = i64::from(number(y, "year")?);
    if year == 0 {
        return Err("there is no year 0".into());
    }
    let year = if bc { 1 - year } else { year };
    let month = two_digits(m, "month")?;
    let day = two_digits(d, "day")?;
    if !(1..=12).contains(&month) {
        return Err("month out of range".into());
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range for its month".into());
    }
    Ok(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.f]` with 1 to 6 fractional digits, as (hours, minutes, seconds,
/// microseconds); hours are checked by the caller.
fn parse_hms(s: &str) -> Result<(u32, u32, u32, u32), String> {
    let (whole, frac) = match s.split_once('.') {
        Some((whole, frac)) => (whole, Some(frac)),
        None => (s, None),
    };
    let mut parts = whole.split(':');
    let (Some(h), Some(m), Some(sec), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("expected a time HH:MM:SS".into());
    };
    let (h, m, sec) = (
        two_digits(h, "hour")?,
        two_digits(m, "minute")?,
        two_digits(sec, "second")?,
    );
    if m > 59 || sec > 59 {
        return Err("minute or second out of range".into());
    }
    let micros = match frac {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) => number(f, "fraction")? * 10u32.pow(6 - f.len() as u32),
        Some(_) => return Err("expected 1 to 6 fractional digits".into()),
    };
    Ok((h, m, sec, micros))
}

/// A UTC offset `±HH`, `±HH:MM` or `±HH:MM:SS`, in seconds east of UTC.
fn parse_offset(s: &str) -> Result<i64, String> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => return Err("expected a UTC offset such as +00".into()),
    };
    let mut parts = body.split(':');
    let h = two_digits(parts.next().unwrap_or(""), "offset hour")?;
    let m = parts
        .next()
        .map(|p| two_digits(p, "offset minute"))
        .transpose()?
        .unwrap_or(0);
    let sec = parts
        .next()
        .map(|p| two_digits(p, "offset second"))
        .transpose()?
        .unwrap_or(0);
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return Err("malformed UTC offset".into());
    }
    let seconds = i64::from(h * 3600 + m * 60 + sec);
    Ok(if negative { -seconds } else { seconds })
}

fn two_digits(s: &str, what: &str) -> Result<u32, String> {
    if s.len() != 2 {
        return Err(format!("expected two digits for the {what}"));
    }
    number(s, what)
}

/// A non-empty run of ASCII digits (at most 9, so it fits).
fn number(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected digits for the {what}"));
    }
    s.parse().map_err(|_| format!("expected digits for the {what}"))
}

fn time_micros(h: u32, m: u32, sec: u32, micros: u32) -> i64 {
    i64::from(h * 3600 + m * 60 + sec) * MICROS_PER_SECOND + i64::from(micros)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to an astronomical-year proleptic Gregorian date
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(oid: u32, typmod: i32, name: &str) -> PgType {
        pg_type(oid, typmod, name)
    }

    fn parse(oid: u32, typmod: i32, name: &str, text: &str) -> Datum {
        parse_text(&ty(oid, typmod, name), text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} as {name}: {e}"))
    }

    fn fails(oid: u32, name: &str, text: &[u8]) -> TypeError {
        match parse_text(&ty(oid, -1, name), text) {
            Ok(d) => panic!("{text:?} as {name} parsed as {d:?}"),
            Err(e) => e,
        }
    }

    fn dec(s: &str) -> Datum {
        Datum::Decimal(s.parse().unwrap())
    }

    /// Days since 1970 via a day count independent of `days_from_civil`:
    /// whole years walked one by one from 1970.
    fn slow_days(year: i64, month: u32, day: u32) -> i64 {
        let year_len = |y: i64| if is_leap(y) { 366 } else { 365 };
        let mut days = 0i64;
        if year >= 1970 {
            for y in 1970..year {
                days += year_len(y);
            }
        } else {
            for y in year..1970 {
                days -= year_len(y);
            }
        }
        for m in 1..month {
            days += i64::from(days_in_month(year, m));
        }
        days + i64::from(day) - 1
    }

    #[test]
    fn type_mapping() {
        let cases = [
            (16, -1, "boolean", DataType::Boolean),
            (21, -1, "smallint", DataType::Int16),
            (23, -1, "integer", DataType::Int32),
            (20, -1, "bigint", DataType::Int64),
            (26, -1, "oid", DataType::Int64),
            (28, -1, "xid", DataType::Int64),
            (700, -1, "real", DataType::Float32),
            (701, -1, "double precision", DataType::Float64),
            (1700, -1, "numeric", DataType::Numeric),
            (790, -1, "money", DataType::Text),
            (25, -1, "text", DataType::Text),
            (1043, 24, "character varying(20)", DataType::Text),
            (1042, 9, "character(5)", DataType::Text),
            (19, -1, "name", DataType::Text),
            (18, -1, "\"char\"", DataType::Text),
            (17, -1, "bytea", DataType::Bytes),
            (1082, -1, "date", DataType::Date),
            (1083, -1, "time without time zone", DataType::Time),
            (1266, -1, "time with time zone", DataType::Text),
            (1114, -1, "timestamp without time zone", DataType::Timestamp),
            (1184, 3, "timestamp(3) with time zone", DataType::TimestampTz),
            (1186, -1, "interval", DataType::Text),
            (2950, -1, "uuid", DataType::Uuid),
            (114, -1, "json", DataType::Text),
            (3802, -1, "jsonb", DataType::Text),
            (142, -1, "xml", DataType::Text),
            (869, -1, "inet", DataType::Text),
            (650, -1, "cidr", DataType::Text),
            (829, -1, "macaddr", DataType::Text),
            (774, -1, "macaddr8", DataType::Text),
            (1560, 4, "bit(4)", DataType::Text),
            (1562, -1, "bit varying", DataType::Text),
            (3614, -1, "tsvector", DataType::Text),
            (600, -1, "point", DataType::Text),
            (3904, -1, "int4range", DataType::Text),
            (1007, -1, "integer[]", DataType::Text),
            (1009, -1, "text[]", DataType::Text),
            (1231, 655366, "numeric(10,2)[]", DataType::Text),
            (16_385, -1, "mood", DataType::Text),
        ];
        for (oid, typmod, name, expected) in cases {
            let t = pg_type(oid, typmod, name);
            assert_eq!(t.data_type, expected, "{name}");
            assert_eq!(t.source_type, name);
        }
    }

    #[test]
    fn numeric_typmod() {
        let decimal = |precision, scale| DataType::Decimal {
            precision,
            scale,
            special: true,
        };
        // Typmods as PostgreSQL 15 stores them (pg_attribute.atttypmod).
        assert_eq!(numeric_type(655_366), decimal(10, 2));
        assert_eq!(numeric_type(65_536_004), decimal(1000, 0));
        assert_eq!(numeric_type(((1000 << 16) | 1000) + 4), decimal(1000, 1000));
        assert_eq!(numeric_type(-1), DataType::Numeric);
        assert_eq!(numeric_type(0), DataType::Numeric);
        // numeric(5,-2): scale -2 in the low 16 bits, two's complement.
        assert_eq!(numeric_type(329_730), DataType::Numeric);
        assert_eq!(numeric_type(((5 << 16) | 0xfffe) + 4), DataType::Numeric);
        // numeric(2,5): scale above precision.
        assert_eq!(numeric_type(131_081), DataType::Numeric);
        assert_eq!(pg_type(1700, 655_366, "numeric(10,2)").data_type, decimal(10, 2));
    }

    #[test]
    fn numeric_values() {
        for (typmod, name) in [(655_366, "numeric(10,2)"), (-1, "numeric")] {
            assert_eq!(parse(1700, typmod, name, "12.50"), dec("12.50"));
            assert_eq!(parse(1700, typmod, name, "NaN"), Datum::Special(Special::NaN));
            assert_eq!(parse(1700, typmod, name, "Infinity"), Datum::Special(Special::Infinity));
            assert_eq!(
                parse(1700, typmod, name, "-Infinity"),
                Datum::Special(Special::NegInfinity)
            );
        }
        let huge = format!("-{}.{}", "9".repeat(120), "0123456789".repeat(12));
        match parse(1700, -1, "numeric", &huge) {
            Datum::Decimal(d) => {
                assert_eq!(d.to_string(), huge);
                assert_eq!(d.scale(), 120);
            }
            other => panic!("{other:?}"),
        }
        match parse(1700, -1, "numeric", "-0.000") {
            Datum::Decimal(d) => {
                assert_eq!(d.scale(), 3);
                assert_eq!(d, "0.000".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(1700, -1, "numeric", "12300"), dec("12300"));
        for bad in ["", "nan", "inf", "1e5", "1,5", " 1", "1.2.3", "abc"] {
            fails(1700, "numeric", bad.as_bytes());
        }
    }

    #[test]
    fn booleans_and_integers() {
        assert_eq!(parse(16, -1, "boolean", "t"), Datum::Bool(true));
        assert_eq!(parse(16, -1, "boolean", "f"), Datum::Bool(false));
        for bad in ["true", "T", "", "1"] {
            fails(16, "boolean", bad.as_bytes());
        }
        assert_eq!(parse(21, -1, "smallint", "-32768"), Datum::Int(-32768));
        assert_eq!(parse(23, -1, "integer", "2147483647"), Datum::Int(2_147_483_647));
        assert_eq!(parse(20, -1, "bigint", "-9223372036854775808"), Datum::Int(i64::MIN));
        assert_eq!(parse(26, -1, "oid", "4294967295"), Datum::Int(4_294_967_295));
        assert_eq!(parse(28, -1, "xid", "731"), Datum::Int(731));
        fails(21, "smallint", b"32768");
        fails(23, "integer", b"abc");
        fails(23, "integer", b"2147483648");
        fails(23, "integer", b"1.0");
        fails(20, "bigint", b"");
        fails(20, "bigint", b" 1");
    }

    #[test]
    fn floats() {
        let f4 = |s: &str| match parse(700, -1, "real", s) {
            Datum::Float32(f) => f,
            other => panic!("{other:?}"),
        };
        let f8 = |s: &str| match parse(701, -1, "double precision", s) {
            Datum::Float64(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(f4("3.4028235e+38"), f32::MAX);
        assert_eq!(f4("1.17549435e-38"), f32::MIN_POSITIVE);
        assert_eq!(f4("1e-45").to_bits(), 1);
        assert_eq!(f4("-0").to_bits(), (-0.0f32).to_bits());
        assert_eq!(f4("0.1"), 0.1f32);
        assert!(f4("NaN").is_nan());
        assert_eq!(f4("Infinity"), f32::INFINITY);
        assert_eq!(f4("-Infinity"), f32::NEG_INFINITY);
        assert_eq!(f8("1.7976931348623157e+308"), f64::MAX);
        assert_eq!(f8("5e-324").to_bits(), 1);
        assert_eq!(f8("0.1"), 0.1);
        assert_eq!(f8("-1.5"), -1.5);
        assert!(f8("NaN").is_nan());
        assert_eq!(f8("-Infinity"), f64::NEG_INFINITY);
        for bad in [
            "", "inf", "nan", "infinity", "abc", "1e", "1e+", "--1", "1.2.3", " 1", "0x10", ".",
        ] {
            fails(701, "double precision", bad.as_bytes());
        }
        // Finite text that a float cannot hold is an error, not ±Infinity or 0.
        fails(700, "real", b"3.5e+38");
        fails(700, "real", b"1e-50");
        fails(701, "double precision", b"1e400");
    }

    #[test]
    fn text_family() {
        assert_eq!(parse(1042, 9, "character(5)", "ab   "), Datum::Text("ab   ".into()));
        assert_eq!(parse(25, -1, "text", ""), Datum::Text(String::new()));
        assert_eq!(
            parse(25, -1, "text", "naïve 日本語 🚀"),
            Datum::Text("naïve 日本語 🚀".into())
        );
        assert_eq!(parse(790, -1, "money", "$1,234.50"), Datum::Text("$1,234.50".into()));
        assert_eq!(
            parse(1266, -1, "time with time zone", "13:45:00+02"),
            Datum::Text("13:45:00+02".into())
        );
        assert_eq!(
            parse(1186, -1, "interval", "P1Y2M3DT4H5M6.789S"),
            Datum::Text("P1Y2M3DT4H5M6.789S".into())
        );
        assert_eq!(
            parse(1007, -1, "integer[]", "{{1,NULL},{3,4}}"),
            Datum::Text("{{1,NULL},{3,4}}".into())
        );
        assert_eq!(
            parse(3802, -1, "jsonb", r#"{"a": [1, 2]}"#),
            Datum::Text(r#"{"a": [1, 2]}"#.into())
        );
        let err = fails(25, "text", b"ab\xffcd");
        assert!(matches!(err, TypeError::NotUtf8 { valid_up_to: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("text"), "{err}");
        assert!(matches!(fails(16_385, "mood", b"\xc3"), TypeError::NotUtf8 { .. }));
    }

    #[test]
    fn bytea() {
        let bytes = |s: &[u8]| parse_text(&ty(17, -1, "bytea"), s).unwrap();
        assert_eq!(bytes(b"\\x0a0bFF"), Datum::Bytes(vec![0x0a, 0x0b, 0xff]));
        assert_eq!(bytes(b"\\x"), Datum::Bytes(vec![]));
        assert_eq!(bytes(b""), Datum::Bytes(vec![]));
        assert_eq!(
            bytes(b"\\000\\377\\\\A b"),
            Datum::Bytes(vec![0, 0xff, b'\\', b'A', b' ', b'b'])
        );
        assert_eq!(bytes(b"\\\\x41"), Datum::Bytes(b"\\x41".to_vec()));
        for bad in [&b"\\x0"[..], b"\\x0g", b"\\x 00", b"\\", b"\\400", b"\\08", b"a\\b"] {
            fails(17, "bytea", bad);
        }
    }

    #[test]
    fn dates() {
        let date = |s: &str| match parse(1082, -1, "date", s) {
            Datum::Date(d) => i64::from(d),
            other => panic!("{other:?}"),
        };
        assert_eq!(date("1970-01-01"), 0);
        assert_eq!(date("1969-12-31"), -1);
        assert_eq!(date("2024-02-29"), 19_782);
        assert_eq!(date("2400-02-29"), slow_days(2400, 2, 29));
        assert_eq!(date("1900-03-01"), slow_days(1900, 3, 1));
        assert_eq!(date("1582-10-04"), slow_days(1582, 10, 4));
        assert_eq!(date("0001-01-01"), slow_days(1, 1, 1));
        // 1 BC is astronomical year 0, a leap year.
        assert_eq!(date("0001-12-31 BC"), slow_days(0, 12, 31));
        assert_eq!(date("0001-02-29 BC"), slow_days(0, 2, 29));
        assert_eq!(date("0044-03-15 BC"), slow_days(-43, 3, 15));
        // PostgreSQL's range, as `date - '1970-01-01'` gives it.
        assert_eq!(date("4713-01-01 BC"), -2_440_550);
        assert_eq!(date("4714-11-24 BC"), -2_440_588);
        assert_eq!(date("5874897-12-31"), 2_145_042_905);
        assert_eq!(date("infinity"), i64::from(i32::MAX));
        assert_eq!(date("-infinity"), i64::from(i32::MIN));
        for bad in [
            "2024-13-01",
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-00-10",
            "2024-01-00",
            "0000-01-01",
            "24-01-01",
            "2024-1-01",
            "2024/01/01",
            "2024-01-01 AD",
            "2024-01-01 00:00:00",
            "Infinity",
            "",
            "99999999-01-01",
        ] {
            fails(1082, "date", bad.as_bytes());
        }
        // Exhaustive agreement with the slow count over a few centuries.
        for year in [-401i64, -1, 0, 1, 1899, 1900, 1969, 1970, 2000, 2100] {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), slow_days(year, month, day));
                }
            }
        }
    }

    #[test]
    fn times() {
        let time = |s: &str| match parse(1083, -1, "time without time zone", s) {
            Datum::Time(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(time("00:00:00"), 0);
        assert_eq!(time("13:45:00"), (13 * 3600 + 45 * 60) * MICROS_PER_SECOND);
        assert_eq!(
            time("13:45:00.123456"),
            (13 * 3600 + 45 * 60) * MICROS_PER_SECOND + 123_456
        );
        assert_eq!(time("23:59:59.5"), 86_399 * MICROS_PER_SECOND + 500_000);
        assert_eq!(time("24:00:00"), MICROS_PER_DAY);
        for bad in [
            "24:00:00.000001",
            "25:00:00",
            "12:60:00",
            "12:00:60",
            "12:00",
            "12:00:00.",
            "12:00:00.1234567",
            "1:00:00",
            "12:00:00+02",
            "noon",
        ] {
            fails(1083, "time without time zone", bad.as_bytes());
        }
    }

    #[test]
    fn timestamps() {
        let ts = |s: &str| match parse(1114, -1, "timestamp without time zone", s) {
            Datum::Timestamp(t) => t,
            other => panic!("{other:?}"),
        };
        let tstz = |s: &str| match parse(1184, -1, "timestamp with time zone", s) {
            Datum::Timestamp(t) => t,
            other => panic!("{other:?}"),
        };
        let at = |y, m, d, secs: i64| slow_days(y, m, d) * MICROS_PER_DAY + secs * MICROS_PER_SECOND;
        assert_eq!(ts("1970-01-01 00:00:00"), 0);
        assert_eq!(ts("1969-12-31 23:59:59.999999"), -1);
        assert_eq!(ts("1900-01-01 00:00:00"), at(1900, 1, 1, 0));
        assert_eq!(ts("2038-01-19 03:14:08"), 2_147_483_648 * MICROS_PER_SECOND);
        assert_eq!(ts("2262-04-12 00:00:00"), at(2262, 4, 12, 0));
        assert_eq!(
            ts("2024-02-29 13:45:00.123456"),
            at(2024, 2, 29, 13 * 3600 + 45 * 60) + 123_456
        );
        for (frac, micros) in [
            ("5", 500_000),
            ("05", 50_000),
            ("123", 123_000),
            ("0001", 100),
            ("00001", 10),
            ("000001", 1),
        ] {
            assert_eq!(ts(&format!("2000-01-01 00:00:00.{frac}")), at(2000, 1, 1, 0) + micros);
        }
        assert_eq!(ts("0044-03-15 10:00:00 BC"), at(-43, 3, 15, 36_000));
        assert_eq!(ts("4713-01-01 00:00:00 BC"), -210_863_520_000_000_000);
        // PostgreSQL's timestamps reach 294276 AD, but i64 microseconds since
        // 1970 end at 294247-01-10 04:00:54.775807, which is also infinity's
        // sentinel: later values are errors, never clamped.
        assert_eq!(ts("294247-01-10 04:00:54.775806"), i64::MAX - 1);
        fails(1114, "timestamp without time zone", b"294247-01-10 04:00:54.775807");
        fails(1114, "timestamp without time zone", b"294276-12-31 23:59:59.999999");
        assert_eq!(ts("infinity"), i64::MAX);
        assert_eq!(ts("-infinity"), i64::MIN);

        assert_eq!(tstz("2024-02-29 13:45:00.123456+00"), ts("2024-02-29 13:45:00.123456"));
        assert_eq!(tstz("2024-02-29 13:45:00+05:30"), ts("2024-02-29 08:15:00"));
        assert_eq!(tstz("2024-02-29 13:45:00-08"), ts("2024-02-29 21:45:00"));
        assert_eq!(tstz("1900-01-01 00:00:00+00:19:32"), ts("1899-12-31 23:40:28"));
        assert_eq!(tstz("2024-12-31 23:30:00-01"), ts("2025-01-01 00:30:00"));
        assert_eq!(tstz("0044-03-15 10:00:00+00 BC"), ts("0044-03-15 10:00:00 BC"));
        assert_eq!(tstz("infinity"), i64::MAX);
        assert_eq!(tstz("-infinity"), i64::MIN);

        for bad in [
            "2024-02-29",
            "2024-02-29T13:45:00",
            "2024-02-30 13:45:00",
            "2024-02-29 24:00:00",
            "2024-02-29 13:45",
            "2024-02-29 13:45:00 AD",
            "2024-02-29 13:45:00+00",
            "2024-02-29  13:45:00",
            "",
        ] {
            fails(1114, "timestamp without time zone", bad.as_bytes());
        }
        for bad in [
            "2024-02-29 13:45:00",
            "2024-02-29 13:45:00+5",
            "2024-02-29 13:45:00+05:3",
            "2024-02-29 13:45:00+05:60",
            "2024-02-29 13:45:00+05:30:00:00",
            "2024-02-29 13:45:00 UTC",
            "2024-02-29 13:45:00Z",
            "2024-02-29 13:45:00+",
        ] {
            fails(1184, "timestamp with time zone", bad.as_bytes());
        }
    }

    #[test]
    fn uuids() {
        let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(parse(2950, -1, "uuid", u), Datum::Uuid(u.parse().unwrap()));
        fails(2950, "uuid", b"a0eebc99-9c0b-4ef8-bb6d");
        fails(2950, "uuid", b"");
    }

    #[test]
    fn errors_name_type_and_text() {
        let err = fails(23, "integer", b"abc");
        let TypeError::Unparsable {
            source_type,
            text,
            reason,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((source_type.as_str(), text.as_str()), ("integer", "abc"));
        assert!(!reason.is_empty());
        assert!(err.to_string().starts_with("cannot read \"abc\" as integer: "), "{err}");
        assert!(fails(1082, "date", b"2024-13-01").to_string().contains("2024-13-01"));

        let long = "é".repeat(300);
        match fails(23, "integer", long.as_bytes()) {
            TypeError::Unparsable { text, .. } => {
                assert_eq!(text, format!("{}…", "é".repeat(100)));
            }
            other => panic!("{other:?}"),
        }
        // Bad bytes of every kind never panic.
        let junk: [&[u8]; 7] = [
            b"",
            b"\xff",
            b"-",
            b"+",
            b"\\",
            b"\xe2\x82",
            b"9999999999999999999999999",
        ];
        for oid in [16, 17, 20, 21, 23, 26, 700, 701, 1700, 1082, 1083, 1114, 1184, 2950, 25] {
            let t = pg_type(oid, -1, "t");
            for j in junk {
                let _ = parse_text(&t, j);
            }
        }
    }

    /// Against the real local PostgreSQL: each value is stored in a temp table,
    /// read back in the text format pgoutput sends (the simple query protocol
    /// uses the same output functions), and its type read from pg_attribute.
    mod server {
        use super::*;
        use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

        const CONNINFO: &str = "host=127.0.0.1 user=postgres dbname=postgres \
             options='-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex'";

        async fn connect() -> Client {
            let (client, connection) = tokio_postgres::connect(CONNINFO, NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (scripts/services up)");
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("connection: {e}");
                }
            });
            client
        }

        /// Rows of a query as text, exactly as the server printed them.
        async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
            let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        }

        fn same(a: &Datum, b: &Datum) -> bool {
            match (a, b) {
                (Datum::Float32(x), Datum::Float32(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                (Datum::Float64(x), Datum::Float64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                _ => a == b,
            }
        }

        fn text(s: &str) -> Datum {
            Datum::Text(s.into())
        }

        fn decimal(precision: u32, scale: u32) -> DataType {
            DataType::Decimal {
                precision,
                scale,
                special: true,
            }
        }

        #[tokio::test]
        async fn server_values_map_exactly() {
            let client = connect().await;
            client
                .batch_execute(
                    "SET lc_monetary = 'C';
                     CREATE TYPE pg_temp.mood AS ENUM ('sad', 'ok', 'happy');
                     CREATE DOMAIN pg_temp.positive AS integer CHECK (VALUE > 0);
                     CREATE TYPE pg_temp.pair AS (a integer, b text);",
                )
                .await
                .unwrap();
            let micros = |s: i64| s * MICROS_PER_SECOND;
            let huge = format!("-{}.{}", "9".repeat(110), "1234567890".repeat(3));
            let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
            #[rustfmt::skip]
            let cases: Vec<(&str, &str, &str, DataType, Datum)> = vec![
                // (column type, literal, expected format_type, data type, value)
                ("boolean", "true", "boolean", DataType::Boolean, Datum::Bool(true)),
                ("boolean", "false", "boolean", DataType::Boolean, Datum::Bool(false)),
                ("smallint", "-32768", "smallint", DataType::Int16, Datum::Int(-32768)),
                ("integer", "2147483647", "integer", DataType::Int32, Datum::Int(2_147_483_647)),
                ("bigint", "-9223372036854775808", "bigint", DataType::Int64, Datum::Int(i64::MIN)),
                ("oid", "4294967295", "oid", DataType::Int64, Datum::Int(4_294_967_295)),
                ("xid", "4294967295", "xid", DataType::Int64, Datum::Int(4_294_967_295)),
                ("real", "3.4028235e+38", "real", DataType::Float32, Datum::Float32(f32::MAX)),
                ("real", "1.17549435e-38", "real", DataType::Float32, Datum::Float32(f32::MIN_POSITIVE)),
                ("real", "0.1", "real", DataType::Float32, Datum::Float32(0.1)),
                ("real", "-0", "real", DataType::Float32, Datum::Float32(-0.0)),
                ("real", "NaN", "real", DataType::Float32, Datum::Float32(f32::NAN)),
                ("double precision", "0.1", "double precision", DataType::Float64, Datum::Float64(0.1)),
                ("double precision", "-Infinity", "double precision", DataType::Float64, Datum::Float64(f64::NEG_INFINITY)),
                ("double precision", "5e-324", "double precision", DataType::Float64, Datum::Float64(f64::from_bits(1))),
                ("numeric(10,2)", "12.5", "numeric(10,2)", decimal(10, 2), dec("12.50")),
                ("numeric(10,2)", "NaN", "numeric(10,2)", decimal(10, 2), Datum::Special(Special::NaN)),
                ("numeric(1000,0)", "1e999", "numeric(1000,0)", decimal(1000, 0), dec(&format!("1{}", "0".repeat(999)))),
                ("numeric", "NaN", "numeric", DataType::Numeric, Datum::Special(Special::NaN)),
                ("numeric", "Infinity", "numeric", DataType::Numeric, Datum::Special(Special::Infinity)),
                ("numeric", "-Infinity", "numeric", DataType::Numeric, Datum::Special(Special::NegInfinity)),
                ("numeric", "-0.000", "numeric", DataType::Numeric, dec("0.000")),
                ("numeric", &huge, "numeric", DataType::Numeric, dec(&huge)),
                ("numeric(5,-2)", "12345", "numeric(5,-2)", DataType::Numeric, dec("12300")),
                ("numeric(2,5)", "0.00012", "numeric(2,5)", DataType::Numeric, dec("0.00012")),
                ("money", "1234.5", "money", DataType::Text, text("$1,234.50")),
                ("text", "naïve 日本語 🚀 'q'", "text", DataType::Text, text("naïve 日本語 🚀 'q'")),
                ("varchar(20)", "abc ", "character varying(20)", DataType::Text, text("abc ")),
                ("char(5)", "ab", "character(5)", DataType::Text, text("ab   ")),
                ("name", "relname", "name", DataType::Text, text("relname")),
                ("\"char\"", "x", "\"char\"", DataType::Text, text("x")),
                ("bytea", "\\x00ff0a5c", "bytea", DataType::Bytes, Datum::Bytes(vec![0, 0xff, 0x0a, 0x5c])),
                ("bytea", "", "bytea", DataType::Bytes, Datum::Bytes(vec![])),
                ("date", "2024-02-29", "date", DataType::Date, Datum::Date(19_782)),
                ("date", "2400-02-29", "date", DataType::Date, Datum::Date(157_113)),
                ("date", "1969-07-20", "date", DataType::Date, Datum::Date(-165)),
                ("date", "0044-03-15 BC", "date", DataType::Date, Datum::Date(-735_160)),
                ("date", "4713-01-01 BC", "date", DataType::Date, Datum::Date(-2_440_550)),
                ("date", "4714-11-24 BC", "date", DataType::Date, Datum::Date(-2_440_588)),
                ("date", "5874897-12-31", "date", DataType::Date, Datum::Date(2_145_042_905)),
                ("date", "infinity", "date", DataType::Date, Datum::Date(i32::MAX)),
                ("date", "-infinity", "date", DataType::Date, Datum::Date(i32::MIN)),
                ("time", "13:45:00.123456", "time without time zone", DataType::Time, Datum::Time(micros(49_500) + 123_456)),
                ("time(0)", "24:00:00", "time(0) without time zone", DataType::Time, Datum::Time(MICROS_PER_DAY)),
                ("timetz", "13:45:00+02", "time with time zone", DataType::Text, text("13:45:00+02")),
                ("timestamp", "2024-02-29 13:45:00.5", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(1_709_214_300_500_000)),
                ("timestamp", "1901-12-13 20:45:51.999999", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(-2_147_483_648_000_001)),
                ("timestamp(6)", "2100-06-30 12:00:00.000001", "timestamp(6) without time zone", DataType::Timestamp, Datum::Timestamp(4_118_040_000_000_001)),
                ("timestamp", "0044-03-15 10:00:00 BC", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(-63_517_788_000_000_000)),
                ("timestamp", "4713-01-01 00:00:00 BC", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(-210_863_520_000_000_000)),
                ("timestamp", "294247-01-10 04:00:54.775806", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(i64::MAX - 1)),
                ("timestamp", "infinity", "timestamp without time zone", DataType::Timestamp, Datum::Timestamp(i64::MAX)),
                ("timestamptz", "2024-02-29 13:45:00.123456+05:30", "timestamp with time zone", DataType::TimestampTz, Datum::Timestamp(1_709_194_500_123_456)),
                ("timestamptz", "1969-12-31 16:00:00-08", "timestamp with time zone", DataType::TimestampTz, Datum::Timestamp(0)),
                ("timestamptz(3)", "2038-01-19 03:14:08.123+00", "timestamp(3) with time zone", DataType::TimestampTz, Datum::Timestamp(2_147_483_648_123_000)),
                ("timestamptz", "0044-03-15 10:00:00+00 BC", "timestamp with time zone", DataType::TimestampTz, Datum::Timestamp(-63_517_788_000_000_000)),
                ("timestamptz", "-infinity", "timestamp with time zone", DataType::TimestampTz, Datum::Timestamp(i64::MIN)),
                ("interval", "1 year 2 months 3 days 04:05:06.789", "interval", DataType::Text, text("P1Y2M3DT4H5M6.789S")),
                ("uuid", uuid, "uuid", DataType::Uuid, Datum::Uuid(uuid.parse().unwrap())),
                ("json", "{\"b\": 1,  \"a\": [1, 2]}", "json", DataType::Text, text("{\"b\": 1,  \"a\": [1, 2]}")),
                ("jsonb", "{\"b\": 1,  \"a\": [1, 2]}", "jsonb", DataType::Text, text("{\"a\": [1, 2], \"b\": 1}")),
                ("xml", "<a>x</a>", "xml", DataType::Text, text("<a>x</a>")),
                ("inet", "192.168.0.1/24", "inet", DataType::Text, text("192.168.0.1/24")),
                ("cidr", "10.0.0.0/8", "cidr", DataType::Text, text("10.0.0.0/8")),
                ("macaddr", "08:00:2b:01:02:03", "macaddr", DataType::Text, text("08:00:2b:01:02:03")),
                ("macaddr8", "08:00:2b:01:02:03:04:05", "macaddr8", DataType::Text, text("08:00:2b:01:02:03:04:05")),
                ("bit(4)", "1010", "bit(4)", DataType::Text, text("1010")),
                ("varbit", "101", "bit varying", DataType::Text, text("101")),
                ("point", "(1.5,2)", "point", DataType::Text, text("(1.5,2)")),
                ("int4range", "[1,10)", "int4range", DataType::Text, text("[1,10)")),
                ("tsvector", "a fat cat", "tsvector", DataType::Text, text("'a' 'cat' 'fat'")),
                ("integer[]", "{{1,NULL},{3,4}}", "integer[]", DataType::Text, text("{{1,NULL},{3,4}}")),
                ("integer[]", "[2:3]={7,8}", "integer[]", DataType::Text, text("[2:3]={7,8}")),
                ("text[]", "{\"a b\",NULL,\"c\\\"d\",\"\"}", "text[]", DataType::Text, text("{\"a b\",NULL,\"c\\\"d\",\"\"}")),
                ("numeric(10,2)[]", "{1.5,NaN}", "numeric(10,2)[]", DataType::Text, text("{1.50,NaN}")),
                ("mood", "happy", "mood", DataType::Text, text("happy")),
                ("positive", "5", "positive", DataType::Text, text("5")),
                ("pair", "(1,\"x y\")", "pair", DataType::Text, text("(1,\"x y\")")),
            ];
            assert!(cases.len() >= 25);
            for (i, (column_type, literal, type_name, data_type, expected)) in cases.iter().enumerate() {
                let table = format!("types_case_{i}");
                let literal_sql = literal.replace('\'', "''");
                client
                    .batch_execute(&format!(
                        "CREATE TEMP TABLE {table} (c {column_type});
                         INSERT INTO {table} VALUES ('{literal_sql}');"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{column_type} {literal:?}: {e}"));
                let row = client
                    .query_one(
                        "SELECT a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod)
                         FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attname = 'c'",
                        &[&table],
                    )
                    .await
                    .unwrap();
                let (oid, typmod, name): (u32, i32, String) = (row.get(0), row.get(1), row.get(2));
                assert_eq!(&name, type_name, "{column_type}");
                let t = pg_type(oid, typmod, &name);
                assert_eq!(t.data_type, *data_type, "{column_type} (oid {oid}, typmod {typmod})");
                assert_eq!(t.source_type, name);
                let rows = text_rows(&client, &format!("SELECT c FROM {table}")).await;
                let value = rows[0][0].clone().expect("not null");
                let datum = parse_text(&t, value.as_bytes())
                    .unwrap_or_else(|e| panic!("{column_type} {literal:?} printed as {value:?}: {e}"));
                assert!(
                    same(&datum, expected),
                    "{column_type} {literal:?} printed as {value:?}: got {datum:?}, expected {expected:?}"
                );
                // Dates and timestamps also agree with the server's own arithmetic.
                let oracle = match datum {
                    Datum::Date(d) if d != i32::MAX && d != i32::MIN => {
                        Some((i64::from(d), format!("SELECT c - date '1970-01-01' FROM {table}")))
                    }
                    Datum::Timestamp(t) if t != i64::MAX && t != i64::MIN && t < i64::MAX / 2 => Some((
                        t,
                        format!("SELECT (extract(epoch FROM c) * 1000000)::int8 FROM {table}"),
                    )),
                    _ => None,
                };
                if let Some((got, sql)) = oracle {
                    let rows = text_rows(&client, &sql).await;
                    let server: i64 = rows[0][0].as_deref().expect("not null").parse().unwrap();
                    assert_eq!(got, server, "{column_type} {value:?}");
                }
            }
        }

        /// Every byte value, in both bytea output formats.
        #[tokio::test]
        async fn server_bytea_all_bytes() {
            let client = connect().await;
            let all: Vec<u8> = (0..=255).collect();
            let t = pg_type(17, -1, "bytea");
            let sql = "SELECT decode(string_agg(lpad(to_hex(b), 2, '0'), '' ORDER BY b), 'hex')
                       FROM generate_series(0, 255) b";
            for format in ["hex", "escape"] {
                client
                    .batch_execute(&format!("SET bytea_output = {format}"))
                    .await
                    .unwrap();
                let rows = text_rows(&client, sql).await;
                let value = rows[0][0].clone().expect("not null");
                assert_eq!(
                    parse_text(&t, value.as_bytes()),
                    Ok(Datum::Bytes(all.clone())),
                    "{format}"
                );
            }
        }

        /// Dates across PostgreSQL's whole range against `date - '1970-01-01'`.
        #[tokio::test]
        async fn server_date_sweep() {
            let client = connect().await;
            let t = pg_type(1082, -1, "date");
            let rows = text_rows(
                &client,
                "SELECT date '1970-01-01' + i, i FROM generate_series(-2440588, 2145042905, 99991) i
                 UNION ALL SELECT date '5874897-12-31', 2145042905
                 UNION ALL SELECT date '1970-01-01' + i, i FROM generate_series(-800, 800) i",
            )
            .await;
            assert!(rows.len() > 20_000);
            for row in rows {
                let (text, days) = (row[0].as_deref().unwrap(), row[1].as_deref().unwrap());
                let expected: i32 = days.parse().unwrap();
                assert_eq!(parse_text(&t, text.as_bytes()), Ok(Datum::Date(expected)), "{text}");
            }
        }

        /// Timestamps and timestamptz in zones with odd offsets, against the
        /// server's own epoch arithmetic.
        #[tokio::test]
        async fn server_timestamp_sweep() {
            let client = connect().await;
            let series = "FROM generate_series(0, 108000000, 4999) i";
            let at = "+ i * interval '1 day' + ((i::int8 * 7919) % 86400000000)::float8 * interval '1 microsecond'";
            let timestamp = pg_type(1114, -1, "timestamp without time zone");
            let sql = format!(
                "SELECT ts, (extract(epoch FROM ts) * 1000000)::int8
                 FROM (SELECT timestamp '4713-01-01 00:00:00 BC' {at} AS ts {series}) s"
            );
            let rows = text_rows(&client, &sql).await;
            assert!(rows.len() > 20_000);
            let mut bc = 0;
            for row in &rows {
                let (text, micros) = (row[0].as_deref().unwrap(), row[1].as_deref().unwrap());
                bc += usize::from(text.ends_with(" BC"));
                let expected = Datum::Timestamp(micros.parse().unwrap());
                assert_eq!(parse_text(&timestamp, text.as_bytes()), Ok(expected), "{text}");
            }
            assert!(bc > 100);

            let timestamptz = pg_type(1184, -1, "timestamp with time zone");
            let mut offsets = std::collections::BTreeSet::new();
            for zone in [
                "UTC",
                "Asia/Kolkata",
                "America/Los_Angeles",
                "Europe/Amsterdam",
                "Asia/Kathmandu",
                "Pacific/Chatham",
                "America/St_Johns",
            ] {
                client.batch_execute(&format!("SET TimeZone = '{zone}'")).await.unwrap();
                let sql = format!(
                    "SELECT ts, (extract(epoch FROM ts) * 1000000)::int8
                     FROM (SELECT timestamptz '4713-01-02 00:00:00+00 BC' {at} AS ts {series}
                           UNION ALL
                           SELECT timestamptz '1850-01-01 00:00:00+00' + i * interval '1 day' + i * interval '1 hour'
                           FROM generate_series(0, 90000, 37) i) s"
                );
                for row in text_rows(&client, &sql).await {
                    let (text, micros) = (row[0].as_deref().unwrap(), row[1].as_deref().unwrap());
                    let body = text.strip_suffix(" BC").unwrap_or(text);
                    offsets.insert(body[body.rfind(['+', '-']).unwrap()..].to_owned());
                    let expected = Datum::Timestamp(micros.parse().unwrap());
                    assert_eq!(
                        parse_text(&timestamptz, text.as_bytes()),
                        Ok(expected),
                        "{zone}: {text}"
                    );
                }
            }
            // Whole hours, minutes and seconds (local mean time) all came up.
            for offset in ["+00", "+05:30", "-08", "+00:19:32", "+13:45", "-03:30"] {
                assert!(offsets.contains(offset), "{offset} not seen in {offsets:?}");
            }
        }

        /// Floats as printed against their bits in the binary protocol.
        #[tokio::test]
        async fn server_float_bits() {
            let client = connect().await;
            client
                .batch_execute(
                    "CREATE TEMP TABLE types_floats (id int, f4 real, f8 double precision);
                     INSERT INTO types_floats
                     SELECT i, (s * (1 + random()) * 10 ^ (random() * 74 - 37))::real,
                               s * (1 + random()) * 10 ^ (random() * 600 - 300)
                     FROM generate_series(1, 3000) i, LATERAL (SELECT CASE WHEN random() < 0.5 THEN -1 ELSE 1 END) x(s);
                     INSERT INTO types_floats VALUES
                       (3001, 'NaN', 'NaN'), (3002, 'Infinity', 'Infinity'), (3003, '-Infinity', '-Infinity'),
                       (3004, '-0', '-0'), (3005, '1e-45', '5e-324'), (3006, '3.4028235e38', '1.7976931348623157e308'),
                       (3007, '1.17549435e-38', '2.2250738585072014e-308'), (3008, 0.1, 0.1), (3009, 16777217, 9007199254740993);",
                )
                .await
                .unwrap();
            let binary = client
                .query("SELECT f4, f8 FROM types_floats ORDER BY id", &[])
                .await
                .unwrap();
            let texts = text_rows(&client, "SELECT f4, f8 FROM types_floats ORDER BY id").await;
            assert_eq!(binary.len(), texts.len());
            let (real, double) = (pg_type(700, -1, "real"), pg_type(701, -1, "double precision"));
            for (b, t) in binary.iter().zip(&texts) {
                let (f4, f8): (f32, f64) = (b.get(0), b.get(1));
                let (t4, t8) = (t[0].as_deref().unwrap(), t[1].as_deref().unwrap());
                let got4 = parse_text(&real, t4.as_bytes()).unwrap();
                let got8 = parse_text(&double, t8.as_bytes()).unwrap();
                assert!(same(&got4, &Datum::Float32(f4)), "{t4}: {got4:?} vs {f4:?}");
                assert!(same(&got8, &Datum::Float64(f8)), "{t8}: {got8:?} vs {f8:?}");
            }
        }

        /// Numerics keep every digit and their scale, as the server counts it.
        #[tokio::test]
        async fn server_numeric_exact() {
            let client = connect().await;
            let t = pg_type(1700, -1, "numeric");
            let rows = text_rows(
                &client,
                "SELECT x, scale(x) FROM (
                   SELECT (random() * 10 ^ (random() * 60 - 30))::numeric * (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)
                   FROM generate_series(1, 500)
                   UNION ALL SELECT 1::numeric / i FROM generate_series(1, 300) i
                   UNION ALL SELECT factorial(i) FROM generate_series(0, 120) i
                   UNION ALL SELECT -factorial(200) / 10::numeric ^ 300
                   UNION ALL SELECT x FROM unnest('{0, -0.000, 0.001, 1e-100, 1e100}'::numeric[]) x
                 ) v(x)",
            )
            .await;
            for row in rows {
                let (text, scale) = (row[0].as_deref().unwrap(), row[1].as_deref().unwrap());
                match parse_text(&t, text.as_bytes()) {
                    Ok(Datum::Decimal(d)) => {
                        assert_eq!(d.to_string(), text);
                        assert_eq!(d.scale().to_string(), scale, "{text}");
                    }
                    other => panic!("{text}: {other:?}"),
                }
            }
        }
    }
}
