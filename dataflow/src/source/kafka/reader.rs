//! The partitions of a worker: assignment and resume from the committed offsets, polling
//! without blocking, and routing each event to its window or to the late records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::checkpoint::{Checkpoint, Settings};
use super::context::{CheckpointDelivery, STATS_INTERVAL_MS, SourceContext};
use super::decode::decode;
use super::end_probe::EndProbe;
use super::{KafkaSourceConfig, LiveSide, Reported, StartFrom};
use crate::failure::Failure;
use crate::fate::Fate;
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
    /// offset that needs it published, with the state before it.
    pub(super) pending: BTreeMap<i64, Guard>,
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
    /// No run that published windows read this partition (the events topic grew since): its
    /// events of published windows are late, not counted already.
    pub(super) unread_by_publishers: bool,
    /// Paused: its windows are too far ahead of the slowest source's.
    pub(super) paused: bool,
}

impl Partition {
    /// Partition `id`, read from `next_offset`, handled by an earlier run before
    /// `resume_offset`, with the state `checkpoint` (the default for a partition read from its
    /// start); `unread`: no run that published windows read it.
    pub(super) fn new(
        id: i32,
        (next_offset, resume_offset): (i64, i64),
        checkpoint: Checkpoint,
        unread: bool,
        config: &KafkaSourceConfig,
    ) -> Self {
        Partition {
            id,
            resume_offset,
            watermark: Watermark::restored(config.rules.windows.lateness_ms(), checkpoint.max_seen),
            next_offset,
            last_message: Instant::now(),
            at_end: None,
            pending: BTreeMap::new(),
            open_last: BTreeMap::new(),
            // A published window was closed, whatever the checkpoint says; for a partition no
            // publishing run read (the checkpoints then say so too), with nothing counted in
            // it: its events of those windows are late.
            closed_before: match checkpoint.closed_before {
                Some(c) => c.max(config.published_before),
                None if unread => config.published_before,
                None => i64::MIN,
            },
            last_counted: checkpoint.last_counted,
            amended: checkpoint.amended,
            unread_by_publishers: unread,
            paused: false,
        }
    }

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
    /// This worker's index and the number of workers: it reads the partitions `p` with
    /// `p % peers == index`.
    pub(super) worker: (usize, usize),
    pub(super) consumer: BaseConsumer<SourceContext>,
    /// Writes the checkpoints.
    pub(super) checkpoints: BaseProducer<CheckpointDelivery>,
    /// What the checkpoints say the state was made with (the partitions of the events topic
    /// this worker knows of among them).
    pub(super) settings: Settings,
    pub(super) ends: Arc<EndProbe>,
    pub(super) partitions: Vec<Partition>,
    pub(super) caps: SourceCaps,
    /// The watermark this worker's windows close on: the least of its active partitions'
    /// watermarks, never past the wall clock less the lateness; the capabilities are at its
    /// window.
    pub(super) watermark: i64,
    pub(super) metrics: Arc<DataflowMetrics>,
    pub(super) by_window: Vec<(i64, Vec<Tap>)>,
    pub(super) amends: Vec<Amend>,
    pub(super) side: Vec<LiveSide>,
    pub(super) committed_frontier: i64,
    /// Every window before this was published (the published probe's frontier, last seen).
    pub(super) published_frontier: i64,
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
        let context = SourceContext::new(&config.topic, mine.clone());
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
        // Partitions without a checkpoint get one before anything is read (see below).
        let mut fresh = Vec::new();
        for &p in &mine {
            let checkpoint = config
                .checkpoints
                .get(&p)
                .filter(|_| config.start == StartFrom::Committed)
                .map(|(o, text)| (*o, Checkpoint::decode(text, *o, config.rules.window)));
            let resumed = checkpoint.or_else(|| {
                let elem = committed.as_ref()?.find_partition(&config.topic, p)?;
                match elem.offset() {
                    Offset::Offset(o) => Some((
                        o,
                        Checkpoint::decode(elem.metadata(), o, config.rules.window),
                    )),
                    _ => None,
                }
            });
            if resumed.is_none() {
                fresh.push(p);
            }
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
            let next_offset = match offset {
                Offset::Offset(o) => o,
                _ => 0,
            };
            // Without a checkpoint, no run that published read it (each checkpoints a
            // partition before it reads it).
            let unread = p >= config.new_partitions_from || fresh.contains(&p);
            partitions.push(Partition::new(
                p,
                (next_offset, resume_offset),
                checkpoint,
                unread,
                &config,
            ));
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
        let ends = EndProbe::start(&config, (index, peers))?;
        metrics.partitions_reading.add(mine.len() as i64);
        let checkpoints = super::growth::checkpoint_producer(&config.brokers)?;
        let config_published_before = config.published_before;
        let settings = Settings {
            events_topic: config.topic.clone(),
            partitions: config.partitions,
            window_ms: config.rules.window.millis(),
            windows_topic: config.windows_topic.clone(),
        };
        let mut reader = KafkaReader {
            worker: (index, peers),
            settings,
            config,
            consumer,
            checkpoints,
            ends,
            partitions,
            watermark: caps.time(),
            caps,
            metrics,
            by_window: Vec::new(),
            amends: Vec::new(),
            side: Vec::new(),
            committed_frontier: i64::MIN,
            published_frontier: config_published_before,
            last_commit: Instant::now(),
            last_lag_check: Instant::now(),
            last_close_failure: None,
        };
        // Every partition gets a checkpoint at where it starts, before anything of it is
        // read: a partition without one, so that before a late record of it goes out, a
        // restart knows where in the late topic to look for those it must not report again;
        // and each one, to claim it from another dataflow of the group still running (see
        // `checkpoint::Owners`), which then stops.
        if !fresh.is_empty() {
            tracing::debug!(worker = index, partitions = ?fresh, "Partitions without a checkpoint.");
        }
        if !mine.is_empty() && !reader.commit_partitions(i64::MIN, |p| mine.contains(&p), true) {
            return Err(Failure::kafka(
                format!(
                    "write the first checkpoints to {}",
                    reader.config.checkpoint_topic
                ),
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut),
            ));
        }
        Ok(reader)
    }

    /// The failure of a worker another dataflow of the group took partitions over from.
    pub(super) fn taken_over(&self) -> Option<Failure> {
        let (partition, by) = self.ends.taken_over()?;
        Some(Failure::TakenOver {
            topic: self.config.checkpoint_topic.clone(),
            partition,
            by,
            run: service::kafka::run_id().to_owned(),
        })
    }

    /// Polls what is there (without waiting), emits it, and advances the capabilities;
    /// `slowest` is the earliest window any source of the dataflow may still add to.
    /// Returns whether any message came.
    pub(super) fn step(
        &mut self,
        sessions: &mut Sessions<'_, LiveSide>,
        slowest: Option<i64>,
    ) -> bool {
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

            // The record's timestamp is when the ingest took the event (or the broker stored
            // it), never later than now.
            let received = message
                .timestamp()
                .to_millis()
                .unwrap_or(wall_ms)
                .min(wall_ms);
            let Some(i) = self.partitions.iter().position(|x| x.id == p) else {
                continue;
            };
            let payload = message.payload().unwrap_or_default();
            let rules = &self.config.rules;
            // Judged at the time it was received, so that reading it again decides alike.
            let outcome = decode(payload, received, received, rules)
                .map(|(user, emoji, stamped)| {
                    (user, emoji, rules.event_time(stamped, Some(received)))
                })
                .map_err(|reason| {
                    let raw =
                        String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
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
        self.bound_read_ahead(slowest);
        if now.duration_since(self.last_lag_check) >= Duration::from_millis(LAG_INTERVAL_MS) {
            self.last_lag_check = now;
            self.measure_lag();
        }
        if self.ends.partitions() > self.settings.partitions {
            self.read_new_partitions();
        }
        got > 0
    }

    /// Pauses the partitions whose windows are further ahead of `slowest` than the
    /// read-ahead, and resumes those back within it (the slowest source's own partitions
    /// are never ahead of it: reading goes on).
    fn bound_read_ahead(&mut self, slowest: Option<i64>) {
        // Until the first progress is known, nothing to be ahead of.
        let Some(slowest) = slowest.filter(|s| *s > i64::MIN) else {
            return;
        };
        let (window, limit) = (
            self.config.rules.window,
            slowest.saturating_add(self.config.rules.read_ahead_ms()),
        );
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for p in &mut self.partitions {
            let ahead = p.watermark.hold(window) > limit;
            if ahead != p.paused {
                p.paused = ahead;
                // Whether it is at its end is not known again until it is read.
                p.at_end = None;
                let list = if ahead { &mut pause } else { &mut resume };
                list.add_partition(&self.config.topic, p.id);
            }
        }
        for (list, paused) in [(pause, true), (resume, false)] {
            if list.count() == 0 {
                continue;
            }
            let done = if paused {
                self.consumer.pause(&list)
            } else {
                self.consumer.resume(&list)
            };
            let which: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            match done {
                Ok(()) => {
                    self.metrics
                        .partitions_paused
                        .add(if paused { 1 } else { -1 } * which.len() as i64);
                    tracing::debug!(partitions = ?which, paused, slowest = %model::format_rfc3339_millis(slowest), "Read-ahead bound.");
                }
                Err(error) => {
                    tracing::warn!(partitions = ?which, paused, %error, "Cannot pause or resume partitions.")
                }
            }
        }
    }

    /// Records, per partition, how many messages are not read yet, from the high watermarks
    /// of the client's last statistics (asking the broker would block the worker).
    pub(super) fn measure_lag(&self) {
        let context = self.consumer.context();
        for p in &self.partitions {
            if let Some(h) = context.high(p.id) {
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
        let window = self.config.rules.window;
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
                partition.watermark.observe(timestamp);
            }
            return;
        }
        let (user, emoji, timestamp) = match outcome {
            Ok(event) => event,
            Err(_) if !self.config.report_invalid => return,
            Err((reason, raw)) => {
                self.metrics.invalid.add(1);
                if self.config.reported.was_reported(partition.id, offset) {
                    return;
                }
                let (ends, reported) = (&self.ends, &self.config.reported);
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, ends, reported)
                });
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
        partition.watermark.observe(timestamp);
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
            } else if partition.unread_by_publishers {
                Route::Late("its window was published before any run read it")
            } else {
                // An earlier run closed the window before reading this event, or amended it
                // without publishing the revision (its totals, to amend, went with it).
                Route::Late("the window had already closed before a restart")
            }
        } else if start < self.config.published_before {
            if !partition.unread_by_publishers {
                // Published by an earlier run.
                return;
            }
            // A partition the runs that published the window did not read (it was added
            // since, or this run started at its end).
            Route::Late("its window was published before any run read it")
        } else {
            match self.config.rules.fate(timestamp, self.watermark) {
                Fate::Count => Route::Window,
                // Past the watermark, but this source still holds the window back.
                Fate::Amend if start >= cap_time => Route::Window,
                Fate::Amend => {
                    self.metrics.amends.add(1);
                    Route::Amend
                }
                Fate::Late => Route::Late("the window had already closed"),
            }
        };
        let (ends, reported) = (&self.ends, &self.config.reported);
        match route {
            Route::Amend => {
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, ends, reported)
                });
                let last = partition.amended.entry((start, cap_time)).or_insert(offset);
                *last = (*last).max(offset);
                self.amends.push(Amend {
                    window_start: start,
                    tap: Tap { user, emoji },
                });
            }
            Route::Late(_) if self.config.reported.was_reported(partition.id, offset) => {
                // An earlier run published this very record.
            }
            Route::Late(reason) => {
                self.config.late.add(1);
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, ends, reported)
                });
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
                partition.pending.entry(start).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, ends, reported)
                });
                partition.open_last.insert(start, offset);
                match self.by_window.iter_mut().rev().find(|(s, _)| *s == start) {
                    Some((_, batch)) => batch.push(Tap { user, emoji }),
                    None => self.by_window.push((start, vec![Tap { user, emoji }])),
                }
            }
        }
    }
}

/// What a commit at an offset needs to know of the state before it.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    /// The offset.
    pub(super) offset: i64,
    /// The largest timestamp seen before it.
    pub(super) max_seen: Option<i64>,
    /// Where the late topic's partitions ended before it was read: every late or invalid
    /// record of it or a later offset is at or after these (see `reported`).
    pub(super) late_from: Vec<i64>,
}

impl Guard {
    fn new(
        (partition, offset): (i32, i64),
        max_seen: Option<i64>,
        ends: &EndProbe,
        reported: &Reported,
    ) -> Self {
        Guard {
            offset,
            max_seen,
            late_from: reported.late_from(partition, offset, ends.late_ends()),
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
