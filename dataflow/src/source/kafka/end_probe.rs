//! `EndProbe`: the ends of a worker's partitions, and how many partitions the events topic
//! has, asked of the broker on a thread of its own; and whether another dataflow of the
//! group took this worker's partitions over (its checkpoint partitions, watched).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSourceConfig;
use super::checkpoint::{Owners, run_of};
use super::context::Quiet;
use crate::failure::Failure;

/// The ends (high watermarks) of a worker's partitions, asked of the broker on a thread of
/// its own (a blocking request must not stall the worker), each with when it was asked; the
/// partitions of the events topic, which may grow while the dataflow runs; and where the
/// late topic's partitions end.
pub(super) struct EndProbe {
    created: Instant,
    /// Per partition of the worker: the end and when it was asked, ms since `created`.
    ends: Mutex<HashMap<i32, (i64, u64)>>,
    /// How many partitions the events topic had at the last answer.
    partitions: AtomicI32,
    /// Per partition of the late topic: where it ended at the last answer (a record
    /// published later is at or after it).
    late: Vec<AtomicI64>,
    /// The partition of this worker another dataflow of the group took over, and that
    /// dataflow's run.
    taken_over: Mutex<Option<(i32, String)>>,
    /// How long the last whole round of asking took, ms (an answer is that much older than
    /// the next one at most, plus the pause between rounds).
    round_ms: AtomicU64,
}

