//! The event-time watermark of one input partition.

use model::WindowSize;

/// `max timestamp seen - lateness` of one partition. A window is closed for the partition
/// once the watermark has reached its end; an event of a closed window is late.
#[derive(Debug, Clone, Copy)]
pub struct Watermark {
    lateness_ms: i64,
    max_seen: Option<i64>,
}

impl Watermark {
    /// A partition that has seen nothing yet, and so holds back every window.
    pub fn new(lateness_ms: i64) -> Self {
        Watermark {
            lateness_ms,
            max_seen: None,
        }
    }

    /// Records an event time; true if its window is still open for this partition.
    #[inline]
    pub fn observe(&mut self, timestamp_ms: i64, size: WindowSize) -> bool {
        let max = self.max_seen.map_or(timestamp_ms, |m| m.max(timestamp_ms));
        self.max_seen = Some(max);
        size.end_of(size.start_of(timestamp_ms)) > max - self.lateness_ms
    }

    /// A partition resumed from a checkpoint whose largest timestamp was `max_seen`.
    pub fn restored(lateness_ms: i64, max_seen: Option<i64>) -> Self {
        Watermark {
            lateness_ms,
            max_seen,
        }
    }

    /// The largest timestamp seen.
    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }

    /// The current watermark, if any event was seen.
    pub fn value(&self) -> Option<i64> {
        self.max_seen.map(|m| m - self.lateness_ms)
    }

    /// The start of the earliest window this partition may still add events to.
    pub fn hold(&self, size: WindowSize) -> i64 {
        self.value().map_or(i64::MIN, |w| size.start_of(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_once_the_watermark_passes_the_window_end() {
        let size = WindowSize::from_millis(2000).unwrap();
        let mut w = Watermark::new(1000);
        assert_eq!(w.hold(size), i64::MIN);
        assert!(w.observe(5000, size));
        assert_eq!(w.value(), Some(4000));
        assert_eq!(w.hold(size), 4000);
        // [2000, 4000) closed at watermark 4000; [4000, 6000) still open.
        assert!(!w.observe(3999, size));
        assert!(w.observe(4000, size));
        assert!(w.observe(6999, size));
        // Watermark 5999: [4000, 6000) still open.
        assert!(w.observe(4001, size));
        assert!(w.observe(7000, size));
        // Watermark 6000: closed.
        assert!(!w.observe(5999, size));
    }

    #[test]
    fn holds_before_1970() {
        let size = WindowSize::from_millis(2000).unwrap();
        let mut w = Watermark::new(0);
        assert!(w.observe(-1, size));
        assert_eq!(w.hold(size), -2000);
        assert!(w.observe(-2000, size));
        assert!(!w.observe(-2001, size));
    }
}
