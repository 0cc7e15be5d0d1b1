//! PostgreSQL's binary format of the built-in types Ferry carries, both
//! ways: the snapshot reads `COPY ... TO STDOUT (FORMAT binary)` with
//! [`decode`] (parsing text was most of a snapshot worker's CPU), apply
//! writes `COPY ... FROM STDIN (FORMAT binary)` with [`encode`] (parsing
//! text is a large part of the target server's work: 300,000 rows of the
//! 17-column table of `scripts/bench apply` took 1.73-1.89 s to read as text
//! and 1.09-1.18 s as binary, a uuid column alone half the time).
//!
//! A value equals what its text form gives, either way; tests on the server
//! read (capture) and write (apply) tables of edge values in both formats
//! and compare.
//!
//! ```text
//!  stream: "PGCOPY\n\xff\r\n\0", flags i32, extension length i32, extension
//!          per row: field count i16, per field: length i32 (-1: NULL), bytes
//!          trailer: field count -1
//! ```

use crate::value::{Datum, Decimal, Special};

/// The signature that opens binary `COPY` data.
pub const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// The signature, no flags and no header extension: what a writer starts with.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Days and microseconds from 1970-01-01 (Ferry's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A built-in type's binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// `text`, `varchar`, `char(n)`, `json`: the UTF-8 bytes, as the text format has them.
    Text,
    /// Version 1, then the text.
    Jsonb,
    Bytea,
    Date,
    /// `time` (without zone): microseconds since midnight.
    Time,
    /// `timestamp` and `timestamptz`: microseconds since 2000-01-01 (for
    /// `timestamptz`, UTC; Ferry's timestamps without zone are written as
    /// the UTC the session's zone makes of them in text).
    Timestamp,
    Uuid,
}

/// The value of `bytes`, a non-NULL field of type `b`; the error is the reason.
pub fn decode(b: Binary, bytes: &[u8]) -> Result<Datum, String> {
    let fixed = |n: usize| {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(format!("expected {n} bytes in the binary format, got {}", bytes.len()))
        }
    };
    Ok(match b {
        Binary::Bool => Datum::Bool(fixed(1)?[0] != 0),
        Binary::Int2 => Datum::Int(i16::from_be_bytes(array(fixed(2)?)).into()),
        Binary::Int4 => Datum::Int(i32::from_be_bytes(array(fixed(4)?)).into()),
        Binary::Int8 => Datum::Int(i64::from_be_bytes(array(fixed(8)?))),
        Binary::Float4 => Datum::Float32(f32::from_be_bytes(array(fixed(4)?))),
        Binary::Float8 => Datum::Float64(f64::from_be_bytes(array(fixed(8)?))),
        Binary::Numeric => numeric(bytes)?,
        Binary::Text => text_datum(bytes)?,
        Binary::Jsonb => match bytes.split_first() {
            Some((1, text)) => text_datum(text)?,
            _ => return Err("a jsonb value not of version 1".into()),
        },
        Binary::Bytea => Datum::Bytes(bytes.to_vec()),
        Binary::Date => Datum::Date(match i32::from_be_bytes(array(fixed(4)?)) {
            d @ (i32::MAX | i32::MIN) => d,
            d => d.checked_add(EPOCH_DAYS).ok_or("date out of range")?,
        }),
        Binary::Time => Datum::Time(i64::from_be_bytes(array(fixed(8)?))),
        Binary::Timestamp => Datum::Timestamp(match i64::from_be_bytes(array(fixed(8)?)) {
            t @ (i64::MAX | i64::MIN) => t,
            t => t.checked_add(EPOCH_MICROS).ok_or("timestamp out of range")?,
        }),
        Binary::Uuid => Datum::Uuid(uuid::Uuid::from_bytes(array(fixed(16)?))),
    })
}

fn text_datum(bytes: &[u8]) -> Result<Datum, String> {
    std::str::from_utf8(bytes)
        .map(|s| Datum::Text(s.to_owned()))
        .map_err(|e| format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()))
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(b);
    a
}

