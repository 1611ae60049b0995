//! Decoding a message of the events topic.

use compact_str::CompactString;
use model::event::RawEvent;

/// Decodes a message into (user, emoji, timestamp), or the reason it is invalid.
pub(super) fn decode(
    payload: &[u8],
    default_ts: i64,
    wall_ms: i64,
    max_future_ms: i64,
) -> Result<(CompactString, CompactString, i64), String> {
    let raw: RawEvent<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("malformed JSON: {e}"))?;
    let event = raw.validate(default_ts).map_err(|e| e.to_string())?;
    if event.timestamp > wall_ms + max_future_ms {
        return Err(format!(
            "timestamp {} is more than {} ms ahead of the wall clock",
            model::format_rfc3339_millis(event.timestamp),
            max_future_ms
        ));
    }
    Ok((
        event.user_id.into(),
        event.emoji_type.into(),
        event.timestamp,
    ))
}
