//! Recorded matches: a topic written to the CSV log format ([`record`]), and logs put back
//! into the events topic at their original pace, faster, or as fast as possible
//! ([`inject`]), so a match can be watched again through the live system.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use model::log::LogColumns;
use model::now_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use model::log::LogWriter;

/// Why a recording or an injection failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Kafka failed.
    #[error("cannot use topic {topic}")]
    Kafka {
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The topic to record does not exist.
    #[error("topic {0} does not exist or has no partitions")]
    NoTopic(String),
    /// A file could not be read or written.
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A log's header cannot be used.
    #[error("{path}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: model::log::HeaderError,
    },
}

impl RecordingError {
    /// Whether trying again may help: the broker was away or busy.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RecordingError::Kafka { source, .. } if service::kafka::is_retryable(source))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a recording starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The first retained record.
    Earliest,
    /// Records written from now on.
    Now,
}

/// Where a recording stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// At the end of the topic as it was when the recording started.
    End,
}

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Brokers.
    pub brokers: String,
    /// The topic of events.
    pub topic: String,
    /// The log to write.
    pub out: PathBuf,
    /// Start.
    pub from: From,
    /// Stop.
    pub until: Until,
}

/// What a recording wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordReport {
    /// Events written.
    pub events: u64,
    /// Records that are not valid events (skipped, with a warning).
    pub skipped: u64,
}

/// Records arrive per partition; they are written in the order they were taken in (record
/// timestamp), merged over the partitions: a partition with this many records waiting is
/// paused until half of them are written, so the merge never runs out of room and never
/// writes out of order.
const PARTITION_BUFFER: usize = 10_000;

/// A partition read to its end (and nothing read since), while recording for a duration,
/// holds back no record taken this long before now (a record still on its way to it was
/// taken after).
const IN_FLIGHT_MS: i64 = 5_000;

/// A record read, not yet written: when it was taken, user, emoji, its own timestamp.
type Waiting = (i64, String, String, i64);

/// A consumer of `topic` that tells the end of each partition, assigned nothing yet, and the
/// topic's partitions (at least one).
fn reader(
    purpose: &str,
    brokers: &str,
    topic: &str,
) -> Result<(BaseConsumer<EndsQuietly>, Vec<i32>), RecordingError> {
    let kafka = |source| RecordingError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let consumer: BaseConsumer<EndsQuietly> = service::kafka::client_config(brokers)
        .set("group.id", format!("emostream-{purpose}-{topic}"))
        .set("enable.auto.commit", "false")
        // The end of a partition is where a fetch comes back empty: the broker said so, not
        // only a high watermark read before.
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(EndsQuietly)
        .map_err(kafka)?;
    let partitions = service::kafka::partitions_of(&consumer, topic).map_err(kafka)?;
    if partitions.is_empty() {
        return Err(RecordingError::NoTopic(topic.to_owned()));
    }
    Ok((consumer, partitions))
}

/// Writes every record of `topic` (a windows or cluster topic: window messages), from its
/// start to its end as it was when called, one payload a line, partition by partition in
/// offset order; returns how many. What was published, every revision of every window.
pub fn dump_topic(
    brokers: &str,
    topic: &str,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<u64, RecordingError> {
    let kafka = |source| RecordingError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let (consumer, partitions) = reader("dump", brokers, topic)?;
    let stdout = Path::new("-");
    let mut written = 0;
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(kafka)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, p, Offset::Offset(low))
            .map_err(kafka)?;
        consumer.assign(&assignment).map_err(kafka)?;
        let mut next = low;
        while !stop() {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match result {
                Ok(message) => message,
                Err(rdkafka::error::KafkaError::PartitionEOF(q)) if q == p && next >= high => break,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
                Err(e) => return Err(kafka(e)),
            };
            if message.partition() != p || message.offset() < next {
                continue;
            }
            next = message.offset() + 1;
            out.write_all(message.payload().unwrap_or_default())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(io(stdout))?;
            written += 1;
        }
    }
    out.flush().map_err(io(stdout))?;
    Ok(written)
}

