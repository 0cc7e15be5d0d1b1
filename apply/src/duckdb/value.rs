//! Values as the DuckDB appender takes them.
//!
//! Rows go into DuckDB through its appender (the C API's bulk path), one value
//! a call, most of them borrowed from the decoded event: text and bytes are
//! not copied. Each value is handed over in the DuckDB type of its column (see
//! [`super::schema::column_type`]), so the appender casts nothing but decimals
//! and UUIDs, which travel as their exact text and are parsed by DuckDB into
//! the column's own type (a decimal of the column's scale parses exactly).
//!
//! DuckDB holds what every source sends (dates and timestamps of any year,
//! their infinities, NaN and infinite floats, signed intervals) except NaN and
//! infinities in a `DECIMAL` column: such a value is refused here with the
//! reason, never altered.

use duckdb::types::{TimeUnit, ToSqlOutput, Value, ValueRef};
use ferry_core::meta::DataType;
use ferry_core::value::Datum;

/// What a target column needs beyond the value's own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The source's type of the column.
    pub source: DataType,
    /// The target column is a `DECIMAL` (no NaN, no infinities).
    pub decimal: bool,
}

/// `datum` as the appender takes it for a column `slot`, or why DuckDB cannot
/// hold it unchanged.
pub fn cell(datum: &Datum, slot: Slot) -> Result<ToSqlOutput<'_>, String> {
    let borrowed = ToSqlOutput::Borrowed;
    Ok(match datum {
        Datum::Null => borrowed(ValueRef::Null),
        Datum::Bool(b) => borrowed(ValueRef::Boolean(*b)),
        Datum::Int(i) => borrowed(ValueRef::BigInt(*i)),
        Datum::Float32(f) => borrowed(ValueRef::Float(*f)),
        Datum::Float64(f) => borrowed(ValueRef::Double(*f)),
        Datum::Decimal(d) => ToSqlOutput::Owned(Value::Text(d.to_string())),
        Datum::Special(s) if slot.decimal => {
            return Err(format!(
                "{} cannot be stored: DuckDB's DECIMAL has no NaN or infinities",
                s.as_str()
            ))
        }
        Datum::Special(s) => borrowed(ValueRef::Text(s.as_str().as_bytes())),
        Datum::Text(s) => borrowed(ValueRef::Text(s.as_bytes())),
        Datum::Bytes(b) => borrowed(ValueRef::Blob(b)),
        // DuckDB's infinities are ±i32::MAX, Ferry's i32::MAX and i32::MIN.
        Datum::Date(d) => borrowed(ValueRef::Date32(if *d == i32::MIN { -i32::MAX } else { *d })),
        Datum::Time(t) if slot.source == DataType::Duration => borrowed(ValueRef::Interval {
            months: 0,
            days: 0,
            nanos: t.saturating_mul(1000),
        }),
        Datum::Time(t) => borrowed(ValueRef::Time64(TimeUnit::Microsecond, *t)),
        Datum::Timestamp(t) => borrowed(ValueRef::Timestamp(
            TimeUnit::Microsecond,
            if *t == i64::MIN { -i64::MAX } else { *t },
        )),
        Datum::Uuid(u) => ToSqlOutput::Owned(Value::Text(u.hyphenated().to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::value::Special;

    const ANY: Slot = Slot {
        source: DataType::Text,
        decimal: false,
    };

    fn value(d: &Datum, slot: Slot) -> Value {
        match cell(d, slot).unwrap() {
            ToSqlOutput::Borrowed(v) => v.to_owned(),
            ToSqlOutput::Owned(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_keep_their_meaning() {
        assert_eq!(value(&Datum::Int(-5), ANY), Value::BigInt(-5));
        assert_eq!(value(&Datum::Text("it's".into()), ANY), Value::Text("it's".into()));
        assert_eq!(
            value(&Datum::Decimal("-12.340".parse().unwrap()), ANY),
            Value::Text("-12.340".into())
        );
        assert_eq!(value(&Datum::Date(i32::MIN), ANY), Value::Date32(-i32::MAX));
        assert_eq!(
            value(&Datum::Timestamp(i64::MIN), ANY),
            Value::Timestamp(TimeUnit::Microsecond, -i64::MAX)
        );
        let duration = Slot {
            source: DataType::Duration,
            decimal: false,
        };
        assert_eq!(
            value(&Datum::Time(-1_500_000), duration),
            Value::Interval {
                months: 0,
                days: 0,
                nanos: -1_500_000_000
            }
        );
        assert_eq!(value(&Datum::Time(1), ANY), Value::Time64(TimeUnit::Microsecond, 1));
        // NaN is kept where the column is text (an unconstrained numeric), refused in a DECIMAL.
        assert_eq!(value(&Datum::Special(Special::NaN), ANY), Value::Text("NaN".into()));
        let decimal = Slot {
            source: DataType::Numeric,
            decimal: true,
        };
        let err = cell(&Datum::Special(Special::NaN), decimal).unwrap_err();
        assert!(err.starts_with("NaN cannot be stored"), "{err}");
    }
}
