//! The emoji event as clients send it, and the validation of its fields.

use serde::{Deserialize, Serialize};

use crate::timestamp::{TimestampError, parse_timestamp};

/// Longest accepted `user_id`, in bytes after trimming.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest accepted `emoji_type`, in bytes after trimming.
pub const MAX_EMOJI_BYTES: usize = 32;

/// One reaction: a user tapped an emoji at a time (UTC milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EmojiEvent {
    /// Who reacted.
    pub user_id: String,
    /// The emoji, compared exactly as given after trimming surrounding whitespace.
    pub emoji_type: String,
    /// When, in UTC milliseconds since the epoch (in JSON: RFC 3339, see [`json_timestamp`]).
    #[serde(with = "json_timestamp")]
    pub timestamp: i64,
}

/// An [`EmojiEvent`]'s timestamp in JSON: written as RFC 3339 UTC with milliseconds, which
/// reads back as itself for any date (an epoch number of fewer than 12 digits reads as
/// seconds, so milliseconds before 1973 would not); read in any accepted form.
pub mod json_timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::RawTimestamp;
    use crate::timestamp::write_rfc3339_millis;

    /// Writes RFC 3339 UTC with milliseconds.
    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(24);
        write_rfc3339_millis(&mut text, *millis);
        serializer.serialize_str(&text)
    }

    /// Reads any accepted timestamp form.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        RawTimestamp::deserialize(deserializer)?
            .millis()
            .map_err(serde::de::Error::custom)
    }
}

/// A field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `user_id`
    UserId,
    /// `emoji_type`
    EmojiType,
    /// `timestamp`
    Timestamp,
}

