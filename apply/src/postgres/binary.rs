//! Rows in `COPY`'s binary form, where every column copied allows it.
//!
//! PostgreSQL reads binary `COPY` with each type's receive function: a
//! timestamp is its 8 bytes, a uuid its 16, where the input function of the
//! text form parses them. Of the server's work, that parsing is a large part:
//! 300,000 rows of the 17-column table of `scripts/bench apply` took 2.0-2.5 s
//! to `COPY` in as text and 1.3 s as binary (a uuid column alone 306 against
//! 144 ms).
//!
//! Binary is exact only where Ferry knows the wire form of the target
//! column's type, so a `COPY` is binary only when every column it copies is
//! one of the pairs of [`Wire::of`] (the type Ferry carries, the target
//! column's type), and only when every value of the batch has its binary
//! form; anything else (an enum, an array, a domain, a `varchar` column fed
//! numbers, a value out of a narrower column's range) goes in the text form
//! of [`super::text`], where PostgreSQL's input functions judge every value
//! and report any error in their own words. Values the receive functions
//! check (lengths of `varchar(n)`, a `numeric(p,s)`'s precision and scale, a
//! date's range) they check as the input functions do.

use ferry_core::meta::DataType;
use ferry_core::value::{Datum, Special};

/// The signature, flags and header extension length that open binary `COPY` data.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds and days from 1970-01-01 (Ferry's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_MICROS: i64 = 946_684_800_000_000;
const EPOCH_DAYS: i32 = 10_957;

/// The binary form one column's values take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// `text`, `varchar`, `bpchar`, `json`: the UTF-8 bytes.
    Text,
    /// Version 1, then the text.
    Jsonb,
    Bytea,
    Date,
    Time,
    /// `timestamp` and `timestamptz` alike: Ferry's timestamps without zone
    /// are wall clock read as UTC (the session's zone), as in the text form.
    Timestamp,
    Uuid,
}

impl Wire {
    /// The binary form of values of `data_type` for a target column of type
    /// `cast` (`format_type` without modifier), where Ferry writes one.
    pub fn of(data_type: DataType, cast: &str) -> Option<Wire> {
        use DataType as D;
        Some(match (data_type, cast) {
            (D::Boolean, "boolean") => Wire::Bool,
            (D::Int16 | D::Int32 | D::Int64, "smallint") => Wire::Int2,
            (D::Int16 | D::Int32 | D::Int64, "integer") => Wire::Int4,
            (D::Int16 | D::Int32 | D::Int64, "bigint") => Wire::Int8,
            (D::Float32, "real") => Wire::Float4,
            (D::Float64, "double precision") => Wire::Float8,
            (D::Decimal { .. } | D::Numeric, "numeric") => Wire::Numeric,
            (D::Text, "text" | "character varying" | "bpchar" | "json") => Wire::Text,
            (D::Text, "jsonb") => Wire::Jsonb,
            (D::Bytes, "bytea") => Wire::Bytea,
            (D::Date, "date") => Wire::Date,
            (D::Time, "time without time zone") => Wire::Time,
            (D::Timestamp | D::TimestampTz, "timestamp without time zone" | "timestamp with time zone") => {
                Wire::Timestamp
            }
            (D::Uuid, "uuid") => Wire::Uuid,
            _ => return None,
        })
    }
}