/// A numeric: digit count i16, weight i16 (of the first base-10000 digit),
/// sign u16, display scale u16, then the base-10000 digits (i16 each).
fn numeric(bytes: &[u8]) -> Result<Datum, String> {
    let word = |i: usize| {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a numeric cut short".to_owned())
    };
    let (count, weight, sign, scale) = (word(0)?, word(1)? as i16, word(2)?, word(3)?);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(Datum::Special(Special::NaN)),
        0xD000 => return Ok(Datum::Special(Special::Infinity)),
        0xF000 => return Ok(Datum::Special(Special::NegInfinity)),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    };
    let digits = (0..usize::from(count))
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, _>>()?;
    if let Some(d) = small_numeric(&digits, weight, scale) {
        return Ok(Datum::Decimal(Decimal::from_unscaled(
            if negative { -d } else { d },
            u32::from(scale),
        )));
    }
    numeric_text(negative, &digits, weight, scale)
        .parse::<Decimal>()
        .map(Datum::Decimal)
        .map_err(|e| e.to_string())
}

/// The unscaled value (at `scale`) of base-10000 `digits` whose first has
/// `weight`, if it fits an `i128`.
fn small_numeric(digits: &[u16], weight: i16, scale: u16) -> Option<i128> {
    let whole = digits
        .iter()
        .try_fold(0i128, |v, &d| v.checked_mul(10_000)?.checked_add(i128::from(d)))?;
    // `whole` counts in units of 10000^-(groups after the point).
    let after = i32::try_from(digits.len()).ok()? - 1 - i32::from(weight);
    let shift = i32::from(scale) - 4 * after;
    if whole == 0 {
        return Some(0);
    }
    if shift >= 0 {
        whole.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)
    } else {
        let divisor = 10i128.checked_pow(shift.unsigned_abs())?;
        (whole % divisor == 0).then_some(whole / divisor)
    }
}

