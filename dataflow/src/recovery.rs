//! Recovery: what a restart learns from the broker before its workers start, so that it goes
//! on exactly where an earlier run stopped.
//!
//! Invariants (the rest of the dataflow relies on them and never derives them again):
//! - Windows close in order, and a final or revision goes to every cluster topic before the
//!   windows topic: the newest final on the windows topic bounds what was published
//!   (`published_before`), and a message on the cluster topics that the windows topic lacks
//!   is the one publication a kill cut short; it is completed here, before anything else is
//!   published.
//! - Finals and revisions carry their dataflow time: per recent window, the latest time
//!   published tells which amendments an earlier run published (`published_times`).
//! - Each partition's newest checkpoint is its state: the offset to resume from, the
//!   watermark, the windows closed and the offsets counted in each
//!   (`source::kafka::checkpoint`).
//! - A late or invalid record is published once: those published for the events a restart
//!   reads again are read back (`source::kafka::reported`).
//! - What is read back is bounded, and read in one pass per topic: the last
//!   [`RECENT_MESSAGES`] of each windows-topic partition (further back only for a partition
//!   without a final among them), the last message of each cluster topic, the newest
//!   checkpoint of each partition, the late records since the oldest event read again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::WindowSize;
use model::names::TIME_HEADER;
use model::report::{WindowMessage, WindowState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::failure::Failure;
use crate::live::{LiveConfig, LiveError, Prepared};
use crate::sink::kafka_publish::republish;
use crate::source::kafka::{
    Checkpoints, Settings, StartFrom, read_checkpoints, read_reported, recorded_partitions,
    recorded_published_before, recorded_settings,
};

/// Reads back what earlier runs published and checkpointed, completing a publication a kill
/// cut short; what the workers start from, with the events topic's `partitions`.
// Long: per window size, the settings check decides which windows topic is read back, and
// the checkpoints and late records read after it belong to the same size.
pub(crate) fn read_back(config: &LiveConfig, partitions: i32) -> Result<Prepared, LiveError> {
    let consumer: BaseConsumer = service::kafka::client_config(&config.brokers)
        .set("group.id", format!("{}-inspect", config.group))
        .set("enable.auto.commit", "false")
        // Every read here ends at a known offset: no fetch needs to wait for more.
        .set("fetch.wait.max.ms", "10")
        // A range retention has cut: what is left of it.
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| Failure::kafka("create a Kafka consumer", e))?;
    let mut published_before = Vec::new();
    let mut published_times = Vec::new();
    let mut checkpoints = Vec::new();
    let mut reported = Vec::new();
    let mut new_partitions_from = Vec::new();
    for (i, &size) in config.windows.sizes().iter().enumerate() {
        let checkpoint = match config.start {
            StartFrom::Committed => {
                read_checkpoints(&config.brokers, &config.checkpoint_topic_for(size))?
            }
            _ => Checkpoints::new(),
        };
        // Where the windows were published: the windows topic the checkpoints name, if it is
        // another (a size added renames the live size's topic) and still there.
        let current = config.windows_topic_for(size);
        let recorded = recorded_settings(&checkpoint, size);
        if let Some(recorded) = &recorded {
            check_settings(config, size, partitions, recorded)?;
        }
        // Partitions from this one on were read by no run that published windows: all of them
        // when the run starts at the end (what it skips, no earlier run read either).
        new_partitions_from.push(match config.start {
            StartFrom::Latest => 0,
            _ => recorded.as_ref().map_or(i32::MAX, |r| r.partitions),
        });
        let topic = match recorded.map(|r| r.windows_topic) {
            Some(before) if before != current && partitions_of(&consumer, &before).is_ok() => {
                tracing::info!(before = %before, now = %current, "The windows were published to another topic: the restart reads back what was published there and publishes to the new one.");
                before
            }
            _ => current,
        };
        // The clusters get the live size only.
        let clusters = if i == 0 {
            config.cluster_topics()
        } else {
            Vec::new()
        };
        let mut tail = read_tail(&consumer, &topic, &clusters)?;
        if let Some(completed) = complete_publication(config, &topic, &tail.lasts, &mut tail.times)?
        {
            tail.newest = tail.newest.max(Some(completed));
        }
        let newest = newest_window(&consumer, &topic, tail.newest, &tail.unresolved)?;
        tracing::debug!(%topic, windows = tail.times.len(), "The times of recent finals and revisions.");
        published_times.push(Arc::new(tail.times));
        if let Some(start) = newest {
            tracing::info!(window_start = %model::format_rfc3339_millis(start), %topic, "Resuming after the last published window.");
        }
        // The checkpoints know too what was published (the topic may have been emptied by
        // retention, or renamed and deleted).
        let before = newest
            .map(|start| start + size.millis())
            .max(recorded_published_before(&checkpoint, size))
            .unwrap_or(i64::MIN);
        if before > i64::MIN {
            check_accounted(config, size, partitions, &topic, before, &checkpoint)?;
        }
        published_before.push(before);
        // The live size reports the invalid events.
        let late = read_reported(
            &config.brokers,
            &config.late_topic,
            &checkpoint,
            size,
            i == 0,
        )?;
        if !late.is_empty() {
            tracing::info!(records = late.len(), topic = %config.late_topic, "Late and invalid records published before the restart, not to report again.");
        }
        reported.push(Arc::new(late));
        checkpoints.push(checkpoint);
    }
    Ok(Prepared {
        partitions,
        published_before,
        published_times,
        checkpoints,
        new_partitions_from,
        reported,
    })
}

