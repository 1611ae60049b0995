//! Realistic reaction traffic, generated deterministically from a seed.
//!
//! Events are produced in event-time order at an offered rate (with `match` bursts: a
//! wicket multiplies the rate by five for a few seconds and shifts the mix), each gets a
//! network delay, and they are handed out in arrival order, so their timestamps are out of
//! order by up to `disorder`; a `late_fraction` of them arrive `late_delay` after their time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use model::log::LogWriter;

use crate::random::SplitMix64;

/// The emojis of the mix, most popular first: the deployment's default set
/// (`model::emojis::EmojiSet::DEFAULT`), so simulated taps are accepted.
pub const EMOJIS: [&str; 12] = [
    "🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌", "😢", "🏏", "👍", "😡",
];
/// The emoji that dominates a burst.
const BURST_EMOJI: usize = 5;
/// Share of taps made by heavy clickers, and the share of users who are heavy clickers.
const HEAVY_TAP_SHARE: f64 = 0.3;
const HEAVY_USER_SHARE: f64 = 0.02;

/// The shape of the offered load over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// A constant rate.
    #[default]
    Steady,
    /// A match: bursts of five times the rate for a few seconds at random moments.
    Match,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How many events.
    pub events: u64,
    /// Audience size (distinct users).
    pub users: u64,
    /// Offered rate in events per second of event time.
    pub rate: f64,
    /// Shape of the rate.
    pub profile: Profile,
    /// Event time of the first event, UTC milliseconds.
    pub start_ms: i64,
    /// Largest network delay of an ordinary event, in milliseconds.
    pub disorder_ms: i64,
    /// Share of events that arrive `late_delay_ms` after their time.
    pub late_fraction: f64,
    /// Delay of a late event, in milliseconds.
    pub late_delay_ms: i64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            events: 10_000,
            users: 100_000,
            rate: 10_000.0,
            profile: Profile::Match,
            start_ms: 1_795_341_600_000, // 2026-11-22T10:00:00Z
            disorder_ms: 500,
            late_fraction: 0.0,
            late_delay_ms: 5_000,
            seed: 1,
        }
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GeneratedEvent {
    /// When it arrives, UTC milliseconds.
    pub arrival_ms: i64,
    /// Its event time, UTC milliseconds.
    pub timestamp_ms: i64,
    /// The user, an index below `Workload::users`.
    pub user: u64,
    /// The emoji, an index into [`EMOJIS`].
    pub emoji: usize,
}

impl GeneratedEvent {
    /// The user's id as written in logs and requests: `user000042`.
    pub fn user_id(&self) -> String {
        format!("user{:06}", self.user)
    }
}

/// Iterator over the events of a [`Workload`], in arrival order.
pub struct Generator {
    workload: Workload,
    rng: SplitMix64,
    cumulative: [f64; EMOJIS.len()],
    made: u64,
    /// Event time so far, in nanoseconds: microseconds would round the gaps at high rates.
    now_ns: i64,
    burst_until_ns: i64,
    in_flight: BinaryHeap<Reverse<GeneratedEvent>>,
}

impl Generator {
    /// A generator of `workload`.
    pub fn new(workload: Workload) -> Self {
        // Zipf-like popularity: weight 1/(k+1)^1.1.
        let weights: Vec<f64> = (0..EMOJIS.len())
            .map(|k| 1.0 / ((k + 1) as f64).powf(1.1))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = [0.0; EMOJIS.len()];
        let mut acc = 0.0;
        for (c, w) in cumulative.iter_mut().zip(&weights) {
            acc += w / total;
            *c = acc;
        }
        Generator {
            rng: SplitMix64::new(workload.seed),
            now_ns: workload.start_ms * 1_000_000,
            workload,
            cumulative,
            made: 0,
            burst_until_ns: i64::MIN,
            in_flight: BinaryHeap::new(),
        }
    }

