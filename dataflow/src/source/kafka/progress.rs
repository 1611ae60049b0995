//! Idleness and progress: a partition read to its end and quiet for the idle timeout stops
//! holding windows back; the capabilities move to the earliest window a partition may still
//! add to.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::reader::KafkaReader;

impl KafkaReader {
    /// Moves the capabilities to the earliest window a partition may still add to.
    pub(super) fn advance(&mut self, now: Instant, wall_ms: i64) {
        let window = self.config.window;
        let idle_timeout = self.config.idle_timeout;
        let reachable_since = self.consumer.context().reachable_since();
        // An answer about the end counts for the idle timeout, and at least for a second (a
        // round trip to the broker must fit in it).
        let recent = now
            .checked_sub(idle_timeout.max(Duration::from_secs(1)))
            .unwrap_or(now);
        let active = self.partitions.iter().enumerate().filter(|(i, p)| {
            let idle = reachable_since.is_some_and(|since| {
                now.duration_since(p.last_message.max(since)) >= idle_timeout
                    && (p.at_end.is_some_and(|at| at >= since)
                        || self.ends.read_to_end(*i, p.next_offset, since.max(recent)))
            });
            !idle
        });
        let hold = match active.map(|(_, p)| p.watermark.hold(window)).min() {
            Some(hold) => hold,
            None => {
                // Everything is idle: close up to the newest event seen, and follow the
                // wall clock so an idle worker never holds the others back.
                let newest = self
                    .partitions
                    .iter()
                    .filter_map(|p| p.watermark.max_seen())
                    .max();
                let by_clock = window
                    .start_of(wall_ms - self.config.lateness_ms - idle_timeout.as_millis() as i64);
                newest.map_or(by_clock, |t| {
                    window.end_of(window.start_of(t)).max(by_clock)
                })
            }
        };
        for p in &self.partitions {
            self.metrics.watermark(p.id, p.watermark.value(), wall_ms);
        }
        if hold > *self.taps_cap.time() {
            self.taps_cap.downgrade(&hold);
            self.side_cap.downgrade(&hold);
        }
    }
}
