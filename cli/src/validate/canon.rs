//! Canonical values: one text per value, whatever engine printed it, so a
//! PostgreSQL row and a MariaDB row of the same data compare equal.
//!
//! Both sides are read as text (each engine's own cast, in UTC) and brought
//! to one form by the *source* column's Ferry type: decimals without trailing
//! zeros, floats by value, booleans as `true`/`false`, bytes as lower-case
//! hex, times and timestamps without trailing zero fractions (and without
//! PostgreSQL's `+00`), durations in microseconds, JSON re-serialised with its
//! keys sorted. Keys also need one *order* on both sides: [`compare_keys`]
//! orders canonical key values the way the engines' `ORDER BY` does under the
//! expressions `db.rs` sorts by (integers and decimals by value, the rest
//! bytewise).

use std::cmp::Ordering;

use ferry_core::meta::{Column, DataType};

/// The canonical text of `value` (`None`: NULL) of a column of `column`'s type.
pub fn canonical(column: &Column, value: Option<&str>) -> Option<String> {
    let v = value?;
    let json = matches!(column.source_type.as_str(), "json" | "jsonb");
    Some(match column.data_type {
        DataType::Boolean => match v {
            "t" | "true" | "1" | "TRUE" => "true".into(),
            "f" | "false" | "0" | "FALSE" => "false".into(),
            other => other.into(),
        },
        DataType::Int16 | DataType::Int32 | DataType::Int64 => v.trim().to_owned(),
        DataType::Decimal { .. } | DataType::Numeric => decimal(v),
        DataType::Float32 => v.parse::<f32>().map_or_else(|_| v.to_owned(), |f| float(f64::from(f))),
        DataType::Float64 => v.parse::<f64>().map_or_else(|_| v.to_owned(), float),
        DataType::Bytes => v.trim_start_matches("\\x").to_ascii_lowercase(),
        DataType::Time => fraction(v),
        DataType::Timestamp | DataType::TimestampTz => fraction(v.strip_suffix("+00").unwrap_or(v)).replace('T', " "),
        DataType::Duration => duration_micros(v).map_or_else(|| v.to_owned(), |us| us.to_string()),
        DataType::Uuid => v.to_ascii_lowercase(),
        DataType::Text if json => {
            serde_json::from_str::<serde_json::Value>(v).map_or_else(|_| v.to_owned(), |j| j.to_string())
        }
        DataType::Date | DataType::Text => v.to_owned(),
    })
}

/// `12.500` → `12.5`, `3.000` → `3`, `-0.0` → `0`.
fn decimal(v: &str) -> String {
    let v = v.trim();
    let Some((int, frac)) = v.split_once('.') else {
        return if v == "-0" { "0".into() } else { v.to_owned() };
    };
    let frac = frac.trim_end_matches('0');
    let out = if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    };
    if out == "-0" {
        "0".into()
    } else {
        out
    }
}

fn float(f: f64) -> String {
    if f == 0.0 {
        "0".into()
    } else {
        format!("{f}")
    }
}

/// `10:00:00.500000` → `10:00:00.5`; `10:00:00.000` → `10:00:00`.
fn fraction(v: &str) -> String {
    match v.split_once('.') {
        Some((whole, frac)) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            let rest = &frac[digits.len()..];
            let digits = digits.trim_end_matches('0');
            if digits.is_empty() {
                format!("{whole}{rest}")
            } else {
                format!("{whole}.{digits}{rest}")
            }
        }
        None => v.to_owned(),
    }
}

/// Microseconds of a MySQL `TIME` (`-838:59:59.000000`), a PostgreSQL
/// `interval` in ISO 8601 (`PT1H2M3.5S`, `-PT1S`, `P1DT2H`) or DuckDB's
/// `INTERVAL` as `db/duckdb.rs` reads it (microseconds already).
fn duration_micros(v: &str) -> Option<i64> {
    if let Ok(us) = v.parse::<i64>() {
        return Some(us);
    }
    let (negative, body) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let us = if let Some(iso) = body.strip_prefix('P') {
        let mut total = 0i64;
        let mut number = String::new();
        let mut in_time = false;
        for c in iso.chars() {
            match c {
                'T' => in_time = true,
                '0'..='9' | '.' | '-' => number.push(c),
                unit => {
                    let n: f64 = number.parse().ok()?;
                    number.clear();
                    let secs = match (unit, in_time) {
                        ('D', false) => 86_400.0,
                        ('H', true) => 3_600.0,
                        ('M', true) => 60.0,
                        ('S', true) => 1.0,
                        _ => return None,
                    };
                    total += (n * secs * 1e6).round() as i64;
                }
            }
        }
        total
    } else {
        let mut parts = body.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        (h * 3_600 + m * 60) * 1_000_000 + (s * 1e6).round() as i64
    };
    Some(if negative { -us } else { us })
}

