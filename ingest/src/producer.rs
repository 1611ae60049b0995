//! `EventProducer`: hands events to Kafka with a bounded number in flight.
//!
//! A request reserves room for all its events before any is produced, so a request is
//! either produced whole or refused whole (503). Room comes back as the broker acknowledges.
//!
//! An idempotent producer can be left in a state no broker accepts any more (a broker that
//! lost track of its sequence numbers across a restart refuses every later record): after
//! [`STUCK_AFTER`] failed deliveries in a row, the next request gets a new producer (a new
//! producer id), so the service recovers by itself.
//!
//! Events of a request answered 202 are kept until the broker has them. By default the
//! producer never gives up on one: it tries again itself, as the same idempotent producer, so
//! the broker drops a repeat of what it stored. What it does give up on (a delivery timeout
//! set, a broker that refused, a replaced producer's events) goes out again on the newest
//! producer, holding its room in the queue meanwhile, but only once the topic shows it is not
//! there: every event carries an id (an `id` field in its JSON, [`with_id`]), and an event the broker may have
//! stored (its request was sent) is looked for in its partition first ([`Lookup`]). So the
//! ingest never writes an event twice. Events of a request waiting for its acknowledgement
//! fail instead, and the request is answered 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use model::EmojiEvent;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::lookup::Lookup;
use tokio::sync::{Notify, Semaphore};

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;

/// Why events could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// No room for the request's events.
    #[error("the producer queue is full ({0} events in flight)")]
    QueueFull(usize),
    /// The broker did not acknowledge in time, or refused.
    #[error("the broker did not acknowledge the events: {0}")]
    NotAcknowledged(String),
    /// The producer could not be created.
    #[error("cannot create the Kafka producer")]
    Create(#[source] KafkaError),
}

impl ProduceError {
    /// Whether trying again may help: a full queue drains, a broker comes back.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProduceError::QueueFull(_) | ProduceError::NotAcknowledged(_) => true,
            ProduceError::Create(e) => service::kafka::is_retryable(e),
        }
    }
}

/// The acknowledgements of one request.
#[derive(Debug, Default)]
pub struct Delivery {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    done: Notify,
    /// Events that fail are sent again rather than failed (the request was answered 202).
    keep: bool,
    /// When the request's events were taken (their records' timestamp).
    taken_at: i64,
    /// The requests not settled yet, this one among them until it is.
    pending: Arc<Pending>,
}

impl Delivery {
    /// Waits until every event is acknowledged or failed, at most `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<(), ProduceError> {
        let all_in = async {
            loop {
                let notified = self.done.notified();
                if self.remaining.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, all_in)
            .await
            .map_err(|_| ProduceError::NotAcknowledged(format!("no answer within {timeout:?}")))?;
        match self.failed.load(Ordering::Acquire) {
            0 => Ok(()),
            n => Err(ProduceError::NotAcknowledged(format!("{n} events failed"))),
        }
    }

    fn settle(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::AcqRel);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pending.settled(self.taken_at);
            self.done.notify_one();
        }
    }
}

/// The requests whose events are not all settled (acknowledged by the broker, or failed and
/// answered 503), counted by when they were taken: what the ingest holds that the dataflow
/// cannot see yet (see `model::progress`).
#[derive(Debug, Default)]
pub(crate) struct Pending(Mutex<BTreeMap<i64, usize>>);

impl Pending {
    /// Notes a request taken now; returns now (stamped under the lock, so what
    /// [`Pending::said`] tells is never ahead of a request it does not count).
    fn taken_now(&self) -> i64 {
        let mut taken = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = model::now_ms();
        *taken.entry(now).or_default() += 1;
        now
    }

    /// Now, and when the oldest request not settled was taken.
    fn said(&self) -> (i64, Option<i64>) {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (model::now_ms(), taken.keys().next().copied())
    }

    fn settled(&self, at: i64) {
        let mut taken = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Occupied(mut left) = taken.entry(at) {
            *left.get_mut() -= 1;
            if *left.get() == 0 {
                left.remove();
            }
        }
    }
}

/// Per partition, the offset after the last event the broker acknowledged.
#[derive(Debug, Default)]
pub(crate) struct StoredEnds(RwLock<Vec<std::sync::atomic::AtomicI64>>);

