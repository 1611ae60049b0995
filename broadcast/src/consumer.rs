//! Topics into the hub: the cluster topic (first the last windows already in it, so the
//! first client gets a snapshot at once and a restarted broadcaster's clients can resume,
//! then every new one), and optionally the windows topic of a longer size (its last
//! windows, then every new one) for the timeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use model::report::WindowMessage;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::BroadcastError;
use crate::fanout::Fanout;
use crate::frame::WindowFrame;
use crate::metrics::BroadcastMetrics;

/// Windows read back from the cluster topic on start: the ring of a restarted broadcaster
/// holds what its clients may resume (a minute of 2 s windows, with room to spare).
const RING_BACKFILL: i64 = 64;

/// Reads the cluster topic `topic` into the fan-out on a thread of its own until `stop` is set,
/// starting with its last windows (the snapshot, and the ring for resuming clients).
pub fn spawn_consumer(
    brokers: &str,
    topic: &str,
    fanout: Arc<Fanout>,
    metrics: Arc<BroadcastMetrics>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BroadcastError> {
    let (consumer, spans) = assigned(brokers, topic, RING_BACKFILL)?;
    let publish = move |window: &WindowMessage, at: Option<i64>| {
        if fanout.publish(WindowFrame::new(window, at)) {
            metrics.windows_received.add(1);
        }
    };
    // The backfill, before any client can connect: as live windows, the burst would put
    // every client windows behind at once.
    let positions = std::cell::RefCell::new(spans);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let caught_up = || {
        positions.borrow().iter().all(|&(_, at, end)| at >= end)
            || std::time::Instant::now() >= deadline
    };
    let advance = |partition: i32, offset: i64| {
        if let Some(span) = positions.borrow_mut().iter_mut().find(|s| s.0 == partition) {
            span.1 = offset + 1;
        }
    };
    let mut publish = read(&consumer, topic, caught_up, advance, publish);
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name(format!("consume-{topic}"))
        .spawn(move || {
            let stopped = || stop.load(Ordering::Relaxed);
            let _ = read(&consumer, &topic, stopped, |_, _| {}, &mut publish);
        })
        .map_err(|source| BroadcastError::Thread {
            name: "consumer",
            source,
        })
}

/// Reads the windows topic of a longer size into the fan-out's summaries on a thread of its own
/// until `stop` is set, starting with the last windows of every partition. The topic is the
/// dataflow's: until it exists, the thread waits for it.
pub fn spawn_summary_consumer(
    brokers: &str,
    topic: &str,
    fanout: Arc<Fanout>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BroadcastError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    std::thread::Builder::new()
        .name(format!("consume-{topic}"))
        .spawn(move || {
            let consumer = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match assigned(&brokers, &topic, 60) {
                    Ok((consumer, _)) => break consumer,
                    Err(error) => {
                        tracing::debug!(%error, %topic, "Waiting for the summary topic.");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            let publish = |window: &WindowMessage, at: Option<i64>| {
                fanout.publish_summary(WindowFrame::summary(window, at));
            };
            let stopped = || stop.load(Ordering::Relaxed);
            let _ = read(&consumer, &topic, stopped, |_, _| {}, publish);
        })
        .map_err(|source| BroadcastError::Thread {
            name: "summary consumer",
            source,
        })
}

/// A partition and the offsets a consumer starts at and the partition ended at.
type Span = (i32, i64, i64);

/// A consumer of every partition of `topic`, each from `back` messages before its end; with
/// (partition, start, end) of each.
fn assigned(
    brokers: &str,
    topic: &str,
    back: i64,
) -> Result<(BaseConsumer, Vec<Span>), BroadcastError> {
    let consumer: BaseConsumer = service::kafka::client_config(brokers)
        .set("group.id", format!("emostream-broadcast-{topic}"))
        .set("enable.auto.commit", "false")
        // A start offset the broker no longer has: the ring takes the oldest retained ones
        // and drops any it already holds.
        .set("auto.offset.reset", "earliest")
        // A broker that holds an empty fetch for its whole wait delays every window.
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| BroadcastError::kafka("create the Kafka consumer", e))?;
    let partitions = service::kafka::partitions_of(&consumer, topic)
        .map_err(|e| BroadcastError::kafka(format!("read metadata of {topic}"), e))?;
    if partitions.is_empty() {
        return Err(BroadcastError::NoPartitions(topic.to_owned()));
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| BroadcastError::kafka(format!("read offsets of {topic}"), e))?;
        // An explicit offset, not `End`: `End` is resolved later, and a window written in
        // between would be missed.
        let start = (high - back).max(low);
        assignment
            .add_partition_offset(topic, p, Offset::Offset(start))
            .map_err(|e| BroadcastError::kafka(format!("assign {topic}"), e))?;
        ends.push((p, start, high));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| BroadcastError::kafka(format!("assign {topic}"), e))?;
    Ok((consumer, ends))
}

/// Until `done`, tells `seen` the partition and offset of every record of `topic` and hands
/// each window message in it (with its Kafka timestamp) to `take`; gives `take` back.
fn read<T: FnMut(&WindowMessage, Option<i64>)>(
    consumer: &BaseConsumer,
    topic: &str,
    mut done: impl FnMut() -> bool,
    mut seen: impl FnMut(i32, i64),
    mut take: T,
) -> T {
    while !done() {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, %topic, "Kafka consumer error.");
                continue;
            }
        };
        seen(message.partition(), message.offset());
        match message
            .payload()
            .map(serde_json::from_slice::<WindowMessage>)
        {
            Some(Ok(window)) => take(&window, message.timestamp().to_millis()),
            Some(Err(error)) => {
                tracing::warn!(%error, %topic, offset = message.offset(), "Not a window report; skipped.")
            }
            None => {}
        }
    }
    take
}