impl EndProbe {
    /// Starts the thread for the partitions `p` with `p % peers == index`; it stops once the
    /// reader is gone.
    pub(super) fn start(
        config: &KafkaSourceConfig,
        (index, peers): (usize, usize),
    ) -> Result<Arc<Self>, Failure> {
        let probe = Arc::new(EndProbe {
            created: Instant::now(),
            ends: Mutex::new(HashMap::new()),
            partitions: AtomicI32::new(config.partitions),
            late: config
                .reported
                .ends()
                .iter()
                .map(|&end| AtomicI64::new(end))
                .collect(),
            taken_over: Mutex::new(None),
            round_ms: AtomicU64::new(0),
        });
        let mine =
            move |partitions: i32| (0..partitions).filter(move |p| *p as usize % peers == index);
        let mut watch = Watch::start(config, mine(config.partitions))?;
        let client: BaseConsumer<Quiet> = service::kafka::client_config(&config.brokers)
            .create_with_context(Quiet)
            .map_err(|e| Failure::kafka("create the Kafka client for partition ends", e))?;
        let every =
            (config.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let wait = every.max(Duration::from_secs(1));
        let (weak, topic) = (Arc::downgrade(&probe), config.topic.clone());
        let late_topic = config.late_topic.clone();
        std::thread::Builder::new()
            .name("partition-ends".into())
            .spawn(move || {
                while let Some(probe) = weak.upgrade() {
                    let round = Instant::now();
                    if let Ok(found) = service::kafka::partitions_of(&client, &topic) {
                        probe
                            .partitions
                            .fetch_max(found.len() as i32, Ordering::Relaxed);
                    }
                    let partitions = probe.partitions.load(Ordering::Relaxed);
                    watch.grow(mine(partitions));
                    if let Some(taken) = watch.read() {
                        let mut taken_over =
                            probe.taken_over.lock().unwrap_or_else(|e| e.into_inner());
                        taken_over.get_or_insert(taken);
                    }
                    let mut answered = true;
                    for p in mine(partitions) {
                        let asked = probe.created.elapsed().as_millis() as u64 + 1;
                        let answer = client.fetch_watermarks(&topic, p, wait);
                        answered &= answer.is_ok();
                        if let Ok((low, high)) = answer {
                            // An empty partition (or one emptied by retention) is read.
                            let end = if high <= low { -1 } else { high };
                            let mut ends = probe.ends.lock().unwrap_or_else(|e| e.into_inner());
                            ends.insert(p, (end, asked));
                        }
                    }
                    for (p, end) in probe.late.iter().enumerate() {
                        if let Ok((_, high)) = client.fetch_watermarks(&late_topic, p as i32, wait)
                        {
                            end.fetch_max(high, Ordering::Relaxed);
                        }
                    }
                    // Only a round the broker answered whole: waiting on one that does not
                    // answer must not make old answers count longer.
                    if answered {
                        let took = u64::try_from(round.elapsed().as_millis()).unwrap_or(u64::MAX);
                        probe
                            .round_ms
                            .store(took + every.as_millis() as u64, Ordering::Relaxed);
                    }
                    drop(probe);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| Failure::io("start", "the partition-ends thread", e))?;
        Ok(probe)
    }

    /// How many partitions the events topic had at the last answer.
    pub(super) fn partitions(&self) -> i32 {
        self.partitions.load(Ordering::Relaxed)
    }

    /// The partition of this worker another dataflow of the group took over (it wrote a
    /// checkpoint there after this one's), and that dataflow's run.
    pub(super) fn taken_over(&self) -> Option<(i32, String)> {
        self.taken_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where each partition of the late topic ended at the last answer.
    pub(super) fn late_ends(&self) -> Vec<i64> {
        self.late
            .iter()
            .map(|end| end.load(Ordering::Relaxed))
            .collect()
    }

    /// How old the newest answer may be while the broker answers: a round of asking and
    /// the pause after it.
    pub(super) fn answer_age(&self) -> Duration {
        Duration::from_millis(self.round_ms.load(Ordering::Relaxed))
    }

    /// Whether an answer asked after `since` shows partition `p` read to its end.
    pub(super) fn read_to_end(&self, p: i32, next_offset: i64, since: Instant) -> bool {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(&p).is_some_and(|&(end, asked)| {
            self.created + Duration::from_millis(asked - 1) >= since && end <= next_offset
        })
    }
}

/// Reads a worker's checkpoint partitions from where they ended when it started, for a
/// record of another run after this run's own (see `checkpoint::Owners`).
struct Watch {
    consumer: BaseConsumer<Quiet>,
    topic: String,
    /// The partitions watched: those of the events topic this worker knew of.
    partitions: i32,
    owners: Owners,
}

impl Watch {
    fn start(config: &KafkaSourceConfig, mine: impl Iterator<Item = i32>) -> Result<Self, Failure> {
        let topic = config.checkpoint_topic.clone();
        let failed = |e| Failure::kafka(format!("watch the checkpoints in {topic}"), e);
        let consumer: BaseConsumer<Quiet> = service::kafka::client_config(&config.brokers)
            .set("group.id", format!("{topic}-watch"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Quiet)
            .map_err(failed)?;
        let mut from = TopicPartitionList::new();
        for p in mine {
            // This run's first checkpoint (its claim) comes after where the partition ends now.
            let (_, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(30))
                .map_err(failed)?;
            from.add_partition_offset(&topic, p, Offset::Offset(high))
                .map_err(failed)?;
        }
        consumer.incremental_assign(&from).map_err(failed)?;
        Ok(Watch {
            consumer,
            topic,
            partitions: config.partitions,
            owners: Owners::default(),
        })
    }

    /// Watches the partitions added to the events topic too (from their start: this run
    /// checkpoints them before it reads them).
    fn grow(&mut self, mine: impl Iterator<Item = i32>) {
        let mut added = TopicPartitionList::new();
        let mut last = self.partitions;
        for p in mine.filter(|p| *p >= self.partitions) {
            let _ = added.add_partition_offset(&self.topic, p, Offset::Beginning);
            last = last.max(p + 1);
        }
        if added.count() > 0 && self.consumer.incremental_assign(&added).is_ok() {
            self.partitions = last;
        }
    }

    /// Reads what was written since the last call; a partition another run took over from
    /// this one, and that run.
    fn read(&mut self) -> Option<(i32, String)> {
        let ours = service::kafka::run_id();
        for _ in 0..10_000 {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    let p = message.partition();
                    self.owners.counts(p, run_of(&message));
                    if let Some(by) = self.owners.taken_over(p, ours) {
                        return Some((p, by.to_owned()));
                    }
                }
                Some(Err(_)) => {}
                None => break,
            }
        }
        None
    }
}
