//! What must hold for any input to the decoders, whatever the bytes: no panic, and what is
//! accepted reads back the same. The fuzz targets (`fuzz/`, AFL++) run these on the inputs
//! they generate, and `model/tests/corpus.rs` runs them on every input the fuzzer kept.

use crate::client::ClientMessage;
use crate::event::RawEvent;
use crate::log::{LOG_HEADER, LogColumns};
use crate::{format_rfc3339_millis, parse_timestamp};

/// The JSON event decoder: an accepted event serializes to JSON that decodes to itself.
pub fn event_json(bytes: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<RawEvent<'_>>(bytes) else {
        return;
    };
    let Ok(event) = raw.validate(0) else {
        return;
    };
    let json = serde_json::to_vec(&event).expect("an event serializes");
    let again = serde_json::from_slice::<RawEvent<'_>>(&json)
        .expect("a serialized event is JSON")
        .validate(0);
    assert_eq!(again.as_ref(), Ok(&event), "an event reads back as itself");
}

/// The CSV row reader: a header, then rows; an accepted row's fields are valid event fields
/// and its timestamp formats and parses back.
pub fn csv_row(bytes: &[u8]) {
    let (header, rows) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let columns = LogColumns::from_header(header).unwrap_or_else(|_| {
        LogColumns::from_header(LOG_HEADER.as_bytes()).expect("the log header")
    });
    for row in rows.split(|&b| b == b'\n') {
        let decoded = columns.decode(row, |user, emoji, timestamp| {
            (user.to_owned(), emoji.to_owned(), timestamp)
        });
        if let Ok((user, emoji, timestamp)) = decoded {
            assert!(crate::event::validate_user_id(&user).is_ok(), "{user:?}");
            assert!(crate::event::validate_emoji(&emoji).is_ok(), "{emoji:?}");
            assert_eq!(
                parse_timestamp(&format_rfc3339_millis(timestamp)),
                Ok(timestamp)
            );
        }
    }
}

/// The timestamp parser: an accepted timestamp formats as RFC 3339 and parses back.
pub fn timestamp(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(millis) = parse_timestamp(text) {
        assert_eq!(
            parse_timestamp(&format_rfc3339_millis(millis)),
            Ok(millis),
            "{text:?} -> {millis}"
        );
    }
}

/// The WebSocket client messages: an accepted resume reads back as itself.
pub fn client_message(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(ClientMessage::Resume { last_seq }) = ClientMessage::parse(text) {
        let again = format!("{{\"type\":\"resume\",\"last_seq\":{last_seq}}}");
        assert_eq!(
            ClientMessage::parse(&again).ok(),
            Some(ClientMessage::Resume { last_seq })
        );
    }
}
