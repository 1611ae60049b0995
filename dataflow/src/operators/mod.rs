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
pub use count_windows::{CountWindows, Engine};
pub use merge_windows::MergeWindows;

use std::hash::BuildHasher;

/// The worker-independent hash that decides which worker owns a user. Every process uses
/// the same seed, so a user's events meet on one worker wherever they were read.
#[inline]
pub fn user_route(user: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x656d_6f73_7472_6561).hash_one(user)
}
