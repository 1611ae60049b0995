//! The event-time watermark of one input partition.

use model::WindowSize;

/// `max timestamp seen - lateness` of one partition: the partition may still add to the
/// windows that end after it. Whether an event is late is not judged here but against the
/// windows its source has closed (`fate`).
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

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, timestamp_ms: i64) {
        self.max_seen = Some(self.max_seen.map_or(timestamp_ms, |m| m.max(timestamp_ms)));
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
    fn holds_the_window_of_the_largest_time_less_the_lateness() {
        let size = WindowSize::from_millis(2000).unwrap();
        let mut w = Watermark::new(1000);
        assert_eq!(w.hold(size), i64::MIN);
        w.observe(5000);
        assert_eq!(w.value(), Some(4000));
        assert_eq!(w.hold(size), 4000);
        // An earlier time moves nothing back.
        w.observe(3999);
        assert_eq!(w.hold(size), 4000);
        w.observe(7000);
        assert_eq!((w.value(), w.hold(size)), (Some(6000), 6000));
    }

    #[test]
    fn holds_before_1970() {
        let size = WindowSize::from_millis(2000).unwrap();
        let mut w = Watermark::new(0);
        w.observe(-1);
        assert_eq!(w.hold(size), -2000);
        w.observe(-2001);
        assert_eq!(w.hold(size), -2000);
    }
}
