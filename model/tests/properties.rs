//! Property tests of the decoders over arbitrary and shaped input, next to the AFL++
//! fuzzing of `make fuzz` (whose kept inputs `corpus.rs` replays): shaped inputs such as
//! valid rows and formatted timestamps reach what random bytes rarely do.

use model::event::RawEvent;
use model::log::{LOG_HEADER, LogColumns};
use model::{format_rfc3339_millis, parse_timestamp};
use proptest::prelude::*;

proptest! {
    #[test]
    fn timestamps_never_panic(text in "\\PC{0,40}") {
        let _ = parse_timestamp(&text);
    }

    #[test]
    fn timestamp_like_text_never_panics(text in "[0-9T:.Z+-]{0,32}") {
        let _ = parse_timestamp(&text);
    }

    #[test]
    fn formatted_timestamps_parse_back(millis in -62_135_596_800_000i64..253_402_300_799_999) {
        prop_assert_eq!(parse_timestamp(&format_rfc3339_millis(millis)), Ok(millis));
        let epoch = millis.to_string();
        if epoch.trim_start_matches('-').len() >= 12 {
            prop_assert_eq!(parse_timestamp(&epoch), Ok(millis));
        }
    }

    #[test]
    fn rows_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let columns = LogColumns::from_header(LOG_HEADER.as_bytes()).unwrap();
        let _ = columns.decode(&bytes, |u, e, t| (u.len(), e.len(), t));
    }

    #[test]
    fn headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = LogColumns::from_header(&bytes);
    }

    #[test]
    fn valid_rows_decode_to_their_fields(
        user in "[a-zA-Z0-9_]{1,40}",
        emoji in "[a-z🔥😂👏]{1,8}",
        millis in 0i64..4_000_000_000_000,
        quoted in any::<bool>(),
    ) {
        let columns = LogColumns::from_header(LOG_HEADER.as_bytes()).unwrap();
        let ts = format_rfc3339_millis(millis);
        let row = if quoted {
            format!("\"{user}\",\"{emoji}\",\"{ts}\"")
        } else {
            format!("{user},{emoji},{ts}")
        };
        let got = columns.decode(row.as_bytes(), |u, e, t| (u.to_owned(), e.to_owned(), t));
        prop_assert_eq!(got, Ok((user, emoji, millis)));
    }

    #[test]
    fn json_events_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(raw) = serde_json::from_slice::<RawEvent>(&bytes) {
            let _ = raw.validate(0);
        }
    }

    #[test]
    fn json_like_events_never_panic(text in "\\{(\"(user_id|emoji_type|timestamp)\":(\"\\PC{0,12}\"|[0-9.e-]{1,14}|null|\\[\\]|\\{\\}),?){0,4}\\}") {
        if let Ok(raw) = serde_json::from_str::<RawEvent>(&text) {
            let _ = raw.validate(0);
        }
    }
}
