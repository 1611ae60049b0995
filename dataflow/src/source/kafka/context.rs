//! Client contexts: the source's own (high watermarks from the statistics, whether the
//! brokers answer) and a quiet one for the end probe and the checkpoint reader (which see
//! the errors that matter when they poll).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

/// A client context that leaves errors to the caller (a broker away is expected).
pub(super) struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, %reason, "Kafka client error (partition ends).");
    }
}

impl ConsumerContext for Quiet {}

/// A consumer that reads partitions of `topic` to their ends (checkpoints, late records): no
/// fetch waits for more, a position retention removed reads what is left from there.
pub(super) fn read_back_consumer(
    brokers: &str,
    topic: &str,
) -> Result<rdkafka::consumer::BaseConsumer<Quiet>, KafkaError> {
    service::kafka::client_config(brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Quiet)
}

/// The checkpoint producer's context: keeps the first delivery the broker refused, so a
/// checkpoint it did not take never counts as written.
#[derive(Default)]
pub(super) struct CheckpointDelivery {
    refused: std::sync::Mutex<Option<KafkaError>>,
}

impl CheckpointDelivery {
    /// The first refusal since the last call, if any.
    pub(super) fn take_refusal(&self) -> Option<KafkaError> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ClientContext for CheckpointDelivery {}

impl ProducerContext for CheckpointDelivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            refused.get_or_insert_with(|| error.clone());
        }
    }
}

/// How often the client reports its statistics (high watermarks, brokers' states), ms.
pub(super) const STATS_INTERVAL_MS: u64 = 500;

/// Keeps each partition's high watermark from the client's statistics, and whether the
/// brokers leading this worker's partitions can be reached.
///
/// A partition only counts as idle while its broker answers: when the broker is away, the
/// partition may well hold events nobody can read yet, and closing windows on the clock
/// would turn every one of them late once the broker is back.
pub(super) struct SourceContext {
    pub(super) topic: String,
    /// The partitions read (more as the topic grows).
    mine: Mutex<Vec<i32>>,
    /// Per partition read: its high watermark at the last statistics.
    high: Mutex<HashMap<i32, i64>>,
    pub(super) created: Instant,
    /// Whether the leaders of `mine` answer: cleared by a transport error, set again by
    /// statistics that show every leader up.
    pub(super) reachable: AtomicBool,
    /// When it last became reachable, ms since `created`.
    pub(super) reachable_since_ms: AtomicU64,
}

impl SourceContext {
    pub(super) fn new(topic: &str, mine: Vec<i32>) -> Self {
        SourceContext {
            topic: topic.to_owned(),
            mine: Mutex::new(mine),
            high: Mutex::new(HashMap::new()),
            created: Instant::now(),
            reachable: AtomicBool::new(true),
            reachable_since_ms: AtomicU64::new(0),
        }
    }

    /// Reads `partitions` too (added to the topic).
    pub(super) fn read_also(&self, partitions: &[i32]) {
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        for &p in partitions {
            if !mine.contains(&p) {
                mine.push(p);
            }
        }
    }

    /// The high watermark of `partition` at the last statistics, if known.
    pub(super) fn high(&self, partition: i32) -> Option<i64> {
        let high = self.high.lock().unwrap_or_else(|e| e.into_inner());
        high.get(&partition).copied()
    }

    /// Since when the brokers of this worker's partitions answer, or `None` while they don't.
    pub(super) fn reachable_since(&self) -> Option<Instant> {
        self.reachable.load(Ordering::Acquire).then(|| {
            self.created + Duration::from_millis(self.reachable_since_ms.load(Ordering::Acquire))
        })
    }

    pub(super) fn set_reachable(&self, reachable: bool) {
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
    pub(super) fn note_error(&self, error: &KafkaError) {
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
        let mine = self.mine.lock().unwrap_or_else(|e| e.into_inner()).clone();
        {
            let mut high = self.high.lock().unwrap_or_else(|e| e.into_inner());
            for (&id, partition) in &topic.partitions {
                if mine.contains(&id) && partition.hi_offset >= 0 {
                    high.insert(id, partition.hi_offset);
                }
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
        self.set_reachable(mine.iter().all(leader_up));
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