/// The order of two canonical key values of `data_type`, as the engines sort them.
pub fn compare_value(data_type: DataType, a: &str, b: &str) -> Ordering {
    match data_type {
        DataType::Int16 | DataType::Int32 | DataType::Int64 => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        },
        DataType::Decimal { .. } | DataType::Numeric => compare_decimal(a, b),
        DataType::Float32 | DataType::Float64 | DataType::Duration => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => a.cmp(b),
        },
        _ => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Two keys (canonical values of the key columns, never NULL) in order.
pub fn compare_keys(types: &[DataType], a: &[String], b: &[String]) -> Ordering {
    types
        .iter()
        .zip(a.iter().zip(b))
        .map(|(t, (x, y))| compare_value(*t, x, y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Canonical decimals by value, without parsing them into a bounded type.
fn compare_decimal(a: &str, b: &str) -> Ordering {
    let sign = |s: &str| if s.starts_with('-') { -1 } else { 1 };
    match sign(a).cmp(&sign(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    let magnitude = |s: &str| {
        let s = s.trim_start_matches('-');
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        (int.trim_start_matches('0').to_owned(), frac.to_owned())
    };
    let ((ai, af), (bi, bf)) = (magnitude(a), magnitude(b));
    let by_magnitude = ai
        .len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(&bi))
        .then_with(|| af.cmp(&bf));
    if sign(a) < 0 {
        by_magnitude.reverse()
    } else {
        by_magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: DataType, source_type: &str) -> Column {
        Column::new("c", data_type, source_type)
    }

    #[test]
    fn engines_print_the_same_value_differently_and_it_is_one_value() {
        let same = |t: DataType, st: &str, a: &str, b: &str| {
            assert_eq!(
                canonical(&col(t, st), Some(a)),
                canonical(&col(t, st), Some(b)),
                "{a} vs {b}"
            );
        };
        let dec = DataType::Decimal {
            precision: 10,
            scale: 2,
            special: false,
        };
        same(dec, "numeric(10,2)", "12.50", "12.5000000000");
        same(DataType::Numeric, "numeric", "3", "3.000000000000000000000000000000");
        same(DataType::Boolean, "boolean", "t", "1");
        same(DataType::Float64, "double precision", "1e+20", "100000000000000000000");
        same(DataType::Float32, "real", "0.1", "0.100000001");
        same(DataType::Bytes, "bytea", "\\x0aff", "0AFF");
        same(
            DataType::TimestampTz,
            "timestamptz",
            "2024-01-02 03:04:05.5+00",
            "2024-01-02 03:04:05.500000",
        );
        same(
            DataType::Timestamp,
            "timestamp",
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05.000000",
        );
        same(DataType::Time, "time", "10:00:00.250", "10:00:00.250000");
        same(DataType::Duration, "time", "-PT1H2M3.5S", "-01:02:03.500000");
        same(DataType::Duration, "time", "P1DT1S", "24:00:01");
        same(DataType::Duration, "interval", "-PT1H2M3.5S", "-3723500000");
        same(
            DataType::Uuid,
            "uuid",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        );
        same(
            DataType::Text,
            "jsonb",
            r#"{"b": 1, "a": [1, 2]}"#,
            r#"{"a":[1,2],"b":1}"#,
        );
        assert_ne!(
            canonical(&col(dec, "n"), Some("12.5")),
            canonical(&col(dec, "n"), Some("12.05"))
        );
        assert_ne!(
            canonical(&col(DataType::Text, "text"), Some("a ")),
            canonical(&col(DataType::Text, "text"), Some("a"))
        );
        assert_eq!(canonical(&col(DataType::Text, "text"), None), None);
    }

    #[test]
    fn keys_order_as_the_engines_sort_them() {
        use Ordering::*;
        assert_eq!(compare_value(DataType::Int64, "9", "10"), Less);
        assert_eq!(compare_value(DataType::Int64, "-10", "-9"), Less);
        assert_eq!(compare_value(DataType::Numeric, "-2.5", "-2.25"), Less);
        assert_eq!(compare_value(DataType::Numeric, "10", "9.99"), Greater);
        assert_eq!(compare_value(DataType::Numeric, "0.5", "0.25"), Greater);
        assert_eq!(
            compare_value(DataType::Text, "B", "a"),
            Less,
            "bytewise, not by collation"
        );
        assert_eq!(
            compare_keys(
                &[DataType::Int32, DataType::Text],
                &["1".into(), "b".into()],
                &["1".into(), "a".into()]
            ),
            Greater
        );
    }
}
