//! `WindowReport`: the statistics of one closed window, as published and written.

use std::num::NonZeroU64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::timestamp::{format_rfc3339_millis, parse_timestamp};

/// How window statistics are derived and filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportConfig {
    /// Each `scale` emojis of a type count as one in `scaled_count` (the original system's 1000).
    pub scale: NonZeroU64,
    /// Emojis with fewer events than this in a window are left out of its report.
    pub min_count: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            scale: NonZeroU64::new(crate::names::DEFAULT_SCALE).expect("default scale is non-zero"),
            min_count: 1,
        }
    }
}

/// The statistics of one emoji in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmojiStat {
    /// The emoji.
    pub emoji: String,
    /// Events of this emoji in the window.
    pub count: u64,
    /// Distinct users who sent this emoji in the window.
    pub unique_users: u64,
    /// `max(1, count / scale)`: each `scale` emojis count as one, any emoji at least once.
    pub scaled_count: u64,
    /// `count / events` of the window, rounded to 6 decimals.
    pub share: f64,
}

/// The statistics of one closed window `[window_start, window_end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Inclusive start, UTC milliseconds (RFC 3339 with milliseconds in JSON).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub window_start: i64,
    /// Exclusive end, UTC milliseconds (RFC 3339 with milliseconds in JSON).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub window_end: i64,
    /// All events in the window, including those of emojis left out by `min_count`.
    pub events: u64,
    /// Distinct users over all emojis.
    pub unique_users: u64,
    /// Per emoji, sorted by the emoji's bytes.
    pub emojis: Vec<EmojiStat>,
}

/// Where a window is in its life when a message about it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowState {
    /// Still taking events: the totals of the events read so far.
    Open,
    /// Closed: its exact totals.
    #[default]
    Final,
    /// Amended after it was final.
    Revised,
}

/// A window report as published on the window and cluster topics: the report, its sequence
/// number (the window's index since the epoch, `window_start / size`, so the same window
/// always carries the same number), its state, and a revision that increases with every
/// message about the window: consumers keep the highest revision of each `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowMessage {
    /// The report.
    #[serde(flatten)]
    pub report: WindowReport,
    /// The window's index since the epoch.
    pub seq: i64,
    /// Open, final or revised (final when absent).
    #[serde(default)]
    pub state: WindowState,
    /// Increases with every message about the window (0 when absent).
    #[serde(default)]
    pub revision: u64,
}

impl WindowMessage {
    /// A final message with no revision before it (revision 0), as tools and tests make.
    pub fn final_of(report: WindowReport, seq: i64) -> Self {
        WindowMessage {
            report,
            seq,
            state: WindowState::Final,
            revision: 0,
        }
    }
}

/// One emoji's exact totals in a window, before scaling and filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmojiTotals {
    /// The emoji.
    pub emoji: String,
    /// Events of this emoji.
    pub count: u64,
    /// Distinct users of this emoji.
    pub unique_users: u64,
}

impl WindowReport {
    /// Builds the report of a window from exact totals: applies `min_count`, computes
    /// `scaled_count` and `share`, and sorts the emojis by their bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use model::report::EmojiTotals;
    /// use model::{ReportConfig, WindowReport};
    ///
    /// let totals = [("😂", 1), ("🔥", 3500)].map(|(emoji, count)| EmojiTotals {
    ///     emoji: emoji.into(),
    ///     count,
    ///     unique_users: count.min(900),
    /// });
    /// let report = WindowReport::build(0, 2000, 3501, 901, totals, &ReportConfig::default());
    /// // Sorted by bytes; each 1000 emojis count as one, any emoji at least once.
    /// let stats: Vec<_> = report.emojis.iter().map(|e| (e.emoji.as_str(), e.scaled_count)).collect();
    /// assert_eq!(stats, [("🔥", 3), ("😂", 1)]);
    /// assert_eq!(report.emojis[0].share, 0.999714);
    /// ```
    pub fn build(
        window_start: i64,
        window_end: i64,
        events: u64,
        unique_users: u64,
        totals: impl IntoIterator<Item = EmojiTotals>,
        config: &ReportConfig,
    ) -> Self {
        let mut emojis: Vec<EmojiStat> = totals
            .into_iter()
            .filter(|t| t.count >= config.min_count)
            .map(|t| EmojiStat {
                scaled_count: scaled_count(t.count, config.scale),
                share: share(t.count, events),
                emoji: t.emoji,
                count: t.count,
                unique_users: t.unique_users,
            })
            .collect();
        emojis.sort_unstable_by(|a, b| a.emoji.as_bytes().cmp(b.emoji.as_bytes()));
        WindowReport {
            window_start,
            window_end,
            events,
            unique_users,
            emojis,
        }
    }
}

/// The original system's aggregation: each `scale` emojis count as one, any emoji at least once.
pub fn scaled_count(count: u64, scale: NonZeroU64) -> u64 {
    (count / scale.get()).max(1)
}

/// `count / events`, rounded to 6 decimals (0 for an empty window).
pub fn share(count: u64, events: u64) -> f64 {
    if events == 0 {
        return 0.0;
    }
    (count as f64 / events as f64 * 1e6).round() / 1e6
}

fn serialize_time<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339_millis(*millis))
}

fn deserialize_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_timestamp(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(emoji: &str, count: u64, unique_users: u64) -> EmojiTotals {
        EmojiTotals {
            emoji: emoji.into(),
            count,
            unique_users,
        }
    }

    #[test]
    fn scaled_count_matches_the_original_system() {
        let scale = NonZeroU64::new(1000).unwrap();
        assert_eq!(scaled_count(3785, scale), 3);
        assert_eq!(scaled_count(999, scale), 1);
        assert_eq!(scaled_count(1, scale), 1);
        assert_eq!(scaled_count(2000, scale), 2);
    }

    #[test]
    fn build_filters_sorts_and_shares() {
        let config = ReportConfig {
            min_count: 20,
            ..ReportConfig::default()
        };
        let r = WindowReport::build(
            0,
            2000,
            3,
            2,
            [totals("😂", 1, 1), totals("🔥", 20, 2), totals("👏", 25, 3)],
            &config,
        );
        let emojis: Vec<_> = r.emojis.iter().map(|e| e.emoji.as_str()).collect();
        assert_eq!(emojis, ["👏", "🔥"]);
        assert_eq!(r.events, 3);
        let third =
            WindowReport::build(0, 2000, 3, 1, [totals("a", 1, 1)], &ReportConfig::default());
        assert_eq!(third.emojis[0].share, 0.333333);
    }

    #[test]
    fn json_has_rfc3339_times() {
        let r = WindowReport::build(
            2000,
            4000,
            1,
            1,
            [totals("🔥", 1, 1)],
            &ReportConfig::default(),
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with(r#"{"window_start":"1970-01-01T00:00:02.000Z","window_end":"1970-01-01T00:00:04.000Z","events":1"#));
        let back: WindowReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
