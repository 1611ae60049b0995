//! `read_kafka`: a timely source that consumes the events topic, each worker the partitions
//! `p` with `p % peers == index`, polling without blocking the worker.
//!
//! Each partition keeps a watermark, and pauses while its windows are further ahead of the
//! slowest source's than the read-ahead (`Rules::read_ahead_ms`), as replay does. A partition without new data for the idle timeout stops
//! holding windows back: its watermark follows the wall clock minus the lateness, so windows
//! close during lulls and at the end of a stream, each once the wall clock has passed its end
//! plus the lateness, never before (a long window is not cut short by a lull). Idle also means
//! read to the end: a thread asks the broker for the partitions' ends, and a partition only
//! counts as idle when a recent answer shows nothing left to read and no connection to its
//! broker was lost since. When the broker is away, or its partitions not fetched yet after a
//! restart, the events are only delayed, not absent, and windows wait for them.
//!
//! Offsets are committed only past events whose windows (or late records) are published:
//! each partition remembers, per window it feeds, the first offset and the watermark state
//! before it; the committed offset is the earliest of those still unpublished. With it goes
//! a checkpoint (the watermark state, the windows the worker has closed and the last offset
//! counted in each, the windows amended and the last offset amending each per time),
//! written to the checkpoint topic and waited for before any window closes, so a restart
//! reads again exactly what it needs and decides every event it reads again as the run
//! before it did: counted once, or late once, never both, never neither.
//!
//! An event's fate is `fate::Rules`' (judged against the watermark this worker's windows
//! close on, at the time the event was received): one of a window still held counts in its
//! final, one within the allowed lateness of a closed window amends it: it goes out on the
//! amendments output at the source's time, and its window is published again, revised, at
//! that time. A restart does not rebuild the totals of windows an earlier run closed: an
//! amendment of one of them is a late record, unless the earlier run published it (the
//! windows topic has a message of its window at its time or later).

//!
//! # Layout
//! - this module: the `read_kafka` operator and its configuration.
//! - `state`: the partitions' state and every decision taken on it (where each starts, each
//!   event's route, each checkpoint's state, when windows close), apart from the broker.
//! - `reader`: the partitions of a worker: assignment, polling, emitting what `state` routes.
//! - `progress`: idleness and the capabilities' advance.
//! - `commit`: the commit protocol behind what is published, and the drain on a stop.
//! - `checkpoint`: the state committed with each offset, so a restart decides as the run
//!   before it did.
//! - `reported`: the late and invalid records an earlier run published, read back.
//! - `end_probe`: the thread that asks the broker for the partitions' ends and count.
//! - `ingests`: what the ingests hold that the broker has not stored yet; the clock windows
//!   close on waits for it.
//! - `growth`: partitions added to the events topic while the dataflow runs.
//! - `context`: the client's statistics and whether the brokers answer.
//! - `decode`: a message into an event, or the reason it is invalid.

mod checkpoint;
mod commit;
mod context;
mod decode;
mod end_probe;
mod growth;
mod ingests;
mod progress;
mod reader;
mod reported;
mod state;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::{ProbeHandle, Scope};

use service::metrics::Counter;

use crate::control::RunControl;
use crate::fate::Rules;
use crate::metrics::DataflowMetrics;
use crate::record::LateEvent;
use crate::source::outputs::{SourceStreams, source_outputs};
use reader::KafkaReader;

pub(crate) use checkpoint::Checkpoint;
pub use checkpoint::{
    Checkpoints, Claims, Settings, WINDOWS_TOPICS_KEPT, read_checkpoints,
    recorded_published_before, recorded_settings, recorded_windows_topics,
};
pub use reported::{Reported, read_reported};
#[cfg(test)]
pub(crate) use {
    checkpoint::{Newest, OWNER_TAIL},
    reported::Reading,
    state::{Partition, SourceState},
};

/// Where to start reading when the dataflow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The first retained message.
    Earliest,
    /// Only new messages.
    Latest,
    /// The committed offsets (and watermarks) of the consumer group, else the earliest.
    #[default]
    Committed,
}

