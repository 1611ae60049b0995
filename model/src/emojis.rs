//! `EmojiSet`: the emojis a deployment accepts. The ingest refuses others, the dataflow
//! reports others it meets in the topic as invalid, and the page shows one button for each.

use std::sync::LazyLock;

use crate::event::validate_emoji;

/// The emojis accepted, in the order the page shows them.
///
/// # Examples
///
/// ```
/// use model::emojis::EmojiSet;
///
/// let set = EmojiSet::parse("🔥, 😂,👏").unwrap();
/// assert!(set.allows("😂") && !set.allows("hello"));
/// assert_eq!(set.as_slice(), ["🔥", "😂", "👏"]);
/// assert_eq!(EmojiSet::parse("🔥,🔥").unwrap_err(), "emoji \"🔥\" named twice");
/// assert!(EmojiSet::standard().allows("🔥"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmojiSet(Vec<String>);

impl EmojiSet {
    /// The default set, as written on the command line: the page's buttons and the
    /// simulator's mix.
    pub const DEFAULT: &str = "🔥,😂,👏,❤️,🎉,😮,💯,🙌,😢,🏏,👍,😡";

    /// The set of a comma-separated list (spaces around each emoji ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut emojis: Vec<String> = Vec::new();
        for emoji in text.split(',').map(str::trim) {
            let emoji = validate_emoji(emoji).map_err(|e| e.to_string())?;
            if emojis.iter().any(|e| e == emoji) {
                return Err(format!("emoji {emoji:?} named twice"));
            }
            emojis.push(emoji.to_owned());
        }
        Ok(EmojiSet(emojis))
    }

    /// The default set.
    pub fn standard() -> &'static EmojiSet {
        static STANDARD: LazyLock<EmojiSet> =
            LazyLock::new(|| EmojiSet::parse(EmojiSet::DEFAULT).expect("the default set parses"));
        &STANDARD
    }

    /// Whether `emoji` is one of the set.
    #[inline]
    pub fn allows(&self, emoji: &str) -> bool {
        self.0.iter().any(|e| e == emoji)
    }

    /// The emojis, in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl Default for EmojiSet {
    fn default() -> Self {
        EmojiSet::standard().clone()
    }
}

impl std::str::FromStr for EmojiSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        EmojiSet::parse(text)
    }
}
