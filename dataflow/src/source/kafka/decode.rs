//! Decoding a message of the events topic.

use compact_str::CompactString;
use model::EventError;
use model::event::RawEvent;

use crate::fate::Rules;

/// Why a message of the events topic is not a valid event (its reason on the late topic).
#[derive(Debug, thiserror::Error)]
pub enum InvalidEvent {
    /// The payload is not JSON of an event.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is invalid.
    #[error(transparent)]
    Field(#[from] EventError),
    /// The emoji or the timestamp breaks a rule of the run.
    #[error(transparent)]
    Rule(#[from] crate::fate::InvalidEvent),
}

/// Decodes a message into (user, emoji, timestamp), or the reason it is invalid; `clock`
/// is when it was received, ms.
pub(super) fn decode(
    payload: &[u8],
    default_ts: i64,
    clock: i64,
    rules: &Rules,
) -> Result<(CompactString, CompactString, i64), InvalidEvent> {
    let raw: RawEvent<'_> = serde_json::from_slice(payload)?;
    let event = raw.validate(default_ts)?;
    rules.check(&event.emoji_type, event.timestamp, Some(clock))?;
    Ok((
        event.user_id.into(),
        event.emoji_type.into(),
        event.timestamp,
    ))
}
