//! The EmoStream dataflow: Timely Dataflow workers that turn a stream of emoji events into
//! exact per-window statistics, with event time and watermark-style frontiers.
//!
//! Events enter from a source (recorded CSV logs here) at the timely timestamp of their
//! window's start. Each source partition keeps a watermark (`max timestamp seen -
//! lateness`); a source holds its capability at the earliest window any of its partitions
//! may still add to, so a window closes once every partition's watermark has passed its
//! end. Events are routed to the worker that owns their user, counted exactly there, and
//! the per-worker shards of each window are added up on worker 0.
//!
//! # Layout
//! - [`record`]: the records between operators (`Tap`, `PartialWindow`, side records).
//! - [`accumulator`]: exact counting of one window over one shard of users.
//! - [`source`]: CSV log and Kafka sources (blocks, partitions, watermarks, commits).
//! - [`operators`]: `aggregate_windows`, `count_distinct` (differential), `merge_windows`,
//!   and `count_windows`, the three as one step with either engine.
//! - [`sink`]: CSV outputs and Kafka publishers.
//! - [`replay`]: `run_replay`, the replay of logs through the dataflow.
//! - [`cluster`]: workers, processes and hostfiles.
//! - [`control`]: progress, strict stop and failures shared by a process's workers.
//! - [`failure`]: `Failure`, what stops a run, and whether running again may help.
//! - [`fate`]: `Rules`, the one decision of an event's validity, time and fate, live and replayed.
//! - [`recovery`]: what a restart reads back to go on where an earlier run stopped.
//! - [`reference`]: a plain single-threaded aggregator, the oracle of the tests.
//! - [`live`]: `run_live`, the dataflow between Kafka topics.
//! - [`server`]: `start`, the live dataflow as a service: workers, admin server, stop.
//! - [`metrics`]: the live dataflow's Prometheus metrics.

pub mod accumulator;
pub mod cluster;
pub mod control;
pub mod failure;
pub mod fate;
pub mod live;
pub mod metrics;
pub mod operators;
pub mod record;
pub mod recovery;
pub mod reference;
pub mod replay;
pub mod server;
#[cfg(test)]
mod simulation;
pub mod sink;
pub mod source;

pub use cluster::ClusterConfig;
pub use control::RunControl;
pub use live::{LiveConfig, LiveError, run_live};
pub use operators::Engine;
pub use replay::{ReplayConfig, ReplayError, ReplaySummary, run_replay};
pub use server::{RunningDataflow, start};
