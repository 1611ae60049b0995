//! Kafka helpers for the live tests: the broker, unique topics, producing and reading.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use model::report::WindowMessage;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker the tests run against.
pub fn brokers() -> String {
    std::env::var("EMOSTREAM_BROKERS")
        .expect("EMOSTREAM_BROKERS must name a Kafka broker: run the tests with `make test`, which starts one")
}

/// Client settings (TLS, SASL) the tests' own clients of a broker list use, by broker list.
static SETTINGS: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The tests' own clients of `brokers` use `settings` from now on (a broker that requires a
/// login or TLS); other broker lists are not affected.
pub fn use_settings_for(brokers: &str, settings: &[(&str, &str)]) {
    let settings = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    SETTINGS
        .lock()
        .unwrap()
        .insert(brokers.to_owned(), settings);
}

/// A client configuration for `brokers`, with the settings given for them.
pub fn client_of(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in SETTINGS.lock().unwrap().get(brokers).into_iter().flatten() {
        config.set(key, value);
    }
    config
}

/// A name no other test uses.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The wall clock, UTC milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The topics and group of one test's pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub events: String,
    pub windows: String,
    pub late: String,
    pub cluster_prefix: String,
    pub clusters: u32,
    pub group: String,
}

impl Pipeline {
    pub fn new(name: &str) -> Self {
        let base = unique(name);
        Pipeline {
            events: format!("{base}-events"),
            windows: format!("{base}-windows"),
            late: format!("{base}-late"),
            cluster_prefix: format!("{base}-cluster"),
            clusters: 2,
            group: format!("{base}-group"),
        }
    }

    /// The same input, other outputs and group: a second dataflow over the same events.
    pub fn sibling(&self, name: &str) -> Self {
        Pipeline {
            events: self.events.clone(),
            ..Pipeline::new(name)
        }
    }

    pub fn cluster_topics(&self) -> Vec<String> {
        (1..=self.clusters)
            .map(|n| format!("{}{n}", self.cluster_prefix))
            .collect()
    }

    /// Arguments naming these topics for `emostream dataflow`.
    pub fn dataflow_args(&self) -> Vec<String> {
        vec![
            "--events-topic".into(),
            self.events.clone(),
            "--windows-topic".into(),
            self.windows.clone(),
            "--late-topic".into(),
            self.late.clone(),
            "--cluster-prefix".into(),
            self.cluster_prefix.clone(),
            "--clusters".into(),
            self.clusters.to_string(),
            "--group".into(),
            self.group.clone(),
        ]
    }
}