/// Writes the events of a topic to a CSV log, each message once (by partition and offset,
/// whatever the broker repeats), in the order they were taken in, with the time each was
/// taken (`received`): what replay needs to decide as the live dataflow did.
// Long: one pass over the topic: assignment at explicit offsets, the merge of the partitions in broker order and the end detection share their state.
pub fn record(
    config: &RecordConfig,
    stop: &dyn Fn() -> bool,
) -> Result<RecordReport, RecordingError> {
    let kafka = |source| RecordingError::Kafka {
        topic: config.topic.clone(),
        source,
    };
    let (consumer, partitions) = reader("record", &config.brokers, &config.topic)?;
    // Explicit offsets, read now: `End` would be resolved later and lose what comes between.
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&config.topic, p, Duration::from_secs(30))
            .map_err(kafka)?;
        let start = match config.from {
            From::Earliest => low,
            From::Now => high,
        };
        assignment
            .add_partition_offset(&config.topic, p, Offset::Offset(start))
            .map_err(kafka)?;
        ends.push((high, start, false));
    }
    consumer.assign(&assignment).map_err(kafka)?;

    let file = File::create(&config.out).map_err(io(&config.out))?;
    let mut log = LogWriter::recording(BufWriter::new(file)).map_err(io(&config.out))?;
    let mut report = RecordReport::default();
    // Per partition: the end when the recording started, the next offset, whether a fetch
    // came back empty there; and the records read, not yet written, as (broker time, user,
    // emoji, ts).
    let mut queues: Vec<VecDeque<Waiting>> = vec![VecDeque::new(); partitions.len()];
    // Per partition: paused for a full buffer.
    let mut paused = vec![false; partitions.len()];
    let index = |p: i32| partitions.iter().position(|&q| q == p);
    let started = Instant::now();
    loop {
        let done = match config.until {
            Until::Elapsed(d) => started.elapsed() >= d,
            Until::End => ends.iter().all(|&(_, _, at_end)| at_end),
        };
        if done || stop() {
            break;
        }
        // A poll that brings nothing still lets time settle what waits.
        'read: {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                break 'read;
            };
            let message = match result {
                Ok(message) => message,
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    // At the end once past where the topic ended when the recording started.
                    if let Some(i) = index(p) {
                        ends[i].2 = ends[i].1 >= ends[i].0;
                    }
                    break 'read;
                }
                Err(e) => return Err(kafka(e)),
            };
            let Some(i) = index(message.partition()) else {
                break 'read;
            };
            if message.offset() < ends[i].1 {
                // Already written (a broker may hand a record batch again, or from its start).
                break 'read;
            }
            ends[i].1 = message.offset() + 1;
            ends[i].2 = false;
            let event = message
                .payload()
                .ok_or_else(|| "no payload".to_owned())
                .and_then(|p| {
                    serde_json::from_slice::<model::event::RawEvent>(p).map_err(|e| e.to_string())
                })
                .and_then(|raw| {
                    // A record without a timestamp was stamped by the broker when it took it.
                    let broker_ms = message.timestamp().to_millis().unwrap_or_else(now_ms);
                    raw.validate(broker_ms).map_err(|e| e.to_string())
                });
            match event {
                Ok(event) => {
                    let at = message.timestamp().to_millis().unwrap_or(event.timestamp);
                    queues[i].push_back((at, event.user_id, event.emoji_type, event.timestamp));
                    if queues[i].len() >= PARTITION_BUFFER && !paused[i] {
                        paused[i] = true;
                        set_paused(&consumer, &config.topic, partitions[i], true).map_err(kafka)?;
                    }
                }
                Err(reason) => {
                    report.skipped += 1;
                    tracing::warn!(partition = message.partition(), offset = message.offset(), %reason, "Not an event; skipped.");
                }
            }
        }
        // Write the earliest record while it is before anything a partition may still bring:
        // every partition has one waiting, is at its end for good, or (recording for a
        // duration) is at its end and the record was taken long enough ago.
        let settled = now_ms() - IN_FLIGHT_MS;
        while let Some((q, head)) = earliest(&queues) {
            let blocked = queues.iter().enumerate().any(|(j, waiting)| {
                let done = ends[j].2 && matches!(config.until, Until::End);
                let quiet = ends[j].2 && head < settled;
                waiting.is_empty() && !done && !quiet
            });
            if blocked {
                break;
            }
            write_from(&mut queues[q], &mut log, &mut report, &config.out)?;
            if paused[q] && queues[q].len() <= PARTITION_BUFFER / 2 {
                paused[q] = false;
                set_paused(&consumer, &config.topic, partitions[q], false).map_err(kafka)?;
            }
        }
    }
    while let Some((q, _)) = earliest(&queues) {
        write_from(&mut queues[q], &mut log, &mut report, &config.out)?;
    }
    log.flush().map_err(io(&config.out))?;
    Ok(report)
}

/// A consumer context for which the end of a partition is news, not an error.
struct EndsQuietly;

impl rdkafka::ClientContext for EndsQuietly {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(%error, reason, "Kafka client error.");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndsQuietly {}

/// The queue whose head was taken first, and when (ties: the lower partition).
fn earliest(queues: &[VecDeque<Waiting>]) -> Option<(usize, i64)> {
    queues
        .iter()
        .enumerate()
        .filter_map(|(i, q)| q.front().map(|head| (i, head.0)))
        .min_by_key(|&(i, at)| (at, i))
}

/// Writes the head of `queue`.
fn write_from<W: Write>(
    queue: &mut VecDeque<Waiting>,
    log: &mut LogWriter<W>,
    report: &mut RecordReport,
    path: &Path,
) -> Result<(), RecordingError> {
    if let Some((at, user, emoji, ts)) = queue.pop_front() {
        log.write_received(&user, &emoji, ts, Some(at))
            .map_err(io(path))?;
        report.events += 1;
    }
    Ok(())
}

/// Pauses or resumes fetching partition `p` of `topic`.
fn set_paused<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    p: i32,
    pause: bool,
) -> rdkafka::error::KafkaResult<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, p);
    if pause {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    }
}