    /// Makes the next event in event-time order.
    fn make(&mut self) -> GeneratedEvent {
        let w = &self.workload;
        let mut rate = w.rate.max(1e-3);
        if w.profile == Profile::Match {
            if self.now_ns >= self.burst_until_ns && self.rng.next_f64() < 1.0 / (rate * 60.0) {
                // About one wicket a minute; the burst lasts 3 to 6 seconds.
                self.burst_until_ns =
                    self.now_ns + 3_000_000_000 + self.rng.below(3_000_000) as i64 * 1000;
            }
            if self.now_ns < self.burst_until_ns {
                rate *= 5.0;
            }
        }
        let in_burst = self.now_ns < self.burst_until_ns;
        // Exponential inter-arrival times: a Poisson process at the current rate.
        let gap_ns = -(1.0 - self.rng.next_f64()).ln() / rate * 1e9;
        self.now_ns += gap_ns as i64;
        let timestamp_ms = self.now_ns.div_euclid(1_000_000);
        let user = if self.rng.next_f64() < HEAVY_TAP_SHARE {
            self.rng
                .below(((w.users as f64 * HEAVY_USER_SHARE) as u64).max(1))
        } else {
            self.rng.below(w.users.max(1))
        };
        let emoji = if in_burst && self.rng.next_f64() < 0.4 {
            BURST_EMOJI
        } else {
            let x = self.rng.next_f64();
            self.cumulative
                .iter()
                .position(|&c| x < c)
                .unwrap_or(EMOJIS.len() - 1)
        };
        let delay = if self.rng.next_f64() < w.late_fraction {
            w.late_delay_ms + self.rng.below(1000) as i64
        } else {
            self.rng.below(w.disorder_ms.max(0) as u64 + 1) as i64
        };
        self.made += 1;
        GeneratedEvent {
            arrival_ms: timestamp_ms + delay,
            timestamp_ms,
            user,
            emoji,
        }
    }
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        // An event in flight is handed out once no event still to be made can arrive before it.
        loop {
            let now_ms = self.now_ns.div_euclid(1_000_000);
            if let Some(Reverse(first)) = self.in_flight.peek()
                && (first.arrival_ms <= now_ms || self.made == self.workload.events)
            {
                return self.in_flight.pop().map(|Reverse(e)| e);
            }
            if self.made == self.workload.events {
                return None;
            }
            let event = self.make();
            self.in_flight.push(Reverse(event));
        }
    }
}

/// Writes the events of `workload` as a CSV log (RFC 3339 timestamps) and returns how many.
pub fn write_log(workload: Workload, out: impl Write) -> std::io::Result<u64> {
    let mut log = LogWriter::new(out)?;
    let mut user = String::with_capacity(16);
    let mut written = 0;
    for event in Generator::new(workload) {
        user.clear();
        use std::fmt::Write as _;
        let _ = write!(user, "user{:06}", event.user);
        log.write_event(&user, EMOJIS[event.emoji], event.timestamp_ms)?;
        written += 1;
    }
    log.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_mix_is_the_default_emoji_set() {
        let set = model::emojis::EmojiSet::standard();
        assert_eq!(set.as_slice(), super::EMOJIS);
    }

    use super::*;

    fn workload() -> Workload {
        Workload {
            events: 20_000,
            users: 1000,
            rate: 2000.0,
            late_fraction: 0.01,
            ..Workload::default()
        }
    }

    #[test]
    fn arrivals_are_ordered_and_disorder_is_bounded() {
        let events: Vec<_> = Generator::new(workload()).collect();
        assert_eq!(events.len(), 20_000);
        assert!(
            events
                .windows(2)
                .all(|p| p[0].arrival_ms <= p[1].arrival_ms)
        );
        let late = events
            .iter()
            .filter(|e| e.arrival_ms - e.timestamp_ms >= 5000)
            .count();
        assert!((100..300).contains(&late), "{late} late events");
        let out_of_order = events
            .windows(2)
            .filter(|p| p[1].timestamp_ms < p[0].timestamp_ms)
            .count();
        assert!(out_of_order > 1000, "{out_of_order} out of order");
    }

    #[test]
    fn high_rates_keep_their_pace() {
        let events: Vec<_> = Generator::new(Workload {
            events: 1_000_000,
            rate: 1_000_000.0,
            profile: Profile::Steady,
            disorder_ms: 0,
            ..Workload::default()
        })
        .collect();
        let span_ms = events.last().unwrap().timestamp_ms - events[0].timestamp_ms;
        assert!(
            (980..=1020).contains(&span_ms),
            "1M events at 1M/s span {span_ms} ms"
        );
    }

    #[test]
    fn the_mix_is_skewed() {
        let mut counts = [0u64; EMOJIS.len()];
        Generator::new(workload()).for_each(|e| counts[e.emoji] += 1);
        assert!(counts[0] > 3 * counts[EMOJIS.len() - 1]);
    }

    #[test]
    fn same_seed_same_log() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_log(workload(), &mut a).unwrap();
        write_log(workload(), &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(b"user_id,emoji_type,timestamp\nuser"));
    }
}
