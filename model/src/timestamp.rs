//! Event timestamps: every accepted form, normalised to UTC milliseconds since the epoch.
//!
//! Accepted forms:
//! - RFC 3339 with `Z` or an offset: `2026-11-22T10:00:01.250+05:30`;
//! - ISO 8601 without a zone, taken as UTC: `2026-11-22T10:00:01` or `2026-11-22 10:00:01.25`
//!   (seconds optional; `T`, `t` or a space between date and time; `.` or `,` before the
//!   fraction; offsets as `+HH:MM`, `+HHMM` or `+HH`);
//! - epoch seconds, integer or fractional: `1763805601`, `1763805601.25`, `-1.5`;
//! - epoch milliseconds, an integer of 12 or more digits: `1763805601250`.
//!
//! Fractions below a millisecond are truncated (towards the past). Years 0000 to 9999 only.

/// Milliseconds per second, minute, hour and day.
const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The earliest accepted instant, `0000-01-01T00:00:00.000Z`.
pub const MIN_TIMESTAMP_MS: i64 = -62_167_219_200_000;
/// The latest accepted instant, `9999-12-31T23:59:59.999Z`.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Digits at which an epoch integer is read as milliseconds rather than seconds.
const EPOCH_MILLIS_DIGITS: usize = 12;

/// A timestamp that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp \"{input}\": {reason}")]
pub struct TimestampError {
    /// The text as given (cut to 64 characters).
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl TimestampError {
    fn new(input: &str, reason: &'static str) -> Self {
        let input = match input.char_indices().nth(64) {
            Some((cut, _)) => format!("{}...", &input[..cut]),
            None => input.to_owned(),
        };
        TimestampError { input, reason }
    }
}

/// Parses a timestamp in any accepted form into UTC milliseconds since the epoch.
///
/// # Examples
///
/// ```
/// use model::parse_timestamp;
///
/// let millis = 1_764_000_000_000;
/// assert_eq!(parse_timestamp("2025-11-24T16:00:00Z").unwrap(), millis);
/// assert_eq!(parse_timestamp("2025-11-24T17:00:00+01:00").unwrap(), millis);
/// assert_eq!(parse_timestamp("2025-11-24T16:00:00").unwrap(), millis); // no zone: UTC
/// assert_eq!(parse_timestamp("1764000000").unwrap(), millis); // epoch seconds
/// assert_eq!(parse_timestamp("1764000000000").unwrap(), millis); // epoch milliseconds
/// let error = parse_timestamp("12:61").unwrap_err();
/// assert!(error.to_string().starts_with("invalid timestamp \"12:61\""));
/// ```
pub fn parse_timestamp(input: &str) -> Result<i64, TimestampError> {
    let text = input.trim();
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(TimestampError::new(input, "empty"));
    }
    let millis =
        if bytes.len() >= 10 && bytes[4] == b'-' && bytes[..4].iter().all(u8::is_ascii_digit) {
            parse_iso(bytes)
        } else {
            parse_epoch(bytes)
        }
        .map_err(|reason| TimestampError::new(input, reason))?;
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&millis) {
        return Err(TimestampError::new(
            input,
            "out of range (years 0000 to 9999)",
        ));
    }
    Ok(millis)
}

/// `[-]digits[.digits]`: seconds, or milliseconds for 12+ integer digits without a fraction.
fn parse_epoch(bytes: &[u8]) -> Result<i64, &'static str> {
    let (negative, body) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], Some(&body[dot + 1..])),
        None => (body, None),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return Err("not a date-time or an epoch number");
    }
    if int.len() > 18 {
        return Err("out of range (years 0000 to 9999)");
    }
    let whole = digits_value(int);
    let magnitude = match frac {
        None if int.len() >= EPOCH_MILLIS_DIGITS => whole,
        None => whole * MS_PER_SECOND,
        Some(frac) => {
            if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
                return Err("bad fraction of a second");
            }
            if whole > MAX_TIMESTAMP_MS / MS_PER_SECOND + 1 {
                return Err("out of range (years 0000 to 9999)");
            }
            whole * MS_PER_SECOND + fraction_millis(frac)
        }
    };
    if !negative {
        return Ok(magnitude);
    }
    // -1.5 s is 1.5 s before the epoch; a truncated fraction of a millisecond rounds
    // towards the past, like every other form.
    let truncated_sub_millis =
        frac.is_some_and(|f| f.len() > 3 && f[3..].iter().any(|&d| d != b'0'));
    Ok(-magnitude - i64::from(truncated_sub_millis))
}

