//! Recovery: what a restart learns from the broker before its workers start, so that it goes
//! on exactly where an earlier run stopped. One call, `recover`, over a `Broker` (Kafka
//! in a run, an in-memory log in the simulation test) returns it all.
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
//! - Checkpoints name the windows topics earlier runs published to (a size added renames the
//!   live size's): each is read back, so no publication is missed whatever was renamed.
//! - What is read back is bounded, and read in one pass per topic: the last
//!   [`RECENT_MESSAGES`] of each windows-topic partition (further back only for a partition
//!   without a final among them), the last message of each cluster topic, the newest
//!   checkpoint of each partition, the late records since the oldest event read again.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    Checkpoint, Checkpoints, Claims, Reported, Settings, StartFrom, WINDOWS_TOPICS_KEPT,
    read_checkpoints, read_reported, recorded_published_before, recorded_settings,
    recorded_windows_topics,
};

/// What a restart reads back and the one write it may make: from the broker, or (in the
/// simulation test) from an in-memory log.
pub(crate) trait Broker {
    /// The newest checkpoint of each partition in `topic`, and which are claims (see
    /// `source::kafka::checkpoint`).
    fn checkpoints(&mut self, topic: &str) -> Result<(Checkpoints, Claims), LiveError>;
    /// Whether `topic` exists (an error if the broker cannot tell).
    fn has_topic(&mut self, topic: &str) -> Result<bool, LiveError>;
    /// The recent finals and revisions of the windows topics `topics` and their newest
    /// final, and the last message of each of `clusters`.
    fn tail(&mut self, topics: &[String], clusters: &[String]) -> Result<Tail, LiveError>;
    /// Publishes a final or revision read back (`key`, `payload`, its dataflow time) to each
    /// of `topics`, and waits until the broker has it.
    fn republish(&mut self, topics: &[String], record: (&str, &[u8], i64))
    -> Result<(), LiveError>;
    /// The late records of `size` (and the invalid ones too if `invalid_too`) in `late_topic`
    /// of the events read again after `checkpoints`.
    fn reported(
        &mut self,
        late_topic: &str,
        checkpoints: &Checkpoints,
        size: WindowSize,
        invalid_too: bool,
    ) -> Result<Reported, LiveError>;
}

/// The broker a run reads back from.
struct Kafka<'a> {
    brokers: &'a str,
    consumer: BaseConsumer,
}

impl Broker for Kafka<'_> {
    fn checkpoints(&mut self, topic: &str) -> Result<(Checkpoints, Claims), LiveError> {
        Ok(read_checkpoints(self.brokers, topic)?)
    }

    fn has_topic(&mut self, topic: &str) -> Result<bool, LiveError> {
        Ok(!partitions_of(&self.consumer, topic)?.is_empty())
    }

    fn tail(&mut self, topics: &[String], clusters: &[String]) -> Result<Tail, LiveError> {
        let mut tail = Tail::default();
        for (i, topic) in topics.iter().enumerate() {
            let clusters = if i == 0 { clusters } else { &[] };
            let (read, unresolved) = read_tail(&self.consumer, topic, clusters)?;
            let newest = newest_window(&self.consumer, topic, read.newest, &unresolved)?;
            tail.newest = tail.newest.max(newest);
            for (start, time) in read.times {
                let latest = tail.times.entry(start).or_insert(time);
                *latest = (*latest).max(time);
            }
            if i == 0 {
                tail.lasts = read.lasts;
            }
        }
        Ok(tail)
    }

    fn republish(
        &mut self,
        topics: &[String],
        record: (&str, &[u8], i64),
    ) -> Result<(), LiveError> {
        Ok(republish(self.brokers, topics, record)?)
    }

    fn reported(
        &mut self,
        late_topic: &str,
        checkpoints: &Checkpoints,
        size: WindowSize,
        invalid_too: bool,
    ) -> Result<Reported, LiveError> {
        Ok(read_reported(
            self.brokers,
            late_topic,
            checkpoints,
            size,
            invalid_too,
        )?)
    }
}

/// Reads back what earlier runs published and checkpointed, completing a publication a kill
/// cut short; what the workers start from, with the events topic's `partitions`.
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
    recover(
        config,
        partitions,
        &mut Kafka {
            brokers: &config.brokers,
            consumer,
        },
    )
}

