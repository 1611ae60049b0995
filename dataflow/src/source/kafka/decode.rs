//! Decoding a message of the events topic.

use compact_str::CompactString;
use model::EventError;
use model::emojis::EmojiSet;
use model::event::RawEvent;

/// Why a message of the events topic is not a valid event (its reason on the late topic).
#[derive(Debug, thiserror::Error)]
pub enum InvalidEvent {
    /// The payload is not JSON of an event.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is invalid.
    #[error(transparent)]
    Field(#[from] EventError),
    /// The emoji is not one the deployment accepts.
    #[error("emoji {0:?} is not allowed (--emojis)")]
    NotAllowed(String),
    /// The timestamp is too far ahead of the wall clock.
    #[error("timestamp {} is more than {ahead_ms} ms ahead of the wall clock", model::format_rfc3339_millis(*.timestamp))]
    Future {
        /// The event's timestamp, UTC milliseconds.
        timestamp: i64,
        /// The limit, ms.
        ahead_ms: i64,
    },
}

/// Decodes a message into (user, emoji, timestamp), or the reason it is invalid.
pub(super) fn decode(
    payload: &[u8],
    default_ts: i64,
    wall_ms: i64,
    max_future_ms: i64,
    emojis: &EmojiSet,
) -> Result<(CompactString, CompactString, i64), InvalidEvent> {
    let raw: RawEvent<'_> = serde_json::from_slice(payload)?;
    let event = raw.validate(default_ts)?;
    if !emojis.allows(&event.emoji_type) {
        return Err(InvalidEvent::NotAllowed(event.emoji_type));
    }
    if event.timestamp > wall_ms + max_future_ms {
        return Err(InvalidEvent::Future {
            timestamp: event.timestamp,
            ahead_ms: max_future_ms,
        });
    }
    Ok((
        event.user_id.into(),
        event.emoji_type.into(),
        event.timestamp,
    ))
}
