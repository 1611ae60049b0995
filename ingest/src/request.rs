//! Decoding and validating a `POST /emoji` body: one event object or an array of them.

use std::fmt;

use model::EmojiEvent;
use model::emojis::EmojiSet;
use model::event::{EventError, RawEvent};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A refused request body: the status to answer and the JSON body naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BodyError {
    /// What was wrong.
    pub error: String,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// The value at fault, when saying it helps (an emoji not allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For arrays, the index of the first bad event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl BodyError {
    fn malformed(message: impl fmt::Display) -> Self {
        BodyError {
            error: format!("malformed JSON: {message}"),
            field: None,
            value: None,
            index: None,
        }
    }

    fn event(error: EventError, index: Option<usize>) -> Self {
        BodyError {
            error: error.to_string(),
            field: Some(error.field().name()),
            value: error.value().map(str::to_owned),
            index,
        }
    }
}

/// An array of events whose decoding errors name the index of the bad element.
struct RawBatch<'a>(Vec<RawEvent<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for RawBatch<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for BatchVisitor<'a> {
            type Value = RawBatch<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(10_000));
                loop {
                    match seq.next_element::<RawEvent<'de>>() {
                        Ok(Some(event)) => events.push(event),
                        Ok(None) => return Ok(RawBatch(events)),
                        Err(e) => {
                            return Err(de::Error::custom(format_args!(
                                "event {}: {e}",
                                events.len()
                            )));
                        }
                    }
                }
            }
        }
        deserializer.deserialize_seq(BatchVisitor(std::marker::PhantomData))
    }
}

/// Limits, accepted emojis and clock for validating a body.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules<'a> {
    /// Most events in one request.
    pub max_batch: usize,
    /// Largest distance of a timestamp from `now_ms`, in milliseconds.
    pub max_skew_ms: i64,
    /// The server clock, UTC milliseconds (also the time of events without one).
    pub now_ms: i64,
    /// The emojis accepted.
    pub emojis: &'a EmojiSet,
    /// The user of events without a `user_id` (a viewer token's), if any.
    pub user: Option<&'a str>,
}

/// Decodes and validates a body: all its events, or the first error.
pub fn decode_body(body: &[u8], rules: &BodyRules) -> Result<Vec<EmojiEvent>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let raws = match first {
        Some(b'{') => {
            vec![serde_json::from_slice::<RawEvent<'_>>(body).map_err(BodyError::malformed)?]
        }
        Some(b'[') => {
            serde_json::from_slice::<RawBatch<'_>>(body)
                .map_err(BodyError::malformed)?
                .0
        }
        _ => {
            return Err(BodyError::malformed(
                "expected an event object or an array of events",
            ));
        }
    };
    let is_batch = first == Some(&b'[');
    if raws.is_empty() {
        return Err(BodyError::malformed("the array holds no events"));
    }
    if raws.len() > rules.max_batch {
        return Err(BodyError {
            error: format!(
                "too many events: {} in one request, at most {}",
                raws.len(),
                rules.max_batch
            ),
            field: None,
            value: None,
            index: None,
        });
    }
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            validate(raw, rules).map_err(|e| BodyError::event(e, is_batch.then_some(i)))
        })
        .collect()
}