/// `YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)fraction]][Z|z|+HH[:MM]|-HH[:MM]]`.
fn parse_iso(b: &[u8]) -> Result<i64, &'static str> {
    let year = digits_value(&b[0..4]);
    let month = two_digits(b, 5).ok_or("bad month")?;
    if b[7] != b'-' {
        return Err("expected '-' after the month");
    }
    let day = two_digits(b, 8).ok_or("bad day")?;
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if b.len() == 10 {
        return Err("missing time of day");
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected 'T' between date and time");
    }
    let hour = two_digits(b, 11).ok_or("bad hour")?;
    if b.get(13) != Some(&b':') {
        return Err("expected ':' after the hour");
    }
    let minute = two_digits(b, 14).ok_or("bad minute")?;
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minute out of range");
    }
    let mut pos = 16;
    let mut second = 0;
    let mut millis = 0;
    if b.get(pos) == Some(&b':') {
        second = two_digits(b, pos + 1).ok_or("bad second")?;
        if second > 59 {
            return Err("second out of range");
        }
        pos += 3;
        if matches!(b.get(pos), Some(b'.' | b',')) {
            let start = pos + 1;
            let end = start + b[start..].iter().take_while(|d| d.is_ascii_digit()).count();
            if end == start {
                return Err("bad fraction of a second");
            }
            millis = fraction_millis(&b[start..end]);
            pos = end;
        }
    }
    let offset = parse_offset(&b[pos..])?;
    let days = days_from_civil(year, month, day);
    Ok(days * MS_PER_DAY
        + hour * MS_PER_HOUR
        + minute * MS_PER_MINUTE
        + second * MS_PER_SECOND
        + millis
        - offset)
}

/// The zone suffix in milliseconds east of UTC; no suffix is UTC.
fn parse_offset(zone: &[u8]) -> Result<i64, &'static str> {
    let sign = match zone {
        [] | [b'Z' | b'z'] => return Ok(0),
        [b'+', ..] => 1,
        [b'-', ..] => -1,
        _ => return Err("bad zone (use Z or +HH:MM)"),
    };
    let rest = &zone[1..];
    let (h, m): (&[u8], &[u8]) = match rest.len() {
        2 => (rest, b"00"),
        4 => (&rest[..2], &rest[2..]),
        5 if rest[2] == b':' => (&rest[..2], &rest[3..]),
        _ => return Err("bad zone offset (use +HH:MM)"),
    };
    if !h.iter().chain(m).all(u8::is_ascii_digit) {
        return Err("bad zone offset (use +HH:MM)");
    }
    let (hours, minutes) = (digits_value(h), digits_value(m));
    if hours > 23 || minutes > 59 {
        return Err("zone offset out of range");
    }
    Ok(sign * (hours * MS_PER_HOUR + minutes * MS_PER_MINUTE))
}

/// Two ASCII digits at `pos`.
fn two_digits(b: &[u8], pos: usize) -> Option<i64> {
    match b.get(pos..pos + 2) {
        Some([d1, d2]) if d1.is_ascii_digit() && d2.is_ascii_digit() => {
            Some(i64::from(d1 - b'0') * 10 + i64::from(d2 - b'0'))
        }
        _ => None,
    }
}

/// The value of a run of ASCII digits (at most 18, checked by the callers).
fn digits_value(digits: &[u8]) -> i64 {
    digits
        .iter()
        .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'))
}