impl StoredEnds {
    fn note(&self, partition: i32, offset: i64) {
        let Ok(p) = usize::try_from(partition) else {
            return;
        };
        {
            let ends = self.0.read().unwrap_or_else(|e| e.into_inner());
            if let Some(end) = ends.get(p) {
                end.fetch_max(offset + 1, Ordering::AcqRel);
                return;
            }
        }
        let mut ends = self.0.write().unwrap_or_else(|e| e.into_inner());
        while ends.len() <= p {
            ends.push(std::sync::atomic::AtomicI64::new(0));
        }
        ends[p].fetch_max(offset + 1, Ordering::AcqRel);
    }

    fn ends(&self) -> std::collections::BTreeMap<i32, i64> {
        let ends = self.0.read().unwrap_or_else(|e| e.into_inner());
        (0..)
            .zip(ends.iter())
            .map(|(p, end)| (p, end.load(Ordering::Acquire)))
            .filter(|(_, end)| *end > 0)
            .collect()
    }
}

/// Failed deliveries in a row after which the producer is replaced.
pub const STUCK_AFTER: usize = 50;

/// An event the broker did not take, to be sent again.
pub(crate) struct Unsent {
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp: Option<i64>,
    /// Its id (see [`with_id`]).
    pub(crate) id: Vec<u8>,
    /// The partition it went to, and whether the broker may have stored it there (its
    /// request was sent, and not answered with a refusal).
    pub(crate) maybe_stored: Option<i32>,
    /// When a lookup first did not find it (it goes out again once a lookup
    /// [`CONFIRM_MISSING`] later does not either).
    missing_since: Option<Instant>,
    delivery: Arc<Delivery>,
}

/// How long after a lookup that did not find an event a second one, started that much later,
/// must not find it either before it is sent again: a broker that was stalled may still be
/// storing requests it took before it answers a fetch, and a record the leader stored shows
/// only once its replicas have it.
const CONFIRM_MISSING: Duration = Duration::from_secs(5);

/// How long one lookup may take (it reads what was written since the earliest event).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

impl Unsent {
    /// When it was taken (its record's timestamp).
    pub(crate) fn taken_at(&self) -> Option<i64> {
        self.timestamp
    }
}

/// Whether an event whose delivery failed with `error`, in `partition`, may be stored: it
/// had a partition, and the error is not one of those that say it never left the client.
fn maybe_stored(error: &KafkaError, partition: i32) -> Option<i32> {
    let never_sent = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::TimedOutQueue
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    );
    (partition >= 0 && !never_sent).then_some(partition)
}

/// Appends the `id` of the `n`th event a run sends to the event's JSON object in `payload`:
/// the run (a random number) and `n`, in hex. The dataflow and every other reader of the
/// events topic ignore the field.
fn with_id(payload: &mut Vec<u8>, run: u64, n: u64) {
    use std::io::Write;
    if payload.last() == Some(&b'}') {
        payload.pop();
        let _ = write!(payload, r#","id":"{run:016x}{n:x}"}}"#);
    }
}

/// The id of the event in `payload` (see [`with_id`]), empty if it has none.
pub(crate) fn id_of(payload: &[u8]) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a str>,
    }
    serde_json::from_slice::<WithId<'_>>(payload)
        .ok()
        .and_then(|w| w.id)
        .map_or_else(Vec::new, |id| id.as_bytes().to_vec())
}

type UnsentQueue = Arc<Mutex<Vec<Unsent>>>;

