//! Calendar arithmetic every target's value text needs: day counts to
//! proleptic Gregorian dates, microseconds to clock times.

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, for
/// any `i64` of days (H. Hinnant's algorithm); year 0 is 1 BC.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `micros` as `[-]HH:MM:SS.ffffff` (hours past 24 included: `24:00:00`,
/// a MySQL `TIME` of `-838:59:59`).
pub fn write_clock(micros: i64, out: &mut String) {
    if micros < 0 {
        out.push('-');
    }
    let micros = micros.unsigned_abs();
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    push_padded(out, secs / 3600, 2);
    out.push(':');
    push_padded(out, secs / 60 % 60, 2);
    out.push(':');
    push_padded(out, secs % 60, 2);
    out.push('.');
    push_padded(out, frac, 6);
}

/// `n` in decimal, zero-padded to `width` digits: what `format!("{n:0width$}")`
/// writes, without the formatting machinery (a row's dates and times went
/// through it at about 500 instructions a value).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_clocks() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11_016), (2000, 2, 29));
        let clock = |m| {
            let mut s = String::new();
            write_clock(m, &mut s);
            s
        };
        assert_eq!(clock(86_400_000_000), "24:00:00.000000");
        assert_eq!(clock(-3_020_399_000_001), "-838:59:59.000001");
    }
}
