//! The partitions of a worker: assignment and resume from the committed offsets, polling
//! without blocking, and routing each event to its window or to the late records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::checkpoint::Checkpoint;
use super::context::{CheckpointDelivery, STATS_INTERVAL_MS, SourceContext};
use super::end_probe::EndProbe;
use super::ingests::{IngestClock, Ingests};
use super::state::SourceState;
use super::{KafkaSourceConfig, LiveSide, StartFrom};
use crate::failure::Failure;
use crate::metrics::DataflowMetrics;
use crate::source::outputs::{Sessions, SourceCaps};

pub(super) struct KafkaReader {
    /// The partitions' state and the decisions taken on it.
    pub(super) state: SourceState,
    /// This worker's index and the number of workers: it reads the partitions `p` with
    /// `p % peers == index`.
    pub(super) worker: (usize, usize),
    pub(super) consumer: BaseConsumer<SourceContext>,
    /// Writes the checkpoints.
    pub(super) checkpoints: BaseProducer<CheckpointDelivery>,
    pub(super) ends: Arc<EndProbe>,
    /// What the ingests hold that the broker has not stored yet.
    pub(super) ingests: Arc<Ingests>,
    /// The clock that holds back for it.
    pub(super) ingest_clock: IngestClock,
    pub(super) caps: SourceCaps,
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
            let resumed = SourceState::checkpointed(&config, p).or_else(|| {
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
            let (offset, partition) =
                SourceState::start_partition(&config, p, resumed, fresh.contains(&p), || {
                    consumer
                        .fetch_watermarks(&config.topic, p, Duration::from_secs(30))
                        .map(|(_, end)| end)
                        .map_err(|e| Failure::kafka(format!("read the end of partition {p}"), e))
                })?;
            assignment
                .add_partition_offset(
                    &config.topic,
                    p,
                    offset.map_or(Offset::Beginning, Offset::Offset),
                )
                .map_err(|e| Failure::kafka(format!("assign partition {p}"), e))?;
            partitions.push(partition);
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
        let ingests = Ingests::shared(&config);
        metrics.partitions_reading.add(mine.len() as i64);
        let checkpoints = super::growth::checkpoint_producer(&config.brokers)?;
        let mut reader = KafkaReader {
            worker: (index, peers),
            state: SourceState::new(config, partitions, metrics),
            consumer,
            checkpoints,
            ends,
            ingests,
            ingest_clock: IngestClock::default(),
            caps,
            committed_frontier: i64::MIN,
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
                    reader.state.config.checkpoint_topic
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
            topic: self.state.config.checkpoint_topic.clone(),
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
                    if let Some(partition) = self.state.partitions.iter_mut().find(|x| x.id == p) {
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
            let Some(i) = self.state.partitions.iter().position(|x| x.id == p) else {
                continue;
            };
            let outcome = self
                .state
                .outcome(message.payload().unwrap_or_default(), received);
            drop(message);
            let ends = &self.ends;
            self.state
                .route(i, offset, outcome, now, &|| ends.late_ends());
        }
        let state = &mut self.state;
        sessions.emit(
            &self.caps,
            &mut state.by_window,
            &mut state.amends,
            &mut state.side,
        );
        self.advance(now, wall_ms);
        self.bound_read_ahead(slowest);
        if now.duration_since(self.last_lag_check) >= Duration::from_millis(LAG_INTERVAL_MS) {
            self.last_lag_check = now;
            self.measure_lag();
        }
        if self.ends.partitions() > self.state.settings.partitions {
            self.read_new_partitions();
        }
        got > 0
    }

    /// Pauses the partitions whose windows are further ahead of `slowest` than the
    /// read-ahead, and resumes those back within it (the slowest source's own partitions
    /// are never ahead of it: reading goes on).
    fn bound_read_ahead(&mut self, slowest: Option<i64>) {
        let (pause, resume) = self.state.read_ahead(slowest);
        let topic = &self.state.config.topic;
        let list = |partitions: Vec<i32>| {
            let mut list = TopicPartitionList::new();
            for p in partitions {
                list.add_partition(topic, p);
            }
            list
        };
        let slowest = slowest.unwrap_or(i64::MIN);
        for (list, paused) in [(list(pause), true), (list(resume), false)] {
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
                    self.state
                        .metrics
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
        for p in &self.state.partitions {
            if let Some(h) = context.high(p.id) {
                self.state
                    .metrics
                    .consumer_lag(p.id, (h - p.next_offset).max(0));
            }
        }
    }
}

/// How often the consumer lag is measured, ms.
pub(super) const LAG_INTERVAL_MS: u64 = 2000;
