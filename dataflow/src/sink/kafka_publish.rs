//! Publishing to Kafka: window reports to the windows topic and every cluster topic, late
//! and invalid records to the late topic. Each operator passes its input through once it is
//! durably published (flushed), so a probe after it tells what is safe to commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::format_rfc3339_millis;
use model::names::TIME_HEADER;
use model::report::{WindowMessage, WindowState};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde::Serialize;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::control::RunControl;
use crate::failure::Failure;
use crate::metrics::DataflowMetrics;
use crate::record::WindowUpdate;
use crate::source::kafka::LiveSide;

/// Where the results go.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Brokers.
    pub brokers: String,
    /// Every window report.
    pub windows_topic: String,
    /// Late and invalid records.
    pub late_topic: String,
    /// The cluster topics, each gets every window.
    pub cluster_topics: Vec<String>,
    /// Window size, for `seq`.
    pub window_millis: i64,
    /// Window size as written, named by the late records.
    pub size_label: String,
    /// Whether open updates go to the windows topic too (after the clusters).
    pub open_to_windows_topic: bool,
}

/// One record to publish.
struct Outgoing {
    topic: String,
    key: String,
    payload: Vec<u8>,
    /// The dataflow time, as a [`TIME_HEADER`].
    time: Option<i64>,
}

/// Notes the records (by their index in a round) the broker did not take.
#[derive(Default)]
struct Failures {
    failed: Mutex<Vec<usize>>,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        if let Err((error, _)) = result {
            self.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(index);
            self.first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| error.to_string());
        }
    }
}

/// Publishes records and waits until the broker has every one of them. What the broker
/// refuses is sent again on a new producer: an idempotent producer can be left in a state
/// the broker never accepts again (a broker that lost track of its sequence numbers across
/// a restart), and a new producer id heals that.
struct Publisher {
    brokers: String,
    producer: BaseProducer<Failures>,
    metrics: Arc<DataflowMetrics>,
}

impl Publisher {
    fn new(brokers: &str, metrics: Arc<DataflowMetrics>) -> Result<Self, Failure> {
        Ok(Publisher {
            brokers: brokers.to_owned(),
            producer: Self::create(brokers)?,
            metrics,
        })
    }

    fn create(brokers: &str) -> Result<BaseProducer<Failures>, Failure> {
        service::kafka::producer_config(brokers)
            .set("linger.ms", "0")
            .create_with_context(Failures::default())
            .map_err(|e| Failure::kafka("create the Kafka producer", e))
    }

    /// Publishes `records` (in order within each topic's partition); true once the broker
    /// acknowledged all of them, false if the run failed first.
    #[must_use]
    fn publish(&mut self, records: &[Outgoing], control: &RunControl) -> bool {
        let mut todo: Vec<usize> = (0..records.len()).collect();
        loop {
            let mut refused = Vec::new();
            for &index in &todo {
                let r = &records[index];
                if let Err(error) = send(&self.producer, r, index) {
                    self.producer
                        .context()
                        .first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(error.to_string());
                    refused.push(index);
                }
            }
            flush(&self.producer, control);
            let context = self.producer.context();
            let mut failed =
                std::mem::take(&mut *context.failed.lock().unwrap_or_else(|e| e.into_inner()));
            failed.extend(refused);
            if control.failure().is_some() {
                return false;
            }
            if failed.is_empty() {
                return true;
            }
            let error = context
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            tracing::warn!(
                failed = failed.len(),
                %error,
                "The broker refused records; they are sent again on a new producer."
            );
            std::thread::sleep(Duration::from_millis(500));
            match Self::create(&self.brokers) {
                Ok(fresh) => service::kafka::retire_producer(
                    std::mem::replace(&mut self.producer, fresh),
                    "the broker refused records",
                    &self.metrics.producer_replacements,
                ),
                Err(error) => tracing::warn!(%error, "Cannot create a new producer."),
            }
            failed.sort_unstable();
            todo = failed;
        }
    }
}

