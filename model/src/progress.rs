//! `IngestProgress`: what an ingest tells the dataflow about the events it took, on the
//! ingests topic beside the events topic, several times a second.
//!
//! An event an ingest took is in the events topic once the broker acknowledged it; until
//! then the dataflow cannot see it, however long a broker outage or a slow link holds it.
//! Each message says: every event this ingest took before `at` is in the topic, except those
//! taken from `pending_since` on, and those it stored end where `ends` says. So the
//! dataflow closes no window such an event may still belong to before it has read them (see
//! the dataflow's `source::kafka::ingests`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One ingest's progress at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestProgress {
    /// The ingest (its run: a process).
    pub ingest: String,
    /// When this was said, ms since the epoch by the ingest's clock.
    pub at: i64,
    /// When the oldest event the broker has not acknowledged yet was taken, if any.
    pub pending_since: Option<i64>,
    /// Per partition of the events topic: the offset after the last event it had stored.
    #[serde(default)]
    pub ends: BTreeMap<i32, i64>,
    /// The ingest stopped: it takes no more events (what it still held is lost).
    #[serde(default)]
    pub stopped: bool,
}

impl IngestProgress {
    /// Events taken before this time are in the events topic: the earlier of `at` and
    /// `pending_since`.
    ///
    /// ```
    /// use model::progress::IngestProgress;
    /// let said = |pending_since| IngestProgress {
    ///     ingest: "a".into(), at: 10_000, pending_since, ends: Default::default(), stopped: false,
    /// };
    /// assert_eq!(said(None).stored_before(), 10_000);
    /// assert_eq!(said(Some(9_200)).stored_before(), 9_200);
    /// ```
    pub fn stored_before(&self) -> i64 {
        self.pending_since.map_or(self.at, |p| p.min(self.at))
    }
}