/// The first three digits of a fraction of a second, as milliseconds.
fn fraction_millis(frac: &[u8]) -> i64 {
    let mut millis = 0;
    for i in 0..3 {
        millis = millis * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    millis
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The wall clock, UTC milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Formats UTC milliseconds as RFC 3339 with milliseconds: `2026-11-22T10:00:02.000Z`.
///
/// ```
/// assert_eq!(model::format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
/// ```
pub fn format_rfc3339_millis(millis: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_millis(&mut out, millis);
    out
}

/// Appends the RFC 3339 form of `millis` to `out` (see [`format_rfc3339_millis`]).
pub fn write_rfc3339_millis(out: &mut String, millis: i64) {
    use std::fmt::Write;
    let days = millis.div_euclid(MS_PER_DAY);
    let in_day = millis.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / MS_PER_HOUR,
        in_day % MS_PER_HOUR / MS_PER_MINUTE,
        in_day % MS_PER_MINUTE / MS_PER_SECOND,
        in_day % MS_PER_SECOND
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_763_805_601_250; // 2025-11-22T10:00:01.250Z

    #[test]
    fn rfc3339_with_zone_or_offset() {
        assert_eq!(parse_timestamp("2025-11-22T10:00:01.250Z"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22t10:00:01.250z"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22T15:30:01.250+05:30"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22T15:30:01.250+0530"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22T05:00:01.250-05"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22T10:00:01Z"), Ok(T - 250));
    }

    #[test]
    fn iso_without_zone_is_utc() {
        assert_eq!(parse_timestamp("2025-11-22T10:00:01.250"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22 10:00:01,25"), Ok(T));
        assert_eq!(parse_timestamp("2025-11-22T10:00:01"), Ok(T - 250));
        assert_eq!(parse_timestamp("2025-11-22T10:00"), Ok(T - 1250));
        // Digits past the millisecond are truncated.
        assert_eq!(parse_timestamp("2025-11-22T10:00:01.2509999"), Ok(T));
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(parse_timestamp("1763805601"), Ok(T - 250));
        assert_eq!(parse_timestamp("1763805601.25"), Ok(T));
        assert_eq!(parse_timestamp("1763805601250"), Ok(T));
        assert_eq!(parse_timestamp(" 1763805601250 "), Ok(T));
        // 11 digits are still seconds, 12 are milliseconds.
        assert_eq!(parse_timestamp("99999999999"), Ok(99_999_999_999_000));
        assert_eq!(parse_timestamp("100000000000"), Ok(100_000_000_000));
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("-1.5"), Ok(-1500));
        assert_eq!(parse_timestamp("-1.0005"), Ok(-1001));
        assert_eq!(parse_timestamp("-86400"), Ok(-MS_PER_DAY));
    }

    #[test]
    fn before_1970_and_edges_of_range() {
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(
            parse_timestamp("0000-01-01T00:00:00Z"),
            Ok(MIN_TIMESTAMP_MS)
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999Z"),
            Ok(MAX_TIMESTAMP_MS)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert!(parse_timestamp("10000000000000000").is_err());
        assert!(parse_timestamp("0000-01-01T00:00:00+01:00").is_err());
    }

    #[test]
    fn bad_forms_name_the_problem() {
        let reason = |s| parse_timestamp(s).unwrap_err().reason;
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("yesterday"), "not a date-time or an epoch number");
        assert_eq!(reason("2025-13-01T00:00:00Z"), "month out of range");
        assert_eq!(reason("2025-02-29T00:00:00Z"), "day out of range");
        assert_eq!(reason("2025-11-22T24:00:00Z"), "hour out of range");
        assert_eq!(reason("2025-11-22T12:61:00Z"), "minute out of range");
        assert_eq!(reason("2025-11-22T12:00:60Z"), "second out of range");
        assert_eq!(reason("2025-11-22"), "missing time of day");
        assert_eq!(reason("2025-11-22T12:00:00.Z"), "bad fraction of a second");
        assert_eq!(
            reason("2025-11-22T12:00:00+5"),
            "bad zone offset (use +HH:MM)"
        );
        assert_eq!(
            reason("2025-11-22T12:00:00 UTC"),
            "bad zone (use Z or +HH:MM)"
        );
        assert_eq!(reason("12.5.1"), "bad fraction of a second");
        let e = parse_timestamp("2025-11-22T12:61").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid timestamp \"2025-11-22T12:61\": minute out of range"
        );
    }

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(format_rfc3339_millis(T), "2025-11-22T10:00:01.250Z");
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339_millis(MIN_TIMESTAMP_MS),
            "0000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut t = MIN_TIMESTAMP_MS;
        while t < MAX_TIMESTAMP_MS {
            assert_eq!(parse_timestamp(&format_rfc3339_millis(t)), Ok(t), "{t}");
            t += 7_919_777_777; // about three months, odd milliseconds
        }
    }
}