/// How to put logs back into the events topic.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// The logs, in order.
    pub paths: Vec<PathBuf>,
    /// Brokers.
    pub brokers: String,
    /// The events topic.
    pub topic: String,
    /// 1.0 the original pace, 10.0 ten times faster, 0.0 as fast as possible.
    pub speed: f64,
    /// Keep the logged timestamps instead of moving the match to now.
    pub keep_timestamps: bool,
}

/// What an injection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InjectReport {
    /// Events sent.
    pub events: u64,
    /// Events the broker acknowledged.
    pub acknowledged: u64,
    /// Events the broker refused.
    pub failed: u64,
    /// Rows that are not valid events (skipped, with a warning naming file and line).
    pub rejected: u64,
    /// Seconds from the first event to the last acknowledgement.
    pub seconds: f64,
    /// Event time the log covers, seconds (first to latest timestamp).
    pub log_seconds: f64,
}

/// Hands every valid row of `paths`, in order, to `each` as (user, emoji, ts) until it
/// returns false; bad rows are counted in `rejected` and logged with their file and line.
fn for_each_row(
    paths: &[PathBuf],
    rejected: &mut u64,
    each: &mut dyn FnMut(&str, &str, i64) -> bool,
) -> Result<(), RecordingError> {
    for path in paths {
        let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(io(path))?;
        let header = line.strip_suffix(b"\n").unwrap_or(&line);
        let columns = LogColumns::from_header(header).map_err(|source| RecordingError::Header {
            path: path.clone(),
            source,
        })?;
        let mut number = 1;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io(path))? == 0 {
                break;
            }
            number += 1;
            let row = line.strip_suffix(b"\n").unwrap_or(&line);
            if row.is_empty() || row == b"\r" {
                continue;
            }
            match columns.decode(row, |u, e, t| each(u, e, t)) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(reason) => {
                    *rejected += 1;
                    tracing::warn!(file = %path.display(), line = number, %reason, "Row rejected.");
                }
            }
        }
    }
    Ok(())
}

/// Puts the events of the logs into the events topic, paced by their timestamps: a row is
/// sent when the log's clock (its latest timestamp so far) reaches it, divided by `speed`.
/// Unless `keep_timestamps`, timestamps move with the pace so that the match happens now.
// Long: one pass over the logs at their pace: the clock, the producer and the progress share their state.
pub fn inject(
    config: &InjectConfig,
    stop: &dyn Fn() -> bool,
) -> Result<InjectReport, RecordingError> {
    let mut report = InjectReport::default();
    // The log's first and latest timestamps: as fast as possible, the match ends now.
    let mut first = None;
    let mut last = i64::MIN;
    let mut rejected = 0;
    for_each_row(&config.paths, &mut rejected, &mut |_, _, ts| {
        first.get_or_insert(ts);
        last = last.max(ts);
        true
    })?;
    let Some(first) = first else {
        report.rejected = rejected;
        return Ok(report);
    };
    report.log_seconds = (last - first) as f64 / 1e3;
    let producer =
        service::kafka::KeyedProducer::new(&config.brokers, &config.topic).map_err(|source| {
            RecordingError::Kafka {
                topic: config.topic.clone(),
                source,
            }
        })?;
    let speed = config.speed.max(0.0);
    let start = Instant::now();
    let start_ms = now_ms();
    let shift = |ts: i64| -> i64 {
        if config.keep_timestamps {
            ts
        } else if speed > 0.0 {
            start_ms + ((ts - first) as f64 / speed) as i64
        } else {
            ts + (start_ms - last)
        }
    };
    let mut clock = first;
    let mut payload = Vec::with_capacity(160);
    let mut failure = None;
    rejected = 0;
    for_each_row(&config.paths, &mut rejected, &mut |user, emoji, ts| {
        if stop() {
            return false;
        }
        clock = clock.max(ts);
        if speed > 0.0 {
            let due = start + Duration::from_secs_f64((clock - first) as f64 / 1e3 / speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        payload.clear();
        let event =
            serde_json::json!({"user_id": user, "emoji_type": emoji, "timestamp": shift(ts)});
        if serde_json::to_writer(&mut payload, &event).is_ok() {
            match producer.send(user, &payload) {
                Ok(()) => report.events += 1,
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            }
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(RecordingError::Kafka {
            topic: config.topic.clone(),
            source: e,
        });
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|source| RecordingError::Kafka {
            topic: config.topic.clone(),
            source,
        })?;
    (report.acknowledged, report.failed) = producer.counts();
    report.rejected = rejected;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