/// What the workers start from, read back from `broker` for the events topic's `partitions`:
/// the one call a restart makes.
// Long: per window size, the settings check decides which windows topic is read back, and
// the checkpoints and late records read after it belong to the same size.
pub(crate) fn recover(
    config: &LiveConfig,
    partitions: i32,
    broker: &mut impl Broker,
) -> Result<Prepared, LiveError> {
    let mut published_before = Vec::new();
    let mut published_times = Vec::new();
    let mut checkpoints = Vec::new();
    let mut reported = Vec::new();
    let mut new_partitions_from = Vec::new();
    let mut windows_topics = Vec::new();
    for (i, &size) in config.windows.sizes().iter().enumerate() {
        let (checkpoint, claims) = match config.start {
            StartFrom::Committed => broker.checkpoints(&config.checkpoint_topic_for(size))?,
            _ => Default::default(),
        };
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
        // Where the windows were published: the windows topic, and those the checkpoints name
        // if they are others (a size added renames the live size's topic) and still there.
        let current = config.windows_topic_for(size);
        let mut topics = vec![current.clone()];
        for before in &recorded_windows_topics(&checkpoint, size) {
            if !topics.contains(before)
                && topics.len() < WINDOWS_TOPICS_KEPT
                && broker.has_topic(before)?
            {
                tracing::info!(before = %before, now = %current, "Windows were published to another topic: the restart reads back what was published there too.");
                topics.push(before.clone());
            }
        }
        // The clusters get the live size only.
        let clusters = if i == 0 {
            config.cluster_topics()
        } else {
            Vec::new()
        };
        let mut tail = broker.tail(&topics, &clusters)?;
        let topic = current;
        if let Some(completed) =
            complete_publication(config, broker, &topic, &tail.lasts, &mut tail.times)?
        {
            tail.newest = tail.newest.max(Some(completed));
        }
        tracing::debug!(%topic, windows = tail.times.len(), "The times of recent finals and revisions.");
        published_times.push(Arc::new(tail.times));
        if let Some(start) = tail.newest {
            tracing::info!(window_start = %model::format_rfc3339_millis(start), %topic, "Resuming after the last published window.");
        }
        // The checkpoints know too what was published (the topic may have been emptied by
        // retention, or renamed and deleted).
        let before = tail
            .newest
            .map(|start| start + size.millis())
            .max(recorded_published_before(&checkpoint, size))
            .unwrap_or(i64::MIN);
        if before > i64::MIN {
            check_accounted(
                config,
                size,
                partitions,
                &topic,
                before,
                (&checkpoint, &claims),
            )?;
        }
        published_before.push(before);
        // The live size reports the invalid events.
        let late = broker.reported(&config.late_topic, &checkpoint, size, i == 0)?;
        if !late.is_empty() {
            tracing::info!(records = late.len(), topic = %config.late_topic, "Late and invalid records published before the restart, not to report again.");
        }
        reported.push(Arc::new(late));
        checkpoints.push(checkpoint);
        windows_topics.push(topics);
    }
    Ok(Prepared {
        partitions,
        published_before,
        published_times,
        checkpoints,
        new_partitions_from,
        reported,
        windows_topics,
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
    (checkpoints, claims): (&Checkpoints, &Claims),
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
            // A run checkpoints each of its partitions before it reads any (its claims): a
            // partition without a checkpoint was read by no run that published windows (one
            // added while the dataflow stopped, or whose claim a kill cut short), and is read
            // as new, unless a run that knew of it wrote more than its claims (it went on to
            // read and close windows): then its checkpoints are lost. With none at all, the
            // state is lost.
            let went_on_knowing = |p: i32| {
                checkpoints.iter().any(|(q, (offset, text))| {
                    !claims.contains(q)
                        && Checkpoint::decode(text, *offset, size)
                            .settings
                            .is_some_and(|s| s.partitions > p)
                })
            };
            let missing: Vec<i32> = (0..partitions)
                .filter(|p| !checkpoints.contains_key(p))
                .filter(|&p| checkpoints.is_empty() || went_on_knowing(p))
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
#[derive(Default)]
pub(crate) struct Tail {
    /// Per window among the recent messages: the latest dataflow time of its final and
    /// revised messages.
    pub(crate) times: BTreeMap<i64, i64>,
    /// The start of the newest final of the windows topic.
    pub(crate) newest: Option<i64>,
    /// The last message of each cluster topic, if it is a final or a revision.
    pub(crate) lasts: Vec<Option<Published>>,
}

impl Tail {
    /// Notes a final or revised message of the windows topic made at dataflow time `time`;
    /// its window's start if it is a final.
    pub(crate) fn see(&mut self, time: i64, message: &WindowMessage) -> Option<i64> {
        let start = message.report.window_start;
        let latest = self.times.entry(start).or_insert(time);
        *latest = (*latest).max(time);
        (message.state == WindowState::Final).then(|| {
            self.newest = self.newest.max(Some(start));
            start
        })
    }
}

/// The partitions of a windows topic with no final among their recent messages and older
/// messages before them: `(partition, first offset, where the recent messages began)`.
type Unresolved = Vec<(i32, i64, i64)>;

/// Reads, in one pass, the last [`RECENT_MESSAGES`] of each partition of `topic` and the last
/// message of each of `clusters`; the newest final is that of the recent messages.
fn read_tail(
    consumer: &BaseConsumer,
    topic: &str,
    clusters: &[String],
) -> Result<(Tail, Unresolved), LiveError> {
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
    let mut tail = Tail::default();
    let mut has_final = HashSet::new();
    let mut lasts: HashMap<String, Published> = HashMap::new();
    read_ranges(consumer, &ranges, |message, range| {
        let Some((time, read)) = closed_message(message) else {
            return;
        };
        if message.topic() == topic {
            if tail.see(time, &read).is_some() {
                has_final.insert(message.partition());
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
    tail.lasts = clusters.iter().map(|c| lasts.remove(c)).collect();
    let unresolved = starts
        .into_iter()
        .filter(|(p, low, from)| from > low && !has_final.contains(p))
        .collect();
    Ok((tail, unresolved))
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
pub(crate) struct Published {
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
    /// Its dataflow time (the [`TIME_HEADER`]).
    pub(crate) time: i64,
    pub(crate) message: WindowMessage,
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
    broker: &mut impl Broker,
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
        broker.republish(&lacking, record)?;
        broker.republish(std::slice::from_ref(&windows_topic.to_owned()), record)?;
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
