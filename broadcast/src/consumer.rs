//! The cluster topic into the hub: first the newest window already in the topic (so the
//! first client gets a snapshot at once), then every new one.

use std::sync::Arc;
use std::time::Duration;

use model::report::WindowMessage;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::frame::WindowFrame;
use crate::hub::Hub;
use crate::metrics::BroadcastMetrics;

/// Reads `topic` into `hub` on a thread of its own until `stop` is set.
pub fn spawn_consumer(
    brokers: &str,
    topic: &str,
    hub: Arc<Hub>,
    metrics: Arc<BroadcastMetrics>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let consumer: BaseConsumer = service::kafka::client_config(brokers)
        .set("group.id", format!("emostream-broadcast-{topic}"))
        .set("enable.auto.commit", "false")
        // A start offset the broker no longer has: the ring takes the oldest retained ones
        // and drops any it already holds.
        .set("auto.offset.reset", "earliest")
        // A broker that holds an empty fetch for its whole wait delays every window.
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("cannot read metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    // Start one message before the end of every partition: the newest windows already there.
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| format!("cannot read offsets of {topic}: {e}"))?;
        // An explicit offset, not `End`: `End` is resolved later, and a window written in
        // between would be missed.
        let start = Offset::Offset(if high > low { high - 1 } else { high });
        assignment
            .add_partition_offset(topic, p, start)
            .map_err(|e| format!("cannot assign {topic}: {e}"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot assign {topic}: {e}"))?;
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name(format!("consume-{topic}"))
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
                let message = match result {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, %topic, "Kafka consumer error.");
                        continue;
                    }
                };
                let parsed = message.payload().map(serde_json::from_slice::<WindowMessage>);
                match parsed {
                    Some(Ok(window)) => {
                        let frame = WindowFrame::new(&window, message.timestamp().to_millis());
                        if hub.publish(frame) {
                            metrics.windows_received.add(1);
                        }
                    }
                    Some(Err(error)) => tracing::warn!(%error, %topic, offset = message.offset(), "Not a window report; skipped."),
                    None => {}
                }
            }
        })
        .map_err(|e| format!("cannot start the consumer thread: {e}"))
}
