//! What a shard delivered, counted without atomics and added to the metrics once per wake-up.

use super::conn::{Out, Sending};
use super::*;

/// What a shard delivered since it last added it to the broadcaster's metrics: counted
/// without atomics in the loop over the sockets, added once per wake-up.
pub(super) struct Tally {
    pub(super) sent: u64,
    pub(super) skipped: u64,
    pub(super) fan_out: LocalHistogram,
    pub(super) record_to_client: LocalHistogram,
}

impl Tally {
    pub(super) fn new(metrics: &BroadcastMetrics) -> Self {
        Tally {
            sent: 0,
            skipped: 0,
            fan_out: metrics.fan_out_seconds.local(),
            record_to_client: metrics.record_to_client_seconds.local(),
        }
    }

    /// Counts `out` as written in full.
    pub(super) fn delivered(&mut self, out: &Out) {
        let Out::Window(frame, sending) = out else {
            return;
        };
        self.sent += 1;
        if *sending == Sending::History {
            return;
        }
        let fan_out = frame.arrived.elapsed().as_secs_f64();
        self.fan_out.observe(fan_out);
        if let Some(written_ms) = frame.kafka_timestamp {
            let before = (frame.arrived_ms - written_ms).max(0) as f64 / 1e3;
            self.record_to_client.observe(before + fan_out);
        }
    }

    pub(super) fn add_to(&mut self, metrics: &BroadcastMetrics) {
        if self.sent > 0 {
            metrics.frames_sent.add(std::mem::take(&mut self.sent));
        }
        if self.skipped > 0 {
            metrics
                .frames_skipped
                .add(std::mem::take(&mut self.skipped));
        }
        metrics.fan_out_seconds.absorb(&mut self.fan_out);
        metrics
            .record_to_client_seconds
            .absorb(&mut self.record_to_client);
    }
}
