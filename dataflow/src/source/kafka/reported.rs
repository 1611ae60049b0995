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

/// Where `assignment` starts partition `p` of `topic`, if it does.
fn assignment_from(assignment: &TopicPartitionList, topic: &str, p: i32) -> Option<i64> {
    match assignment.find_partition(topic, p)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
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
    // Where each late partition must be read from: the least position any checkpoint names
    // (none: nothing to read again, or checkpoints of a version that names none).
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
    let since: HashMap<i32, i64> = resumed.iter().map(|(p, o, _)| (*p, *o)).collect();
    let mut assignment = TopicPartitionList::new();
    // Read to where the broker says the partition ends (a high watermark may be told short
    // of the last record batch), and nothing is published there meanwhile.
    let mut to_read = HashSet::new();
    for (i, &p) in partitions.iter().enumerate() {
        let from = resumed
            .iter()
            .filter(|(_, _, late_from)| late_from.len() == partitions.len())
            .map(|(_, _, late_from)| late_from[i])
            .min();
        if let Some(from) = from.filter(|&from| from < ends[i]) {
            assignment
                .add_partition_offset(late_topic, p, Offset::Offset(from.max(0)))
                .map_err(kafka("assign"))?;
            to_read.insert(p);
        }
    }
    let from = partitions
        .iter()
        .enumerate()
        .map(|(i, p)| assignment_from(&assignment, late_topic, *p).unwrap_or(ends[i]))
        .collect();
    let mut reported = Reported {
        offsets: HashMap::new(),
        ends,
        from,
    };
    if to_read.is_empty() {
        return Ok(reported);
    }
    consumer.assign(&assignment).map_err(kafka("assign"))?;
    let label = size.label();
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
        let Some(record) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<LateRecord>(p).ok())
        else {
            continue;
        };
        let ours = match &record.window {
            Some(window) => *window == label,
            None => invalid_too,
        };
        let read_again = since
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
    Ok(reported)
}
