//! The live dataflow: the events topic in, window reports and late records out, with
//! offsets committed only behind what is published, so a restart loses and doubles nothing.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use model::emojis::EmojiSet;
use model::names::TIME_HEADER;
use model::report::{WindowMessage, WindowState};
use model::{ReportConfig, WindowSize, WindowSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use service::kafka::{TopicSpec, ensure_topics};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::cluster::ClusterConfig;
use crate::control::RunControl;
use crate::failure::Failure;
use crate::metrics::DataflowMetrics;
use crate::operators::{CountConfig, CountWindows, Engine};
use crate::sink::kafka_publish::{PublishConfig, PublishSide, PublishWindows, republish};
use crate::source::kafka::{
    Checkpoints, KafkaSourceConfig, ReadKafka, StartFrom, read_checkpoints,
};

/// How the live dataflow runs.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Brokers.
    pub brokers: String,
    /// Workers and processes.
    pub cluster: ClusterConfig,
    /// Input topic.
    pub events_topic: String,
    /// Every window report.
    pub windows_topic: String,
    /// Late and invalid events.
    pub late_topic: String,
    /// Number of cluster topics (`cluster1` ... `clusterN`).
    pub clusters: u32,
    /// Prefix of the cluster topics.
    pub cluster_prefix: String,
    /// Partitions of topics created here.
    pub partitions: i32,
    /// Replication factor of topics created here.
    pub replication: i32,
    /// Consumer group for committed offsets.
    pub group: String,
    /// The window sizes and their lateness. The first size is the live one, published to
    /// the windows topic and every cluster; more sizes are computed from the same topic,
    /// each exactly as a dataflow with that size alone (its own consumer group,
    /// `GROUP-<size>`), each to its own windows topic. With more sizes, every windows topic
    /// has the size in its name: `emoji-windows-2s`.
    pub windows: WindowSpec,
    /// A partition without data this long stops holding windows back.
    pub idle_timeout: Duration,
    /// Events further ahead of the wall clock are invalid.
    pub max_future: Duration,
    /// Events of other emojis are invalid (a producer that bypasses the ingest).
    pub emojis: Arc<EmojiSet>,
    /// Where to start reading.
    pub start: StartFrom,
    /// Scaling and filtering of reports.
    pub report: ReportConfig,
    /// Which implementation counts.
    pub engine: Engine,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Messages per partition read again before the committed offsets on a restart.
    pub restart_rewind: i64,
    /// How often the live size's open windows that changed are published to the clusters
    /// (`None`: finals only). The timely engine makes them; the differential one does not.
    pub updates: Option<Duration>,
    /// Whether the open updates go to the windows topic too (finals only otherwise).
    pub updates_to_windows_topic: bool,
}

impl LiveConfig {
    /// The defaults, reading from `brokers`.
    pub fn new(brokers: String) -> Self {
        LiveConfig {
            brokers,
            cluster: ClusterConfig::default(),
            events_topic: model::names::EVENTS_TOPIC.to_owned(),
            windows_topic: model::names::WINDOWS_TOPIC.to_owned(),
            late_topic: model::names::LATE_TOPIC.to_owned(),
            clusters: 3,
            cluster_prefix: model::names::CLUSTER_TOPIC_PREFIX.to_owned(),
            partitions: 4,
            replication: 1,
            group: "emostream-dataflow".to_owned(),
            windows: WindowSpec::default(),
            idle_timeout: Duration::from_secs(4),
            max_future: Duration::from_secs(600),
            emojis: Arc::new(EmojiSet::default()),
            start: StartFrom::Committed,
            report: ReportConfig::default(),
            engine: Engine::Timely,
            metrics_listen: None,
            restart_rewind: 10_000,
            updates: Some(Duration::from_millis(250)),
            updates_to_windows_topic: false,
        }
    }

