//! `read_kafka`: a timely source that consumes the events topic, each worker the partitions
//! `p` with `p % peers == index`, polling without blocking the worker.
//!
//! Each partition keeps a watermark. A partition without new data for the idle timeout stops
//! holding windows back; when all of a worker's partitions are idle, its windows close up to
//! the latest event it has seen (and at least up to the wall clock minus lateness and idle
//! timeout), so windows close during lulls and at the end of a stream. Idle also means
//! read to the end: a thread asks the broker for the partitions' ends, and a partition only
//! counts as idle when a recent answer shows nothing left to read and no connection to its
//! broker was lost since. When the broker is away, or its partitions not fetched yet after a
//! restart, the events are only delayed, not absent, and windows wait for them.
//!
//! Offsets are committed only past events whose windows (or late records) are published:
//! each partition remembers, per window it feeds, the first offset and the watermark state
//! before it; the committed offset is the earliest of those still unpublished, with the
//! watermark state as commit metadata, so a restart reads again exactly what it needs and
//! judges lateness exactly as an uninterrupted run would.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use model::WindowSize;
use model::event::RawEvent;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::two_outputs::{SideSession, TapsSession, two_output_source};
use super::watermark::Watermark;
use crate::control::RunControl;
use crate::failure::Failure;
use crate::metrics::DataflowMetrics;
use crate::record::{LateEvent, Tap};

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
    /// Window size.
    pub window: WindowSize,
    /// Allowed lateness, ms.
    pub lateness_ms: i64,
    /// A partition without data this long stops holding windows back.
    pub idle_timeout: Duration,
    /// Events further ahead of the wall clock than this are invalid, ms.
    pub max_future_ms: i64,
    /// Where to start.
    pub start: StartFrom,
    /// Windows starting before this were published by an earlier run.
    pub published_before: i64,
    /// On a restart, how many messages before each committed offset are read again, only to
    /// rebuild the watermark (and so that a broker that can only serve whole record batches
    /// still returns the committed offset itself).
    pub rewind: i64,
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
    /// On-time events at their window start, and late or invalid records. `published`
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
    ) -> (
        Stream<'scope, i64, Vec<Tap>>,
        Stream<'scope, i64, Vec<LiveSide>>,
    );
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
    ) -> (
        Stream<'scope, i64, Vec<Tap>>,
        Stream<'scope, i64, Vec<LiveSide>>,
    ) {
        let (index, peers) = (self.index(), self.peers());
        two_output_source(self, "ReadKafka", move |taps_cap, side_cap, activator| {
            let mut reader =
                match KafkaReader::new(config, index, peers, taps_cap, side_cap, metrics) {
                    Ok(reader) => Some(reader),
                    Err(message) => {
                        control.fail(message);
                        drained.set(true);
                        None
                    }
                };
            move |taps, side| {
                let Some(active) = reader.as_mut() else {
                    return;
                };
                if control.stopped() {
                    if active.drain(&sources, &published) {
                        drained.set(true);
                        reader = None;
                    } else {
                        activator.activate_after(Duration::from_millis(5));
                    }
                    return;
                }
                let got = active.step(taps, side);
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

/// One partition read by this worker.
struct Partition {
    id: i32,
    watermark: Watermark,
    /// Messages before this offset were handled by an earlier run: they only feed the watermark.
    resume_offset: i64,
    next_offset: i64,
    last_message: Instant,
    /// When the client last said it was at the partition's end (after the last message).
    at_end: Option<Instant>,
    /// Per guard time (a window start, or the time late records went out at): the first
    /// offset that needs it published, and the largest timestamp seen before that offset.
    pending: BTreeMap<i64, (i64, Option<i64>)>,
}

struct KafkaReader {
    config: KafkaSourceConfig,
    consumer: BaseConsumer<SourceContext>,
    ends: Arc<EndProbe>,
    partitions: Vec<Partition>,
    taps_cap: Capability<i64>,
    side_cap: Capability<i64>,
    metrics: Arc<DataflowMetrics>,
    by_window: Vec<(i64, Vec<Tap>)>,
    side: Vec<LiveSide>,
    committed_frontier: i64,
    last_commit: Instant,
    last_lag_check: Instant,
}

impl KafkaReader {
    fn new(
        config: KafkaSourceConfig,
        index: usize,
        peers: usize,
        mut taps_cap: Capability<i64>,
        mut side_cap: Capability<i64>,
        metrics: Arc<DataflowMetrics>,
    ) -> Result<Self, Failure> {
        let mine: Vec<i32> = (0..config.partitions)
            .filter(|p| *p as usize % peers == index)
            .collect();
        let context = SourceContext::new(&config.topic, config.partitions, mine.clone());
        let consumer: BaseConsumer<SourceContext> = service::kafka::client_config(&config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The end of a partition is news: read to its end (past any control records).
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
            // A broker that holds an empty fetch for its whole wait delays every window.
            .set("fetch.wait.max.ms", "50")
            .create_with_context(context)
            .map_err(|e| Failure::kafka("create the Kafka consumer", e))?;
        let mut wanted = TopicPartitionList::new();
        for &p in &mine {
            wanted.add_partition(&config.topic, p);
        }
        let committed = match config.start {
            StartFrom::Committed if !mine.is_empty() => Some(
                consumer
                    .committed_offsets(wanted, Duration::from_secs(30))
                    .map_err(|e| {
                        Failure::kafka(
                            format!("read the committed offsets of group {}", config.group),
                            e,
                        )
                    })?,
            ),
            _ => None,
        };
        let mut assignment = TopicPartitionList::new();
        let mut partitions = Vec::new();
        for &p in &mine {
            let resumed = committed.as_ref().and_then(|c| {
                let elem = c.find_partition(&config.topic, p)?;
                match elem.offset() {
                    Offset::Offset(o) => Some((o, elem.metadata().parse::<i64>().ok())),
                    _ => None,
                }
            });
            let (offset, max_seen, resume_offset) = match (config.start, resumed) {
                (_, Some((o, max_seen))) => {
                    (Offset::Offset((o - config.rewind).max(0)), max_seen, o)
                }
                (StartFrom::Latest, None) => {
                    // From the end as it is now, at a known offset (idleness compares offsets).
                    let (_, end) = consumer
                        .fetch_watermarks(&config.topic, p, Duration::from_secs(30))
                        .map_err(|e| Failure::kafka(format!("read the end of partition {p}"), e))?;
                    (Offset::Offset(end), None, 0)
                }
                _ => (Offset::Beginning, None, 0),
            };
            assignment
                .add_partition_offset(&config.topic, p, offset)
                .map_err(|e| Failure::kafka(format!("assign partition {p}"), e))?;
            partitions.push(Partition {
                id: p,
                resume_offset,
                watermark: Watermark::restored(config.lateness_ms, max_seen),
                next_offset: match offset {
                    Offset::Offset(o) => o,
                    _ => 0,
                },
                last_message: Instant::now(),
                at_end: None,
                pending: BTreeMap::new(),
            });
        }
        consumer.assign(&assignment).map_err(|e| {
            Failure::kafka(format!("assign partitions {mine:?} of {}", config.topic), e)
        })?;
        let starts: Vec<String> = assignment
            .elements()
            .iter()
            .map(|e| format!("{}@{:?}", e.partition(), e.offset()))
            .collect();
        tracing::info!(worker = index, partitions = ?starts, published_before = config.published_before, "Reading the events topic.");
        // Windows before `published_before` were published by an earlier run.
        if config.published_before > i64::MIN {
            taps_cap.downgrade(&config.published_before);
            side_cap.downgrade(&config.published_before);
        }
        let ends = EndProbe::start(&config, &mine)?;
        metrics.partitions_reading.add(mine.len() as i64);
        Ok(KafkaReader {
            config,
            consumer,
            ends,
            partitions,
            taps_cap,
            side_cap,
            metrics,
            by_window: Vec::new(),
            side: Vec::new(),
            committed_frontier: i64::MIN,
            last_commit: Instant::now(),
            last_lag_check: Instant::now(),
        })
    }

    /// Polls what is there (without waiting), emits it, and advances the capabilities.
    /// Returns whether any message came.
    fn step(&mut self, taps: &mut TapsSession<'_>, side: &mut SideSession<'_, LiveSide>) -> bool {
        let now = Instant::now();
        let wall_ms = model::now_ms();
        let mut got = 0;
        while got < 10_000 {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    tracing::trace!(partition = p, "At the end of the partition.");
                    if let Some(partition) = self.partitions.iter_mut().find(|x| x.id == p) {
                        partition.at_end = Some(now);
                    }
                    continue;
                }
                Some(Err(error)) => {
                    self.consumer.context().note_error(&error);
                    tracing::warn!(%error, "Kafka consumer error.");
                    break;
                }
            };
            got += 1;
            let (p, offset) = (message.partition(), message.offset());

            let default_ts = message.timestamp().to_millis().unwrap_or(wall_ms);
            let Some(i) = self.partitions.iter().position(|x| x.id == p) else {
                continue;
            };
            let payload = message.payload().unwrap_or_default();
            let outcome =
                decode(payload, default_ts, wall_ms, self.config.max_future_ms).map_err(|reason| {
                    let raw =
                        String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
                    (reason, raw)
                });
            drop(message);
            self.route(i, offset, outcome, now);
        }
        for (start, batch) in self.by_window.iter_mut() {
            taps.session(&self.taps_cap.delayed(start))
                .give_container(batch);
        }
        self.by_window.clear();
        if !self.side.is_empty() {
            side.session(&self.side_cap).give_container(&mut self.side);
        }
        self.advance(now, wall_ms);
        if now.duration_since(self.last_lag_check) >= Duration::from_millis(LAG_INTERVAL_MS) {
            self.last_lag_check = now;
            self.measure_lag();
        }
        got > 0
    }

    /// Records, per partition, how many messages are not read yet, from the high watermarks
    /// of the client's last statistics (asking the broker would block the worker).
    fn measure_lag(&self) {
        let high = &self.consumer.context().high;
        for p in &self.partitions {
            let h = high
                .get(p.id as usize)
                .map_or(-1, |h| h.load(Ordering::Relaxed));
            if h >= 0 {
                self.metrics.consumer_lag(p.id, (h - p.next_offset).max(0));
            }
        }
    }

    fn route(
        &mut self,
        i: usize,
        offset: i64,
        outcome: Result<(CompactString, CompactString, i64), (String, String)>,
        now: Instant,
    ) {
        let window = self.config.window;
        let cap_time = *self.taps_cap.time();
        let partition = &mut self.partitions[i];
        partition.next_offset = offset + 1;
        partition.last_message = now;
        partition.at_end = None;
        self.metrics.consumed(partition.id);
        let max_before = partition.watermark.max_seen();
        if offset < partition.resume_offset {
            // Read again after a restart: an earlier run counted or reported it.
            if let Ok((_, _, timestamp)) = outcome {
                partition.watermark.observe(timestamp, window);
            }
            return;
        }
        let (user, emoji, timestamp) = match outcome {
            Ok(event) => event,
            Err((reason, raw)) => {
                self.metrics.invalid.add(1);
                partition
                    .pending
                    .entry(cap_time)
                    .or_insert((offset, max_before));
                self.side.push(LiveSide::Invalid {
                    reason,
                    raw,
                    partition: partition.id,
                    offset,
                });
                return;
            }
        };
        let start = window.start_of(timestamp);
        let on_time = partition.watermark.observe(timestamp, window);
        let reason = if !on_time {
            Some("the partition's watermark had passed the window's end")
        } else if start < self.config.published_before {
            // Counted and published by an earlier run: reading it again changes nothing.
            return;
        } else if start < cap_time {
            Some("the window had already closed")
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.metrics.late.add(1);
                partition
                    .pending
                    .entry(cap_time)
                    .or_insert((offset, max_before));
                self.side.push(LiveSide::Late {
                    event: LateEvent {
                        user,
                        emoji,
                        timestamp,
                    },
                    reason: reason.to_owned(),
                    partition: partition.id,
                    offset,
                });
            }
            None => {
                partition
                    .pending
                    .entry(start)
                    .or_insert((offset, max_before));
                match self.by_window.iter_mut().rev().find(|(s, _)| *s == start) {
                    Some((_, batch)) => batch.push(Tap { user, emoji }),
                    None => self.by_window.push((start, vec![Tap { user, emoji }])),
                }
            }
        }
    }

    /// Moves the capabilities to the earliest window a partition may still add to.
    fn advance(&mut self, now: Instant, wall_ms: i64) {
        let window = self.config.window;
        let idle_timeout = self.config.idle_timeout;
        let reachable_since = self.consumer.context().reachable_since();
        // An answer about the end counts for the idle timeout, and at least for a second (a
        // round trip to the broker must fit in it).
        let recent = now
            .checked_sub(idle_timeout.max(Duration::from_secs(1)))
            .unwrap_or(now);
        let active = self.partitions.iter().enumerate().filter(|(i, p)| {
            let idle = reachable_since.is_some_and(|since| {
                now.duration_since(p.last_message.max(since)) >= idle_timeout
                    && (p.at_end.is_some_and(|at| at >= since)
                        || self.ends.read_to_end(*i, p.next_offset, since.max(recent)))
            });
            !idle
        });
        let hold = match active.map(|(_, p)| p.watermark.hold(window)).min() {
            Some(hold) => hold,
            None => {
                // Everything is idle: close up to the newest event seen, and follow the
                // wall clock so an idle worker never holds the others back.
                let newest = self
                    .partitions
                    .iter()
                    .filter_map(|p| p.watermark.max_seen())
                    .max();
                let by_clock = window
                    .start_of(wall_ms - self.config.lateness_ms - idle_timeout.as_millis() as i64);
                newest.map_or(by_clock, |t| {
                    window.end_of(window.start_of(t)).max(by_clock)
                })
            }
        };
        for p in &self.partitions {
            self.metrics.watermark(p.id, p.watermark.value(), wall_ms);
        }
        if hold > *self.taps_cap.time() {
            self.taps_cap.downgrade(&hold);
            self.side_cap.downgrade(&hold);
        }
    }

    /// Commits, for each partition, the offset before which everything is published.
    fn commit_published(&mut self, published: &ProbeHandle<i64>, sync: bool) {
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
    fn drain(&mut self, sources: &ProbeHandle<i64>, published: &ProbeHandle<i64>) -> bool {
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

/// How often the consumer lag is measured, ms.
const LAG_INTERVAL_MS: u64 = 2000;

/// The ends (high watermarks) of a worker's partitions, asked of the broker on a thread of
/// its own (a blocking request must not stall the worker), each with when it was asked.
struct EndProbe {
    created: Instant,
    /// Per partition of the worker (in its order): the end and when it was asked, ms since
    /// `created` (0: never answered).
    ends: Vec<(AtomicI64, AtomicU64)>,
}

impl EndProbe {
    /// Starts the thread; it stops once the reader is gone.
    fn start(config: &KafkaSourceConfig, mine: &[i32]) -> Result<Arc<Self>, Failure> {
        let probe = Arc::new(EndProbe {
            created: Instant::now(),
            ends: mine
                .iter()
                .map(|_| (AtomicI64::new(-1), AtomicU64::new(0)))
                .collect(),
        });
        let client: BaseConsumer<Quiet> = service::kafka::client_config(&config.brokers)
            .create_with_context(Quiet)
            .map_err(|e| Failure::kafka("create the Kafka client for partition ends", e))?;
        let every =
            (config.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let (weak, topic, mine) = (Arc::downgrade(&probe), config.topic.clone(), mine.to_vec());
        std::thread::Builder::new()
            .name("partition-ends".into())
            .spawn(move || {
                while let Some(probe) = weak.upgrade() {
                    for (i, &p) in mine.iter().enumerate() {
                        let asked = probe.created.elapsed().as_millis() as u64 + 1;
                        let wait = every.max(Duration::from_secs(1));
                        if let Ok((low, high)) = client.fetch_watermarks(&topic, p, wait) {
                            // An empty partition (or one emptied by retention) is read.
                            let end = if high <= low { -1 } else { high };
                            probe.ends[i].0.store(end, Ordering::Relaxed);
                            probe.ends[i].1.store(asked, Ordering::Release);
                        }
                    }
                    drop(probe);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| Failure::io("start", "the partition-ends thread", e))?;
        Ok(probe)
    }

    /// Whether an answer asked after `since` shows the `i`th partition read to its end.
    fn read_to_end(&self, i: usize, next_offset: i64, since: Instant) -> bool {
        let Some((end, asked)) = self.ends.get(i) else {
            return true;
        };
        let asked = asked.load(Ordering::Acquire);
        asked > 0
            && self.created + Duration::from_millis(asked - 1) >= since
            && end.load(Ordering::Relaxed) <= next_offset
    }
}

/// A client context that leaves errors to the caller (a broker away is expected).
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, %reason, "Kafka client error (partition ends).");
    }
}

impl ConsumerContext for Quiet {}

/// How often the client reports its statistics (high watermarks, brokers' states), ms.
const STATS_INTERVAL_MS: u64 = 500;

/// Keeps each partition's high watermark from the client's statistics, and whether the
/// brokers leading this worker's partitions can be reached.
///
/// A partition only counts as idle while its broker answers: when the broker is away, the
/// partition may well hold events nobody can read yet, and closing windows on the clock
/// would turn every one of them late once the broker is back.
struct SourceContext {
    topic: String,
    mine: Vec<i32>,
    high: Vec<AtomicI64>,
    created: Instant,
    /// Whether the leaders of `mine` answer: cleared by a transport error, set again by
    /// statistics that show every leader up.
    reachable: AtomicBool,
    /// When it last became reachable, ms since `created`.
    reachable_since_ms: AtomicU64,
}

impl SourceContext {
    fn new(topic: &str, partitions: i32, mine: Vec<i32>) -> Self {
        SourceContext {
            topic: topic.to_owned(),
            mine,
            high: (0..partitions).map(|_| AtomicI64::new(-1)).collect(),
            created: Instant::now(),
            reachable: AtomicBool::new(true),
            reachable_since_ms: AtomicU64::new(0),
        }
    }

    /// Since when the brokers of this worker's partitions answer, or `None` while they don't.
    fn reachable_since(&self) -> Option<Instant> {
        self.reachable.load(Ordering::Acquire).then(|| {
            self.created + Duration::from_millis(self.reachable_since_ms.load(Ordering::Acquire))
        })
    }

    fn set_reachable(&self, reachable: bool) {
        if reachable && !self.reachable.load(Ordering::Acquire) {
            let since = self.created.elapsed().as_millis() as u64;
            self.reachable_since_ms.store(since, Ordering::Release);
            tracing::info!("The brokers answer again.");
        } else if !reachable && self.reachable.load(Ordering::Acquire) {
            tracing::warn!("The brokers are out of reach: no partition counts as idle meanwhile.");
        }
        self.reachable.store(reachable, Ordering::Release);
    }

    /// Notes a client error; all brokers down makes them unreachable at once (the
    /// statistics tell about the partitions' leaders one by one, every half second).
    fn note_error(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set_reachable(false);
        }
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (&id, partition) in &topic.partitions {
            if let Some(high) = self.high.get(id as usize)
                && partition.hi_offset >= 0
            {
                high.store(partition.hi_offset, Ordering::Relaxed);
            }
        }
        let leader_up = |p: &i32| {
            topic.partitions.get(p).is_some_and(|partition| {
                statistics
                    .brokers
                    .values()
                    .any(|b| b.nodeid == partition.leader && b.nodeid >= 0 && b.state == "UP")
            })
        };
        self.set_reachable(self.mine.iter().all(leader_up));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news, not an error (the worker sees it when it polls).
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        self.note_error(&error);
        tracing::warn!(%error, %reason, "Kafka client error.");
    }
}

impl ConsumerContext for SourceContext {}

/// Decodes a message into (user, emoji, timestamp), or the reason it is invalid.
fn decode(
    payload: &[u8],
    default_ts: i64,
    wall_ms: i64,
    max_future_ms: i64,
) -> Result<(CompactString, CompactString, i64), String> {
    let raw: RawEvent<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("malformed JSON: {e}"))?;
    let event = raw.validate(default_ts).map_err(|e| e.to_string())?;
    if event.timestamp > wall_ms + max_future_ms {
        return Err(format!(
            "timestamp {} is more than {} ms ahead of the wall clock",
            model::format_rfc3339_millis(event.timestamp),
            max_future_ms
        ));
    }
    Ok((
        event.user_id.into(),
        event.emoji_type.into(),
        event.timestamp,
    ))
}
