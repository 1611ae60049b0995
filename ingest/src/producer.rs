//! `EventProducer`: hands events to Kafka with a bounded number in flight.
//!
//! A request reserves room for all its events before any is produced, so a request is
//! either produced whole or refused whole (503). Room comes back as the broker acknowledges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use model::EmojiEvent;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
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
    #[error("cannot create the Kafka producer: {0}")]
    Create(KafkaError),
}

/// The acknowledgements of one request.
#[derive(Debug, Default)]
pub struct Delivery {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    done: Notify,
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
            self.done.notify_one();
        }
    }
}

struct DeliveryContext {
    room: Arc<Semaphore>,
    metrics: Arc<IngestMetrics>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Arc<Delivery>) {
        self.room.add_permits(1);
        self.metrics.queue_depth.add(-1);
        match result {
            Ok(_) => self.metrics.events_delivered.add(1),
            Err((error, _)) => {
                self.metrics.produce_errors.add(1);
                tracing::warn!(%error, "An event was not delivered.");
            }
        }
        delivery.settle(result.is_ok());
    }
}

/// Produces events to the events topic, keyed by `user_id`, stamped with their event time.
pub struct EventProducer {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl EventProducer {
    /// An idempotent producer (acks=all) with the configured linger and capacity.
    pub fn new(config: &IngestConfig, metrics: Arc<IngestMetrics>) -> Result<Self, ProduceError> {
        let room = Arc::new(Semaphore::new(config.queue_capacity));
        let context = DeliveryContext {
            room: Arc::clone(&room),
            metrics,
        };
        // librdkafka's own queue is far larger than our room, so it never refuses a message:
        // room comes back in the delivery callback, a moment before librdkafka frees the slot.
        let queue = (config.queue_capacity * 2 + 100_000).to_string();
        let producer = service::kafka::client_config(&config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("queue.buffering.max.messages", queue)
            .set("queue.buffering.max.kbytes", "2097151")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .set("compression.type", "lz4")
            .create_with_context(context)
            .map_err(ProduceError::Create)?;
        Ok(EventProducer {
            producer,
            topic: config.topic.clone(),
            room,
            capacity: config.queue_capacity,
        })
    }

    /// Hands all `events` to the producer, or none of them when there is no room.
    pub fn send(
        &self,
        events: &[EmojiEvent],
        metrics: &IngestMetrics,
    ) -> Result<Arc<Delivery>, ProduceError> {
        let n = u32::try_from(events.len()).map_err(|_| ProduceError::QueueFull(self.capacity))?;
        let permits = self
            .room
            .try_acquire_many(n)
            .map_err(|_| ProduceError::QueueFull(self.capacity - self.room.available_permits()))?;
        permits.forget();
        metrics.queue_depth.add(i64::from(n));
        let delivery = Arc::new(Delivery {
            remaining: AtomicUsize::new(events.len()),
            ..Delivery::default()
        });
        let mut payload = Vec::with_capacity(96);
        let mut refused = 0;
        for event in events {
            payload.clear();
            serde_json::to_writer(&mut payload, event).expect("an event serializes to JSON");
            let record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(&delivery))
                .key(event.user_id.as_str())
                .payload(payload.as_slice())
                .timestamp(event.timestamp);
            if let Err((error, record)) = self.producer.send(record) {
                // Cannot happen while librdkafka's queue is larger than our room; if it does,
                // the event is counted as failed and the request is answered 503.
                if refused == 0 {
                    tracing::error!(%error, "The producer refused an event.");
                }
                refused += 1;
                self.room.add_permits(1);
                metrics.queue_depth.add(-1);
                metrics.produce_errors.add(1);
                record.delivery_opaque.settle(false);
            }
        }
        metrics.events_accepted.add(events.len() as u64);
        Ok(delivery)
    }

    /// Waits for every event in flight to be delivered, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