    /// The topic the windows of `size` go to.
    pub fn windows_topic_for(&self, size: WindowSize) -> String {
        if self.windows.is_several() {
            model::names::sized_topic(&self.windows_topic, &size.label())
        } else {
            self.windows_topic.clone()
        }
    }

    /// The consumer group of the dataflow of `size`.
    fn group_for(&self, size: WindowSize) -> String {
        if size == self.windows.live() {
            self.group.clone()
        } else {
            model::names::sized_topic(&self.group, &size.label())
        }
    }

    /// Where the dataflow of `size` keeps its checkpoints: per partition of the events topic,
    /// the offset to resume from and the state that decides the events read again (see
    /// `source::kafka::checkpoint`). Commit metadata would do, but brokers are not all
    /// keeping it; a topic is kept by every one.
    pub fn checkpoint_topic_for(&self, size: WindowSize) -> String {
        format!("{}-checkpoints", self.group_for(size))
    }

    /// The cluster topics.
    pub fn cluster_topics(&self) -> Vec<String> {
        (1..=self.clusters)
            .map(|n| model::names::cluster_topic(&self.cluster_prefix, n))
            .collect()
    }
}

/// Why the live dataflow failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Topics could not be set up.
    #[error(transparent)]
    Topics(#[from] service::kafka::TopicError),
    /// The broker could not tell what an earlier run published.
    #[error("cannot {action} {topic}")]
    Inspect {
        /// What was being done.
        action: &'static str,
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// The newest windows of a topic did not arrive in time.
    #[error("cannot read the last windows of {0} within 30 s")]
    LastWindows(String),
    /// The admin server cannot listen.
    #[error(transparent)]
    Admin(#[from] service::admin::ListenError),
    /// The workers could not be started (a process of the cluster is unreachable).
    #[error("cannot start the workers: {0}")]
    Workers(String),
    /// A worker panicked.
    #[error("a worker failed: {0}")]
    Panicked(String),
    /// The dataflow stopped without being asked to.
    #[error("the dataflow stopped by itself")]
    StoppedByItself,
    /// A worker met a failure it cannot go on past.
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl LiveError {
    /// Whether starting again may help: the broker was away or busy, not a wrong
    /// configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            LiveError::Topics(e) => e.is_retryable(),
            LiveError::Inspect { source, .. } => service::kafka::is_retryable(source),
            LiveError::LastWindows(_) | LiveError::Workers(_) => true,
            LiveError::Failed(f) => f.is_retryable(),
            LiveError::Admin(_) | LiveError::Panicked(_) | LiveError::StoppedByItself => false,
        }
    }
}

/// What the dataflow learns from the broker before it starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Partitions of the events topic.
    pub partitions: i32,
    /// For each window size (in the order of [`WindowSpec::sizes`]): windows starting before this
    /// were published by an earlier run.
    pub published_before: Vec<i64>,
    /// For each window size: per window recently published final or revised, the latest
    /// dataflow time of its messages.
    pub published_times: Vec<Arc<BTreeMap<i64, i64>>>,
    /// For each window size: the last checkpoint of each partition, if any.
    pub checkpoints: Vec<Checkpoints>,
}

/// Creates missing topics, and finds the partition count and the last published window.
pub async fn prepare(config: &LiveConfig) -> Result<Prepared, LiveError> {
    let spec = |name: &String, partitions| TopicSpec {
        name: name.clone(),
        partitions,
    };
    let mut specs = vec![
        spec(&config.events_topic, config.partitions),
        spec(&config.late_topic, config.partitions),
    ];
    specs.extend(
        config
            .windows
            .sizes()
            .iter()
            .map(|&size| spec(&config.windows_topic_for(size), config.partitions)),
    );
    // A cluster topic has one partition: its broadcasters read every window, in order.
    specs.extend(config.cluster_topics().iter().map(|t| spec(t, 1)));
    ensure_topics(&config.brokers, &specs, config.replication).await?;
    // A checkpoint topic has a partition per partition of the events topic (which may have
    // been made elsewhere, with another count).
    let events_partitions = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || -> Result<i32, LiveError> {
            let consumer: BaseConsumer = service::kafka::client_config(&config.brokers)
                .create()
                .map_err(|e| Failure::kafka("create a Kafka consumer", e))?;
            Ok(partitions_of(&consumer, &config.events_topic)?.len() as i32)
        })
        .await
        .map_err(|e| LiveError::Panicked(e.to_string()))??
    };
    let checkpoint_specs: Vec<TopicSpec> = config
        .windows
        .sizes()
        .iter()
        .map(|&size| spec(&config.checkpoint_topic_for(size), events_partitions))
        .collect();
    ensure_topics(&config.brokers, &checkpoint_specs, config.replication).await?;
    let config = config.clone();
    tokio::task::spawn_blocking(move || inspect_topics(&config))
        .await
        .map_err(|e| LiveError::Panicked(e.to_string()))?
}