impl Field {
    /// The field's name as it appears in JSON and CSV.
    pub fn name(self) -> &'static str {
        match self {
            Field::UserId => "user_id",
            Field::EmojiType => "emoji_type",
            Field::Timestamp => "timestamp",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A field is absent.
    #[error("missing field {0}")]
    Missing(Field),
    /// A field is empty after trimming.
    #[error("empty {0}")]
    Empty(Field),
    /// A field is longer than its limit.
    #[error("{field} too long: {len} bytes, at most {max}")]
    TooLong {
        /// Which field.
        field: Field,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a control character.
    #[error("control character in {field} {value:?}")]
    ControlCharacter {
        /// Which field.
        field: Field,
        /// The value as given (cut to 64 characters).
        value: String,
    },
    /// The timestamp cannot be read.
    #[error(transparent)]
    Timestamp(#[from] TimestampError),
    /// The emoji is not one the deployment accepts (`--emojis`).
    #[error("emoji not allowed")]
    NotAllowed {
        /// The emoji as given (cut to 64 characters).
        value: String,
    },
}

impl EventError {
    /// The field the error is about.
    pub fn field(&self) -> Field {
        match self {
            EventError::Missing(f) | EventError::Empty(f) => *f,
            EventError::TooLong { field, .. } | EventError::ControlCharacter { field, .. } => {
                *field
            }
            EventError::Timestamp(_) => Field::Timestamp,
            EventError::NotAllowed { .. } => Field::EmojiType,
        }
    }

    /// The value at fault, when saying it helps (an emoji not allowed).
    pub fn value(&self) -> Option<&str> {
        match self {
            EventError::NotAllowed { value } => Some(value),
            _ => None,
        }
    }

    /// The error for `emoji`, not in the accepted set.
    pub fn not_allowed(emoji: &str) -> Self {
        EventError::NotAllowed {
            value: emoji.chars().take(64).collect(),
        }
    }
}

/// Trims and checks `user_id`.
#[inline]
pub fn validate_user_id(value: &str) -> Result<&str, EventError> {
    validate_text(Field::UserId, value, MAX_USER_ID_BYTES)
}

/// Trims and checks `emoji_type`.
#[inline]
pub fn validate_emoji(value: &str) -> Result<&str, EventError> {
    validate_text(Field::EmojiType, value, MAX_EMOJI_BYTES)
}

#[inline]
fn validate_text(field: Field, value: &str, max: usize) -> Result<&str, EventError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(EventError::Empty(field));
    }
    if trimmed.len() > max {
        return Err(EventError::TooLong {
            field,
            len: trimmed.len(),
            max,
        });
    }
    if has_control_character(trimmed.as_bytes()) {
        let value = trimmed.chars().take(64).collect();
        return Err(EventError::ControlCharacter { field, value });
    }
    Ok(trimmed)
}

/// True when UTF-8 `bytes` hold a C0 or C1 control character or DEL.
#[inline]
fn has_control_character(bytes: &[u8]) -> bool {
    // C1 controls U+0080..U+009F are encoded as 0xC2 0x80..0x9F.
    bytes.iter().enumerate().any(|(i, &b)| {
        b < 0x20
            || b == 0x7f
            || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

impl EmojiEvent {
    /// Validates the three fields as given (the timestamp in any accepted form).
    ///
    /// # Examples
    ///
    /// ```
    /// use model::{EmojiEvent, Field};
    ///
    /// let event = EmojiEvent::parse(" u1 ", "🔥", "1970-01-01T00:00:02Z").unwrap();
    /// assert_eq!((event.user_id.as_str(), event.timestamp), ("u1", 2000));
    /// let error = EmojiEvent::parse("u1", "", "0").unwrap_err();
    /// assert_eq!((error.field(), error.to_string().as_str()), (Field::EmojiType, "empty emoji_type"));
    /// ```
    pub fn parse(user_id: &str, emoji_type: &str, timestamp: &str) -> Result<Self, EventError> {
        let (user_id, emoji_type, timestamp) = validate_fields(user_id, emoji_type, timestamp)?;
        Ok(EmojiEvent {
            user_id: user_id.to_owned(),
            emoji_type: emoji_type.to_owned(),
            timestamp,
        })
    }
}

/// An event as it arrives in JSON, before validation: every field may be absent, and the
/// timestamp may be a string in any accepted form or a number (epoch seconds, or epoch
/// milliseconds for integers of 12 or more digits).
#[derive(Debug, Deserialize)]
pub struct RawEvent<'a> {
    /// `user_id`, if present.
    #[serde(borrow, default)]
    pub user_id: Option<std::borrow::Cow<'a, str>>,
    /// `emoji_type`, if present.
    #[serde(borrow, default)]
    pub emoji_type: Option<std::borrow::Cow<'a, str>>,
    /// `timestamp`, if present.
    #[serde(borrow, default)]
    pub timestamp: Option<RawTimestamp<'a>>,
}

/// A timestamp as it arrives in JSON.
#[derive(Debug)]
pub enum RawTimestamp<'a> {
    /// Any accepted text form.
    Text(std::borrow::Cow<'a, str>),
    /// An integer: epoch seconds, or epoch milliseconds with 12 or more digits.
    Integer(i64),
    /// A fractional number of epoch seconds.
    Float(f64),
}

// Written by hand: serde's untagged enums buffer every value first, which costs more than
// the rest of decoding an event.
impl<'de: 'a, 'a> Deserialize<'de> for RawTimestamp<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RawTimestamp<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timestamp string or number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawTimestamp::Integer)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Float(v))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl RawTimestamp<'_> {
    /// UTC milliseconds.
    pub fn millis(&self) -> Result<i64, TimestampError> {
        match self {
            RawTimestamp::Text(text) => parse_timestamp(text),
            RawTimestamp::Integer(n) => parse_timestamp(&n.to_string()),
            RawTimestamp::Float(x) => {
                use crate::timestamp::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
                let millis = (x * 1000.0).floor();
                if (MIN_TIMESTAMP_MS as f64..=MAX_TIMESTAMP_MS as f64).contains(&millis) {
                    Ok(millis as i64)
                } else {
                    Err(out_of_range(*x))
                }
            }
        }
    }
}

fn out_of_range(x: f64) -> TimestampError {
    TimestampError {
        input: x.to_string(),
        reason: "out of range (years 0000 to 9999)",
    }
}