/// Refuses a state made with settings it cannot be carried over to: another events topic, a
/// topic with fewer partitions, another window size.
fn check_settings(
    config: &LiveConfig,
    size: WindowSize,
    partitions: i32,
    recorded: &Settings,
) -> Result<(), LiveError> {
    let refuse = |setting: &'static str, was: String, now: String| LiveError::Settings {
        group: config.checkpoint_topic_for(size),
        setting,
        was,
        now,
    };
    if recorded.events_topic != config.events_topic {
        return Err(refuse(
            "--events-topic",
            recorded.events_topic.clone(),
            config.events_topic.clone(),
        ));
    }
    if recorded.window_ms != size.millis() {
        let was = WindowSize::from_millis(recorded.window_ms)
            .map_or_else(|_| format!("{} ms", recorded.window_ms), |w| w.label());
        return Err(refuse("--window", was, size.label()));
    }
    if recorded.partitions > partitions {
        return Err(refuse(
            "the partitions of the events topic",
            recorded.partitions.to_string(),
            partitions.to_string(),
        ));
    }
    if recorded.partitions < partitions {
        tracing::info!(before = recorded.partitions, now = partitions, topic = %config.events_topic, "The events topic has more partitions than when the checkpoints were written: the new ones are read from their start.");
    }
    Ok(())
}

/// Refuses to start where windows were published (before `before`, on `topic`) that no
/// checkpoint accounts for: the run could not tell which of their events were counted.
fn check_accounted(
    config: &LiveConfig,
    size: WindowSize,
    partitions: i32,
    topic: &str,
    before: i64,
    checkpoints: &Checkpoints,
) -> Result<(), LiveError> {
    let refuse = |why: String| LiveError::Unaccounted {
        topic: topic.to_owned(),
        before: model::format_rfc3339_millis(before),
        why,
    };
    match config.start {
        StartFrom::Earliest => Err(refuse(format!(
            "--start earliest would count again what group {} counted",
            config.group
        ))),
        // Those it reads are of the windows after the published ones, or late records.
        StartFrom::Latest => Ok(()),
        StartFrom::Committed => {
            // The partitions every checkpoint knew of (each got one before it was read; one
            // added while a run stopped may have none, and is read as new).
            let known = match recorded_partitions(checkpoints, size) {
                Some(least) => least.min(partitions),
                None if checkpoints.is_empty() => partitions,
                // Made by a version that did not name its settings.
                None => 0,
            };
            let missing: Vec<i32> = (0..known)
                .filter(|p| !checkpoints.contains_key(p))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            Err(refuse(format!(
                "no checkpoint in {} accounts for (none for partitions {missing:?} of {}: a new --group, or its checkpoints deleted)",
                config.checkpoint_topic_for(size),
                config.events_topic
            )))
        }
    }
}

