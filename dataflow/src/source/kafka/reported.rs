//! What an earlier run reported late or invalid, read back from the late topic, so that a
//! restart that reads those events again does not report them twice.
//!
//! Each checkpoint names where the late topic's partitions ended before the event at its
//! offset was read (`Checkpoint::late_from`): every late or invalid record of that event and
//! of later ones was published at or after those positions. A restart reads the late topic
//! from the least of them to its end, bounded by what was published since the oldest event
//! it reads again, and keeps the records of this dataflow's size (and the invalid ones, for
//! the size that reports them) by partition and offset of the events topic.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use model::WindowSize;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::checkpoint::{Checkpoint, Checkpoints};
use super::context::read_back_consumer;
use crate::failure::Failure;

/// The late and invalid records an earlier run published for events a restart reads again.
#[derive(Debug, Default, Clone)]
pub struct Reported {
    /// Per partition of the events topic, the offsets reported.
    offsets: HashMap<i32, HashSet<i64>>,
    /// Where each partition of the late topic ended when it was read.
    ends: Vec<i64>,
    /// Where it was read from (per partition of the late topic): the records found are at or
    /// after these.
    from: Vec<i64>,
}

impl Reported {
    /// Whether the event at `offset` of partition `partition` was reported by an earlier run.
    pub fn was_reported(&self, partition: i32, offset: i64) -> bool {
        self.offsets
            .get(&partition)
            .is_some_and(|offsets| offsets.contains(&offset))
    }

    /// Where each partition of the late topic ended when it was read back.
    pub fn ends(&self) -> &[i64] {
        &self.ends
    }

    /// Where each partition of the late topic is read from: the records found are at or
    /// after these.
    pub fn from(&self) -> &[i64] {
        &self.from
    }

    /// Where the late topic's partitions must be read from by a later restart that reads the
    /// event at `offset` of `partition` again, given where they ended before this run read
    /// it (`ends`): not past the records found here while any of them is of that offset or
    /// a later one (they stay where they are, before `ends`).
    pub fn late_from(&self, partition: i32, offset: i64, mut ends: Vec<i64>) -> Vec<i64> {
        let found_later = self
            .offsets
            .get(&partition)
            .is_some_and(|offsets| offsets.iter().any(|&o| o >= offset));
        if found_later && ends.len() == self.from.len() {
            for (end, &from) in ends.iter_mut().zip(&self.from) {
                *end = (*end).min(from);
            }
        }
        ends
    }

    /// How many records were found.
    pub fn len(&self) -> usize {
        self.offsets.values().map(HashSet::len).sum()
    }

    /// Whether none were found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The fields of a late record a restart needs.
#[derive(Deserialize)]
struct LateRecord {
    window: Option<String>,
    partition: i32,
    offset: i64,
}

/// Reads back from `late_topic` the records of the events read again after `checkpoints`:
/// late records of windows of `size`, and invalid ones too if `invalid_too`.
// Long: one pass over the late topic: the positions the checkpoints name, the assignment and
// the read to each partition's end share their state.
pub fn read_reported(
    brokers: &str,
    late_topic: &str,
    checkpoints: &Checkpoints,
    size: WindowSize,
    invalid_too: bool,
) -> Result<Reported, Failure> {
    let kafka = |action: &str| {
        let action = format!("{action} the late records in {late_topic}");
        move |e| Failure::kafka(action, e)
    };
    let consumer =
        read_back_consumer(brokers, late_topic).map_err(kafka("create a consumer for"))?;
    let partitions = service::kafka::partitions_of(&consumer, late_topic).map_err(kafka("find"))?;
    let mut ends = Vec::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(late_topic, p, Duration::from_secs(30))
            .map_err(kafka("find the end of"))?;
        ends.push(high);
    }
    let (mut reported, reading) = Reading::plan(checkpoints, size, invalid_too, ends);
    let mut assignment = TopicPartitionList::new();
    // Read to where the broker says the partition ends (a high watermark may be told short
    // of the last record batch), and nothing is published there meanwhile.
    let mut to_read = HashSet::new();
    for (i, &p) in partitions.iter().enumerate() {
        if reported.from[i] < reported.ends[i] {
            assignment
                .add_partition_offset(late_topic, p, Offset::Offset(reported.from[i].max(0)))
                .map_err(kafka("assign"))?;
            to_read.insert(p);
        }
    }
    if to_read.is_empty() {
        return Ok(reported);
    }
    consumer.assign(&assignment).map_err(kafka("assign"))?;
    // However long the read, as long as it goes on: a stall of 30 s is a failure.
    let mut deadline = Instant::now() + Duration::from_secs(30);
    while !to_read.is_empty() {
        if Instant::now() > deadline {
            return Err(Failure::kafka(
                format!("read the late records in {late_topic}: nothing came for 30 s"),
                KafkaError::NoMessageReceived,
            ));
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                deadline = Instant::now() + Duration::from_secs(30);
                message
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                to_read.remove(&p);
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, %late_topic, "Reading the late records.");
                continue;
            }
            None => continue,
        };
        reading.see(&mut reported, message.payload().unwrap_or_default());
    }
    Ok(reported)
}

/// A read of the late topic for the records of the events a restart reads again.
pub(crate) struct Reading {
    /// Per partition of the events topic, the offset it resumes from.
    since: HashMap<i32, i64>,
    /// The window size whose late records count.
    label: String,
    /// Whether the invalid records count.
    invalid_too: bool,
}

impl Reading {
    /// Where to read the late topic, whose partitions end at `ends`, for the records of
    /// windows of `size` (and the invalid ones too if `invalid_too`) of the events read again
    /// after `checkpoints`: from each partition's least position any checkpoint names, none
    /// (the partition's end) where none names one. The records go into the returned
    /// `Reported`, whose `from` says where to read each partition from, through
    /// [`see`](Self::see).
    pub(crate) fn plan(
        checkpoints: &Checkpoints,
        size: WindowSize,
        invalid_too: bool,
        ends: Vec<i64>,
    ) -> (Reported, Reading) {
        let resumed: Vec<(i32, i64, Vec<i64>)> = checkpoints
            .iter()
            .map(|(&p, (offset, text))| {
                (
                    p,
                    *offset,
                    Checkpoint::decode(text, *offset, size).late_from,
                )
            })
            .collect();
        let from = (0..ends.len())
            .map(|i| {
                resumed
                    .iter()
                    .filter(|(_, _, late_from)| late_from.len() == ends.len())
                    .map(|(_, _, late_from)| late_from[i])
                    .min()
                    .filter(|&from| from < ends[i])
                    .map_or(ends[i], |from| from.max(0))
            })
            .collect();
        let reading = Reading {
            since: resumed.iter().map(|(p, o, _)| (*p, *o)).collect(),
            label: size.label(),
            invalid_too,
        };
        let reported = Reported {
            offsets: HashMap::new(),
            ends,
            from,
        };
        (reported, reading)
    }

    /// Notes a record of the late topic (its payload), if it is one of those read for.
    pub(crate) fn see(&self, reported: &mut Reported, payload: &[u8]) {
        let Ok(record) = serde_json::from_slice::<LateRecord>(payload) else {
            return;
        };
        let ours = match &record.window {
            Some(window) => *window == self.label,
            None => self.invalid_too,
        };
        let read_again = self
            .since
            .get(&record.partition)
            .is_some_and(|&since| record.offset >= since);
        if ours && read_again {
            reported
                .offsets
                .entry(record.partition)
                .or_default()
                .insert(record.offset);
        }
    }
}