/// Sends `payload`, waiting while the local queue is full; any other refusal (a producer
/// in a fatal state, a record too large) is returned, for the record to go out again.
fn send(producer: &BaseProducer<Failures>, r: &Outgoing, index: usize) -> Result<(), KafkaError> {
    let time = r.time.map(|t| t.to_string());
    let mut record = BaseRecord::with_opaque_to(&r.topic, index)
        .key(&r.key)
        .payload(&r.payload);
    if let Some(time) = &time {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: TIME_HEADER,
            value: Some(time.as_bytes()),
        }));
    }
    let serve = || producer.poll(Duration::from_millis(1));
    service::kafka::send_waiting(|r| producer.send(r), serve, record).map_err(|(error, _)| error)
}

/// Waits until everything sent is acknowledged or failed (the broker may be away a while),
/// saying so every 5 s; a failure of the run ends the wait.
fn flush(producer: &BaseProducer<Failures>, control: &RunControl) {
    // In slices of a second, so that a failure (a stop that timed out) is seen at once.
    let mut waited = 0;
    while !service::kafka::wait_delivered(producer, Duration::from_secs(1)) {
        waited += 1;
        if waited % 5 == 0 {
            tracing::warn!(
                in_flight = producer.in_flight_count(),
                "Publishing is waiting for the broker."
            );
        }
        if control.failure().is_some() {
            return;
        }
    }
}

/// A pass-through operator that turns each record into an [`Outgoing`] one with `outgoing`,
/// publishes each batch (on a publisher made on first use), and only then passes the records
/// on.
fn publish_through<'scope, D: 'static>(
    stream: Stream<'scope, i64, Vec<D>>,
    name: &str,
    brokers: String,
    control: Arc<RunControl>,
    metrics: Arc<DataflowMetrics>,
    mut outgoing: impl FnMut(&D) -> Outgoing + 'static,
) -> Stream<'scope, i64, Vec<D>> {
    let mut publisher = None;
    stream.unary(Pipeline, name, move |_capability, _info| {
        move |input, output| {
            input.for_each_stamp(|time, batches| {
                let Some(capability) = time.retain_least(0) else {
                    return;
                };
                if publisher.is_none() {
                    match Publisher::new(&brokers, Arc::clone(&metrics)) {
                        Ok(p) => publisher = Some(p),
                        Err(message) => return control.fail(message),
                    }
                }
                let Some(publisher) = publisher.as_mut() else {
                    return;
                };
                let records: Vec<D> = batches.flat_map(|b| b.drain(..)).collect();
                let messages: Vec<Outgoing> = records.iter().map(&mut outgoing).collect();
                if publisher.publish(&messages, &control) {
                    output
                        .session(&capability)
                        .give_iterator(records.into_iter());
                }
            });
        }
    })
}

/// Publishes window updates.
pub trait PublishWindows<'scope> {
    /// Publishes each final and revision to every cluster topic and then the windows topic,
    /// and each open update to the cluster topics only (keyed by `window_start`, with `seq`,
    /// `state` and `revision`), flushes, and passes the updates on.
    fn publish_windows(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>>;
}

impl<'scope> PublishWindows<'scope> for Stream<'scope, i64, Vec<WindowUpdate>> {
    fn publish_windows(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>> {
        let scope = self.scope();
        self.unary(Pipeline, "PublishWindows", move |_capability, info| {
            // A thread publishes window after window, each flushed before the next, so a
            // later window is never visible before an earlier one and a restart can trust the
            // newest window it finds; the worker goes on reading meanwhile.
            let activator = scope.worker().sync_activator_for(info.address.to_vec());
            // How many batches the thread has published, in the order they were handed over.
            let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (to_thread, from_worker) = std::sync::mpsc::channel::<(i64, Vec<WindowUpdate>)>();
            let thread_published = Arc::clone(&published);
            std::thread::Builder::new()
                .name("publish-windows".into())
                .spawn(move || {
                    let mut publisher = match Publisher::new(&config.brokers, Arc::clone(&metrics))
                    {
                        Ok(p) => p,
                        Err(message) => return control.fail(message),
                    };
                    for (time, updates) in from_worker {
                        for update in &updates {
                            if !publish_window(
                                &mut publisher,
                                &config,
                                (time, update),
                                &control,
                                &metrics,
                            ) {
                                // The run failed: nothing later may look published.
                                return;
                            }
                        }
                        thread_published.fetch_add(1, std::sync::atomic::Ordering::Release);
                        let _ = activator.activate();
                    }
                })
                .expect("a thread for publishing windows");
            let mut handed = Handed::default();
            move |input, output| {
                input.for_each_stamp(|time, batches| {
                    let Some(capability) = time.retain_least(0) else {
                        return;
                    };
                    let reports: Vec<WindowUpdate> = batches.flat_map(|b| b.drain(..)).collect();
                    if to_thread
                        .send((*capability.time(), reports.clone()))
                        .is_ok()
                    {
                        handed.push((capability, reports));
                    }
                });
                let count = published.load(std::sync::atomic::Ordering::Acquire);
                for (capability, mut reports) in handed.published(count) {
                    output.session(&capability).give_container(&mut reports);
                }
            }
        })
    }
}

