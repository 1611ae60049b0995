//! Idleness and progress: a partition read to its end and quiet for the idle timeout stops
//! holding windows back (its watermark follows the clock minus the lateness); the
//! capabilities move to the earliest window a partition may still add to, and never past
//! the clock minus the lateness. The clock is the wall clock, held back to where an ingest
//! holds taps the broker has not stored (`ingests`).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::reader::KafkaReader;
use super::state::Partition;

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
        let idle_timeout = self.state.config.idle_timeout;
        let reachable_since = self.consumer.context().reachable_since();
        // An answer about the end counts for the idle timeout, and at least for a second (a
        // round trip to the broker must fit in it). Reaching the end while reading counts as
        // long as well, not longer: a broker cut off without closing its connections looks
        // reachable for a minute, and a partition read to its end before that may have
        // events nobody can read now (closing its windows on the clock would make them late).
        // And for as long as a round of asking takes (many partitions on a distant broker),
        // or a quiet partition would never count as idle.
        let ends = &self.ends;
        let recent = now
            .checked_sub(
                idle_timeout
                    .max(Duration::from_secs(1))
                    .max(ends.answer_age() * 2),
            )
            .unwrap_or(now);
        let idle = |p: &Partition| {
            // A paused partition may have more to read: never idle.
            !p.paused
                && reachable_since.is_some_and(|since| {
                    let answered_after = since.max(recent);
                    now.duration_since(p.last_message.max(since)) >= idle_timeout
                        && (p.at_end.is_some_and(|at| at >= answered_after)
                            || ends.read_to_end(p.id, p.next_offset, answered_after))
                })
        };
        // Where this worker reads each of its partitions (a paused one holds only what is
        // ahead of the windows that wait).
        let own = self
            .state
            .partitions
            .iter()
            .filter(|p| !p.paused)
            .map(|p| (p.id, p.next_offset));
        let clock = self.ingest_clock.clock(&self.ingests, now, wall_ms, own);
        self.state.metrics.ingests_known.set(clock.known as i64);
        self.state.metrics.ingests_holding.set(clock.holding as i64);
        let (watermark, hold) = self.state.closing(idle, clock.ms);
        for p in &self.state.partitions {
            self.state
                .metrics
                .watermark(p.id, p.watermark.value(), wall_ms);
        }
        if hold > self.state.time && self.may_close(now) && !self.close_before(hold) {
            self.last_close_failure = Some(now);
        }
        self.state.follow(watermark, hold);
    }
}