/// The partitions of `topic`.
pub(crate) fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, LiveError> {
    service::kafka::partitions_of(consumer, topic).map_err(|source| LiveError::Inspect {
        action: "read the metadata of",
        topic: topic.to_owned(),
        source,
    })
}

/// The first and the next offset of partition `p` of `topic`.
fn offsets_of(consumer: &BaseConsumer, topic: &str, p: i32) -> Result<(i64, i64), LiveError> {
    consumer
        .fetch_watermarks(topic, p, Duration::from_secs(30))
        .map_err(|source| LiveError::Inspect {
            action: "read the offsets of",
            topic: topic.to_owned(),
            source,
        })
}

/// How many of the last messages of each windows-topic partition a restart reads for the
/// times of recent finals and revisions: far more than the windows an amendment can reach.
const RECENT_MESSAGES: i64 = 10_000;

/// What the ends of a windows topic and of the cluster topics say.
struct Tail {
    /// Per window among the recent messages: the latest dataflow time of its final and
    /// revised messages.
    times: BTreeMap<i64, i64>,
    /// The start of the newest final among them.
    newest: Option<i64>,
    /// The partitions with no final among their recent messages and older messages before
    /// them: `(partition, first offset, where the recent messages began)`.
    unresolved: Vec<(i32, i64, i64)>,
    /// The last message of each cluster topic, if it is a final or a revision.
    lasts: Vec<Option<Published>>,
}

/// Reads, in one pass, the last [`RECENT_MESSAGES`] of each partition of `topic` and the last
/// message of each of `clusters`.
fn read_tail(consumer: &BaseConsumer, topic: &str, clusters: &[String]) -> Result<Tail, LiveError> {
    let mut ranges = Vec::new();
    let mut starts = Vec::new();
    for p in partitions_of(consumer, topic)? {
        let (low, high) = offsets_of(consumer, topic, p)?;
        let from = (high - RECENT_MESSAGES).max(low);
        starts.push((p, low, from));
        ranges.push(Range::new(topic, p, from, high));
    }
    for cluster in clusters {
        let (low, high) = offsets_of(consumer, cluster, 0)?;
        ranges.push(Range::new(cluster, 0, (high - 1).max(low), high));
    }
    let mut times = BTreeMap::new();
    let mut newest_in: HashMap<i32, i64> = HashMap::new();
    let mut lasts: HashMap<String, Published> = HashMap::new();
    read_ranges(consumer, &ranges, |message, range| {
        let Some((time, read)) = closed_message(message) else {
            return;
        };
        if message.topic() == topic {
            let start = read.report.window_start;
            let latest = times.entry(start).or_insert(time);
            *latest = (*latest).max(time);
            if read.state == WindowState::Final {
                let newest = newest_in.entry(message.partition()).or_insert(start);
                *newest = (*newest).max(start);
            }
        } else if message.offset() == range.end - 1 {
            lasts.insert(
                message.topic().to_owned(),
                Published {
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    time,
                    message: read,
                },
            );
        }
    })?;
    Ok(Tail {
        times,
        newest: newest_in.values().copied().max(),
        unresolved: starts
            .into_iter()
            .filter(|(p, low, from)| from > low && !newest_in.contains_key(p))
            .collect(),
        lasts: clusters.iter().map(|c| lasts.remove(c)).collect(),
    })
}

/// A final or revised window message with its dataflow time (the [`TIME_HEADER`]).
fn closed_message(message: &BorrowedMessage<'_>) -> Option<(i64, WindowMessage)> {
    let time = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == TIME_HEADER)
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
    })?;
    let read = message
        .payload()
        .and_then(|p| serde_json::from_slice::<WindowMessage>(p).ok())
        .filter(|m| m.state != WindowState::Open)?;
    Some((time, read))
}