fn validate<'a>(mut raw: RawEvent<'a>, rules: &BodyRules<'a>) -> Result<EmojiEvent, EventError> {
    if raw.user_id.is_none() {
        raw.user_id = rules.user.map(std::borrow::Cow::Borrowed);
    }
    let event = raw.validate(rules.now_ms)?;
    if !rules.emojis.allows(&event.emoji_type) {
        return Err(EventError::not_allowed(&event.emoji_type));
    }
    if (event.timestamp - rules.now_ms).abs() > rules.max_skew_ms {
        return Err(EventError::Timestamp(model::TimestampError {
            input: model::format_rfc3339_millis(event.timestamp),
            reason: "too far from the server clock",
        }));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z

    fn rules() -> BodyRules<'static> {
        BodyRules {
            max_batch: 3,
            max_skew_ms: 600_000,
            now_ms: NOW,
            emojis: EmojiSet::standard(),
            user: None,
        }
    }

    #[test]
    fn an_emoji_not_allowed_is_named_with_its_index() {
        let e = decode(r#"[{"user_id":"u1","emoji_type":"🔥"},{"user_id":"u2","emoji_type":"<b>BUY NOW</b>"}]"#)
            .unwrap_err();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "error": "emoji not allowed",
                "field": "emoji_type",
                "value": "<b>BUY NOW</b>",
                "index": 1,
            })
        );
        let only_fire = EmojiSet::parse("🔥").unwrap();
        let rules = BodyRules {
            emojis: &only_fire,
            ..rules()
        };
        let e =
            decode_body(r#"{"user_id":"u1","emoji_type":"😂"}"#.as_bytes(), &rules).unwrap_err();
        assert_eq!((e.error.as_str(), e.index), ("emoji not allowed", None));
    }

    #[test]
    fn events_without_a_user_are_the_given_users() {
        let rules = BodyRules {
            user: Some("viewer-1"),
            ..rules()
        };
        let events = decode_body(
            r#"[{"emoji_type":"🔥"},{"user_id":"other","emoji_type":"😂"}]"#.as_bytes(),
            &rules,
        )
        .unwrap();
        // The one that names another user is kept as it is: the caller refuses it.
        let users: Vec<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
        assert_eq!(users, ["viewer-1", "other"]);
        let e = decode(r#"{"emoji_type":"🔥"}"#).unwrap_err();
        assert_eq!(e.field, Some("user_id"), "no user without one given");
    }

    fn decode(body: &str) -> Result<Vec<EmojiEvent>, BodyError> {
        decode_body(body.as_bytes(), &rules())
    }

    #[test]
    fn one_event_or_an_array() {
        let one =
            decode(r#"{"user_id":"u1","emoji_type":"🔥","timestamp":"2026-11-22T10:00:01Z"}"#)
                .unwrap();
        assert_eq!(one[0].timestamp, NOW + 1000);
        let many = decode(
            r#"[{"user_id":"u1","emoji_type":"🔥","timestamp":1795341601},
            {"user_id":"u2","emoji_type":"😂","timestamp":1795341601500},
            {"user_id":"u3","emoji_type":"👏"}]"#,
        )
        .unwrap();
        let times: Vec<i64> = many.iter().map(|e| e.timestamp).collect();
        assert_eq!(times, [NOW + 1000, NOW + 1500, NOW]);
    }

    #[test]
    fn errors_name_field_and_index() {
        let e = decode(r#"[{"user_id":"u1","emoji_type":"🔥"},{"emoji_type":"🔥"}]"#).unwrap_err();
        assert_eq!(
            (e.error.as_str(), e.field, e.index),
            ("missing field user_id", Some("user_id"), Some(1))
        );
        let e = decode(r#"{"user_id":"u1","emoji_type":"🔥","timestamp":"2026-11-22T12:61"}"#)
            .unwrap_err();
        assert_eq!(e.field, Some("timestamp"));
        assert_eq!(e.index, None);
        let e = decode(r#"{"user_id":"u1","emoji_type":"🔥","timestamp":"2020-01-01T00:00:00Z"}"#)
            .unwrap_err();
        assert_eq!(
            e.error,
            "invalid timestamp \"2020-01-01T00:00:00.000Z\": too far from the server clock"
        );
        let e = decode(r#"[{"user_id":"u1","emoji_type":"🔥"},{"user_id":5}]"#).unwrap_err();
        assert!(
            e.error
                .starts_with("malformed JSON: event 1: invalid type: integer `5`"),
            "{}",
            e.error
        );
        let e = decode(r#"{"user_id":"u1""#).unwrap_err();
        assert!(e.error.starts_with("malformed JSON: EOF"), "{}", e.error);
        assert_eq!(
            decode("[]").unwrap_err().error,
            "malformed JSON: the array holds no events"
        );
        assert_eq!(
            decode("42").unwrap_err().error,
            "malformed JSON: expected an event object or an array of events"
        );
        let four = r#"[{"user_id":"a","emoji_type":"x"},{"user_id":"a","emoji_type":"x"},{"user_id":"a","emoji_type":"x"},{"user_id":"a","emoji_type":"x"}]"#;
        assert_eq!(
            decode(four).unwrap_err().error,
            "too many events: 4 in one request, at most 3"
        );
        let e = decode(r#"{"user_id":"  ","emoji_type":"🔥"}"#).unwrap_err();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"empty user_id","field":"user_id"}"#
        );
    }
}
