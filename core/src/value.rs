//! Cell values and their exact Avro form.
//!
//! A [`Datum`] is what a source read from a row, before it knows anything about
//! Avro. [`to_avro`] turns it into the Avro value of its column's
//! [`DataType`], and [`from_avro`] turns it back. The rule is that a value is never
//! silently rounded, truncated or dropped: a decimal with more fractional digits
//! than the column's scale, an integer outside the column's width, or a NaN in a
//! column that cannot hold one is an error naming the value, not a quiet change.
//!
//! How values that Avro has no type for travel:
//!
//! | value | on the wire |
//! |---|---|
//! | `NaN`, `Infinity`, `-Infinity` in `numeric(p,s)` | the string, second branch of a union with the decimal |
//! | `numeric` without precision and scale | its exact decimal text (`"-12.3400"`, `"NaN"`) |
//! | date `infinity` / `-infinity` | `i32::MAX` / `i32::MIN` days |
//! | timestamp `infinity` / `-infinity` | `i64::MAX` / `i64::MIN` microseconds |
//! | NaN and infinities of `float`/`double` | themselves (Avro floats are IEEE 754) |

use std::fmt;
use std::str::FromStr;

use apache_avro::types::Value as Avro;
use num_bigint::{BigInt, Sign};
use uuid::Uuid;

use crate::meta::DataType;

/// An exact decimal: `unscaled × 10^-scale`. `1.50` has unscaled 150 and scale 2;
/// the scale is kept, so the text comes back exactly as it was read.
///
/// The unscaled value is an `i128` when it fits (38 digits and more): nearly
/// every decimal a database holds. Parsing, rescaling and encoding one then
/// allocates nothing, where a `BigInt` cost a tenth of a snapshot's CPU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    unscaled: Unscaled,
    scale: u32,
}

/// `Big` only for values outside `i128`, so that equal values compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Unscaled {
    Small(i128),
    Big(BigInt),
}

impl Unscaled {
    fn from_big(big: BigInt) -> Self {
        match i128::try_from(&big) {
            Ok(small) => Unscaled::Small(small),
            Err(_) => Unscaled::Big(big),
        }
    }

    fn to_big(&self) -> BigInt {
        match self {
            Unscaled::Small(v) => BigInt::from(*v),
            Unscaled::Big(b) => b.clone(),
        }
    }
}

impl Decimal {
    pub fn new(unscaled: BigInt, scale: u32) -> Self {
        Self {
            unscaled: Unscaled::from_big(unscaled),
            scale,
        }
    }

    /// `unscaled × 10^-scale`.
    pub fn from_unscaled(unscaled: i128, scale: u32) -> Self {
        Self {
            unscaled: Unscaled::Small(unscaled),
            scale,
        }
    }

    /// The decimal whose unscaled value is the big-endian two's complement
    /// `bytes` (Avro's decimal).
    pub fn from_signed_bytes_be(bytes: &[u8], scale: u32) -> Self {
        let unscaled = match bytes.len() {
            1..=16 => {
                let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
                let mut all = [fill; 16];
                all[16 - bytes.len()..].copy_from_slice(bytes);
                Unscaled::Small(i128::from_be_bytes(all))
            }
            _ => Unscaled::from_big(BigInt::from_signed_bytes_be(bytes)),
        };
        Self { unscaled, scale }
    }