impl RawEvent<'_> {
    /// Validates the event; an absent timestamp becomes `default_timestamp_ms`.
    pub fn validate(&self, default_timestamp_ms: i64) -> Result<EmojiEvent, EventError> {
        let user_id = validate_user_id(
            self.user_id
                .as_deref()
                .ok_or(EventError::Missing(Field::UserId))?,
        )?;
        let emoji_type = validate_emoji(
            self.emoji_type
                .as_deref()
                .ok_or(EventError::Missing(Field::EmojiType))?,
        )?;
        let timestamp = match &self.timestamp {
            None => default_timestamp_ms,
            Some(t) => t.millis()?,
        };
        Ok(EmojiEvent {
            user_id: user_id.to_owned(),
            emoji_type: emoji_type.to_owned(),
            timestamp,
        })
    }
}

/// Validates the three fields without copying them: trimmed `user_id` and `emoji_type`,
/// and the timestamp in UTC milliseconds.
#[inline]
pub fn validate_fields<'a>(
    user_id: &'a str,
    emoji_type: &'a str,
    timestamp: &str,
) -> Result<(&'a str, &'a str, i64), EventError> {
    let user_id = validate_user_id(user_id)?;
    let emoji_type = validate_emoji(emoji_type)?;
    let timestamp = parse_timestamp(timestamp)?;
    Ok((user_id, emoji_type, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_events() {
        let raw: RawEvent<'_> =
            serde_json::from_str(r#"{"user_id":"u","emoji_type":"🔥","timestamp":1.5}"#).unwrap();
        assert_eq!(raw.validate(0).unwrap().timestamp, 1500);
        let raw: RawEvent<'_> =
            serde_json::from_str(r#"{"user_id":"u","emoji_type":"🔥","timestamp":1795341601250}"#)
                .unwrap();
        assert_eq!(raw.validate(0).unwrap().timestamp, 1_795_341_601_250);
        let raw: RawEvent<'_> =
            serde_json::from_str(r#"{"user_id":"u","emoji_type":"🔥"}"#).unwrap();
        assert_eq!(raw.validate(42).unwrap().timestamp, 42);
        let raw: RawEvent<'_> =
            serde_json::from_str(r#"{"emoji_type":"🔥","timestamp":"x"}"#).unwrap();
        assert_eq!(
            raw.validate(0).unwrap_err(),
            EventError::Missing(Field::UserId)
        );
        let raw: RawEvent<'_> =
            serde_json::from_str(r#"{"user_id":"u","emoji_type":"🔥","timestamp":1e300}"#).unwrap();
        assert_eq!(raw.validate(0).unwrap_err().field(), Field::Timestamp);
    }

    #[test]
    fn trims_and_keeps_emoji_exactly() {
        let e = EmojiEvent::parse("  u1 ", " 👨‍👩‍👧 ", "0").unwrap();
        assert_eq!(e.user_id, "u1");
        assert_eq!(e.emoji_type, "👨‍👩‍👧");
        assert_eq!(e.timestamp, 0);
        // Variation selectors are kept: ❤ and ❤️ are different emojis.
        assert_ne!(validate_emoji("❤").unwrap(), validate_emoji("❤️").unwrap());
    }

    #[test]
    fn each_bad_field_is_named() {
        fn err(u: &str, e: &str, t: &str) -> EventError {
            EmojiEvent::parse(u, e, t).unwrap_err()
        }
        assert_eq!(err("", "🔥", "0"), EventError::Empty(Field::UserId));
        assert_eq!(err("u", "  ", "0"), EventError::Empty(Field::EmojiType));
        assert_eq!(err("u", "🔥", "x").field(), Field::Timestamp);
        assert_eq!(
            err(&"u".repeat(129), "🔥", "0"),
            EventError::TooLong {
                field: Field::UserId,
                len: 129,
                max: 128
            }
        );
        assert_eq!(
            err("u", &"🔥".repeat(9), "0").to_string(),
            "emoji_type too long: 36 bytes, at most 32"
        );
        assert_eq!(
            err("u\u{1}x", "🔥", "0").to_string(),
            "control character in user_id \"u\\u{1}x\""
        );
        assert_eq!(err("u", "a\u{85}b", "0").field(), Field::EmojiType);
        assert_eq!(err("u", "a\u{7f}", "0").field(), Field::EmojiType);
        assert!(EmojiEvent::parse(&"u".repeat(128), "🔥", "0").is_ok());
        assert_eq!(
            EventError::Missing(Field::Timestamp).to_string(),
            "missing field timestamp"
        );
    }
}
