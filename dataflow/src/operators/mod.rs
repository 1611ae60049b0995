//! The window operators.
//!
//! - [`aggregate_windows`]: exact per-window counts over a shard of the users (hand-written
//!   timely operator, the hot path).
//! - [`count_distinct`]: the same totals formulated with differential dataflow.
//! - [`merge_windows`]: adds up the shards of each window into its `WindowReport`.
//! - [`count_windows`]: the three above as one step, with either engine.

pub mod aggregate_windows;
pub mod count_distinct;
pub mod count_windows;
pub mod merge_windows;

pub use aggregate_windows::AggregateWindows;
pub use count_distinct::CountDistinct;
pub use count_windows::{CountConfig, CountWindows, Engine};
pub use merge_windows::MergeWindows;

use std::hash::BuildHasher;

use model::{WindowSize, WindowSpec};

/// How long a final window's state is kept for amendments: until every input is at or past
/// its end plus the allowed lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    size: WindowSize,
    allowed_lateness_ms: i64,
}

impl Keep {
    /// Windows of `size`, kept for the allowed lateness of `spec`.
    pub fn new(size: WindowSize, spec: &WindowSpec) -> Self {
        Keep {
            size,
            allowed_lateness_ms: spec.allowed_lateness_ms(),
        }
    }

    /// Windows of `size`, never amended.
    pub fn none(size: WindowSize) -> Self {
        Keep {
            size,
            allowed_lateness_ms: 0,
        }
    }

    /// The window size.
    pub fn size(&self) -> WindowSize {
        self.size
    }

    /// Whether final windows are kept at all.
    pub fn keeps(&self) -> bool {
        self.allowed_lateness_ms > 0
    }

    /// Once every input is at or past this time, no amendment of the window starting at
    /// `start` can come: a source amends a window only while its own time is before it.
    pub fn released_at(&self, start: i64) -> i64 {
        self.size
            .end_of(start)
            .saturating_add(self.allowed_lateness_ms)
    }
}

/// The worker-independent hash that decides which worker owns a user. Every process uses
/// the same seed, so a user's events meet on one worker wherever they were read.
#[inline]
pub fn user_route(user: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x656d_6f73_7472_6561).hash_one(user)
}

/// Open updates go out at the wall clock's multiples of `every` (each worker's snapshots at
/// the same moment), `delay` after them: the current slot (its index since the epoch) and
/// the time until the next one begins.
fn update_slot(
    every: std::time::Duration,
    delay: std::time::Duration,
) -> (i64, std::time::Duration) {
    let every_ms = (every.as_millis() as i64).max(1);
    let now = model::now_ms() - delay.as_millis() as i64;
    let slot = now.div_euclid(every_ms);
    let until_next = (slot + 1) * every_ms - now;
    (
        slot,
        std::time::Duration::from_millis(until_next.max(1) as u64),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn an_update_slot_ends_at_the_next_multiple_of_the_interval() {
        let every = Duration::from_millis(250);
        let (slot, until_next) = super::update_slot(every, Duration::ZERO);
        let now = model::now_ms();
        assert!(slot * 250 <= now && now < (slot + 1) * 250 + 5);
        assert!(until_next <= every && until_next >= Duration::from_millis(1));
        let (later, _) = super::update_slot(every, Duration::from_millis(50));
        assert!(
            later == slot || later == slot - 1,
            "a delay never moves the slot ahead"
        );
    }
}
