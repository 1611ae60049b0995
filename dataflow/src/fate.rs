//! An event's fate: the one decision every source makes of each event it reads, live from
//! Kafka or replayed from a log, so that both decide alike.
//!
//! Invariants:
//! - An event is valid only if its emoji is allowed and its stamp is not further ahead of
//!   the clock than the configured limit ([`Rules::check`]).
//! - An event counts at its own stamp, unless that stamp is ahead of the time the event was
//!   received by more than the lateness: then it counts at the time it was received
//!   ([`Rules::event_time`]). So no event moves a watermark past the clock, and a viewer
//!   whose clock runs ahead makes nobody's taps late.
//! - An event's window is judged against the watermark its source closes windows on (the
//!   least of its partitions' watermarks, never past the clock), not against the largest
//!   stamp of the event's own partition ([`Rules::fate`]): a window still open counts it; a
//!   closed one is amended within the allowed lateness; otherwise the event is late. An
//!   amendment of a window the source still holds back counts in the window's final.

use std::sync::Arc;

use model::emojis::EmojiSet;
use model::{WindowSize, WindowSpec};

/// How far ahead of the time it was received an event may be stamped and still be valid,
/// by default (`--max-future`).
pub const DEFAULT_MAX_FUTURE_MS: i64 = 600_000;

/// The rules an event is judged by.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The window size the source counts in.
    pub window: WindowSize,
    /// The run's window sizes, lateness and allowed lateness.
    pub windows: WindowSpec,
    /// Events of other emojis are invalid.
    pub emojis: Arc<EmojiSet>,
    /// Events stamped further ahead of the clock than this (ms) are invalid.
    pub max_future_ms: i64,
}

/// Why a decoded event is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// The emoji is not one the deployment accepts.
    #[error("emoji {0:?} is not allowed (--emojis)")]
    NotAllowed(String),
    /// The timestamp is too far ahead of the clock.
    #[error("timestamp {} is more than {ahead_ms} ms ahead of the time it was received", model::format_rfc3339_millis(*.timestamp))]
    Future {
        /// The event's timestamp, UTC milliseconds.
        timestamp: i64,
        /// The limit, ms.
        ahead_ms: i64,
    },
}

/// What becomes of a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It counts in its window, which is still open.
    Count,
    /// Its window is closed but still amended: it goes out in a revision.
    Amend,
    /// Its window is closed for good: a late record.
    Late,
}

impl Rules {
    /// How far (event time, ms) a source reads ahead of the slowest source of its dataflow,
    /// so that the open windows stay few however skewed a backfill is: a minute, or 16
    /// windows.
    pub fn read_ahead_ms(&self) -> i64 {
        60_000i64.max(16 * self.window.millis())
    }

    /// Checks an event's emoji and stamp; `clock` is the time it was received (the Kafka
    /// record's timestamp live; in a replay, the recording's `received`, if it says).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use dataflow::fate::{InvalidEvent, Rules};
    /// use model::emojis::EmojiSet;
    ///
    /// let rules = Rules {
    ///     window: Default::default(),
    ///     windows: Default::default(),
    ///     emojis: Arc::new(EmojiSet::parse("🔥,👏").unwrap()),
    ///     max_future_ms: 600_000,
    /// };
    /// assert!(rules.check("🔥", 1_000, Some(0)).is_ok());
    /// assert_eq!(rules.check("XX", 0, None), Err(InvalidEvent::NotAllowed("XX".into())));
    /// assert!(matches!(rules.check("🔥", 600_001, Some(0)), Err(InvalidEvent::Future { .. })));
    /// ```
    pub fn check(
        &self,
        emoji: &str,
        timestamp: i64,
        clock: Option<i64>,
    ) -> Result<(), InvalidEvent> {
        if !self.emojis.allows(emoji) {
            return Err(InvalidEvent::NotAllowed(emoji.to_owned()));
        }
        if clock.is_some_and(|clock| timestamp > clock.saturating_add(self.max_future_ms)) {
            return Err(InvalidEvent::Future {
                timestamp,
                ahead_ms: self.max_future_ms,
            });
        }
        Ok(())
    }

    /// The time an event counts at: its stamp, or the time it was received (`received`, if
    /// known) when the stamp is ahead of that by more than the lateness.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use dataflow::fate::Rules;
    /// # let rules = Rules { window: Default::default(), windows: Default::default(),
    /// #     emojis: Arc::new(Default::default()), max_future_ms: 600_000 };
    /// // The default lateness is 1 s.
    /// assert_eq!(rules.event_time(10_999, Some(10_000)), 10_999);
    /// assert_eq!(rules.event_time(310_000, Some(10_000)), 10_000);
    /// assert_eq!(rules.event_time(4_000, Some(10_000)), 4_000);
    /// assert_eq!(rules.event_time(310_000, None), 310_000);
    /// ```
    #[inline]
    pub fn event_time(&self, stamped: i64, received: Option<i64>) -> i64 {
        match received {
            Some(received) if stamped > received.saturating_add(self.windows.lateness_ms()) => {
                received
            }
            _ => stamped,
        }
    }

