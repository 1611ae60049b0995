//! The commit protocol: offsets are committed only past events whose windows (or late
//! records) are published, with the watermark state as commit metadata; on a stop, the
//! reader drains once every closed window is published.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::ProbeHandle;

use super::reader::KafkaReader;

impl KafkaReader {
    /// Commits, for each partition, the offset before which everything is published.
    pub(super) fn commit_published(&mut self, published: &ProbeHandle<i64>, sync: bool) {
        let frontier = published.with_frontier(|f| f.first().copied().unwrap_or(i64::MAX));
        let due = sync || self.last_commit.elapsed() >= Duration::from_secs(1);
        if frontier <= self.committed_frontier || !due {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for p in &mut self.partitions {
            p.pending = p.pending.split_off(&frontier);
            let (offset, max_seen) = match p.pending.values().min_by_key(|(o, _)| *o) {
                Some(&(offset, max_seen)) => (offset, max_seen),
                None => (p.next_offset, p.watermark.max_seen()),
            };
            let mut elem = offsets.add_partition(&self.config.topic, p.id);
            if elem.set_offset(Offset::Offset(offset)).is_ok() {
                elem.set_metadata(max_seen.map_or(String::new(), |m| m.to_string()));
            }
        }
        if offsets.count() == 0 {
            return;
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match self.consumer.commit(&offsets, mode) {
            Ok(()) => {
                self.committed_frontier = frontier;
                self.last_commit = Instant::now();
            }
            Err(error) => tracing::warn!(%error, "Cannot commit offsets; will try again."),
        }
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