/// How the events topic is read.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Brokers.
    pub brokers: String,
    /// The events topic.
    pub topic: String,
    /// Consumer group whose offsets are committed.
    pub group: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// This dataflow's window size, the run's sizes and lateness, the allowed emojis and how
    /// far ahead of the clock a stamp may be: what decides each event's fate.
    pub rules: Rules,
    /// A partition without data this long stops holding windows back.
    pub idle_timeout: Duration,
    /// Where the ingests say since when they hold events the broker has not acknowledged.
    pub ingests_topic: String,
    /// An ingest not heard from this long is taken as gone.
    pub ingest_timeout: Duration,
    /// Where to start.
    pub start: StartFrom,
    /// Windows starting before this were published by an earlier run.
    pub published_before: i64,
    /// Partitions from this one on were not read by the run that published them (the events
    /// topic grew since): their events of published windows are late, not already counted.
    pub new_partitions_from: i32,
    /// Per window recently published final or revised: the latest dataflow time of its
    /// messages (from their time header), to tell which amendments an earlier run published.
    pub published_times: Arc<BTreeMap<i64, i64>>,
    /// On a restart, how many messages before each committed offset are read again, only to
    /// rebuild the watermark (and so that a broker that can only serve whole record batches
    /// still returns the committed offset itself).
    pub rewind: i64,
    /// Whether this dataflow reports invalid messages (one size of a run does: they are
    /// invalid for every size alike).
    pub report_invalid: bool,
    /// The last checkpoint of each partition (read at start; used when resuming from what
    /// was committed).
    pub checkpoints: Checkpoints,
    /// Where checkpoints go.
    pub checkpoint_topic: String,
    /// Where late and invalid records go.
    pub late_topic: String,
    /// Where this size's windows go, then where earlier runs published them, if elsewhere
    /// (named in the checkpoints).
    pub windows_topics: Vec<String>,
    /// The late and invalid records an earlier run published for the events read again,
    /// and where the late topic ended when they were read back.
    pub reported: Arc<Reported>,
    /// Counts this size's late events (each size has its own, served with the live size's
    /// metrics).
    pub late: Arc<Counter>,
}

/// What the source reports besides on-time events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiveSide {
    /// An event of a window already closed.
    Late {
        /// The event.
        event: LateEvent,
        /// Why it is late.
        reason: String,
        /// Partition and offset.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// A message that is not a valid event.
    Invalid {
        /// Why.
        reason: String,
        /// The payload (invalid UTF-8 replaced, cut to 1 KiB).
        raw: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
}

/// Reads the events topic into a dataflow.
pub trait ReadKafka<'scope> {
    /// On-time events at their window start, amendments (events within the allowed
    /// lateness of a closed window) at the source's time, and late or invalid records. `published`
    /// must probe the streams whose records are durably published (windows and side);
    /// `sources` the returned event stream. The source stops reading once `control` stops,
    /// and reports through `drained` when everything closed is published and committed.
    #[allow(clippy::too_many_arguments)]
    fn read_kafka(
        self,
        config: KafkaSourceConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
        sources: ProbeHandle<i64>,
        published: ProbeHandle<i64>,
        drained: Rc<std::cell::Cell<bool>>,
    ) -> SourceStreams<'scope, LiveSide>;
}

impl<'scope> ReadKafka<'scope> for Scope<'scope, i64> {
    fn read_kafka(
        self,
        config: KafkaSourceConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
        sources: ProbeHandle<i64>,
        published: ProbeHandle<i64>,
        drained: Rc<std::cell::Cell<bool>>,
    ) -> SourceStreams<'scope, LiveSide> {
        let (index, peers) = (self.index(), self.peers());
        source_outputs(self, "ReadKafka", move |caps, activator| {
            let mut reader = match KafkaReader::new(config, index, peers, caps, metrics) {
                Ok(reader) => Some(reader),
                Err(message) => {
                    control.fail(message);
                    drained.set(true);
                    None
                }
            };
            move |sessions| {
                // A drained source keeps its capabilities until its dataflow is dropped: were
                // they released, every open window would close and go out as a final before
                // its end (another size, or another worker, may still be stepping).
                let Some(active) = reader.as_mut().filter(|_| !drained.get()) else {
                    return;
                };
                if let Some(failure) = active.taken_over() {
                    // What it wrote since is no partition's state: it stops at once.
                    control.fail(failure);
                    drained.set(true);
                    return;
                }
                if control.failure().is_some() {
                    // A publisher that failed may have let its input pass unpublished:
                    // nothing more is committed (a restart reads again from the last commit).
                    drained.set(true);
                    return;
                }
                if control.stopped() {
                    if active.drain(&sources, &published) {
                        drained.set(true);
                    } else {
                        activator.activate_after(Duration::from_millis(5));
                    }
                    return;
                }
                let slowest = sources.with_frontier(|f| f.first().copied());
                let got = active.step(sessions, slowest);
                active.commit_published(&published, false);
                if got {
                    activator.activate();
                } else {
                    activator.activate_after(Duration::from_millis(2));
                }
            }
        })
    }
}