    /// The fate of an event counting at `time` (see [`event_time`](Self::event_time)) for a
    /// source whose windows close on `watermark`: a window is open while its end is after
    /// the watermark, and amended while its end plus the allowed lateness is.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use dataflow::fate::{Fate, Rules};
    /// # let rules = Rules { window: Default::default(), windows: Default::default(),
    /// #     emojis: Arc::new(Default::default()), max_future_ms: 600_000 };
    /// // 2 s windows, 10 s of allowed lateness; the watermark at 20.5 s.
    /// assert_eq!(rules.fate(20_000, 20_500), Fate::Count);
    /// assert_eq!(rules.fate(19_999, 20_500), Fate::Amend);
    /// assert_eq!(rules.fate(9_999, 20_500), Fate::Late);
    /// ```
    #[inline]
    pub fn fate(&self, time: i64, watermark: i64) -> Fate {
        let end = self.window.end_of(self.window.start_of(time));
        if end > watermark {
            Fate::Count
        } else if self.windows.amends(end, watermark) {
            Fate::Amend
        } else {
            Fate::Late
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lateness_ms: u64) -> Rules {
        let windows = WindowSpec::new(
            vec![WindowSize::default()],
            std::time::Duration::from_millis(lateness_ms),
        )
        .unwrap()
        .with_allowed_lateness(std::time::Duration::from_secs(10))
        .unwrap();
        Rules {
            window: windows.live(),
            windows,
            emojis: Arc::new(EmojiSet::parse("🔥,😂").unwrap()),
            max_future_ms: 600_000,
        }
    }

    #[test]
    fn a_stamp_ahead_of_arrival_by_more_than_the_lateness_counts_at_arrival() {
        let r = rules(1_000);
        // Within the lateness ahead: its own time.
        assert_eq!(r.event_time(101_000, Some(100_000)), 101_000);
        // Further ahead (a phone 15 s or 5 minutes fast): the time it arrived.
        assert_eq!(r.event_time(115_000, Some(100_000)), 100_000);
        assert_eq!(r.event_time(400_000, Some(100_000)), 100_000);
        // Behind: its own time, however far.
        assert_eq!(r.event_time(1_000, Some(100_000)), 1_000);
        // With no lateness, any stamp ahead of arrival counts at arrival.
        assert_eq!(rules(0).event_time(100_001, Some(100_000)), 100_000);
    }

    #[test]
    fn a_window_counts_until_closed_then_is_amended_then_late() {
        let r = rules(1_000);
        let watermark = 1_000_000;
        assert_eq!(r.fate(watermark, watermark), Fate::Count);
        assert_eq!(r.fate(watermark + 5_000_000, watermark), Fate::Count);
        // The window [998 s, 1000 s) ended at the watermark: amended until 1010 s.
        assert_eq!(r.fate(watermark - 1, watermark), Fate::Amend);
        assert_eq!(r.fate(watermark - 1, watermark + 9_999), Fate::Amend);
        assert_eq!(r.fate(watermark - 1, watermark + 10_000), Fate::Late);
        // Open while its end is after the watermark, wherever in the window that is.
        assert_eq!(r.fate(watermark - 2_000, watermark - 1), Fate::Count);
        // Before 1970 alike.
        assert_eq!(r.fate(-1, 0), Fate::Amend);
        assert_eq!(r.fate(-1, -1), Fate::Count);
        assert_eq!(r.fate(-20_001, -2_000), Fate::Late);
    }

    #[test]
    fn validity_is_the_allow_list_and_the_future_limit() {
        let r = rules(1_000);
        assert_eq!(r.check("🔥", 0, Some(0)), Ok(()));
        assert_eq!(
            r.check("👏", 0, Some(0)),
            Err(InvalidEvent::NotAllowed("👏".to_owned()))
        );
        assert_eq!(r.check("😂", 600_000, Some(0)), Ok(()));
        assert_eq!(
            r.check("😂", 600_001, Some(0)),
            Err(InvalidEvent::Future {
                timestamp: 600_001,
                ahead_ms: 600_000
            })
        );
        // Without a clock (a log that does not say when events arrived), no future limit.
        assert_eq!(r.check("😂", i64::MAX, None), Ok(()));
    }
}