/// The batches handed to the publishing thread and not yet published, in the order handed.
/// Batches do not come in time order (an open update travels at its window's start, a
/// correction at its amendment's time, a final at the watermark), so what the thread has
/// published is counted, never dated: a later batch's earlier time would otherwise pass on
/// an earlier batch still in flight, and a commit and a kill then would lose it.
struct Handed<T> {
    /// How many batches were handed over.
    handed: u64,
    /// The batches not yet released, each with its place in the order.
    queue: std::collections::VecDeque<(u64, T)>,
}

impl<T> Default for Handed<T> {
    fn default() -> Self {
        Handed {
            handed: 0,
            queue: Default::default(),
        }
    }
}

impl<T> Handed<T> {
    fn push(&mut self, batch: T) {
        self.queue.push_back((self.handed, batch));
        self.handed += 1;
    }

    /// The batches among the first `count` handed over not released before, in order.
    fn published(&mut self, count: u64) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || {
            if self.queue.front().is_some_and(|(place, _)| *place < count) {
                self.queue.pop_front().map(|(_, batch)| batch)
            } else {
                None
            }
        })
    }
}

/// Publishes one update of a window made at dataflow time `time`, and waits for it: a final
/// or a revision (with its time in a [`TIME_HEADER`]) to every cluster topic and then the
/// windows topic (a restart trusts the newest window there, so it is on every
/// cluster topic too), an open update to the cluster topics only.
fn publish_window(
    publisher: &mut Publisher,
    config: &PublishConfig,
    (time, update): (i64, &WindowUpdate),
    control: &RunControl,
    metrics: &DataflowMetrics,
) -> bool {
    let report = &update.report;
    let key = format_rfc3339_millis(report.window_start);
    let message = WindowMessage {
        report: report.clone(),
        seq: report.window_start.div_euclid(config.window_millis),
        state: update.state,
        revision: update.revision,
    };
    let payload = serde_json::to_vec(&message).expect("a report serializes to JSON");
    let to = |topics: &[String]| -> Vec<Outgoing> {
        topics
            .iter()
            .map(|topic| Outgoing {
                topic: topic.clone(),
                key: key.clone(),
                payload: payload.clone(),
                time: (update.state != WindowState::Open).then_some(time),
            })
            .collect()
    };
    #[cfg(debug_assertions)]
    let cut = cut_for_tests(update.state, config.cluster_topics.len());
    #[cfg(not(debug_assertions))]
    let cut: Option<usize> = None;
    let clusters = &config.cluster_topics[..cut.unwrap_or(config.cluster_topics.len())];
    if !publisher.publish(&to(clusters), control) {
        return false;
    }
    if cut.is_some() {
        std::process::abort();
    }
    if update.state == WindowState::Open {
        metrics.open_updates.add(1);
        return !config.open_to_windows_topic
            || publisher.publish(&to(std::slice::from_ref(&config.windows_topic)), control);
    }
    if !publisher.publish(&to(std::slice::from_ref(&config.windows_topic)), control) {
        return false;
    }
    if update.state == WindowState::Revised {
        metrics.revisions.add(1);
        return true;
    }
    metrics.windows.add(1);
    let delay_ms = model::now_ms() - report.window_end;
    metrics
        .emit_delay_seconds
        .observe(delay_ms.max(0) as f64 / 1e3);
    true
}