/// The numeric's text, as PostgreSQL prints it (for values beyond `i128`).
fn numeric_text(negative: bool, digits: &[u16], weight: i16, scale: u16) -> String {
    let group = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut s = String::from(if negative { "-" } else { "" });
    if weight < 0 {
        s.push('0');
    } else {
        s.push_str(&group(0).to_string());
        for i in 1..=i32::from(weight) {
            s.push_str(&format!("{:04}", group(i)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(scale) {
            fraction.push_str(&format!("{:04}", group(i)));
            i += 1;
        }
        fraction.truncate(usize::from(scale));
        s.push('.');
        s.push_str(&fraction);
    }
    s
}

/// Appends `datum`'s binary form as `b`: `Some(false)` for NULL (nothing
/// written), `None` when it has none (a value out of the type's range, a
/// datum of another kind). `digits` is scratch space.
pub fn encode(datum: &Datum, b: Binary, out: &mut Vec<u8>, digits: &mut Vec<u16>) -> Option<bool> {
    match (b, datum) {
        (_, Datum::Null) => return Some(false),
        (Binary::Bool, Datum::Bool(b)) => out.push(u8::from(*b)),
        (Binary::Int2, Datum::Int(i)) => out.extend_from_slice(&i16::try_from(*i).ok()?.to_be_bytes()),
        (Binary::Int4, Datum::Int(i)) => out.extend_from_slice(&i32::try_from(*i).ok()?.to_be_bytes()),
        (Binary::Int8, Datum::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (Binary::Float4, Datum::Float32(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (Binary::Float8, Datum::Float64(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (Binary::Numeric, Datum::Decimal(d)) => {
            let scale = usize::try_from(d.scale()).ok()?;
            d.with_magnitude_digits(|negative, magnitude| push_numeric(negative, magnitude, scale, out, digits))?;
        }
        (Binary::Numeric, Datum::Int(i)) => {
            push_numeric(
                *i < 0,
                itoa::Buffer::new().format(i.unsigned_abs()).as_bytes(),
                0,
                out,
                digits,
            )?;
        }
        (Binary::Numeric, Datum::Special(s)) => {
            let sign: u16 = match s {
                Special::NaN => 0xc000,
                Special::Infinity => 0xd000,
                Special::NegInfinity => 0xf000,
            };
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        (Binary::Text, Datum::Text(s)) => out.extend_from_slice(s.as_bytes()),
        (Binary::Jsonb, Datum::Text(s)) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        (Binary::Bytea, Datum::Bytes(b)) => out.extend_from_slice(b),
        (Binary::Date, Datum::Date(d)) => {
            let days = match *d {
                i32::MIN | i32::MAX => *d,
                d => d.checked_sub(EPOCH_DAYS)?,
            };
            out.extend_from_slice(&days.to_be_bytes());
        }
        (Binary::Time, Datum::Time(t)) if (0..=MICROS_PER_DAY).contains(t) => out.extend_from_slice(&t.to_be_bytes()),
        (Binary::Timestamp, Datum::Timestamp(t)) => {
            let micros = match *t {
                i64::MIN | i64::MAX => *t,
                t => t.checked_sub(EPOCH_MICROS)?,
            };
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Binary::Uuid, Datum::Uuid(u)) => out.extend_from_slice(u.as_bytes()),
        _ => return None,
    }
    Some(true)
}

/// Appends a `numeric` of the decimal digits `magnitude` at `scale`:
/// base-10000 digits, the first one's weight (the power of 10000 it
/// counts), the sign and the display scale. `digits` is scratch space.
fn push_numeric(
    negative: bool,
    magnitude: &[u8],
    scale: usize,
    out: &mut Vec<u8>,
    digits: &mut Vec<u16>,
) -> Option<()> {
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

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, scale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn dec(s: &str) -> Datum {
        Datum::Decimal(s.parse().unwrap())
    }

    #[test]
    fn numerics_keep_their_scale_and_sign() {
        let cases: [(i16, u16, u16, &[u16], &str); 8] = [
            (0, 0, 2, &[1, 5000], "1.50"),
            (0, 0x4000, 1, &[12, 3000], "-12.3"),
            (1, 0, 0, &[1], "10000"),
            (-1, 0, 4, &[1], "0.0001"),
            (-2, 0, 6, &[1200], "0.000012"),
            (0, 0, 3, &[], "0.000"),
            (1, 0x4000, 2, &[1234, 5678, 9000], "-12345678.90"),
            (9, 0, 0, &[9999; 10], "9999999999999999999999999999999999999999"),
        ];
        for (weight, sign, scale, digits, text) in cases {
            assert_eq!(
                numeric(&numeric_bytes(weight, sign, scale, digits)),
                Ok(dec(text)),
                "{text}"
            );
            assert_eq!(numeric_text(sign == 0x4000, digits, weight, scale), text);
        }
        assert_eq!(
            numeric(&numeric_bytes(0, 0xC000, 0, &[])),
            Ok(Datum::Special(Special::NaN))
        );
        assert_eq!(
            numeric(&numeric_bytes(0, 0xF000, 0, &[])),
            Ok(Datum::Special(Special::NegInfinity))
        );
    }

    /// `numeric`'s fields for `text`: digits, weight, sign, display scale.
    fn numeric_of(text: &str) -> (Vec<u16>, i16, u16, u16) {
        let d: Decimal = text.parse().unwrap();
        let mut out = Vec::new();
        assert!(encode(&Datum::Decimal(d), Binary::Numeric, &mut out, &mut Vec::new()).unwrap());
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
        let bytes = |datum: Datum, b: Binary| {
            let mut out = Vec::new();
            encode(&datum, b, &mut out, &mut Vec::new()).map(|_| out)
        };
        assert_eq!(
            bytes(Datum::Special(Special::NegInfinity), Binary::Numeric).unwrap(),
            [0, 0, 0, 0, 0xf0, 0, 0, 0]
        );
        assert_eq!(bytes(Datum::Date(10_957), Binary::Date).unwrap(), [0, 0, 0, 0]);
        assert_eq!(
            bytes(Datum::Date(i32::MAX), Binary::Date).unwrap(),
            i32::MAX.to_be_bytes()
        );
        assert_eq!(
            bytes(Datum::Timestamp(EPOCH_MICROS - 1), Binary::Timestamp).unwrap(),
            (-1i64).to_be_bytes()
        );
        assert_eq!(
            bytes(Datum::Timestamp(i64::MIN), Binary::Timestamp).unwrap(),
            i64::MIN.to_be_bytes()
        );
        // What the binary form cannot say goes as text, where PostgreSQL judges it.
        assert_eq!(bytes(Datum::Int(40_000), Binary::Int2), None);
        assert_eq!(bytes(Datum::Time(-1), Binary::Time), None);
        assert_eq!(bytes(Datum::Text("1".into()), Binary::Int8), None);
    }
}
