//! Idleness and progress: a partition read to its end and quiet for the idle timeout stops
//! holding windows back (its watermark follows the wall clock minus the lateness); the
//! capabilities move to the earliest window a partition may still add to, and never past
//! the wall clock minus the lateness.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::reader::KafkaReader;

impl KafkaReader {
    /// Whether windows may close now: only with a broker to commit to, and after a failed
    /// commit, not again within a second.
    fn may_close(&mut self, now: Instant) -> bool {
        let reachable = self.consumer.context().reachable_since().is_some();
        let waited = self
            .last_close_failure
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        reachable && waited
    }

    /// Moves the capabilities to the earliest window a partition may still add to.
    pub(super) fn advance(&mut self, now: Instant, wall_ms: i64) {
        let window = self.config.rules.window;
        let idle_timeout = self.config.idle_timeout;
        let reachable_since = self.consumer.context().reachable_since();
        // An answer about the end counts for the idle timeout, and at least for a second (a
        // round trip to the broker must fit in it).
        let recent = now
            .checked_sub(idle_timeout.max(Duration::from_secs(1)))
            .unwrap_or(now);
        let active = self.partitions.iter().filter(|p| {
            // A paused partition may have more to read: never idle.
            let idle = !p.paused
                && reachable_since.is_some_and(|since| {
                    now.duration_since(p.last_message.max(since)) >= idle_timeout
                        && (p.at_end.is_some_and(|at| at >= since)
                            || self
                                .ends
                                .read_to_end(p.id, p.next_offset, since.max(recent)))
                });
            !idle
        });
        // A window never closes before its end plus the lateness by the wall clock: an idle
        // partition's watermark follows the clock no further than that, and no partition's
        // (even one with events stamped ahead of the clock) goes past it.
        let by_clock = wall_ms - self.config.rules.windows.lateness_ms();
        let watermark = active
            .map(|p| p.watermark.value().unwrap_or(i64::MIN))
            .min()
            .map_or(by_clock, |w| w.min(by_clock));
        let hold = if watermark == i64::MIN {
            i64::MIN
        } else {
            window.start_of(watermark)
        };
        for p in &self.partitions {
            self.metrics.watermark(p.id, p.watermark.value(), wall_ms);
        }
        if hold > self.caps.time() && self.may_close(now) {
            if self.close_before(hold) {
                self.caps.downgrade(hold);
            } else {
                self.last_close_failure = Some(now);
            }
        }
        if hold == self.caps.time() {
            self.watermark = self.watermark.max(watermark);
        }
    }
}
