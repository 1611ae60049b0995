//! The commit protocol: offsets are committed only past events whose windows (or late
//! records) are published, each with its checkpoint (see `checkpoint`), once a second and
//! before windows close; on a stop, the reader drains once every closed window is published.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::ProbeHandle;

use super::checkpoint::Checkpoint;
use super::reader::KafkaReader;

impl KafkaReader {
    /// Commits, for each partition, the offset before which everything is published.
    pub(super) fn commit_published(&mut self, published: &ProbeHandle<i64>, sync: bool) {
        let frontier = published.with_frontier(|f| f.first().copied().unwrap_or(i64::MAX));
        let due = sync || self.last_commit.elapsed() >= Duration::from_secs(1);
        if frontier <= self.committed_frontier || !due {
            return;
        }
        for p in &mut self.partitions {
            p.pending = p.pending.split_off(&frontier);
        }
        let closed_before = self.caps.time();
        if self.commit(closed_before) {
            self.committed_frontier = frontier;
        }
    }

    /// Checkpoints and commits each partition's earliest offset still needed, with its
    /// state as if windows before `closed_before` were closed. True once the checkpoints
    /// are written.
    pub(super) fn commit(&mut self, closed_before: i64) -> bool {
        // With the brokers out of reach, waiting for a checkpoint would only stall the worker.
        if self.consumer.context().reachable_since().is_none() {
            return false;
        }
        let size = self.config.window;
        let mut offsets = TopicPartitionList::new();
        for p in &mut self.partitions {
            let (offset, max_seen) = match p.pending.values().min_by_key(|(o, _)| *o) {
                Some(&(offset, max_seen)) => (offset, max_seen),
                None => (p.next_offset, p.watermark.max_seen()),
            };
            // What is before the offset is not read again.
            p.last_counted.retain(|_, last| *last >= offset);
            p.amended.retain(|_, last| *last >= offset);
            let closed_before = closed_before.max(p.closed_before);
            let mut checkpoint = Checkpoint {
                max_seen,
                closed_before: Some(closed_before),
                last_counted: p.last_counted.clone(),
                amended: p.amended.clone(),
            };
            for (&window, &last) in p.open_last.range(..closed_before) {
                note_last_counted(&mut checkpoint.last_counted, window, last);
            }
            let (text, left_out) = checkpoint.record_text(offset, size);
            if let Some(window) = left_out {
                tracing::warn!(
                    partition = p.id,
                    window_start = %model::format_rfc3339_millis(window),
                    "Too many closed windows with events after the committed offset to checkpoint them all: a restart reports the events of this window and older ones late."
                );
            }
            let payload = format!("{offset};{text}");
            let record = BaseRecord::<(), str>::to(&self.config.checkpoint_topic)
                .partition(p.id)
                .payload(&payload);
            if let Err((error, _)) = self.checkpoints.send(record) {
                tracing::warn!(%error, "Cannot write a checkpoint; will try again.");
                return false;
            }
            let mut elem = offsets.add_partition(&self.config.topic, p.id);
            if elem.set_offset(Offset::Offset(offset)).is_ok() {
                elem.set_metadata(checkpoint.metadata_text(offset, size));
            }
        }
        if offsets.count() == 0 {
            return true;
        }
        // The checkpoints are the state a restart trusts: wait for them.
        if !service::kafka::wait_delivered(&self.checkpoints, Duration::from_secs(5)) {
            tracing::warn!("Cannot write the checkpoints within 5 s; will try again.");
            return false;
        }
        // The group's offsets, for the tools that watch its lag.
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(%error, "Cannot commit offsets; will try again.");
        }
        self.last_commit = Instant::now();
        true
    }

    /// Before windows before `hold` close: commits that they do, with the last offset
    /// counted in each, and only then lets them close. False if the commit failed (the
    /// windows stay open; the next step tries again).
    pub(super) fn close_before(&mut self, hold: i64) -> bool {
        if !self.commit(hold) {
            return false;
        }
        for p in &mut self.partitions {
            let open = p.open_last.split_off(&hold);
            for (window, last) in std::mem::replace(&mut p.open_last, open) {
                note_last_counted(&mut p.last_counted, window, last);
            }
        }
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

/// Records `last` as the last offset counted in `window`, unless a later one is known (a
/// restart counts again the events an earlier run counted).
fn note_last_counted(
    last_counted: &mut std::collections::BTreeMap<i64, i64>,
    window: i64,
    last: i64,
) {
    let entry = last_counted.entry(window).or_insert(last);
    *entry = (*entry).max(last);
}
