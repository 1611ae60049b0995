//! `Lookup`: which of the events the broker may have stored, though their deliveries failed,
//! are in the events topic: each partition read by its record ids from a little before the
//! earliest of them was taken to its end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::producer::{Unsent, id_of};

/// How far before an event was taken its partition is read from (a broker that stamps records
/// itself stamps them later, never earlier).
const MARGIN_MS: i64 = 1000;

/// Reads the events topic for the ids of events the broker may have stored.
pub(crate) struct Lookup {
    brokers: String,
    topic: String,
    consumer: Option<BaseConsumer<Quiet>>,
}

/// A client context that leaves errors to the lookup (the end of a partition is news, a
/// broker away is why a lookup fails and is tried again).
struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, %reason, "Kafka client error (lookup).");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

impl Lookup {
    /// A lookup in `topic`; its consumer is made at the first use.
    pub(crate) fn new(brokers: &str, topic: &str) -> Self {
        Lookup {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            consumer: None,
        }
    }

    /// The ids of those of `events` that are in the topic, with their partition and offset,
    /// found within `limit`.
    pub(crate) fn stored(
        &mut self,
        events: &[Unsent],
        limit: Duration,
    ) -> Result<HashMap<Vec<u8>, (i32, i64)>, KafkaError> {
        let consumer = match self.consumer.take() {
            Some(consumer) => consumer,
            None => service::kafka::client_config(&self.brokers)
                .set("group.id", format!("{}-lookup", self.topic))
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true")
                .set("fetch.wait.max.ms", "10")
                .create_with_context(Quiet)?,
        };
        let found = self.read(&consumer, events, Instant::now() + limit);
        // A consumer that failed (the broker away) is made anew next time.
        if found.is_ok() && consumer.unassign().is_ok() {
            self.consumer = Some(consumer);
        }
        found
    }

    fn read(
        &self,
        consumer: &BaseConsumer<Quiet>,
        events: &[Unsent],
        deadline: Instant,
    ) -> Result<HashMap<Vec<u8>, (i32, i64)>, KafkaError> {
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        for event in events {
            if let Some(p) = event.maybe_stored {
                let at = event.taken_at().unwrap_or(0) - MARGIN_MS;
                let earliest = from.entry(p).or_insert(at);
                *earliest = (*earliest).min(at);
            }
        }
        let wanted: HashSet<&[u8]> = events.iter().map(|e| e.id.as_slice()).collect();
        let mut times = TopicPartitionList::new();
        for (&p, &at) in &from {
            times.add_partition_offset(&self.topic, p, Offset::Offset(at))?;
        }
        let offsets = consumer.offsets_for_times(
            times,
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(10)),
        )?;
        let mut assignment = TopicPartitionList::new();
        let mut reading = HashSet::new();
        for element in offsets.elements() {
            // No offset: nothing was written at or after that time.
            if let Offset::Offset(offset) = element.offset() {
                assignment.add_partition_offset(
                    &self.topic,
                    element.partition(),
                    Offset::Offset(offset),
                )?;
                reading.insert(element.partition());
            }
        }
        let mut found = HashMap::new();
        if reading.is_empty() {
            return Ok(found);
        }
        consumer.assign(&assignment)?;
        while !reading.is_empty() {
            if Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let id = id_of(message.payload().unwrap_or_default());
                    if wanted.contains(id.as_slice()) {
                        found.insert(id, (message.partition(), message.offset()));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    reading.remove(&p);
                }
                // The client's news of a broker away or back: it reconnects by itself, and
                // the deadline bounds the wait.
                Some(Err(error)) => tracing::debug!(%error, "Looking for undelivered events."),
                None => {}
            }
        }
        Ok(found)
    }
}
