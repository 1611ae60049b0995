//! Durations written like `2s`, `500ms`, `1m` or `1h` in flags and configuration.

use std::time::Duration;

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{input}\": {reason}")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// A rate that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate \"{0}\": expected events per second, like 10000/s")]
pub struct RateError(pub String);

/// Parses a rate of events per second: `10000/s` or `10000` (positive, finite).
///
/// ```
/// assert_eq!(model::duration::parse_rate("10000/s").unwrap(), 10_000.0);
/// assert!(model::duration::parse_rate("-5/s").is_err());
/// ```
pub fn parse_rate(input: &str) -> Result<f64, RateError> {
    let number = input.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(RateError(input.to_owned())),
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `10m`, `1h` (a number and a unit: ms, s, m or h); zero
/// needs no unit (`0`).
///
/// ```
/// use std::time::Duration;
/// use model::duration::parse_duration;
///
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
/// assert!(parse_duration("5 parsecs").is_err());
/// assert!(parse_duration("5").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with("--") {
        return Err(err("the value is missing (this is the next flag)"));
    }
    if text.starts_with('-') {
        return Err(err("a duration cannot be negative"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit (ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    let millis = match unit {
        "ms" => value,
        "s" => value * 1e3,
        "m" | "min" => value * 60e3,
        "h" => value * 3600e3,
        _ => return Err(err("unknown unit (use ms, s, m or h)")),
    };
    if !millis.is_finite() || millis > 1e15 {
        return Err(err("too large"));
    }
    Ok(Duration::from_micros((millis * 1e3).round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it (`2s`, `500ms`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) && millis > 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5000/s"), Ok(5000.0));
        assert_eq!(parse_rate(" 2.5 "), Ok(2.5));
        for bad in ["", "0/s", "-3/s", "fast", "inf"] {
            assert_eq!(parse_rate(bad), Err(RateError(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn errors_quote_the_input() {
        let e = parse_duration("2 parsecs").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid duration \"2 parsecs\": unknown unit (use ms, s, m or h)"
        );
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert_eq!(
            parse_duration("-1s").unwrap_err().to_string(),
            "invalid duration \"-1s\": a duration cannot be negative"
        );
        assert_eq!(
            parse_duration("--seed").unwrap_err().to_string(),
            "invalid duration \"--seed\": the value is missing (this is the next flag)"
        );
    }
}