    /// `f` of the unscaled value as Avro's decimal bytes: big-endian two's
    /// complement, as short as it can be (`0` is one byte).
    pub fn with_signed_bytes_be<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.unscaled {
            Unscaled::Small(v) => {
                let all = v.to_be_bytes();
                let redundant =
                    |i: usize| (all[i] == 0 && all[i + 1] & 0x80 == 0) || (all[i] == 0xff && all[i + 1] & 0x80 != 0);
                let start = (0..15).find(|&i| !redundant(i)).unwrap_or(15);
                f(&all[start..])
            }
            Unscaled::Big(b) => f(&b.to_signed_bytes_be()),
        }
    }

    /// `f` of the sign (true: negative) and the decimal digits of the
    /// unscaled value's magnitude: `-12.34` at scale 2 is `(true, b"1234")`.
    pub fn with_magnitude_digits<R>(&self, f: impl FnOnce(bool, &[u8]) -> R) -> R {
        match &self.unscaled {
            Unscaled::Small(v) => f(*v < 0, itoa::Buffer::new().format(v.unsigned_abs()).as_bytes()),
            Unscaled::Big(b) => f(b.sign() == Sign::Minus, b.magnitude().to_str_radix(10).as_bytes()),
        }
    }

    /// The unscaled value's bytes, as [`Decimal::with_signed_bytes_be`] gives them.
    pub fn to_signed_bytes_be(&self) -> Vec<u8> {
        self.with_signed_bytes_be(<[u8]>::to_vec)
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Number of significant digits of the unscaled value (`0` has one).
    pub fn precision(&self) -> u32 {
        match &self.unscaled {
            Unscaled::Small(v) => v.unsigned_abs().checked_ilog10().map_or(1, |l| l + 1),
            Unscaled::Big(b) => u32::try_from(b.magnitude().to_str_radix(10).len()).unwrap_or(u32::MAX),
        }
    }

    /// The same number at another scale, or `None` if that would drop non-zero
    /// digits (`1.25` to scale 1). Trailing zeros may be dropped: `1.50` → `1.5`.
    pub fn rescale(&self, scale: u32) -> Option<Decimal> {
        use std::cmp::Ordering;
        if let Unscaled::Small(v) = self.unscaled {
            let small = match scale.cmp(&self.scale) {
                Ordering::Equal => Some(v),
                Ordering::Greater => 10i128.checked_pow(scale - self.scale).and_then(|m| v.checked_mul(m)),
                Ordering::Less => match 10i128.checked_pow(self.scale - scale) {
                    Some(d) if v % d != 0 => return None,
                    Some(d) => Some(v / d),
                    // A divisor past i128: only zero divides without a remainder.
                    None if v != 0 => return None,
                    None => Some(0),
                },
            };
            if let Some(unscaled) = small {
                return Some(Decimal {
                    unscaled: Unscaled::Small(unscaled),
                    scale,
                });
            }
        }
        let ten = BigInt::from(10u8);
        let big = self.unscaled.to_big();
        let unscaled = match scale.cmp(&self.scale) {
            Ordering::Equal => big,
            Ordering::Greater => big * ten.pow(scale - self.scale),
            Ordering::Less => {
                let divisor = ten.pow(self.scale - scale);
                if (&big % &divisor) != BigInt::ZERO {
                    return None;
                }
                big / divisor
            }
        };
        Some(Decimal {
            unscaled: Unscaled::from_big(unscaled),
            scale,
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, digits) = match &self.unscaled {
            Unscaled::Small(v) => (*v < 0, v.unsigned_abs().to_string()),
            Unscaled::Big(b) => (b.sign() == Sign::Minus, b.magnitude().to_str_radix(10)),
        };
        let sign = if negative { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// The text is not a plain decimal number (`-12.34`; no exponent, no spaces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a decimal number")]
pub struct BadDecimal(pub String);

impl FromStr for Decimal {
    type Err = BadDecimal;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDecimal(s.to_owned());
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return Err(bad());
        }
        let scale = u32::try_from(frac.len()).map_err(|_| bad())?;
        // Up to 38 digits fit an i128 whatever they are.
        if int.len() + frac.len() <= 38 {
            let magnitude = int
                .bytes()
                .chain(frac.bytes())
                .fold(0i128, |v, d| v * 10 + i128::from(d - b'0'));
            return Ok(Decimal {
                unscaled: Unscaled::Small(if negative { -magnitude } else { magnitude }),
                scale,
            });
        }
        let magnitude = BigInt::parse_bytes(format!("{int}{frac}").as_bytes(), 10).ok_or_else(bad)?;
        Ok(Decimal::new(if negative { -magnitude } else { magnitude }, scale))
    }
}

/// The values a decimal column may hold besides numbers (PostgreSQL `numeric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    NaN,
    Infinity,
    NegInfinity,
}

impl Special {
    pub fn as_str(self) -> &'static str {
        match self {
            Special::NaN => "NaN",
            Special::Infinity => "Infinity",
            Special::NegInfinity => "-Infinity",
        }
    }

    pub fn parse(s: &str) -> Option<Special> {
        match s {
            "NaN" => Some(Special::NaN),
            "Infinity" => Some(Special::Infinity),
            "-Infinity" => Some(Special::NegInfinity),
            _ => None,
        }
    }
}

