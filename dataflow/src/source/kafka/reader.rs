//! The partitions of a worker: assignment and resume from the committed offsets, polling
//! without blocking, and routing each event to its window or to the late records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::checkpoint::Checkpoint;
use super::context::{STATS_INTERVAL_MS, SourceContext};
use super::decode::decode;
use super::end_probe::EndProbe;
use super::{KafkaSourceConfig, LiveSide, StartFrom};
use crate::failure::Failure;
use crate::metrics::DataflowMetrics;
use crate::record::{Amend, LateEvent, Tap};
use crate::source::outputs::{Sessions, SourceCaps};
use crate::source::watermark::Watermark;

/// One partition read by this worker.
pub(super) struct Partition {
    pub(super) id: i32,
    pub(super) watermark: Watermark,
    /// Messages before this offset were handled by an earlier run: they only feed the watermark.
    pub(super) resume_offset: i64,
    pub(super) next_offset: i64,
    pub(super) last_message: Instant,
    /// When the client last said it was at the partition's end (after the last message).
    pub(super) at_end: Option<Instant>,
    /// Per guard time (a window start, or the time late records went out at): the first
    /// offset that needs it published, and the largest timestamp seen before that offset.
    pub(super) pending: BTreeMap<i64, (i64, Option<i64>)>,
    /// Per open window: the last offset counted in it.
    pub(super) open_last: BTreeMap<i64, i64>,
    /// Per closed window: the last offset counted in it (restored on a restart).
    pub(super) last_counted: BTreeMap<i64, i64>,
    /// Per amended window and the time the amendments went out at: the last offset amending
    /// it (restored on a restart: such an event counted if its window's message of that time
    /// was published).
    pub(super) amended: BTreeMap<(i64, i64), i64>,
    /// Windows before this were closed by an earlier run (`i64::MIN`: none known): an event
    /// read again counts in one only if that run counted it.
    pub(super) closed_before: i64,
}

impl Partition {
    /// Whether the event at `offset` of the window starting at `start`, read again, amended
    /// the window in a run before, and the windows topic holds that window's message of the
    /// time the amendment went out at (or a later one).
    fn published_amendment(
        &self,
        start: i64,
        offset: i64,
        published_times: &BTreeMap<i64, i64>,
    ) -> bool {
        // Offsets grow with the times they went out at: the first time whose last offset is
        // at or past this one is its own.
        let went_out_at = self
            .amended
            .range((start, i64::MIN)..=(start, i64::MAX))
            .find(|(_, last)| **last >= offset)
            .map(|((_, time), _)| *time);
        went_out_at.is_some_and(|time| published_times.get(&start).is_some_and(|t| *t >= time))
    }
}

pub(super) struct KafkaReader {
    pub(super) config: KafkaSourceConfig,
    pub(super) consumer: BaseConsumer<SourceContext>,
    /// Writes the checkpoints.
    pub(super) checkpoints: BaseProducer,
    pub(super) ends: Arc<EndProbe>,
    pub(super) partitions: Vec<Partition>,
    pub(super) caps: SourceCaps,
    pub(super) metrics: Arc<DataflowMetrics>,
    pub(super) by_window: Vec<(i64, Vec<Tap>)>,
    pub(super) amends: Vec<Amend>,
    pub(super) side: Vec<LiveSide>,
    pub(super) committed_frontier: i64,
    pub(super) last_commit: Instant,
    pub(super) last_lag_check: Instant,
    /// When committing before closing windows last failed.
    pub(super) last_close_failure: Option<Instant>,
}