/// The start of the newest final window of `topic`: `newest` among the recent messages,
/// or, for a partition with none there (revisions of older windows and open updates, with
/// `--updates-to-windows-topic`, may follow a final), the newest final before them, read
/// backwards a chunk at a time until one turns up or the partition begins. Windows close in
/// order, so the newest final of every partition bounds what an earlier run published.
fn newest_window(
    consumer: &BaseConsumer,
    topic: &str,
    mut newest: Option<i64>,
    unresolved: &[(i32, i64, i64)],
) -> Result<Option<i64>, LiveError> {
    for &(p, low, before) in unresolved {
        let mut end = before;
        let mut chunk = 1_000;
        while end > low {
            let from = (end - chunk).max(low);
            let mut found: Option<i64> = None;
            read_ranges(
                consumer,
                &[Range::new(topic, p, from, end)],
                |message, _| {
                    if let Some((_, read)) = closed_message(message)
                        && read.state == WindowState::Final
                    {
                        let start = read.report.window_start;
                        found = Some(found.map_or(start, |f| f.max(start)));
                    }
                },
            )?;
            if found.is_some() {
                newest = newest.max(found);
                break;
            }
            end = from;
            chunk = (chunk * 16).min(100_000);
        }
    }
    Ok(newest)
}

/// Offsets `[from, end)` of one partition, to read back.
struct Range<'a> {
    topic: &'a str,
    partition: i32,
    from: i64,
    end: i64,
}

impl<'a> Range<'a> {
    fn new(topic: &'a str, partition: i32, from: i64, end: i64) -> Self {
        Range {
            topic,
            partition,
            from,
            end,
        }
    }
}