/// A producer for writing events straight to a topic.
pub fn producer() -> BaseProducer {
    client_of(&brokers())
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Writes JSON events `(user, emoji, timestamp ms)` to `topic`, keyed by user, and flushes.
pub fn produce_events(producer: &BaseProducer, topic: &str, events: &[(String, String, i64)]) {
    produce_to(producer, topic, events, None);
}

/// Writes JSON events `(user, emoji, timestamp ms)` to `topic`, keyed by user, the `i`th to
/// partition `i % partitions` if given (else where the key goes), and flushes.
pub fn produce_to(
    producer: &BaseProducer,
    topic: &str,
    events: &[(String, String, i64)],
    partitions: Option<i32>,
) {
    for (i, (user, emoji, ts)) in events.iter().enumerate() {
        let payload =
            serde_json::json!({"user_id": user, "emoji_type": emoji, "timestamp": ts}).to_string();
        let mut record = BaseRecord::to(topic)
            .key(user.as_str())
            .payload(payload.as_str());
        if let Some(partitions) = partitions {
            record = record.partition(i as i32 % partitions);
        }
        if let Err((error, _)) = service::kafka::send_waiting(
            |r| producer.send(r),
            || producer.poll(Duration::from_millis(1)),
            record,
        ) {
            panic!("cannot produce to {topic}: {error}");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Reads `topic` from the beginning until `done` holds for what was read, or `timeout`.
pub fn read_until(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    read_records_until(topic, timeout, |records| {
        done(&records.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>())
    })
    .into_iter()
    .map(|(_, p)| p)
    .collect()
}

/// Like [`read_until`], with each record's timestamp (UTC ms, when the producer made it).
pub fn read_records_until(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[(i64, Vec<u8>)]) -> bool,
) -> Vec<(i64, Vec<u8>)> {
    let pairs = |records: &[Record]| -> Vec<(i64, Vec<u8>)> {
        records
            .iter()
            .map(|r| (r.timestamp, r.payload.clone()))
            .collect()
    };
    pairs(&read_from(&brokers(), topic, timeout, |r| done(&pairs(r))))
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// UTC ms, when the producer made it.
    pub timestamp: i64,
    pub payload: Vec<u8>,
}

/// Reads `topic` of `brokers` from the beginning until `done` holds for what was read (and
/// on to the ends of the partitions as they were then), or `timeout`.
// Long: reads partitions to their ends with the timeouts a test needs, in one loop.
pub fn read_from(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = client_of(brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    // The topic may not exist yet: wait for its metadata.
    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        let ids: Vec<i32> = metadata
            .map(|m| {
                m.topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() || Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut payloads = Vec::new();
    let mut ends: Option<Vec<(i32, i64)>> = None;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            payloads.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
            continue;
        }
        // Partitions are read in no particular order: once `done` holds, read on to the
        // end of every partition as it was then, so nothing published before is missed.
        if ends.is_none() && done(&payloads) {
            ends = Some(partition_ends(&consumer, topic));
        }
        if let Some(ends) = &ends {
            let position = consumer.position().expect("position");
            let caught_up = ends.iter().all(|&(p, end)| {
                end == 0
                    || position
                        .find_partition(topic, p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
            });
            if caught_up {
                break;
            }
        }
    }
    payloads
}

fn partition_ends(consumer: &BaseConsumer, topic: &str) -> Vec<(i32, i64)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .map(|p| {
            (
                p,
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .expect("watermarks")
                    .1,
            )
        })
        .collect()
}

/// The closed windows (final or revised; open updates left out) by window start, the
/// highest revision of each, checking that a revision published twice carries the same
/// content.
pub fn windows_by_start(payloads: &[Vec<u8>]) -> BTreeMap<i64, WindowMessage> {
    let mut windows: BTreeMap<i64, WindowMessage> = BTreeMap::new();
    for p in payloads {
        let m: WindowMessage = serde_json::from_slice(p).expect("a window message");
        if m.state == model::report::WindowState::Open {
            continue;
        }
        match windows.get(&m.report.window_start) {
            Some(held) if held.revision > m.revision => {}
            Some(held) if held.revision == m.revision => assert_eq!(
                *held, m,
                "a window published twice carries the same content"
            ),
            _ => {
                windows.insert(m.report.window_start, m);
            }
        }
    }
    windows
}

/// Creates `topic` with `partitions` partitions, if missing (on a thread of its own, so it
/// may be called from an async test too).
pub fn create_topic(topic: &str, partitions: i32) {
    let spec = service::kafka::TopicSpec {
        name: topic.to_owned(),
        partitions,
    };
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(service::kafka::ensure_topics(&brokers(), &[spec], 1))
            .expect("create the topic");
    })
    .join()
    .unwrap();
}

/// Gives `topic` `partitions` partitions in all; the broker's refusal as text (tansu cannot
/// grow a topic).
pub fn grow_topic(topic: &str, partitions: i32) -> Result<(), String> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(service::kafka::grow_topic(&brokers(), &topic, partitions))
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

/// The event a record of the events topic holds: `(user, emoji, timestamp ms)`.
pub fn event_of(record: &Record) -> (String, String, i64) {
    let e: model::EmojiEvent = serde_json::from_slice(&record.payload).unwrap();
    (e.user_id, e.emoji_type, e.timestamp)
}

/// How many records of the events topic each user has.
pub fn count_by_user(records: &[Record]) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in records {
        *counts.entry(event_of(r).0).or_default() += 1;
    }
    counts
}

/// The `(partition, offset)` of every event the late topic `late` of `brokers` reports.
pub fn late_offsets(brokers: &str, late: &str) -> std::collections::BTreeSet<(i32, i64)> {
    read_from(brokers, late, Duration::from_secs(5), |_| true)
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            (
                v["partition"].as_i64().unwrap() as i32,
                v["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The windows topic `windows` of `brokers` (the newest final or revision of each window),
/// read until its windows count `events` events, at most 60 s.
pub fn windows_counting(brokers: &str, windows: &str, events: u64) -> BTreeMap<i64, WindowMessage> {
    let of = |records: &[Record]| {
        windows_by_start(
            &records
                .iter()
                .map(|r| r.payload.clone())
                .collect::<Vec<_>>(),
        )
    };
    let read = read_from(brokers, windows, Duration::from_secs(60), |r| {
        of(r).values().map(|w| w.report.events).sum::<u64>() >= events
    });
    of(&read)
}
