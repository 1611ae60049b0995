//! Property tests of the request decoder over arbitrary bodies: it never panics, and what it
//! accepts is valid. `make fuzz` runs a million cases.

use ingest::request::{BodyRules, decode_body};
use model::emojis::EmojiSet;
use proptest::prelude::*;

fn rules() -> BodyRules<'static> {
    BodyRules {
        max_batch: 100,
        max_skew_ms: 600_000,
        now_ms: 1_795_341_600_000,
        emojis: EmojiSet::standard(),
        user: None,
    }
}

proptest! {
    #[test]
    fn bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_body(&bytes, &rules());
    }

    #[test]
    fn json_shaped_bodies_never_panic_and_accept_only_valid_events(
        text in "\\[?(\\{\"user_id\":\"\\PC{0,10}\",\"emoji_type\":\"\\PC{0,6}\"(,\"timestamp\":(17953416[0-9]{5}|\"\\PC{0,12}\"))?\\},?){0,5}\\]?"
    ) {
        if let Ok(events) = decode_body(text.as_bytes(), &rules()) {
            for e in events {
                prop_assert!(!e.user_id.is_empty() && e.user_id.len() <= 128);
                prop_assert!(EmojiSet::standard().allows(&e.emoji_type));
                prop_assert!((e.timestamp - rules().now_ms).abs() <= rules().max_skew_ms);
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..5000) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(decode_body(body.as_bytes(), &rules()).is_err() || depth == 1);
    }
}