struct DeliveryContext {
    stored: Arc<StoredEnds>,
    room: Arc<Semaphore>,
    metrics: Arc<IngestMetrics>,
    failures_in_a_row: Arc<AtomicUsize>,
    unsent: UnsentQueue,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Arc<Delivery>) {
        match result {
            Ok(message) => {
                // Before the request settles: a word that counts it as stored names its end.
                self.stored.note(message.partition(), message.offset());
                self.metrics.events_delivered.add(1);
                self.failures_in_a_row.store(0, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.metrics.produce_errors.add(1);
                // What a replaced producer hands back says nothing about the current one.
                let purged = matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                if !purged && self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(%error, "An event was not delivered.");
                }
                if delivery.keep {
                    // Its room stays taken until it is delivered.
                    self.unsent
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Unsent {
                            key: message.key().unwrap_or_default().to_vec(),
                            payload: message.payload().unwrap_or_default().to_vec(),
                            // A failed delivery's record may not say.
                            timestamp: message.timestamp().to_millis().or(Some(delivery.taken_at)),
                            id: id_of(message.payload().unwrap_or_default()),
                            maybe_stored: maybe_stored(error, message.partition()),
                            missing_since: None,
                            delivery,
                        });
                    return;
                }
            }
        }
        self.room.add_permits(1);
        self.metrics.queue_depth.add(-1);
        delivery.settle(result.is_ok());
    }
}

/// Produces events to the events topic, keyed by `user_id`, each record stamped with the time
/// the event was taken (its own time is in the payload).
pub struct EventProducer {
    producer: RwLock<Arc<ThreadedProducer<DeliveryContext>>>,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    failures_in_a_row: Arc<AtomicUsize>,
    replaced_at: RwLock<Instant>,
    unsent: UnsentQueue,
    topic: String,
    room: Arc<Semaphore>,
    capacity: usize,
    /// This process's run and the events sent so far: each record's id.
    run: u64,
    sent: AtomicU64,
    /// Looks for events the broker may have stored before they go out again.
    lookup: Mutex<Lookup>,
    /// The requests not settled yet.
    pending: Arc<Pending>,
    /// Where the events stored end, per partition.
    stored: Arc<StoredEnds>,
}

impl EventProducer {
    /// An idempotent producer (acks=all) with the configured linger and capacity.
    pub fn new(config: &IngestConfig, metrics: Arc<IngestMetrics>) -> Result<Self, ProduceError> {
        let room = Arc::new(Semaphore::new(config.queue_capacity));
        let failures_in_a_row = Arc::new(AtomicUsize::new(0));
        let unsent = UnsentQueue::default();
        let stored = Arc::<StoredEnds>::default();
        let producer = Self::create(
            config,
            &room,
            &metrics,
            &failures_in_a_row,
            &unsent,
            &stored,
        )?;
        Ok(EventProducer {
            producer: RwLock::new(Arc::new(producer)),
            config: config.clone(),
            metrics,
            failures_in_a_row,
            replaced_at: RwLock::new(Instant::now()),
            unsent,
            topic: config.topic.clone(),
            room,
            capacity: config.queue_capacity,
            run: {
                use std::hash::{BuildHasher, Hasher};
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write(service::kafka::run_id().as_bytes());
                hasher.finish()
            },
            sent: AtomicU64::new(0),
            lookup: Mutex::new(Lookup::new(&config.brokers, &config.topic)),
            pending: Arc::default(),
            stored,
        })
    }

    fn create(
        config: &IngestConfig,
        room: &Arc<Semaphore>,
        metrics: &Arc<IngestMetrics>,
        failures_in_a_row: &Arc<AtomicUsize>,
        unsent: &UnsentQueue,
        stored: &Arc<StoredEnds>,
    ) -> Result<ThreadedProducer<DeliveryContext>, ProduceError> {
        let context = DeliveryContext {
            stored: Arc::clone(stored),
            room: Arc::clone(room),
            metrics: Arc::clone(metrics),
            failures_in_a_row: Arc::clone(failures_in_a_row),
            unsent: Arc::clone(unsent),
        };
        // librdkafka's own queue is far larger than our room, so it never refuses a message:
        // room comes back in the delivery callback, a moment before librdkafka frees the slot.
        let queue = (config.queue_capacity * 2 + 100_000).to_string();
        service::kafka::producer_config(&config.brokers)
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("queue.buffering.max.messages", queue)
            .set("queue.buffering.max.kbytes", "2097151")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .set("compression.type", "lz4")
            // Partitions added to the events topic take taps within seconds (librdkafka's
            // default is five minutes).
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create_with_context(context)
            .map_err(ProduceError::Create)
    }