/// `rows`' values in the schema columns `columns`, written as `wires` (one
/// per column copied), as binary `COPY` data; `None` when a value has no
/// binary form here (the caller then copies the rows as text).
pub fn copy_binary(rows: &[&[Datum]], columns: &[usize], wires: &[Wire]) -> Option<Vec<u8>> {
    let fields = i16::try_from(columns.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER.len() + rows.len() * (2 + columns.len() * 12) + 2);
    out.extend_from_slice(HEADER);
    let mut digits = Vec::new();
    for row in rows {
        out.extend_from_slice(&fields.to_be_bytes());
        for (&c, &wire) in columns.iter().zip(wires) {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            if !value(&row[c], wire, &mut out, &mut digits)? {
                out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let len = i32::try_from(out.len() - at - 4).ok()?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Some(out)
}

/// Appends `datum`'s binary form as `wire`: `Some(false)` for NULL (nothing
/// written), `None` when it has none here.
fn value(datum: &Datum, wire: Wire, out: &mut Vec<u8>, digits: &mut Vec<u16>) -> Option<bool> {
    match (wire, datum) {
        (_, Datum::Null) => return Some(false),
        (Wire::Bool, Datum::Bool(b)) => out.push(u8::from(*b)),
        (Wire::Int2, Datum::Int(i)) => out.extend_from_slice(&i16::try_from(*i).ok()?.to_be_bytes()),
        (Wire::Int4, Datum::Int(i)) => out.extend_from_slice(&i32::try_from(*i).ok()?.to_be_bytes()),
        (Wire::Int8, Datum::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (Wire::Float4, Datum::Float32(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (Wire::Float8, Datum::Float64(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (Wire::Numeric, Datum::Decimal(d)) => {
            let scale = usize::try_from(d.scale()).ok()?;
            d.with_magnitude_digits(|negative, magnitude| numeric(negative, magnitude, scale, out, digits))?;
        }
        (Wire::Numeric, Datum::Int(i)) => {
            numeric(
                *i < 0,
                itoa::Buffer::new().format(i.unsigned_abs()).as_bytes(),
                0,
                out,
                digits,
            )?;
        }
        (Wire::Numeric, Datum::Special(s)) => {
            let sign: u16 = match s {
                Special::NaN => 0xc000,
                Special::Infinity => 0xd000,
                Special::NegInfinity => 0xf000,
            };
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        (Wire::Text, Datum::Text(s)) => out.extend_from_slice(s.as_bytes()),
        (Wire::Jsonb, Datum::Text(s)) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        (Wire::Bytea, Datum::Bytes(b)) => out.extend_from_slice(b),
        (Wire::Date, Datum::Date(d)) => {
            let days = match *d {
                i32::MIN | i32::MAX => *d,
                d => d.checked_sub(EPOCH_DAYS)?,
            };
            out.extend_from_slice(&days.to_be_bytes());
        }
        (Wire::Time, Datum::Time(t)) if (0..=86_400_000_000).contains(t) => out.extend_from_slice(&t.to_be_bytes()),
        (Wire::Timestamp, Datum::Timestamp(t)) => {
            let micros = match *t {
                i64::MIN | i64::MAX => *t,
                t => t.checked_sub(EPOCH_MICROS)?,
            };
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Wire::Uuid, Datum::Uuid(u)) => out.extend_from_slice(u.as_bytes()),
        _ => return None,
    }
    Some(true)
}

/// Appends a `numeric` of the decimal digits `magnitude` at `scale`:
/// base-10000 digits, the first one's weight (the power of 10000 it
/// counts), the sign and the display scale. `digits` is scratch space.
fn numeric(negative: bool, magnitude: &[u8], scale: usize, out: &mut Vec<u8>, digits: &mut Vec<u16>) -> Option<()> {
    // The receive function refuses a display scale over 0x3fff.
    let dscale = u16::try_from(scale).ok().filter(|&s| s <= 0x3fff)?;
    let integer = magnitude.len().saturating_sub(scale);
    // The decimal digits from the first group of four before the point to
    // the last after it: zeros that pad the integer part to whole groups,
    // the integer part, zeros a fraction smaller than the scale starts with,
    // the fraction, zeros that pad it to whole groups.
    let lead = (4 - integer % 4) % 4;
    let fraction_zeros = scale.saturating_sub(magnitude.len());
    let decimal = |i: usize| -> Option<u16> {
        let i = i.checked_sub(lead)?;
        let at = if i < integer {
            i
        } else {
            integer + (i - integer).checked_sub(fraction_zeros)?
        };
        magnitude.get(at).map(|d| u16::from(d - b'0'))
    };
    let groups = (lead + integer + scale).div_ceil(4);
    digits.clear();
    digits.extend((0..groups).map(|g| (0..4).fold(0, |n, k| n * 10 + decimal(g * 4 + k).unwrap_or(0))));
    let mut weight = i64::try_from((lead + integer) / 4).ok()? - 1;
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    let last = digits.iter().rposition(|&d| d != 0).map_or(first, |l| l + 1);
    weight -= i64::try_from(first).ok()?;
    let significant = &digits[first..last];
    let (weight, sign) = if significant.is_empty() {
        (0, 0)
    } else {
        (i16::try_from(weight).ok()?, if negative { 0x4000 } else { 0 })
    };
    out.extend_from_slice(&u16::try_from(significant.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&u16::to_be_bytes(sign));
    out.extend_from_slice(&dscale.to_be_bytes());
    for d in significant {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::value::Decimal;

    /// `numeric`'s fields for `text`: digits, weight, sign, display scale.
    fn numeric_of(text: &str) -> (Vec<u16>, i16, u16, u16) {
        let d: Decimal = text.parse().unwrap();
        let mut out = Vec::new();
        assert!(value(&Datum::Decimal(d), Wire::Numeric, &mut out, &mut Vec::new()).unwrap());
        let word = |i: usize| u16::from_be_bytes([out[i], out[i + 1]]);
        let n = usize::from(word(0));
        assert_eq!(out.len(), 8 + 2 * n, "{text}");
        let digits = (0..n).map(|i| word(8 + 2 * i)).collect();
        (digits, word(2) as i16, word(4), word(6))
    }

    #[test]
    fn numerics_in_base_10000() {
        assert_eq!(numeric_of("0"), (vec![], 0, 0, 0));
        assert_eq!(numeric_of("0.00"), (vec![], 0, 0, 2));
        assert_eq!(numeric_of("-0.00"), (vec![], 0, 0, 2));
        assert_eq!(numeric_of("1"), (vec![1], 0, 0, 0));
        assert_eq!(numeric_of("12345.25"), (vec![1, 2345, 2500], 1, 0, 2));
        assert_eq!(numeric_of("-12345.25"), (vec![1, 2345, 2500], 1, 0x4000, 2));
        assert_eq!(numeric_of("10000"), (vec![1], 1, 0, 0));
        assert_eq!(numeric_of("0.0001"), (vec![1], -1, 0, 4));
        assert_eq!(numeric_of("0.00001"), (vec![1000], -2, 0, 5));
        assert_eq!(numeric_of("0.5"), (vec![5000], -1, 0, 1));
        assert_eq!(numeric_of("100000000.000100"), (vec![1, 0, 0, 1], 2, 0, 6));
        assert_eq!(
            numeric_of("142857.14285714285714285714"),
            (vec![14, 2857, 1428, 5714, 2857, 1428, 5714], 1, 0, 20)
        );
        // Beyond an i128.
        assert_eq!(
            numeric_of("123456789012345678901234567890123456789012.5"),
            (
                vec![12, 3456, 7890, 1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 5000],
                10,
                0,
                1
            )
        );
    }

    #[test]
    fn specials_dates_and_times() {
        let bytes = |datum: Datum, wire: Wire| {
            let mut out = Vec::new();
            value(&datum, wire, &mut out, &mut Vec::new()).map(|_| out)
        };
        assert_eq!(
            bytes(Datum::Special(Special::NegInfinity), Wire::Numeric).unwrap(),
            [0, 0, 0, 0, 0xf0, 0, 0, 0]
        );
        assert_eq!(bytes(Datum::Date(10_957), Wire::Date).unwrap(), [0, 0, 0, 0]);
        assert_eq!(
            bytes(Datum::Date(i32::MAX), Wire::Date).unwrap(),
            i32::MAX.to_be_bytes()
        );
        assert_eq!(
            bytes(Datum::Timestamp(EPOCH_MICROS - 1), Wire::Timestamp).unwrap(),
            (-1i64).to_be_bytes()
        );
        assert_eq!(
            bytes(Datum::Timestamp(i64::MIN), Wire::Timestamp).unwrap(),
            i64::MIN.to_be_bytes()
        );
        // What the binary form cannot say goes as text, where PostgreSQL judges it.
        assert_eq!(bytes(Datum::Int(40_000), Wire::Int2), None);
        assert_eq!(bytes(Datum::Time(-1), Wire::Time), None);
        assert_eq!(bytes(Datum::Text("1".into()), Wire::Int8), None);
    }

    #[test]
    fn rows_nulls_and_framing() {
        let row = [Datum::Int(7), Datum::Null, Datum::Text("é".into())];
        let out = copy_binary(&[&row], &[0, 1, 2], &[Wire::Int8, Wire::Text, Wire::Text]).unwrap();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice("é".as_bytes());
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(copy_binary(&[&row], &[0], &[Wire::Uuid]), None);
    }
}
