//! Names and defaults every service agrees on.

/// Input topic: one message per emoji event, keyed by `user_id`.
pub const EVENTS_TOPIC: &str = "emoji-events";
/// Every window report.
pub const WINDOWS_TOPIC: &str = "emoji-windows";
/// Late and invalid events, with the reason.
pub const LATE_TOPIC: &str = "emoji-late";
/// Prefix of the per-cluster topics read by the broadcasters (`cluster1`, `cluster2`, ...).
pub const CLUSTER_TOPIC_PREFIX: &str = "cluster";

/// Where broadcasters announce themselves and their connection counts.
pub const REGISTRY_TOPIC: &str = "emoji-broadcasters";

/// The Kafka header that carries a final or revised window message's dataflow time: a
/// restarted dataflow learns from it which corrections an earlier run published.
pub const TIME_HEADER: &str = "emostream-time";

/// The header naming the dataflow run that wrote a checkpoint (which run owns a partition).
pub const RUN_HEADER: &str = "emostream-run";

/// The header of a checkpoint that claims its partition for its run (a run's first).
pub const CLAIM_HEADER: &str = "emostream-claim";

/// Default number of emojis of a type that count as one in `scaled_count`.
pub const DEFAULT_SCALE: u64 = 1_000;

/// The topic of cluster `n` (1-based) under `prefix` (by default [`CLUSTER_TOPIC_PREFIX`]).
///
/// ```
/// assert_eq!(model::names::cluster_topic("cluster", 2), "cluster2");
/// ```
pub fn cluster_topic(prefix: &str, n: u32) -> String {
    format!("{prefix}{n}")
}

/// The windows topic of one size when a run computes several: `emoji-windows-60s`.
///
/// ```
/// assert_eq!(model::names::sized_topic("emoji-windows", "60s"), "emoji-windows-60s");
/// ```
pub fn sized_topic(base: &str, size_label: &str) -> String {
    format!("{base}-{size_label}")
}

/// The topic where the ingests say what they hold (see [`crate::progress`]) beside the events
/// topic `events`, by default: `emoji-events-ingests`.
///
/// ```
/// assert_eq!(model::names::ingests_topic("emoji-events"), "emoji-events-ingests");
/// ```
pub fn ingests_topic(events: &str) -> String {
    format!("{events}-ingests")
}