fn inspect_topics(config: &LiveConfig) -> Result<Prepared, LiveError> {
    let consumer: BaseConsumer = service::kafka::client_config(&config.brokers)
        .set("group.id", format!("{}-inspect", config.group))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Failure::kafka("create a Kafka consumer", e))?;
    let partitions = partitions_of(&consumer, &config.events_topic)?.len() as i32;
    let mut published_before = Vec::new();
    let mut published_times = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, &size) in config.windows.sizes().iter().enumerate() {
        let topic = config.windows_topic_for(size);
        let topic_partitions = partitions_of(&consumer, &topic)?;
        let mut times = recent_times(&consumer, &topic, &topic_partitions)?;
        if i == 0 {
            complete_publication(config, &consumer, &topic, &mut times)?;
        }
        let newest = newest_window(&consumer, &topic, &topic_partitions)?;
        tracing::debug!(%topic, windows = times.len(), "The times of recent finals and revisions.");
        published_times.push(Arc::new(times));
        if let Some(start) = newest {
            tracing::info!(window_start = %model::format_rfc3339_millis(start), %topic, "Resuming after the last published window.");
        }
        published_before.push(newest.map_or(i64::MIN, |start| start + size.millis()));
        checkpoints.push(match config.start {
            StartFrom::Committed => {
                read_checkpoints(&config.brokers, &config.checkpoint_topic_for(size))?
            }
            _ => Checkpoints::new(),
        });
    }
    Ok(Prepared {
        partitions,
        published_before,
        published_times,
        checkpoints,
    })
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, LiveError> {
    service::kafka::partitions_of(consumer, topic).map_err(|source| LiveError::Inspect {
        action: "read the metadata of",
        topic: topic.to_owned(),
        source,
    })
}

/// The start of the newest final window in `topic`: windows close in order, so the last
/// final of every partition bounds what an earlier run published. Revisions of older
/// windows and open updates (with `--updates-to-windows-topic`) may follow it: each
/// partition is read backwards, a chunk at a time, until a final turns up or the partition
/// begins.
fn newest_window(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<Option<i64>, LiveError> {
    let mut newest: Option<i64> = None;
    for &p in partitions {
        let (low, high) = offsets_of(consumer, topic, p)?;
        let mut end = high;
        let mut chunk = 1;
        while end > low {
            let from = (end - chunk).max(low);
            if let Some(start) = newest_final_in(consumer, topic, p, from, end)? {
                newest = Some(newest.map_or(start, |n| n.max(start)));
                break;
            }
            end = from;
            chunk = (chunk * 16).min(100_000);
        }
    }
    Ok(newest)
}

/// The first and the next offset of partition `p` of `topic`.
fn offsets_of(consumer: &BaseConsumer, topic: &str, p: i32) -> Result<(i64, i64), LiveError> {
    consumer
        .fetch_watermarks(topic, p, Duration::from_secs(30))
        .map_err(|source| LiveError::Inspect {
            action: "read the offsets of",
            topic: topic.to_owned(),
            source,
        })
}

/// A final or revised window message as read back from a topic.
struct Published {
    key: String,
    payload: Vec<u8>,
    /// Its dataflow time (the [`TIME_HEADER`]).
    time: i64,
    message: WindowMessage,
}

/// The dataflow time in a message's [`TIME_HEADER`], if it has one.
fn time_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<i64> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == TIME_HEADER)
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
    })
}