    /// The producer to send with: a new one when the current one is stuck (at most one new
    /// producer a second).
    fn current(&self) -> Arc<ThreadedProducer<DeliveryContext>> {
        let stuck = self.failures_in_a_row.load(Ordering::Relaxed) >= STUCK_AFTER;
        let recent = self
            .replaced_at
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            < Duration::from_secs(1);
        if stuck && !recent {
            match Self::create(
                &self.config,
                &self.room,
                &self.metrics,
                &self.failures_in_a_row,
                &self.unsent,
                &self.stored,
            ) {
                Ok(fresh) => {
                    self.failures_in_a_row.store(0, Ordering::Relaxed);
                    *self.replaced_at.write().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    let old = std::mem::replace(
                        &mut *self.producer.write().unwrap_or_else(|e| e.into_inner()),
                        Arc::new(fresh),
                    );
                    // Dropping it hands back what it still held, to be sent again.
                    service::kafka::retire_producer(
                        old,
                        "deliveries keep failing",
                        &self.metrics.producer_replacements,
                    );
                }
                Err(error) => tracing::error!(%error, "Cannot replace the producer."),
            }
        }
        Arc::clone(&self.producer.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Hands all `events` to the producer, or none of them when there is no room. With
    /// `keep`, events the broker does not take are sent again until it does (the request is
    /// not waiting for the acknowledgement).
    pub fn send(
        &self,
        events: &[EmojiEvent],
        keep: bool,
        metrics: &IngestMetrics,
    ) -> Result<Arc<Delivery>, ProduceError> {
        let n = u32::try_from(events.len()).map_err(|_| ProduceError::QueueFull(self.capacity))?;
        let permits = self
            .room
            .try_acquire_many(n)
            .map_err(|_| ProduceError::QueueFull(self.capacity - self.room.available_permits()))?;
        permits.forget();
        metrics.queue_depth.add(i64::from(n));
        // The record's timestamp is when the event was taken: the dataflow counts an event
        // stamped further ahead of it than the lateness at this time (a client's clock ahead).
        let received = if events.is_empty() {
            model::now_ms()
        } else {
            self.pending.taken_now()
        };
        let delivery = Arc::new(Delivery {
            remaining: AtomicUsize::new(events.len()),
            keep,
            taken_at: received,
            pending: Arc::clone(&self.pending),
            ..Delivery::default()
        });
        let producer = self.current();
        let mut payload = Vec::with_capacity(96);
        let mut refused = 0;
        let first = self.sent.fetch_add(events.len() as u64, Ordering::Relaxed);
        for (n, event) in (first..).zip(events) {
            payload.clear();
            serde_json::to_writer(&mut payload, event).expect("an event serializes to JSON");
            with_id(&mut payload, self.run, n);
            let record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(&delivery))
                .key(event.user_id.as_str())
                .payload(payload.as_slice())
                .timestamp(received);
            if let Err((error, record)) = producer.send(record) {
                // The queue is larger than our room, so this is a producer in a fatal state:
                // counted like a failed delivery (so the producer gets replaced), a kept event
                // waits to go out again, another fails its request (503).
                if refused == 0 {
                    tracing::error!(%error, "The producer refused an event.");
                }
                refused += 1;
                metrics.produce_errors.add(1);
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
                if keep {
                    self.unsent
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Unsent {
                            key: event.user_id.as_bytes().to_vec(),
                            payload: payload.clone(),
                            timestamp: Some(received),
                            id: id_of(&payload),
                            maybe_stored: None,
                            missing_since: None,
                            delivery: record.delivery_opaque,
                        });
                } else {
                    self.room.add_permits(1);
                    metrics.queue_depth.add(-1);
                    record.delivery_opaque.settle(false);
                }
            }
        }
        metrics.events_accepted.add(events.len() as u64);
        Ok(delivery)
    }

    /// Sends again the kept events the broker did not take (those it may have stored, once
    /// the topic shows they are not there: this blocks on the broker); returns how many.
    pub fn resend_unsent(&self) -> usize {
        self.resend_unsent_within(LOOKUP_TIMEOUT)
    }