/// Debug builds only, for the restart tests: `EMOSTREAM_ABORT_BEFORE_WINDOWS_TOPIC=final` (or
/// `revised`) ends the process as a kill would once the first such message is on the
/// cluster topics and before it is on the windows topic, the moment a restart completes;
/// `revised:1` once it is on the first cluster topic only. The clusters to publish to before
/// the end, if this message is the one.
#[cfg(debug_assertions)]
fn cut_for_tests(state: WindowState, clusters: usize) -> Option<usize> {
    let name = match state {
        WindowState::Open => "open",
        WindowState::Final => "final",
        WindowState::Revised => "revised",
    };
    let wanted = std::env::var("EMOSTREAM_ABORT_BEFORE_WINDOWS_TOPIC").ok()?;
    let (at, count) = match wanted.split_once(':') {
        Some((at, count)) => (at.to_owned(), count.parse().ok()?),
        None => (wanted, clusters),
    };
    (at == name).then_some(count.min(clusters))
}

/// Publishes a final or revised window message read back from a topic (`key`, `payload`,
/// its dataflow `time`) to each of `topics`, and waits until the broker has it.
pub(crate) fn republish(
    brokers: &str,
    topics: &[String],
    (key, payload, time): (&str, &[u8], i64),
) -> Result<(), Failure> {
    let metrics = Arc::new(DataflowMetrics::new(0, &[]));
    let mut publisher = Publisher::new(brokers, metrics)?;
    let records: Vec<Outgoing> = topics
        .iter()
        .map(|topic| Outgoing {
            topic: topic.clone(),
            key: key.to_owned(),
            payload: payload.to_vec(),
            time: Some(time),
        })
        .collect();
    // A control no one fails: the broker is waited for as long as it takes.
    let _ = publisher.publish(&records, &RunControl::default());
    Ok(())
}

#[derive(Serialize)]
struct LateMessage<'a> {
    /// The window size whose window the event missed (late records only: an invalid event
    /// is invalid for every size).
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<&'a str>,
    user_id: Option<&'a str>,
    emoji_type: Option<&'a str>,
    timestamp: Option<String>,
    reason: &'a str,
    raw: Option<&'a str>,
    partition: i32,
    offset: i64,
}

/// Publishes late and invalid records.
pub trait PublishSide<'scope> {
    /// Publishes each record to the late topic with its reason, flushes, and passes it on.
    fn publish_side(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<LiveSide>>;
}

impl<'scope> PublishSide<'scope> for Stream<'scope, i64, Vec<LiveSide>> {
    fn publish_side(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<LiveSide>> {
        let brokers = config.brokers.clone();
        publish_through(
            self,
            "PublishLate",
            brokers,
            control,
            metrics,
            move |record| {
                let message = match record {
                    LiveSide::Late {
                        event,
                        reason,
                        partition,
                        offset,
                    } => LateMessage {
                        window: Some(&config.size_label),
                        user_id: Some(&event.user),
                        emoji_type: Some(&event.emoji),
                        timestamp: Some(format_rfc3339_millis(event.timestamp)),
                        reason,
                        raw: None,
                        partition: *partition,
                        offset: *offset,
                    },
                    LiveSide::Invalid {
                        reason,
                        raw,
                        partition,
                        offset,
                    } => LateMessage {
                        window: None,
                        user_id: None,
                        emoji_type: None,
                        timestamp: None,
                        reason,
                        raw: Some(raw),
                        partition: *partition,
                        offset: *offset,
                    },
                };
                let payload =
                    serde_json::to_vec(&message).expect("a late record serializes to JSON");
                Outgoing {
                    time: None,
                    topic: config.late_topic.clone(),
                    key: match message.window {
                        Some(size) => format!("{}-{}-{size}", message.partition, message.offset),
                        None => format!("{}-{}", message.partition, message.offset),
                    },
                    payload,
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Handed;

    #[test]
    fn a_batch_is_released_only_once_the_thread_published_it_whatever_its_time() {
        let mut handed = Handed::default();
        // An open update of a later window, then the final of an earlier one.
        handed.push((4_000_i64, "open 4s"));
        handed.push((2_000_i64, "final 2s"));
        assert_eq!(handed.published(0).count(), 0);
        // The thread published the first batch only: the final's earlier time must not
        // pass it on as published.
        assert_eq!(
            handed.published(1).collect::<Vec<_>>(),
            [(4_000, "open 4s")]
        );
        assert_eq!(handed.published(1).count(), 0);
        handed.push((6_000, "open 6s"));
        assert_eq!(
            handed.published(3).collect::<Vec<_>>(),
            [(2_000, "final 2s"), (6_000, "open 6s")]
        );
    }
}