/// Reads every range at once, each message handed to `visit` with its range (a broker may
/// hand a whole record batch, so messages before a range's start can come too).
fn read_ranges(
    consumer: &BaseConsumer,
    ranges: &[Range<'_>],
    mut visit: impl FnMut(&BorrowedMessage<'_>, &Range<'_>),
) -> Result<(), LiveError> {
    let inspect = |topic: &str| {
        let topic = topic.to_owned();
        move |source| LiveError::Inspect {
            action: "read",
            topic,
            source,
        }
    };
    let mut assignment = TopicPartitionList::new();
    let mut left: HashMap<(&str, i32), &Range<'_>> = HashMap::new();
    for range in ranges.iter().filter(|r| r.end > r.from) {
        assignment
            .add_partition_offset(range.topic, range.partition, Offset::Offset(range.from))
            .map_err(inspect(range.topic))?;
        left.insert((range.topic, range.partition), range);
    }
    if left.is_empty() {
        return Ok(());
    }
    let first = ranges[0].topic;
    consumer.assign(&assignment).map_err(inspect(first))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(waiting) = left.keys().next().map(|(topic, _)| *topic) {
        if Instant::now() > deadline {
            return Err(LiveError::LastWindows(waiting.to_owned()));
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let key = (message.topic(), message.partition());
        let Some(range) = left.iter().find(|(k, _)| **k == key).map(|(_, r)| *r) else {
            continue;
        };
        if message.offset() < range.end {
            visit(&message, range);
        }
        if message.offset() >= range.end - 1 {
            left.retain(|k, _| *k != key);
        }
    }
    Ok(())
}

/// A final or revised window message as read back from a topic.
struct Published {
    key: String,
    payload: Vec<u8>,
    /// Its dataflow time (the [`TIME_HEADER`]).
    time: i64,
    message: WindowMessage,
}

/// Finishes a final or revision an earlier run left half published. One worker publishes
/// the windows, one message at a time, to every cluster topic and then the windows topic, so
/// a kill between the two leaves at most one message on (some of) the cluster topics only:
/// their last message (`lasts`), which the windows topic lacks. Viewers have seen it, and a
/// restart learns from the windows topic what was published; so the message goes to the
/// cluster topics without it and then (last, as always) to the windows topic, and `times`
/// (the windows topic's, per window) takes its time. Otherwise a restart would report the
/// corrections it carries late while viewers saw them counted. Process 0 publishes; the
/// others take the same decision. The window's start if the message completed is a final.
fn complete_publication(
    config: &LiveConfig,
    windows_topic: &str,
    lasts: &[Option<Published>],
    times: &mut BTreeMap<i64, i64>,
) -> Result<Option<i64>, LiveError> {
    let Some((message, lacking)) = interrupted(lasts, times) else {
        return Ok(None);
    };
    let start = message.message.report.window_start;
    if config.cluster.process == 0 {
        let clusters = config.cluster_topics();
        let lacking: Vec<String> = lacking.iter().map(|&i| clusters[i].clone()).collect();
        tracing::info!(
            window_start = %model::format_rfc3339_millis(start),
            revision = message.message.revision,
            clusters = ?lacking,
            "Completing the publication of a window an earlier run stopped in the middle of."
        );
        let record = (
            message.key.as_str(),
            message.payload.as_slice(),
            message.time,
        );
        republish(&config.brokers, &lacking, record)?;
        republish(
            &config.brokers,
            std::slice::from_ref(&windows_topic.to_owned()),
            record,
        )?;
    }
    times.insert(start, message.time);
    Ok((message.message.state == WindowState::Final).then_some(start))
}

/// Of the cluster topics' last messages, the one an earlier run left half published: a
/// final or revision the windows topic lacks (by its window and time, `times`); with the
/// indexes of the cluster topics whose last message it is not.
fn interrupted<'a>(
    lasts: &'a [Option<Published>],
    times: &BTreeMap<i64, i64>,
) -> Option<(&'a Published, Vec<usize>)> {
    let missing = lasts.iter().flatten().find(|p| {
        times
            .get(&p.message.report.window_start)
            .is_none_or(|&t| t < p.time)
    })?;
    let same = |p: &Published| {
        p.message.report.window_start == missing.message.report.window_start
            && p.time == missing.time
            && p.message.revision == missing.message.revision
    };
    let lacking = lasts
        .iter()
        .enumerate()
        .filter(|(_, last)| !last.as_ref().is_some_and(same))
        .map(|(i, _)| i)
        .collect();
    Some((missing, lacking))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ReportConfig;

    fn published(window_start: i64, time: i64, revision: u64, state: WindowState) -> Published {
        let report = model::WindowReport::build(
            window_start,
            window_start + 2000,
            1,
            1,
            [],
            &ReportConfig::default(),
        );
        let mut message = WindowMessage::final_of(report, window_start / 2000);
        message.revision = revision;
        message.state = state;
        Published {
            key: model::format_rfc3339_millis(window_start),
            payload: Vec::new(),
            time,
            message,
        }
    }

    #[test]
    fn the_interrupted_message_is_the_one_the_windows_topic_lacks_whatever_its_time() {
        // A revision of window 0 reached cluster 1 only; cluster 2's last message is the
        // final of window 2000, of the same time and on the windows topic already.
        let revision = published(0, 4000, 7, WindowState::Revised);
        let final_message = published(2000, 4000, 7, WindowState::Final);
        let lasts = [Some(revision), Some(final_message)];
        let times = BTreeMap::from([(0, 2000), (2000, 4000)]);
        let (missing, lacking) = interrupted(&lasts, &times).expect("one to complete");
        assert_eq!(missing.message.report.window_start, 0);
        assert_eq!(lacking, [1]);
        // Once the windows topic has it, nothing is left to complete.
        let times = BTreeMap::from([(0, 4000), (2000, 4000)]);
        assert!(interrupted(&lasts, &times).is_none());
        // A cluster with no message at all lacks it too.
        let lasts = [None, Some(published(0, 6000, 8, WindowState::Revised))];
        let (_, lacking) = interrupted(&lasts, &BTreeMap::new()).unwrap();
        assert_eq!(lacking, [0]);
    }
}
