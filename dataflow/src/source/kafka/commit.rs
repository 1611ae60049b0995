//! The commit protocol: offsets are committed only past events whose windows (or late
//! records) are published, each with its checkpoint (see `checkpoint`), once a second and
//! before windows close; on a stop, the reader drains once every closed window is published.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::ProbeHandle;

use super::checkpoint::run_headers;
use super::reader::KafkaReader;

impl KafkaReader {
    /// Commits, for each partition, the offset before which everything is published.
    pub(super) fn commit_published(&mut self, published: &ProbeHandle<i64>, sync: bool) {
        let frontier = published.with_frontier(|f| f.first().copied().unwrap_or(i64::MAX));
        let due = sync || self.last_commit.elapsed() >= Duration::from_secs(1);
        let Some(closed_before) = self
            .state
            .commit_behind(frontier, self.committed_frontier, due)
        else {
            return;
        };
        if self.commit(closed_before) {
            self.committed_frontier = frontier;
        }
    }

    /// Checkpoints and commits each partition's earliest offset still needed, with its
    /// state as if windows before `closed_before` were closed. True once the checkpoints
    /// are written.
    pub(super) fn commit(&mut self, closed_before: i64) -> bool {
        self.commit_partitions(closed_before, |_| true, false)
    }

    /// Like [`commit`](Self::commit), for the partitions `which` picks only; with `claim`,
    /// the checkpoints claim their partitions for this run (see `checkpoint::Owners`).
    pub(super) fn commit_partitions(
        &mut self,
        closed_before: i64,
        which: impl Fn(i32) -> bool,
        claim: bool,
    ) -> bool {
        // With the brokers out of reach, waiting for a checkpoint would only stall the worker;
        // taken over by another dataflow of the group, it writes none any more.
        if self.consumer.context().reachable_since().is_none() || self.ends.taken_over().is_some() {
            return false;
        }
        let size = self.state.config.rules.window;
        let topic = self.state.config.checkpoint_topic.clone();
        let ends = &self.ends;
        let mut offsets = TopicPartitionList::new();
        for i in 0..self.state.partitions.len() {
            let id = self.state.partitions[i].id;
            if !which(id) {
                continue;
            }
            let (offset, checkpoint) = self
                .state
                .checkpoint(i, closed_before, &|| ends.late_ends());
            let (text, left_out) = checkpoint.record_text(offset, size);
            if let Some(window) = left_out {
                tracing::warn!(
                    partition = id,
                    window_start = %model::format_rfc3339_millis(window),
                    "Too many closed windows with events after the committed offset to checkpoint them all: a restart reports the events of this window and older ones late."
                );
            }
            let payload = format!("{offset};{text}");
            let record = BaseRecord::<(), str>::to(&topic)
                .partition(id)
                .payload(&payload)
                .headers(run_headers(claim));
            if let Err((error, _)) = self.checkpoints.send(record) {
                return self.checkpoint_failed(&error.to_string());
            }
            let mut elem = offsets.add_partition(&self.state.config.topic, id);
            if elem.set_offset(Offset::Offset(offset)).is_ok() {
                elem.set_metadata(checkpoint.metadata_text(offset, size));
            }
        }
        if offsets.count() == 0 {
            return true;
        }
        // The checkpoints are the state a restart trusts: wait for them, and for the broker
        // to have taken every one.
        if !service::kafka::wait_delivered(&self.checkpoints, Duration::from_secs(5)) {
            return self.checkpoint_failed("not taken within 5 s");
        }
        if let Some(error) = self.checkpoints.context().take_refusal() {
            return self.checkpoint_failed(&error.to_string());
        }
        // The group's offsets, for the tools that watch its lag.
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(%error, "Cannot commit offsets; will try again.");
        }
        self.last_commit = Instant::now();
        true
    }

    /// Notes a checkpoint that was not written (a log line and the metric, from here only);
    /// false, what a commit then returns.
    fn checkpoint_failed(&self, reason: &str) -> bool {
        self.state.metrics.checkpoint_failures.add(1);
        tracing::warn!(
            topic = %self.state.config.checkpoint_topic,
            %reason,
            "A checkpoint was not written: no window closes until one is; trying again."
        );
        false
    }

    /// Before windows before `hold` close: commits that they do, with the last offset
    /// counted in each, and only then lets them close. False if the commit failed (the
    /// windows stay open; the next step tries again).
    pub(super) fn close_before(&mut self, hold: i64) -> bool {
        if !self.commit(hold) {
            return false;
        }
        self.state.closed(hold);
        self.caps.downgrade(hold);
        true
    }

    /// After a stop: once every closed window is published, commits and reports done.
    pub(super) fn drain(
        &mut self,
        sources: &ProbeHandle<i64>,
        published: &ProbeHandle<i64>,
    ) -> bool {
        let source_frontier = sources.with_frontier(|f| f.first().copied());
        let published_frontier = published.with_frontier(|f| f.first().copied());
        if source_frontier != published_frontier {
            return false;
        }
        self.committed_frontier = i64::MIN;
        self.commit_published(published, true);
        true
    }
}
