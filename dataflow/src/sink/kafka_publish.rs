//! Publishing to Kafka: window reports to the windows topic and every cluster topic, late
//! and invalid records to the late topic. Each operator passes its input through once it is
//! durably published (flushed), so a probe after it tells what is safe to commit.

use std::sync::Arc;
use std::time::Duration;

use model::report::WindowMessage;
use model::{WindowReport, format_rfc3339_millis};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::control::RunControl;
use crate::metrics::DataflowMetrics;
use crate::source::kafka_source::LiveSide;

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
}

fn producer(brokers: &str) -> Result<BaseProducer, String> {
    service::kafka::producer_config(brokers)
        .set("linger.ms", "0")
        .create()
        .map_err(|e| format!("cannot create the Kafka producer: {e}"))
}

/// Sends `record` and retries while the local queue is full.
fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((error, back)) => {
                tracing::warn!(%error, %topic, "Cannot queue a record; retrying.");
                producer.poll(Duration::from_millis(100));
                record = back;
            }
        }
    }
}

/// Waits until everything sent is acknowledged (the broker may be away a while). Checks in
/// short sleeps: the client's own flush sleeps up to 100 ms between checks, which would cap
/// publishing at ten windows a second when catching up, and polling in a loop would spin.
fn flush(producer: &BaseProducer, control: &RunControl) {
    let mut waited = std::time::Instant::now();
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
        if waited.elapsed() > Duration::from_secs(5) {
            tracing::warn!(
                in_flight = producer.in_flight_count(),
                "Publishing is waiting for the broker."
            );
            if control.failure().is_some() {
                return;
            }
            waited = std::time::Instant::now();
        }
    }
}

/// A pass-through operator that publishes each record with `publish` (on a producer made on
/// first use), flushes at the end of each batch, and only then passes the records on.
fn publish_through<'scope, D: 'static>(
    stream: Stream<'scope, i64, Vec<D>>,
    name: &str,
    brokers: String,
    control: Arc<RunControl>,
    mut publish: impl FnMut(&BaseProducer, &D) + 'static,
) -> Stream<'scope, i64, Vec<D>> {
    let mut producer = None;
    stream.unary(Pipeline, name, move |_capability, _info| {
        move |input, output| {
            input.for_each_stamp(|time, batches| {
                let Some(capability) = time.retain_least(0) else {
                    return;
                };
                if producer.is_none() {
                    match self::producer(&brokers) {
                        Ok(p) => producer = Some(p),
                        Err(message) => return control.fail(message),
                    }
                }
                let Some(producer) = producer.as_ref() else {
                    return;
                };
                let mut session = output.session(&capability);
                for record in batches.flat_map(|b| b.drain(..)) {
                    publish(producer, &record);
                    session.give(record);
                }
                flush(producer, &control);
            });
        }
    })
}

/// Publishes window reports.
pub trait PublishWindows<'scope> {
    /// Publishes each report to the windows topic and every cluster topic (keyed by
    /// `window_start`, with `seq`), flushes, and passes the reports on.
    fn publish_windows(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<WindowReport>>;
}

impl<'scope> PublishWindows<'scope> for Stream<'scope, i64, Vec<WindowReport>> {
    fn publish_windows(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
        metrics: Arc<DataflowMetrics>,
    ) -> Stream<'scope, i64, Vec<WindowReport>> {
        let scope = self.scope();
        self.unary(Pipeline, "PublishWindows", move |_capability, info| {
            // A thread publishes window after window, each flushed before the next, so a
            // later window is never visible before an earlier one and a restart can trust the
            // newest window it finds; the worker goes on reading meanwhile.
            let activator = scope.worker().sync_activator_for(info.address.to_vec());
            let confirmed = Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN));
            let (to_thread, from_worker) = std::sync::mpsc::channel::<(i64, Vec<WindowReport>)>();
            let thread_confirmed = Arc::clone(&confirmed);
            std::thread::Builder::new()
                .name("publish-windows".into())
                .spawn(move || {
                    let producer = match producer(&config.brokers) {
                        Ok(p) => p,
                        Err(message) => return control.fail(message),
                    };
                    for (time, reports) in from_worker {
                        for report in &reports {
                            publish_window(&producer, &config, report, &control, &metrics);
                        }
                        thread_confirmed.store(time, std::sync::atomic::Ordering::Release);
                        let _ = activator.activate();
                    }
                })
                .expect("a thread for publishing windows");
            let mut pending: std::collections::VecDeque<(i64, Capability<i64>, Vec<WindowReport>)> =
                Default::default();
            move |input, output| {
                input.for_each_stamp(|time, batches| {
                    let Some(capability) = time.retain_least(0) else {
                        return;
                    };
                    let reports: Vec<WindowReport> = batches.flat_map(|b| b.drain(..)).collect();
                    let at = *capability.time();
                    if to_thread.send((at, reports.clone())).is_ok() {
                        pending.push_back((at, capability, reports));
                    }
                });
                let done = confirmed.load(std::sync::atomic::Ordering::Acquire);
                while pending.front().is_some_and(|(at, _, _)| *at <= done) {
                    if let Some((_, capability, mut reports)) = pending.pop_front() {
                        output.session(&capability).give_container(&mut reports);
                    }
                }
            }
        })
    }
}

/// Publishes one window to the windows topic and every cluster topic, and waits for it.
fn publish_window(
    producer: &BaseProducer,
    config: &PublishConfig,
    report: &WindowReport,
    control: &RunControl,
    metrics: &DataflowMetrics,
) {
    let key = format_rfc3339_millis(report.window_start);
    let message = WindowMessage {
        seq: report.window_start.div_euclid(config.window_millis),
        report: report.clone(),
    };
    let payload = serde_json::to_vec(&message).expect("a report serializes to JSON");
    send(producer, &config.windows_topic, &key, &payload);
    for topic in &config.cluster_topics {
        send(producer, topic, &key, &payload);
    }
    flush(producer, control);
    metrics.windows.add(1);
    let delay_ms = model::now_ms() - report.window_end;
    metrics
        .emit_delay_seconds
        .observe(delay_ms.max(0) as f64 / 1e3);
}

#[derive(Serialize)]
struct LateMessage<'a> {
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
    ) -> Stream<'scope, i64, Vec<LiveSide>>;
}

impl<'scope> PublishSide<'scope> for Stream<'scope, i64, Vec<LiveSide>> {
    fn publish_side(
        self,
        config: PublishConfig,
        control: Arc<RunControl>,
    ) -> Stream<'scope, i64, Vec<LiveSide>> {
        let brokers = config.brokers.clone();
        publish_through(
            self,
            "PublishLate",
            brokers,
            control,
            move |producer, record| {
                let message = match record {
                    LiveSide::Late {
                        event,
                        reason,
                        partition,
                        offset,
                    } => LateMessage {
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
                let key = format!("{}-{}", message.partition, message.offset);
                send(producer, &config.late_topic, &key, &payload);
            },
        )
    }
}