    /// Like [`resend_unsent`](Self::resend_unsent), looking events up for at most `limit`
    /// (none while another lookup is under way: those wait for the next call).
    fn resend_unsent_within(&self, limit: Duration) -> usize {
        let unsent = std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|e| e.into_inner()));
        if unsent.is_empty() {
            return 0;
        }
        let (mut maybe, mut unsent): (Vec<Unsent>, Vec<Unsent>) =
            unsent.into_iter().partition(|u| u.maybe_stored.is_some());
        let lookup = match self.lookup.try_lock() {
            Ok(lookup) => Some(lookup),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let (false, None) = (maybe.is_empty(), &lookup) {
            self.unsent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut maybe);
        }
        if let (false, Some(mut lookup)) = (maybe.is_empty(), lookup) {
            let started = Instant::now();
            let found = lookup.stored(&maybe, limit);
            match found {
                Ok(stored) => {
                    let mut again = Vec::new();
                    for mut u in maybe {
                        if let Some(&(partition, offset)) = stored.get(&u.id) {
                            // Stored after all: delivered (where, before it settles).
                            self.stored.note(partition, offset);
                            self.metrics.events_found_stored.add(1);
                            self.metrics.events_delivered.add(1);
                            self.room.add_permits(1);
                            self.metrics.queue_depth.add(-1);
                            u.delivery.settle(true);
                        } else if u
                            .missing_since
                            .is_some_and(|since| started.duration_since(since) >= CONFIRM_MISSING)
                        {
                            unsent.push(u);
                        } else {
                            u.missing_since.get_or_insert(started);
                            again.push(u);
                        }
                    }
                    self.unsent
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(again);
                }
                Err(error) => {
                    tracing::warn!(%error, events = maybe.len(), "Cannot look for undelivered events in the topic; trying again.");
                    self.unsent
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(maybe);
                }
            }
        }
        let producer = self.current();
        let mut back = Vec::new();
        let mut sent = 0;
        for u in unsent {
            let mut record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(&u.delivery))
                .key(u.key.as_slice())
                .payload(u.payload.as_slice());
            if let Some(t) = u.timestamp {
                record = record.timestamp(t);
            }
            if producer.send(record).is_err() {
                // Counted like a failed delivery: a producer that refuses gets replaced
                // even when no new request comes.
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
                back.push(u);
            } else {
                sent += 1;
            }
        }
        if sent > 0 {
            tracing::info!(events = sent, "Undelivered events are sent again.");
            self.metrics.events_resent.add(sent as u64);
        }
        self.unsent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(back);
        sent
    }

    /// Now; when the oldest event the broker has not acknowledged yet (and that did not fail
    /// its request) was taken; and then, per partition, where the events it stored end.
    pub fn progress(&self) -> (i64, Option<i64>, std::collections::BTreeMap<i32, i64>) {
        let (at, pending_since) = self.pending.said();
        // After the pending ones: an event settled before has its end here.
        (at, pending_since, self.stored.ends())
    }

    /// Events waiting to be sent again.
    pub fn unsent(&self) -> usize {
        self.unsent.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for every event in flight, and every kept event, to be delivered, at most
    /// `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.resend_unsent_within(deadline.saturating_duration_since(Instant::now()));
            let producer = Arc::clone(&self.producer.read().unwrap_or_else(|e| e.into_inner()));
            let left = deadline.saturating_duration_since(Instant::now());
            let flushed = producer.flush(left.min(Duration::from_millis(200)));
            // Every event settled: its room is back (a replaced producer may still hold some,
            // handing them back to be sent again as it goes).
            if flushed.is_ok()
                && self.unsent() == 0
                && self.room.available_permits() == self.capacity
            {
                return Ok(());
            }
            if left.is_zero() {
                return flushed.and(Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_carries_its_id_in_its_json_and_is_still_an_event() {
        let event = EmojiEvent {
            user_id: "u".into(),
            emoji_type: "🔥".into(),
            timestamp: 7,
        };
        let mut payload = serde_json::to_vec(&event).unwrap();
        with_id(&mut payload, 0xab, 0x1f);
        assert_eq!(id_of(&payload), b"00000000000000ab1f");
        let back: EmojiEvent = serde_json::from_slice(&payload).unwrap();
        assert_eq!(back.user_id, "u");
        assert_eq!(back.timestamp, 7);
        // Another run, or another event of the run: another id; none without one.
        let mut other = serde_json::to_vec(&event).unwrap();
        with_id(&mut other, 0xab, 0x20);
        assert_ne!(id_of(&other), id_of(&payload));
        assert!(id_of(&serde_json::to_vec(&event).unwrap()).is_empty());
    }

    #[test]
    fn the_oldest_request_not_settled_is_pending() {
        let pending = Pending::default();
        assert_eq!(pending.said().1, None);
        let first = pending.taken_now();
        let again = pending.taken_now();
        std::thread::sleep(Duration::from_millis(2));
        let later = pending.taken_now();
        assert!(first <= again && again < later);
        pending.settled(first);
        assert_eq!(pending.said().1, Some(again), "the second request is left");
        pending.settled(again);
        assert_eq!(pending.said().1, Some(later));
        let (now, _) = pending.said();
        assert!(now >= later, "said no earlier than what it counts");
        pending.settled(later);
        assert_eq!(pending.said().1, None);
    }

    /// A producer of a broker that is not there (every delivery fails once its 50 ms
    /// timeout passes), its metrics, and an event to send.
    fn without_broker(queue_capacity: usize) -> (EventProducer, Arc<IngestMetrics>, EmojiEvent) {
        let config = IngestConfig {
            delivery_timeout: Duration::from_millis(50),
            linger: Duration::from_millis(1),
            queue_capacity,
            ..IngestConfig::new(([127, 0, 0, 1], 0).into(), "127.0.0.1:1".into())
        };
        let metrics = Arc::new(IngestMetrics::default());
        let producer = EventProducer::new(&config, Arc::clone(&metrics)).unwrap();
        let event = EmojiEvent {
            user_id: "u".into(),
            emoji_type: "x".into(),
            timestamp: 0,
        };
        (producer, metrics, event)
    }

    #[test]
    fn a_producer_whose_deliveries_keep_failing_is_replaced() {
        let (producer, metrics, event) = without_broker(500_000);
        producer
            .send(&vec![event.clone(); STUCK_AFTER], false, &metrics)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.produce_errors.get() < STUCK_AFTER as u64 {
            assert!(Instant::now() < deadline, "the deliveries did not fail");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(metrics.producer_replacements.get(), 0);
        // At most one new producer a second.
        std::thread::sleep(Duration::from_millis(1100));
        producer
            .send(std::slice::from_ref(&event), false, &metrics)
            .unwrap();
        assert_eq!(metrics.producer_replacements.get(), 1);
        producer
            .send(std::slice::from_ref(&event), false, &metrics)
            .unwrap();
        assert_eq!(
            metrics.producer_replacements.get(),
            1,
            "its failures start again from 0"
        );
    }

    #[test]
    fn events_of_a_202_answer_are_kept_and_sent_again_until_delivered() {
        // Every delivery times out; kept events hold their room and go out again.
        let (producer, metrics, event) = without_broker(10);
        producer
            .send(&vec![event.clone(); 6], true, &metrics)
            .unwrap();
        let acked = producer
            .send(&vec![event.clone(); 4], false, &metrics)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.produce_errors.get() < 10 {
            assert!(Instant::now() < deadline, "the deliveries did not fail");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The acknowledged request failed and gave its room back; the kept events did not.
        let answer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(acked.wait(Duration::from_secs(1)));
        assert!(answer.is_err());
        assert_eq!(producer.unsent(), 6);
        assert!(
            producer.progress().1.is_some(),
            "kept events are pending until the broker has them"
        );
        assert_eq!(metrics.queue_depth.get(), 6);
        assert!(matches!(
            producer.send(&vec![event.clone(); 5], true, &metrics),
            Err(ProduceError::QueueFull(6))
        ));
        assert_eq!(producer.resend_unsent(), 6);
        assert_eq!(metrics.events_resent.get(), 6);
        assert_eq!(producer.unsent(), 0);
        // They fail again, and are kept again.
        while producer.unsent() < 6 {
            assert!(
                Instant::now() < deadline,
                "the resent events did not come back"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(metrics.events_delivered.get(), 0);
        assert!(producer.flush(Duration::from_millis(300)).is_err());
    }
}