impl KafkaReader {
    // Long: assignment and resume are one protocol: committed offsets, rewind, watermark metadata and the explicit starting offsets depend on each other.
    pub(super) fn new(
        config: KafkaSourceConfig,
        index: usize,
        peers: usize,
        mut caps: SourceCaps,
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
            .set("fetch.wait.max.ms", "10")
            .create_with_context(context)
            .map_err(|e| Failure::kafka("create the Kafka consumer", e))?;
        let mut wanted = TopicPartitionList::new();
        for &p in &mine {
            wanted.add_partition(&config.topic, p);
        }
        // Checkpoints first: the group's committed offsets are the fallback (a group
        // committed by a version before checkpoints).
        let checkpointed = mine.iter().all(|p| config.checkpoints.contains_key(p));
        let committed = match config.start {
            StartFrom::Committed if !mine.is_empty() && !checkpointed => Some(
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
            let checkpoint = config
                .checkpoints
                .get(&p)
                .filter(|_| config.start == StartFrom::Committed)
                .map(|(o, text)| (*o, Checkpoint::decode(text, *o, config.window)));
            let resumed = checkpoint.or_else(|| {
                let elem = committed.as_ref()?.find_partition(&config.topic, p)?;
                match elem.offset() {
                    Offset::Offset(o) => {
                        Some((o, Checkpoint::decode(elem.metadata(), o, config.window)))
                    }
                    _ => None,
                }
            });
            let (offset, checkpoint, resume_offset) = match (config.start, resumed) {
                (_, Some((o, checkpoint))) => {
                    (Offset::Offset((o - config.rewind).max(0)), checkpoint, o)
                }
                (StartFrom::Latest, None) => {
                    // From the end as it is now, at a known offset (idleness compares offsets).
                    let (_, end) = consumer
                        .fetch_watermarks(&config.topic, p, Duration::from_secs(30))
                        .map_err(|e| Failure::kafka(format!("read the end of partition {p}"), e))?;
                    (Offset::Offset(end), Checkpoint::default(), 0)
                }
                _ => (Offset::Beginning, Checkpoint::default(), 0),
            };
            assignment
                .add_partition_offset(&config.topic, p, offset)
                .map_err(|e| Failure::kafka(format!("assign partition {p}"), e))?;
            partitions.push(Partition {
                id: p,
                resume_offset,
                watermark: Watermark::restored(config.windows.lateness_ms(), checkpoint.max_seen),
                next_offset: match offset {
                    Offset::Offset(o) => o,
                    _ => 0,
                },
                last_message: Instant::now(),
                at_end: None,
                pending: BTreeMap::new(),
                open_last: BTreeMap::new(),
                // A published window was closed, whatever the checkpoint says.
                closed_before: checkpoint
                    .closed_before
                    .map_or(i64::MIN, |c| c.max(config.published_before)),
                last_counted: checkpoint.last_counted,
                amended: checkpoint.amended,
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
        let published = (config.published_before > i64::MIN)
            .then(|| model::format_rfc3339_millis(config.published_before));
        tracing::info!(worker = index, partitions = ?starts, published_before = published.as_deref().unwrap_or("none"), "Reading the events topic.");
        // Windows before `published_before` were published by an earlier run.
        if config.published_before > i64::MIN {
            caps.downgrade(config.published_before);
        }
        let ends = EndProbe::start(&config, &mine)?;
        metrics.partitions_reading.add(mine.len() as i64);
        // One round of checkpoints in flight at a time (each is waited for), so they land in
        // order without an idempotent producer, whose state a restarted broker may refuse.
        let checkpoints: BaseProducer = service::kafka::client_config(&config.brokers)
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("max.in.flight.requests.per.connection", "1")
            .create()
            .map_err(|e| Failure::kafka("create the checkpoint producer", e))?;
        Ok(KafkaReader {
            config,
            consumer,
            checkpoints,
            ends,
            partitions,
            caps,
            metrics,
            by_window: Vec::new(),
            amends: Vec::new(),
            side: Vec::new(),
            committed_frontier: i64::MIN,
            last_commit: Instant::now(),
            last_lag_check: Instant::now(),
            last_close_failure: None,
        })
    }

    /// Polls what is there (without waiting), emits it, and advances the capabilities.
    /// Returns whether any message came.
    pub(super) fn step(&mut self, sessions: &mut Sessions<'_, LiveSide>) -> bool {
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
            let outcome = decode(
                payload,
                default_ts,
                wall_ms,
                self.config.max_future_ms,
                &self.config.emojis,
            )
            .map_err(|reason| {
                let raw = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
                (reason.to_string(), raw)
            });
            drop(message);
            self.route(i, offset, outcome, now);
        }
        sessions.emit(
            &self.caps,
            &mut self.by_window,
            &mut self.amends,
            &mut self.side,
        );
        self.advance(now, wall_ms);
        if now.duration_since(self.last_lag_check) >= Duration::from_millis(LAG_INTERVAL_MS) {
            self.last_lag_check = now;
            self.measure_lag();
        }
        got > 0
    }

    /// Records, per partition, how many messages are not read yet, from the high watermarks
    /// of the client's last statistics (asking the broker would block the worker).
    pub(super) fn measure_lag(&self) {
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

    // Long: the hot path of the source: decode, lateness, routing and the commit guards of one message, kept together for speed.
    pub(super) fn route(
        &mut self,
        i: usize,
        offset: i64,
        outcome: Result<(CompactString, CompactString, i64), (String, String)>,
        now: Instant,
    ) {
        let window = self.config.window;
        let cap_time = self.caps.time();
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
            Err(_) if !self.config.report_invalid => return,
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
        // Within the allowed lateness of the partition's watermark, or of the source's
        // progress if further (an idle partition's watermark lags behind the clock).
        let amendable = self.config.windows.amends(
            window.end_of(start),
            partition
                .watermark
                .value()
                .unwrap_or(i64::MIN)
                .max(cap_time),
        );
        let route = if start < partition.closed_before {
            // An earlier run closed the window: decide as it did, from its checkpoint.
            let counted = partition
                .last_counted
                .get(&start)
                .is_some_and(|&last| offset <= last);
            if counted && start < self.config.published_before {
                // Counted and published by an earlier run: reading it again changes nothing.
                return;
            } else if counted && start >= cap_time {
                // Counted in a window whose final the earlier run did not publish.
                Route::Window
            } else if partition.published_amendment(start, offset, &self.config.published_times) {
                // It amended the window in a revision an earlier run published.
                return;
            } else if !on_time {
                Route::Late("the partition's watermark had passed the window's end")
            } else {
                // An earlier run closed the window before reading this event, or amended it
                // without publishing the revision (its totals, to amend, went with it).
                Route::Late("the window had already closed before a restart")
            }
        } else if start < self.config.published_before {
            // Published by an earlier run.
            return;
        } else if !on_time && !amendable {
            Route::Late("the partition's watermark had passed the window's end")
        } else if start >= cap_time {
            // On time, or within the allowed lateness while this source still holds the
            // window: it counts in the window's final.
            if !on_time {
                self.metrics.amends.add(1);
            }
            Route::Window
        } else if amendable {
            self.metrics.amends.add(1);
            Route::Amend
        } else {
            Route::Late("the window had already closed")
        };
        match route {
            Route::Amend => {
                partition
                    .pending
                    .entry(cap_time)
                    .or_insert((offset, max_before));
                let last = partition.amended.entry((start, cap_time)).or_insert(offset);
                *last = (*last).max(offset);
                self.amends.push(Amend {
                    window_start: start,
                    tap: Tap { user, emoji },
                });
            }
            Route::Late(reason) => {
                self.config.late.add(1);
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
            Route::Window => {
                partition
                    .pending
                    .entry(start)
                    .or_insert((offset, max_before));
                partition.open_last.insert(start, offset);
                match self.by_window.iter_mut().rev().find(|(s, _)| *s == start) {
                    Some((_, batch)) => batch.push(Tap { user, emoji }),
                    None => self.by_window.push((start, vec![Tap { user, emoji }])),
                }
            }
        }
    }
}

/// Where an event goes.
enum Route {
    /// Into its open window.
    Window,
    /// Amends its closed window.
    Amend,
    /// A late record, for this reason.
    Late(&'static str),
}

/// How often the consumer lag is measured, ms.
pub(super) const LAG_INTERVAL_MS: u64 = 2000;