/// One cell of a row, as read from a source.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Bool(bool),
    /// Any integer; checked against the column's width when encoded.
    Int(i64),
    Float32(f32),
    Float64(f64),
    Decimal(Decimal),
    Special(Special),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01 (see [`DataType::Date`] for infinities).
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 (wall clock or UTC, per the column type).
    Timestamp(i64),
    Uuid(Uuid),
}

impl Datum {
    fn kind(&self) -> &'static str {
        match self {
            Datum::Null => "null",
            Datum::Bool(_) => "boolean",
            Datum::Int(_) => "integer",
            Datum::Float32(_) => "float32",
            Datum::Float64(_) => "float64",
            Datum::Decimal(_) => "decimal",
            Datum::Special(_) => "NaN/Infinity",
            Datum::Text(_) => "text",
            Datum::Bytes(_) => "bytes",
            Datum::Date(_) => "date",
            Datum::Time(_) => "time",
            Datum::Timestamp(_) => "timestamp",
            Datum::Uuid(_) => "uuid",
        }
    }
}

/// Why a value cannot be carried in its column's type without changing it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("null in a NOT NULL column")]
    NullInNotNull,
    #[error("a {got} value cannot be stored as {expected}")]
    TypeMismatch { expected: DataType, got: &'static str },
    #[error("{value} does not fit in {expected}")]
    OutOfRange { expected: DataType, value: String },
    #[error("{value} has more fractional digits than scale {scale}; it would be rounded")]
    Scale { value: String, scale: u32 },
    #[error("{value} has more digits than precision {precision}")]
    Precision { value: String, precision: u32 },
    #[error("{value} cannot be stored in {expected}, which holds no NaN or infinity")]
    SpecialNotAllowed { expected: DataType, value: &'static str },
    #[error("Avro value {got} does not match column type {expected}")]
    Decode { expected: DataType, got: String },
}

/// The Avro value of `datum` in a column of type `ty`. Nullable columns are a
/// union `["null", T]`; see [`crate::schema`] for the schemas these values match.
pub fn to_avro(datum: &Datum, ty: DataType, nullable: bool) -> Result<Avro, ValueError> {
    Ok(match to_avro_branch(datum, ty, nullable)? {
        (Some(branch), value) => Avro::Union(branch, Box::new(value)),
        (None, value) => value,
    })
}

/// [`to_avro`] with the union branch apart (`None` where the type is no
/// union), so an encoder can write it without boxing the value.
pub fn to_avro_branch(datum: &Datum, ty: DataType, nullable: bool) -> Result<(Option<u32>, Avro), ValueError> {
    if let Datum::Null = datum {
        return if nullable {
            Ok((Some(0), Avro::Null))
        } else {
            Err(ValueError::NullInNotNull)
        };
    }
    let (branch, value) = non_null_to_avro(datum, ty)?;
    Ok(if nullable {
        (Some(branch + 1), value)
    } else if let DataType::Decimal { special: true, .. } = ty {
        (Some(branch), value)
    } else {
        (None, value)
    })
}

/// The value and, for union types, its branch among the non-null branches.
fn non_null_to_avro(datum: &Datum, ty: DataType) -> Result<(u32, Avro), ValueError> {
    let mismatch = || ValueError::TypeMismatch {
        expected: ty,
        got: datum.kind(),
    };
    let out_of_range = |v: &dyn fmt::Display| ValueError::OutOfRange {
        expected: ty,
        value: v.to_string(),
    };
    let value = match (ty, datum) {
        (DataType::Boolean, Datum::Bool(b)) => Avro::Boolean(*b),
        (DataType::Int16, Datum::Int(i)) => Avro::Int(i16::try_from(*i).map_err(|_| out_of_range(i))?.into()),
        (DataType::Int32, Datum::Int(i)) => Avro::Int(i32::try_from(*i).map_err(|_| out_of_range(i))?),
        (DataType::Int64, Datum::Int(i)) => Avro::Long(*i),
        (DataType::Float32, Datum::Float32(f)) => Avro::Float(*f),
        (DataType::Float64, Datum::Float64(f)) => Avro::Double(*f),
        (DataType::Float64, Datum::Float32(f)) => Avro::Double(f64::from(*f)),
        (
            DataType::Decimal {
                precision,
                scale,
                special,
            },
            d,
        ) => match d {
            Datum::Decimal(dec) => {
                let exact = dec.rescale(scale).ok_or_else(|| ValueError::Scale {
                    value: dec.to_string(),
                    scale,
                })?;
                if exact.precision() > precision {
                    return Err(ValueError::Precision {
                        value: dec.to_string(),
                        precision,
                    });
                }
                Avro::Decimal(exact.to_signed_bytes_be().into())
            }
            Datum::Int(i) => return non_null_to_avro(&Datum::Decimal(Decimal::new((*i).into(), 0)), ty),
            Datum::Special(s) if special => return Ok((1, Avro::String(s.as_str().to_owned()))),
            Datum::Special(s) => {
                return Err(ValueError::SpecialNotAllowed {
                    expected: ty,
                    value: s.as_str(),
                })
            }
            _ => return Err(mismatch()),
        },
        (DataType::Numeric, Datum::Decimal(d)) => Avro::String(d.to_string()),
        (DataType::Numeric, Datum::Int(i)) => Avro::String(i.to_string()),
        (DataType::Numeric, Datum::Special(s)) => Avro::String(s.as_str().to_owned()),
        (DataType::Text, Datum::Text(s)) => Avro::String(s.clone()),
        (DataType::Bytes, Datum::Bytes(b)) => Avro::Bytes(b.clone()),
        (DataType::Date, Datum::Date(d)) => Avro::Date(*d),
        (DataType::Time, Datum::Time(t)) => {
            if !(0..=MICROS_PER_DAY).contains(t) {
                return Err(out_of_range(t));
            }
            Avro::TimeMicros(*t)
        }
        (DataType::Duration, Datum::Time(t)) => Avro::Long(*t),
        (DataType::Timestamp, Datum::Timestamp(t)) => Avro::LocalTimestampMicros(*t),
        (DataType::TimestampTz, Datum::Timestamp(t)) => Avro::TimestampMicros(*t),
        (DataType::Uuid, Datum::Uuid(u)) => Avro::Uuid(*u),
        _ => return Err(mismatch()),
    };
    Ok((0, value))
}

/// `24:00:00` is a valid time of day in PostgreSQL and MySQL, so the range is inclusive.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The [`Datum`] an Avro value of a column of type `ty` carries. Accepts both
/// the value as written by [`to_avro`] and as decoded by `apache_avro`.
pub fn from_avro(value: &Avro, ty: DataType) -> Result<Datum, ValueError> {
    let decode_error = || ValueError::Decode {
        expected: ty,
        got: format!("{value:?}"),
    };
    Ok(match (ty, value) {
        (_, Avro::Null) => Datum::Null,
        (_, Avro::Union(_, inner)) => return from_avro(inner, ty),
        (DataType::Boolean, Avro::Boolean(b)) => Datum::Bool(*b),
        (DataType::Int16 | DataType::Int32, Avro::Int(i)) => Datum::Int((*i).into()),
        (DataType::Int64, Avro::Long(i)) => Datum::Int(*i),
        (DataType::Float32, Avro::Float(f)) => Datum::Float32(*f),
        (DataType::Float64, Avro::Double(f)) => Datum::Float64(*f),
        (DataType::Decimal { scale, .. }, Avro::Decimal(d)) => {
            Datum::Decimal(Decimal::new(BigInt::from(d.clone()), scale))
        }
        (DataType::Decimal { scale, .. }, Avro::Bytes(b)) => Datum::Decimal(Decimal::from_signed_bytes_be(b, scale)),
        (DataType::Decimal { special: true, .. } | DataType::Numeric, Avro::String(s))
            if Special::parse(s).is_some() =>
        {
            Datum::Special(Special::parse(s).ok_or_else(decode_error)?)
        }
        (DataType::Numeric, Avro::String(s)) => Datum::Decimal(s.parse().map_err(|_| decode_error())?),
        (DataType::Text, Avro::String(s)) => Datum::Text(s.clone()),
        (DataType::Bytes, Avro::Bytes(b)) => Datum::Bytes(b.clone()),
        (DataType::Date, Avro::Date(d) | Avro::Int(d)) => Datum::Date(*d),
        (DataType::Time | DataType::Duration, Avro::TimeMicros(t) | Avro::Long(t)) => Datum::Time(*t),
        (
            DataType::Timestamp | DataType::TimestampTz,
            Avro::LocalTimestampMicros(t) | Avro::TimestampMicros(t) | Avro::Long(t),
        ) => Datum::Timestamp(*t),
        (DataType::Uuid, Avro::Uuid(u)) => Datum::Uuid(*u),
        (DataType::Uuid, Avro::String(s)) => Datum::Uuid(s.parse().map_err(|_| decode_error())?),
        _ => return Err(decode_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn round_trip(datum: Datum, ty: DataType) -> Datum {
        let avro = to_avro(&datum, ty, true).unwrap_or_else(|e| panic!("{datum:?} as {ty}: {e}"));
        from_avro(&avro, ty).unwrap()
    }

    #[test]
    fn decimal_text_is_exact() {
        for s in [
            "0",
            "-0.001",
            "12.3400",
            "100",
            "-99999999999999999999999999999999999999.99",
            "0.5",
        ] {
            let d = dec(s);
            let expected = if s == "-0.001" { "-0.001" } else { s };
            assert_eq!(d.to_string(), expected);
        }
        assert_eq!(dec("+1.5").to_string(), "1.5");
        assert_eq!(dec(".5").to_string(), "0.5");
        assert_eq!(dec("5.").to_string(), "5");
        for bad in ["", "-", ".", "1e5", "1.2.3", " 1", "NaN", "1,5", "--1"] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rescale_never_rounds() {
        assert_eq!(dec("1.50").rescale(1), Some(dec("1.5")));
        assert_eq!(dec("1.5").rescale(3), Some(dec("1.500")));
        assert_eq!(dec("1.25").rescale(1), None);
        assert_eq!(dec("-7").rescale(2), Some(dec("-7.00")));
        assert_eq!(dec("0.000").precision(), 1);
        assert_eq!(dec("-123.45").precision(), 5);
    }

    #[test]
    fn decimal_precision_and_scale() {
        let ty = DataType::Decimal {
            precision: 5,
            scale: 2,
            special: false,
        };
        assert_eq!(
            round_trip(Datum::Decimal(dec("123.45")), ty),
            Datum::Decimal(dec("123.45"))
        );
        assert_eq!(
            round_trip(Datum::Decimal(dec("-1.5")), ty),
            Datum::Decimal(dec("-1.50"))
        );
        assert_eq!(round_trip(Datum::Int(-42), ty), Datum::Decimal(dec("-42.00")));
        assert!(matches!(
            to_avro(&Datum::Decimal(dec("1.234")), ty, false),
            Err(ValueError::Scale { .. })
        ));
        assert!(matches!(
            to_avro(&Datum::Decimal(dec("1234.5")), ty, false),
            Err(ValueError::Precision { .. })
        ));
        assert!(matches!(
            to_avro(&Datum::Special(Special::NaN), ty, true),
            Err(ValueError::SpecialNotAllowed { .. })
        ));
    }

    #[test]
    fn huge_decimals_survive() {
        let ty = DataType::Decimal {
            precision: 1000,
            scale: 500,
            special: false,
        };
        let s = format!("-{}.{}", "9".repeat(500), "1".repeat(500));
        assert_eq!(round_trip(Datum::Decimal(dec(&s)), ty), Datum::Decimal(dec(&s)));
        let unsigned_bigint_max = DataType::Decimal {
            precision: 20,
            scale: 0,
            special: false,
        };
        let max = Datum::Decimal(dec("18446744073709551615"));
        assert_eq!(round_trip(max.clone(), unsigned_bigint_max), max);
    }

    #[test]
    fn numeric_specials() {
        let special = DataType::Decimal {
            precision: 10,
            scale: 2,
            special: true,
        };
        for s in [Special::NaN, Special::Infinity, Special::NegInfinity] {
            assert_eq!(round_trip(Datum::Special(s), special), Datum::Special(s));
            assert_eq!(round_trip(Datum::Special(s), DataType::Numeric), Datum::Special(s));
            let not_null = to_avro(&Datum::Special(s), special, false).unwrap();
            assert_eq!(from_avro(&not_null, special).unwrap(), Datum::Special(s));
        }
        assert_eq!(
            to_avro(&Datum::Decimal(dec("1.10")), special, false).unwrap(),
            Avro::Union(0, Box::new(Avro::Decimal(vec![110u8].into())))
        );
        // Unconstrained numeric keeps each value's own scale.
        for s in ["1.10", "-0.000001", "123456789012345678901234567890.5"] {
            assert_eq!(
                round_trip(Datum::Decimal(dec(s)), DataType::Numeric),
                Datum::Decimal(dec(s))
            );
        }
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            round_trip(Datum::Int(i16::MIN.into()), DataType::Int16),
            Datum::Int(-32768)
        );
        assert!(matches!(
            to_avro(&Datum::Int(32768), DataType::Int16, true),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(to_avro(&Datum::Int(i64::from(i32::MAX) + 1), DataType::Int32, true).is_err());
        assert_eq!(round_trip(Datum::Int(i64::MIN), DataType::Int64), Datum::Int(i64::MIN));
    }

    #[test]
    fn floats_keep_nan_and_infinities() {
        for f in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
            1e308,
        ] {
            match round_trip(Datum::Float64(f), DataType::Float64) {
                Datum::Float64(g) => assert!(g.to_bits() == f.to_bits() || (f.is_nan() && g.is_nan())),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(round_trip(Datum::Float32(0.1), DataType::Float32), Datum::Float32(0.1));
        match round_trip(Datum::Float32(f32::NAN), DataType::Float32) {
            Datum::Float32(g) => assert!(g.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_and_timestamps_across_epochs() {
        use chrono::NaiveDate;
        let days = |y, m, d| {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            i32::try_from(
                date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                    .num_days(),
            )
            .unwrap()
        };
        let leap_day = days(2024, 2, 29);
        assert_eq!(leap_day, 19782);
        for d in [
            days(1969, 12, 31),
            days(1, 1, 1),
            days(2400, 2, 29),
            leap_day,
            i32::MIN,
            i32::MAX,
        ] {
            assert_eq!(round_trip(Datum::Date(d), DataType::Date), Datum::Date(d));
        }
        assert_eq!(days(1969, 12, 31), -1);
        let micros = |y, m, d| i64::from(days(y, m, d)) * 86_400_000_000;
        // Before 1970, after 2038 (past i32 seconds), and the infinities.
        for t in [
            micros(1900, 1, 1) - 1,
            micros(2038, 1, 19) + 3_600_000_001,
            micros(9999, 12, 31),
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                round_trip(Datum::Timestamp(t), DataType::Timestamp),
                Datum::Timestamp(t)
            );
            assert_eq!(
                round_trip(Datum::Timestamp(t), DataType::TimestampTz),
                Datum::Timestamp(t)
            );
        }
        assert_eq!(
            to_avro(&Datum::Timestamp(-1), DataType::TimestampTz, false).unwrap(),
            Avro::TimestampMicros(-1)
        );
        assert_eq!(
            to_avro(&Datum::Timestamp(-1), DataType::Timestamp, false).unwrap(),
            Avro::LocalTimestampMicros(-1)
        );
        assert_eq!(
            round_trip(Datum::Time(MICROS_PER_DAY), DataType::Time),
            Datum::Time(MICROS_PER_DAY)
        );
        assert!(to_avro(&Datum::Time(MICROS_PER_DAY + 1), DataType::Time, true).is_err());
        assert!(to_avro(&Datum::Time(-1), DataType::Time, true).is_err());
        // MySQL TIME: negative and past a day.
        let longest = -(838 * 3_600 + 59 * 60 + 59) * 1_000_000;
        assert_eq!(
            round_trip(Datum::Time(longest), DataType::Duration),
            Datum::Time(longest)
        );
        assert_eq!(
            round_trip(Datum::Time(-longest), DataType::Duration),
            Datum::Time(-longest)
        );
    }

    #[test]
    fn empty_string_is_not_null() {
        let empty = to_avro(&Datum::Text(String::new()), DataType::Text, true).unwrap();
        let null = to_avro(&Datum::Null, DataType::Text, true).unwrap();
        assert_ne!(empty, null);
        assert_eq!(from_avro(&empty, DataType::Text).unwrap(), Datum::Text(String::new()));
        assert_eq!(from_avro(&null, DataType::Text).unwrap(), Datum::Null);
        assert_eq!(
            to_avro(&Datum::Null, DataType::Text, false),
            Err(ValueError::NullInNotNull)
        );
        let empty_bytes = to_avro(&Datum::Bytes(vec![]), DataType::Bytes, false).unwrap();
        assert_eq!(from_avro(&empty_bytes, DataType::Bytes).unwrap(), Datum::Bytes(vec![]));
    }

    #[test]
    fn unicode_text_and_uuid() {
        let s = "naïve 日本語 🚀 \u{0}";
        assert_eq!(round_trip(Datum::Text(s.into()), DataType::Text), Datum::Text(s.into()));
        let u = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(round_trip(Datum::Uuid(u), DataType::Uuid), Datum::Uuid(u));
    }

    #[test]
    fn mismatched_types_are_errors() {
        assert!(matches!(
            to_avro(&Datum::Text("1".into()), DataType::Int32, true),
            Err(ValueError::TypeMismatch { .. })
        ));
        assert!(matches!(
            from_avro(&Avro::String("x".into()), DataType::Int64),
            Err(ValueError::Decode { .. })
        ));
        assert!(from_avro(&Avro::String("1.2.3".into()), DataType::Numeric).is_err());
    }

    proptest! {
        /// The i128 arithmetic gives what BigInt's gives, at its edges too.
        #[test]
        fn small_decimals_agree_with_big_integer_arithmetic(
            unscaled in prop_oneof![any::<i128>(), -1000i128..1000, Just(i128::MAX), Just(i128::MIN)],
            scale in 0u32..45, to in 0u32..45
        ) {
            let d = Decimal::new(unscaled.into(), scale);
            let big = BigInt::from(unscaled);
            prop_assert_eq!(d.to_signed_bytes_be(), big.to_signed_bytes_be());
            prop_assert_eq!(Decimal::from_signed_bytes_be(&big.to_signed_bytes_be(), scale), d.clone());
            prop_assert_eq!(d.precision() as usize, big.magnitude().to_str_radix(10).len());
            let ten = BigInt::from(10u8);
            let expected = match to.cmp(&scale) {
                std::cmp::Ordering::Equal => Some(big.clone()),
                std::cmp::Ordering::Greater => Some(&big * ten.pow(to - scale)),
                std::cmp::Ordering::Less => {
                    let divisor = ten.pow(scale - to);
                    (&big % &divisor == BigInt::ZERO).then(|| &big / divisor)
                }
            };
            prop_assert_eq!(d.rescale(to), expected.map(|e| Decimal::new(e, to)));
            let text = d.to_string();
            prop_assert_eq!(text.parse::<Decimal>().unwrap(), d);
        }

        #[test]
        fn any_decimal_round_trips_through_text_and_avro(
            unscaled in any::<i128>(), scale in 0u32..40, extra in 0u32..5
        ) {
            let d = Decimal::new(unscaled.into(), scale);
            prop_assert_eq!(d.to_string().parse::<Decimal>().unwrap(), d.clone());
            let ty = DataType::Decimal { precision: 40 + extra, scale: scale + extra, special: false };
            let back = round_trip(Datum::Decimal(d.clone()), ty);
            prop_assert_eq!(back, Datum::Decimal(d.rescale(scale + extra).unwrap()));
        }
    }
}