/// Finishes a final or revision an earlier run left half published. One worker publishes
/// the windows, one message at a time, to every cluster topic and then the windows topic, so
/// a kill between the two leaves at most one message on (some of) the cluster topics only:
/// their last message, which the windows topic lacks. Viewers have seen it, and a restart
/// learns from the windows topic what was published; so the message goes to the cluster
/// topics without it and then (last, as always) to the windows topic, and `times` (the
/// windows topic's, per window) takes its time. Otherwise a restart would report the
/// corrections it carries late while viewers saw them counted. Process 0 publishes; the
/// others take the same decision.
fn complete_publication(
    config: &LiveConfig,
    consumer: &BaseConsumer,
    windows_topic: &str,
    times: &mut BTreeMap<i64, i64>,
) -> Result<(), LiveError> {
    let clusters = config.cluster_topics();
    let mut lasts = Vec::new();
    for topic in &clusters {
        lasts.push(last_published(consumer, topic)?);
    }
    let Some((message, lacking)) = interrupted(&lasts, times) else {
        return Ok(());
    };
    let start = message.message.report.window_start;
    if config.cluster.process == 0 {
        let lacking: Vec<String> = lacking.iter().map(|&i| clusters[i].clone()).collect();
        tracing::info!(
            window_start = %model::format_rfc3339_millis(start),
            revision = message.message.revision,
            clusters = ?lacking,
            "Completing the publication of a window an earlier run stopped in the middle of."
        );
        let record = (
            message.key.as_str(),
            message.payload.as_slice(),
            message.time,
        );
        republish(&config.brokers, &lacking, record)?;
        republish(
            &config.brokers,
            std::slice::from_ref(&windows_topic.to_owned()),
            record,
        )?;
    }
    times.insert(start, message.time);
    Ok(())
}

/// Of the cluster topics' last messages, the one an earlier run left half published: a
/// final or revision the windows topic lacks (by its window and time, `times`); with the
/// indexes of the cluster topics whose last message it is not.
fn interrupted<'a>(
    lasts: &'a [Option<Published>],
    times: &BTreeMap<i64, i64>,
) -> Option<(&'a Published, Vec<usize>)> {
    let missing = lasts.iter().flatten().find(|p| {
        times
            .get(&p.message.report.window_start)
            .is_none_or(|&t| t < p.time)
    })?;
    let same = |p: &Published| {
        p.message.report.window_start == missing.message.report.window_start
            && p.time == missing.time
            && p.message.revision == missing.message.revision
    };
    let lacking = lasts
        .iter()
        .enumerate()
        .filter(|(_, last)| !last.as_ref().is_some_and(same))
        .map(|(i, _)| i)
        .collect();
    Some((missing, lacking))
}

/// The last message of the single partition of cluster topic `topic`, if it is a final or a
/// revision.
fn last_published(consumer: &BaseConsumer, topic: &str) -> Result<Option<Published>, LiveError> {
    let (low, high) = offsets_of(consumer, topic, 0)?;
    let mut last = None;
    if high > low {
        read_range(consumer, topic, 0, high - 1, high, |message| {
            let parsed = message
                .payload()
                .and_then(|p| serde_json::from_slice::<WindowMessage>(p).ok())
                .filter(|m| m.state != WindowState::Open);
            if let (Some(time), Some(message_read)) = (time_of(message), parsed) {
                last = Some(Published {
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    time,
                    message: message_read,
                });
            }
        })?;
    }
    Ok(last)
}

/// How many of the last messages of each windows-topic partition a restart reads for the
/// times of recent finals and revisions: far more than the windows an amendment can reach.
const RECENT_MESSAGES: i64 = 10_000;

