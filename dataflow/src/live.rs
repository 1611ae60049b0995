//! The live dataflow: the events topic in, window reports and late records out, with
//! offsets committed only behind what is published, so a restart loses and doubles nothing.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use model::emojis::EmojiSet;
use model::{ReportConfig, WindowSize, WindowSpec};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use service::kafka::{TopicSpec, ensure_topics};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::cluster::ClusterConfig;
use crate::control::RunControl;
use crate::failure::Failure;
use crate::fate::Rules;
use crate::metrics::DataflowMetrics;
use crate::operators::{CountConfig, CountWindows, Engine};
use crate::recovery::partitions_of;
use crate::sink::kafka_publish::{PublishConfig, PublishSide, PublishWindows};
use crate::source::kafka::{Checkpoints, KafkaSourceConfig, ReadKafka, Reported, StartFrom};

/// How the live dataflow runs.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Brokers.
    pub brokers: String,
    /// Workers and processes.
    pub cluster: ClusterConfig,
    /// Input topic.
    pub events_topic: String,
    /// Where the ingests say since when they hold events the broker has not acknowledged.
    pub ingests_topic: String,
    /// An ingest not heard from this long is taken as gone: windows no longer wait for
    /// what it held.
    pub ingest_timeout: Duration,
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
    /// Events stamped further ahead of the time they were received are invalid.
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
            ingests_topic: model::names::ingests_topic(model::names::EVENTS_TOPIC),
            ingest_timeout: Duration::from_secs(30),
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

    /// How the dataflow of the `i`th window size reads the events topic, from what the run
    /// read back (`prepared`), its late events counted by `late`.
    pub(crate) fn source_config(
        &self,
        prepared: &Prepared,
        i: usize,
        late: Arc<service::metrics::Counter>,
    ) -> KafkaSourceConfig {
        let size = self.windows.sizes()[i];
        KafkaSourceConfig {
            brokers: self.brokers.clone(),
            topic: self.events_topic.clone(),
            group: self.group_for(size),
            partitions: prepared.partitions,
            rules: Rules {
                window: size,
                windows: self.windows.clone(),
                emojis: Arc::clone(&self.emojis),
                max_future_ms: self.max_future.as_millis() as i64,
            },
            idle_timeout: self.idle_timeout,
            ingests_topic: self.ingests_topic.clone(),
            ingest_timeout: self.ingest_timeout,
            start: self.start,
            published_before: prepared.published_before[i],
            new_partitions_from: prepared.new_partitions_from[i],
            published_times: Arc::clone(&prepared.published_times[i]),
            checkpoints: prepared.checkpoints[i].clone(),
            checkpoint_topic: self.checkpoint_topic_for(size),
            late_topic: self.late_topic.clone(),
            windows_topics: prepared.windows_topics[i].clone(),
            reported: Arc::clone(&prepared.reported[i]),
            rewind: self.restart_rewind,
            // The live size reports the invalid events (they are invalid for every size).
            report_invalid: i == 0,
            late,
        }
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
    /// The checkpoints were made with settings the run cannot carry them over to.
    #[error(
        "the checkpoints in {group} were made with {setting} {was}, not {now}: start again with {setting} {was}, or with a new --group and --windows-topic (which count the events topic from --start)"
    )]
    Settings {
        /// The checkpoint topic.
        group: String,
        /// The setting, as the command line names it.
        setting: &'static str,
        /// Its value then.
        was: String,
        /// Its value now.
        now: String,
    },
    /// Windows were published that the run's state does not account for.
    #[error(
        "the windows topic {topic} holds windows before {before} that {why}: publish to a new --windows-topic to count the events topic again, or start with --start latest to count only what comes now (events of the published windows then go to the late topic)"
    )]
    Unaccounted {
        /// The windows topic.
        topic: String,
        /// Every window before this time was published.
        before: String,
        /// Why the state does not account for them.
        why: String,
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
    /// The connection to another process of the cluster failed.
    #[error(transparent)]
    PeerLost(#[from] crate::cluster::PeerLost),
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
            LiveError::Admin(_)
            | LiveError::Panicked(_)
            | LiveError::PeerLost(_)
            | LiveError::StoppedByItself
            | LiveError::Settings { .. }
            | LiveError::Unaccounted { .. } => false,
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
    /// For each window size: the partitions from this one on were not read by the runs
    /// before (`i32::MAX`: all were, or nothing is known).
    pub new_partitions_from: Vec<i32>,
    /// For each window size: the late and invalid records published for the events it reads
    /// again.
    pub reported: Vec<Arc<Reported>>,
    /// For each window size: the windows topic it publishes to, then those earlier runs
    /// published to (read back too).
    pub windows_topics: Vec<Vec<String>>,
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
        spec(&config.ingests_topic, 1),
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
    // One made when the events topic had fewer partitions grows with it: a checkpoint of a
    // partition it lacks would be refused, and no window would close.
    for spec in &checkpoint_specs {
        let has = {
            let (brokers, topic) = (config.brokers.clone(), spec.name.clone());
            tokio::task::spawn_blocking(move || -> Result<usize, LiveError> {
                let consumer: BaseConsumer = service::kafka::client_config(&brokers)
                    .create()
                    .map_err(|e| Failure::kafka("create a Kafka consumer", e))?;
                Ok(partitions_of(&consumer, &topic)?.len())
            })
            .await
            .map_err(|e| LiveError::Panicked(e.to_string()))??
        };
        if (has as i32) < spec.partitions {
            service::kafka::grow_topic(&config.brokers, &spec.name, spec.partitions).await?;
        }
    }
    let config = config.clone();
    // The partitions the checkpoint topic was grown to: more, added since, the workers find
    // as they run.
    tokio::task::spawn_blocking(move || crate::recovery::read_back(&config, events_partitions))
        .await
        .map_err(|e| LiveError::Panicked(e.to_string()))?
}

/// Runs the live dataflow until `control` stops it (then publishes what is closed, commits,
/// and returns) or it fails.
// Long: the dataflows of every size share the worker loop that steps them until every one is drained.
pub fn run_live(
    config: LiveConfig,
    prepared: Prepared,
    control: Arc<RunControl>,
    metrics: Arc<DataflowMetrics>,
    ready: Arc<service::ready::Readiness>,
) -> Result<(), LiveError> {
    let cluster = config.cluster.clone();
    if config.cluster.processes > 1 {
        crate::cluster::watch_peers();
    }
    let config = Arc::new(config);
    let worker_control = Arc::clone(&control);
    let guards = cluster
        .execute(move |worker| {
            let control = Arc::clone(&worker_control);
            let mut running = Vec::new();
            // One dataflow per window size, the live one first: each reads the topic in its own
            // consumer group, so each size's windows are exactly those of that size alone.
            for (i, &size) in config.windows.sizes().iter().enumerate() {
                let live = i == 0;
                // Open updates go to the clusters, which get the live size only.
                let updates = config.updates.filter(|_| live);
                let source =
                    config.source_config(&prepared, i, metrics.late_counter(&size.label()));
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
                                ..CountConfig::new(
                                    config.engine,
                                    size,
                                    &config.windows,
                                    config.report,
                                )
                            },
                        )
                        .publish_windows(
                            publish.clone(),
                            Arc::clone(&control),
                            Arc::clone(&metrics),
                        )
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
    ready.set("workers", None);
    for result in guards.join() {
        if let Err(panic) = result {
            return Err(LiveError::of_panic(panic, &cluster));
        }
    }
    match control.failure() {
        Some(failure) => Err(LiveError::Failed(failure)),
        None => Ok(()),
    }
}

impl LiveError {
    /// The error of a run whose workers panicked with `message`: the loss of another process
    /// when timely's network threads reported one (they take the workers down with them).
    pub fn of_panic(message: String, cluster: &crate::ClusterConfig) -> Self {
        match cluster.peer_lost() {
            Some(lost) => LiveError::PeerLost(lost),
            None => LiveError::Panicked(message),
        }
    }
}