/// Per window among the last [`RECENT_MESSAGES`] of each partition of `topic`: the latest
/// dataflow time (the time header) of its final and revised messages.
fn recent_times(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i64, i64>, LiveError> {
    let mut times = BTreeMap::new();
    for &p in partitions {
        let (low, high) = offsets_of(consumer, topic, p)?;
        if high <= low {
            continue;
        }
        read_range(
            consumer,
            topic,
            p,
            (high - RECENT_MESSAGES).max(low),
            high,
            |message| {
                let time = time_of(message);
                let parsed = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<WindowMessage>(p).ok())
                    .filter(|m| m.state != WindowState::Open);
                if let (Some(time), Some(m)) = (time, parsed) {
                    let latest = times.entry(m.report.window_start).or_insert(time);
                    *latest = (*latest).max(time);
                }
            },
        )?;
    }
    Ok(times)
}

/// Reads the messages `[from, end)` of partition `p` of `topic`, each handed to `visit`.
fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    p: i32,
    from: i64,
    end: i64,
    mut visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), LiveError> {
    let mut assignment = TopicPartitionList::new();
    let _ = assignment.add_partition_offset(topic, p, Offset::Offset(from));
    consumer
        .assign(&assignment)
        .map_err(|source| LiveError::Inspect {
            action: "read",
            topic: topic.to_owned(),
            source,
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if std::time::Instant::now() > deadline {
            return Err(LiveError::LastWindows(topic.to_owned()));
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        visit(&message);
        if message.offset() >= end - 1 {
            return Ok(());
        }
    }
}

/// The start of the newest final window among the messages `[from, end)` of partition `p`.
fn newest_final_in(
    consumer: &BaseConsumer,
    topic: &str,
    p: i32,
    from: i64,
    end: i64,
) -> Result<Option<i64>, LiveError> {
    let mut newest = None;
    read_range(consumer, topic, p, from, end, |message| {
        let parsed = message
            .payload()
            .and_then(|p| serde_json::from_slice::<WindowMessage>(p).ok())
            .filter(|m| m.state == WindowState::Final);
        if let Some(m) = parsed {
            let start = m.report.window_start;
            newest = Some(newest.map_or(start, |n: i64| n.max(start)));
        }
    })?;
    Ok(newest)
}

/// Runs the live dataflow until `control` stops it (then publishes what is closed, commits,
/// and returns) or it fails.
// Long: the dataflows of every size share the worker loop that steps them until every one is drained.
pub fn run_live(
    config: LiveConfig,
    prepared: Prepared,
    control: Arc<RunControl>,
    metrics: Arc<DataflowMetrics>,
) -> Result<(), LiveError> {
    let timely_config = config.cluster.timely();
    let config = Arc::new(config);
    let worker_control = Arc::clone(&control);
    let guards = timely::execute(timely_config, move |worker| {
        let control = Arc::clone(&worker_control);
        let mut running = Vec::new();
        // One dataflow per window size, the live one first: each reads the topic in its own
        // consumer group, so each size's windows are exactly those of that size alone.
        for (i, &size) in config.windows.sizes().iter().enumerate() {
            let live = i == 0;
            // Open updates go to the clusters, which get the live size only.
            let updates = config.updates.filter(|_| live);
            let source = KafkaSourceConfig {
                brokers: config.brokers.clone(),
                topic: config.events_topic.clone(),
                group: config.group_for(size),
                partitions: prepared.partitions,
                window: size,
                windows: config.windows.clone(),
                idle_timeout: config.idle_timeout,
                max_future_ms: config.max_future.as_millis() as i64,
                emojis: Arc::clone(&config.emojis),
                start: config.start,
                published_before: prepared.published_before[i],
                published_times: Arc::clone(&prepared.published_times[i]),
                checkpoints: prepared.checkpoints[i].clone(),
                checkpoint_topic: config.checkpoint_topic_for(size),
                rewind: config.restart_rewind,
                report_invalid: live,
                late: metrics.late_counter(&size.label()),
            };
            let publish = PublishConfig {
                brokers: config.brokers.clone(),
                windows_topic: config.windows_topic_for(size),
                late_topic: config.late_topic.clone(),
                cluster_topics: if live {
                    config.cluster_topics()
                } else {
                    Vec::new()
                },
                window_millis: size.millis(),
                size_label: size.label(),
                open_to_windows_topic: config.updates_to_windows_topic,
            };
            // The metrics served are the live dataflow's.
            let metrics = if live {
                Arc::clone(&metrics)
            } else {
                Arc::new(DataflowMetrics::new(prepared.partitions, &[]))
            };
            let drained = Rc::new(Cell::new(false));
            running.push((worker.next_dataflow_index(), Rc::clone(&drained)));
            worker.dataflow::<i64, _, _>(|scope| {
                let sources = ProbeHandle::new();
                let published = ProbeHandle::new();
                let (taps, amends, side) = scope.read_kafka(
                    source,
                    Arc::clone(&control),
                    Arc::clone(&metrics),
                    sources.clone(),
                    published.clone(),
                    drained,
                );
                taps.probe_with(&sources)
                    .count_window_updates(
                        amends,
                        CountConfig {
                            updates,
                            ..CountConfig::new(config.engine, size, &config.windows, config.report)
                        },
                    )
                    .publish_windows(publish.clone(), Arc::clone(&control), Arc::clone(&metrics))
                    .probe_with(&published);
                // Each size's late records name the size; invalid ones go out once, from the
                // live size.
                side.publish_side(publish, Arc::clone(&control), metrics)
                    .probe_with(&published);
            });
        }
        while running.iter().any(|(_, drained)| !drained.get()) && control.failure().is_none() {
            worker.step_or_park(Some(Duration::from_millis(20)));
        }
        // Open windows are not closed on the way out: a restart rebuilds them from the
        // committed offsets.
        for (index, _) in running {
            worker.drop_dataflow(index);
        }
    })
    .map_err(LiveError::Workers)?;
    for result in guards.join() {
        if let Err(panic) = result {
            return Err(LiveError::Panicked(panic));
        }
    }
    match control.failure() {
        Some(failure) => Err(LiveError::Failed(failure)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(window_start: i64, time: i64, revision: u64, state: WindowState) -> Published {
        let report = model::WindowReport::build(
            window_start,
            window_start + 2000,
            1,
            1,
            [],
            &ReportConfig::default(),
        );
        let mut message = WindowMessage::final_of(report, window_start / 2000);
        message.revision = revision;
        message.state = state;
        Published {
            key: model::format_rfc3339_millis(window_start),
            payload: Vec::new(),
            time,
            message,
        }
    }

    #[test]
    fn the_interrupted_message_is_the_one_the_windows_topic_lacks_whatever_its_time() {
        // A revision of window 0 reached cluster 1 only; cluster 2's last message is the
        // final of window 2000, of the same time and on the windows topic already.
        let revision = published(0, 4000, 7, WindowState::Revised);
        let final_message = published(2000, 4000, 7, WindowState::Final);
        let lasts = [Some(revision), Some(final_message)];
        let times = BTreeMap::from([(0, 2000), (2000, 4000)]);
        let (missing, lacking) = interrupted(&lasts, &times).expect("one to complete");
        assert_eq!(missing.message.report.window_start, 0);
        assert_eq!(lacking, [1]);
        // Once the windows topic has it, nothing is left to complete.
        let times = BTreeMap::from([(0, 4000), (2000, 4000)]);
        assert!(interrupted(&lasts, &times).is_none());
        // A cluster with no message at all lacks it too.
        let lasts = [None, Some(published(0, 6000, 8, WindowState::Revised))];
        let (_, lacking) = interrupted(&lasts, &BTreeMap::new()).unwrap();
        assert_eq!(lacking, [0]);
    }
}
