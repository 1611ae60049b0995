//! Command-line arguments, and their conversion into the services' typed configs.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dataflow::source::kafka::StartFrom;
use dataflow::{ClusterConfig, Engine, ReplayConfig};
use model::duration::parse_duration;
use model::emojis::EmojiSet;
use model::window_spec::WindowSpecError;
use model::{ReportConfig, WindowSpec};
use service::http::TrustedProxies;
use service::secret::Secret;

/// EmoStream: live emoji reaction analytics.
#[derive(Debug, Parser)]
#[command(name = "emostream", version, rename_all = "kebab-case")]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay recorded CSV logs through the windowed dataflow and write the windows.
    Replay(Box<ReplayArgs>),
    /// Generate a realistic event log (skewed mix, bursts, disorder, late arrivals).
    Generate(GenerateArgs),
    /// Write the events of a topic to a CSV log (a recorded match).
    Record(RecordArgs),
    /// Write the window messages a windows or cluster topic holds, one JSON line each, from
    /// its start to its end (what was published: every revision of every window).
    Windows(WindowsArgs),
    /// Serve the HTTP ingest API and produce events to Kafka.
    Ingest(Box<IngestArgs>),
    /// Run the windowed dataflow between Kafka topics.
    Dataflow(Box<DataflowArgs>),
    /// Run the live system in one process: ingest, dataflow (and broadcasters).
    Up(Box<UpArgs>),
    /// Offer realistic reaction traffic open loop (HTTP or Kafka), watch the windows arrive
    /// as viewers, and report rates and latency percentiles.
    Simulate(Box<SimulateArgs>),
    /// Serve the windows of one cluster to WebSocket clients.
    Broadcast(Box<BroadcastArgs>),
    /// Connect many WebSocket clients to a broadcaster and report fan-out times.
    Wsload(WsLoadArgs),
}

/// Which implementation counts the windows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// The hand-written timely operator.
    Timely,
    /// The differential-dataflow formulation.
    Differential,
}

/// Timely's layout flags: `-w`, `-n`, `-p`, `-h`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[command(flatten)]
    pub workers: WorkerArgs,
    /// Number of processes.
    #[arg(short = 'n', long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1", env = "EMOSTREAM_PROCESSES")]
    pub processes: NonZeroUsize,
    /// Index of this process, from 0 to processes-1.
    #[arg(short = 'p', long, default_value = "0", env = "EMOSTREAM_PROCESS")]
    pub process: usize,
    /// File of `host:port` lines, one per process, in process order (`-h` is help).
    #[arg(long, env = "EMOSTREAM_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
}

/// `-w`: worker threads (of the one process of `up`, or of each process).
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct WorkerArgs {
    /// Worker threads per process.
    #[arg(
        short = 'w',
        long, value_parser = parse_at_least_one::<NonZeroUsize>,
        alias = "threads",
        default_value = "1",
        env = "EMOSTREAM_WORKERS"
    )]
    pub workers: NonZeroUsize,
}

impl ClusterArgs {
    /// The validated layout.
    pub fn config(&self) -> Result<ClusterConfig> {
        Ok(ClusterConfig::new(
            self.workers.workers.get(),
            self.processes.get(),
            self.process,
            self.hostfile.as_deref(),
        )?)
    }
}

/// `--lateness`, declared once for the dataflow's commands and for `simulate`, which needs to
/// know the dataflow's.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct LatenessArg {
    /// How far behind the newest event of a partition an event may be and still count.
    #[arg(long, default_value = WindowSpec::DEFAULT_LATENESS, value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_LATENESS")]
    pub lateness: Duration,
}

/// `--emojis`, declared once for the services that share it (`up` passes it to all three).
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct EmojisArg {
    /// The emojis accepted, comma-separated: the ingest refuses others (400), the dataflow
    /// reports others it finds in the topic as invalid, and the page has a button for each.
    #[arg(long, default_value = EmojiSet::DEFAULT, env = "EMOSTREAM_EMOJIS")]
    pub emojis: EmojiSet,
}

/// How windows are computed and reported.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct WindowArgs {
    /// Tumbling window size, like 2s or 500ms; several, like 2s,60s, are computed in the same
    /// run from the same input (the first is the live one, broadcast to the clusters).
    #[arg(long, default_value = WindowSpec::DEFAULT_SIZE, value_parser = parse_duration, allow_hyphen_values = true, value_delimiter = ',', env = "EMOSTREAM_WINDOW")]
    pub window: Vec<Duration>,
    /// The lateness.
    #[command(flatten)]
    pub lateness: LatenessArg,
    /// After a window is final, how much later (past the lateness) an event may still come
    /// and amend it: a revised window with the corrected totals. 0 makes it a late record.
    #[arg(long, default_value = WindowSpec::DEFAULT_ALLOWED_LATENESS, value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_ALLOWED_LATENESS")]
    pub allowed_lateness: Duration,
    /// Each SCALE emojis of a type count as one in scaled_count.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroU64>, default_value = "1000", env = "EMOSTREAM_SCALE")]
    pub scale: NonZeroU64,
    /// Leave out of a window's report the emojis with fewer events than this.
    #[arg(long, default_value = "1", env = "EMOSTREAM_MIN_COUNT")]
    pub min_count: u64,
    /// Which implementation counts the windows.
    #[arg(long, value_enum, default_value = "timely", env = "EMOSTREAM_ENGINE")]
    pub engine: EngineArg,
}

impl WindowArgs {
    /// The window sizes and the lateness, validated once.
    pub fn spec(&self) -> Result<WindowSpec> {
        WindowSpec::from_durations(&self.window, self.lateness.lateness)
            .and_then(|spec| spec.with_allowed_lateness(self.allowed_lateness))
            .map_err(|e| {
                let flag = match e {
                    WindowSpecError::Lateness(_) => "--lateness",
                    WindowSpecError::AllowedLateness(_) => "--allowed-lateness",
                    _ => "--window",
                };
                anyhow::Error::new(e).context(flag)
            })
    }

    /// Scaling and filtering.
    pub fn report(&self) -> ReportConfig {
        ReportConfig {
            scale: self.scale,
            min_count: self.min_count,
        }
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        match self.engine {
            EngineArg::Timely => Engine::Timely,
            EngineArg::Differential => Engine::Differential,
        }
    }
}

/// Arguments of `emostream replay`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct ReplayArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// CSV logs, or directories of them (their .csv files, in name order).
    #[arg(required = true, env = "EMOSTREAM_REPLAY_PATHS", value_delimiter = ',')]
    pub paths: Vec<PathBuf>,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Windows.
    #[command(flatten)]
    pub windows: WindowArgs,
    /// The emojis accepted: rows of others are rejected, as the live dataflow rejects them.
    #[command(flatten)]
    pub emojis: EmojisArg,
    /// Write the window rows to this file instead of stdout: each window's last revision,
    /// once no amendment can change it.
    #[arg(long, env = "EMOSTREAM_OUT")]
    pub out: Option<PathBuf>,
    /// Write every final and revised window to this file, with its state and revision.
    #[arg(long, env = "EMOSTREAM_REVISIONS_OUT")]
    pub revisions_out: Option<PathBuf>,
    /// Write late events to this file (a replayable log); with several window sizes, each
    /// size's to a file of its own, the size in its name (`late-60s.csv`).
    #[arg(long, env = "EMOSTREAM_LATE_OUT")]
    pub late_out: Option<PathBuf>,
    /// Write rejected rows to this file (line,reason,raw; with several input files the
    /// reason names the file).
    #[arg(long, env = "EMOSTREAM_REJECTS_OUT")]
    pub rejects_out: Option<PathBuf>,
    /// Stop at the first rejected row with exit code 2.
    #[arg(long, env = "EMOSTREAM_STRICT")]
    pub strict: bool,
    /// Bytes per block when workers share a file.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroU64>, default_value = "1048576", env = "EMOSTREAM_BLOCK_BYTES")]
    pub block_bytes: NonZeroU64,
    /// Also write the summary as JSON to this file.
    #[arg(long, env = "EMOSTREAM_SUMMARY_JSON")]
    pub summary_json: Option<PathBuf>,
    /// Put the logs' events into the events topic (at --speed) instead of computing windows.
    #[arg(long, env = "EMOSTREAM_TO_KAFKA", requires = "brokers", conflicts_with_all = ["out", "revisions_out", "late_out", "rejects_out", "strict"])]
    pub to_kafka: bool,
    /// Kafka brokers for --to-kafka, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "EMOSTREAM_BROKERS", value_parser = parse_brokers)]
    pub brokers: Option<String>,
    /// The events topic for --to-kafka (created with --partitions when missing).
    #[arg(long, default_value = model::names::EVENTS_TOPIC, env = "EMOSTREAM_EVENTS_TOPIC")]
    pub events_topic: String,
    /// Partitions of the events topic when --to-kafka creates it.
    #[arg(long, default_value = "4", env = "EMOSTREAM_PARTITIONS")]
    pub partitions: NonZeroU32,
    /// Pace of --to-kafka: 1 the original pace, 10 ten times faster, 0 as fast as possible.
    #[arg(long, default_value = "1", value_parser = parse_speed, env = "EMOSTREAM_SPEED")]
    pub speed: f64,
    /// With --to-kafka, keep the logged timestamps (by default the match is moved to now).
    #[arg(long, env = "EMOSTREAM_KEEP_TIMESTAMPS")]
    pub keep_timestamps: bool,
}

/// Reads a count that must be at least 1 (`NonZeroUsize`, `NonZeroU64`).
fn parse_at_least_one<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected a whole number, at least 1".to_owned())
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('x').parse::<f64>() {
        Ok(speed) if speed >= 0.0 && speed.is_finite() => Ok(speed),
        _ => Err(format!(
            "invalid speed \"{text}\": expected 1 (the original pace), 10 (ten times faster) or 0 (as fast as possible)"
        )),
    }
}

/// Where a recording starts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FromArg {
    /// The first retained event.
    Earliest,
    /// Events written from now on.
    Now,
}

/// Arguments of `emostream record`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct RecordArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// Kafka brokers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "EMOSTREAM_BROKERS", value_parser = parse_brokers)]
    pub brokers: String,
    /// The topic of events to record.
    #[arg(long, default_value = model::names::EVENTS_TOPIC, env = "EMOSTREAM_RECORD_TOPIC")]
    pub topic: String,
    /// The CSV log to write.
    #[arg(long, env = "EMOSTREAM_RECORD_OUT")]
    pub out: PathBuf,
    /// Where to start.
    #[arg(long, value_enum, default_value = "earliest", env = "EMOSTREAM_FROM")]
    pub from: FromArg,
    /// When to stop: after a duration (like 90m), or `end`: at the end of the topic as it was
    /// when the recording started.
    #[arg(long, default_value = "end", value_parser = parse_until, allow_hyphen_values = true, env = "EMOSTREAM_UNTIL")]
    pub until: loadgen::recording::Until,
}

/// Arguments of `emostream windows`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct WindowsArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// Kafka brokers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "EMOSTREAM_BROKERS", value_parser = parse_brokers)]
    pub brokers: String,
    /// The windows topic, or a cluster topic.
    #[arg(long, default_value = model::names::WINDOWS_TOPIC)]
    pub topic: String,
    /// Where to write the lines (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_until(text: &str) -> Result<loadgen::recording::Until, String> {
    if text.trim() == "end" {
        return Ok(loadgen::recording::Until::End);
    }
    parse_duration(text)
        .map(loadgen::recording::Until::Elapsed)
        .map_err(|e| format!("{e}, or \"end\""))
}

impl ReplayArgs {
    /// The validated replay configuration.
    pub fn config(&self) -> Result<ReplayConfig> {
        Ok(ReplayConfig {
            paths: self.paths.clone(),
            cluster: self.cluster.config()?,
            windows: self.windows.spec()?,
            report: self.windows.report(),
            engine: self.windows.engine(),
            out: self.out.clone(),
            revisions_out: self.revisions_out.clone(),
            late_out: self.late_out.clone(),
            rejects_out: self.rejects_out.clone(),
            emojis: std::sync::Arc::new(self.emojis.emojis.clone()),
            strict: self.strict,
            block_bytes: self.block_bytes.get(),
        })
    }
}

/// The shape of generated traffic.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    /// A constant rate.
    Steady,
    /// Bursts of five times the rate at random moments.
    Match,
}

/// Arguments of `emostream generate`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct GenerateArgs {
    /// How many events.
    #[arg(long, default_value = "10000", env = "EMOSTREAM_EVENTS")]
    pub events: u64,
    /// Audience size.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroU64>, default_value = "100000", env = "EMOSTREAM_USERS")]
    pub users: NonZeroU64,
    /// Offered rate in event time, like 10000/s.
    #[arg(long, default_value = "10000/s", value_parser = parse_rate, env = "EMOSTREAM_RATE")]
    pub rate: f64,
    /// Shape of the rate over time.
    #[arg(
        long,
        value_enum,
        default_value = "match",
        env = "EMOSTREAM_GENERATE_PROFILE"
    )]
    pub profile: ProfileArg,
    /// Event time of the first event (any accepted timestamp form).
    #[arg(long, default_value = "2026-11-22T10:00:00Z", value_parser = parse_start, env = "EMOSTREAM_GENERATE_START")]
    pub start: i64,
    /// Largest network delay of an ordinary event.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_DISORDER")]
    pub disorder: Duration,
    /// Share of events that arrive late, after --late-delay.
    #[arg(long, default_value = "0", env = "EMOSTREAM_LATE_FRACTION")]
    pub late_fraction: f64,
    /// Delay of a late event.
    #[arg(long, default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_LATE_DELAY")]
    pub late_delay: Duration,
    /// Seed of the generator: the same seed gives the same log.
    #[arg(long, default_value = "1", env = "EMOSTREAM_SEED")]
    pub seed: u64,
    /// Write the log here instead of stdout.
    #[arg(long, env = "EMOSTREAM_GENERATE_OUT")]
    pub out: Option<PathBuf>,
}

/// Parses a rate like `10000/s` or `10000`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    model::duration::parse_rate(text).map_err(|e| e.to_string())
}

fn parse_start(text: &str) -> Result<i64, String> {
    model::parse_timestamp(text).map_err(|e| e.to_string())
}

/// Where the Kafka cluster is and how created topics are shaped.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct BrokerArgs {
    /// Kafka brokers, HOST:PORT[,HOST:PORT...] (`make up` starts one on this machine).
    #[arg(long, env = "EMOSTREAM_BROKERS", value_parser = parse_brokers)]
    pub brokers: String,
    /// Partitions of the topics created when missing.
    #[arg(long, default_value = "4", env = "EMOSTREAM_PARTITIONS")]
    pub partitions: NonZeroU32,
    /// Replication factor of the topics created when missing.
    #[arg(long, default_value = "1", env = "EMOSTREAM_REPLICATION")]
    pub replication: NonZeroU32,
    /// The input topic.
    #[arg(long, default_value = model::names::EVENTS_TOPIC, env = "EMOSTREAM_EVENTS_TOPIC")]
    pub events_topic: String,
    /// Where the ingests say since when they hold taps the broker has not taken, so the
    /// dataflow waits for them [default: the events topic's name followed by -ingests].
    #[arg(long, env = "EMOSTREAM_INGESTS_TOPIC")]
    pub ingests_topic: Option<String>,
}

impl BrokerArgs {
    /// The ingests topic: `--ingests-topic`, or the events topic's name followed by `-ingests`.
    pub fn ingests_topic(&self) -> String {
        self.ingests_topic
            .clone()
            .unwrap_or_else(|| model::names::ingests_topic(&self.events_topic))
    }
}

/// Kafka client settings every Kafka client of a command takes.
#[derive(Args)]
#[command(rename_all = "kebab-case")]
pub struct KafkaClientArgs {
    /// A properties file of Kafka client settings for every Kafka client (security.protocol,
    /// sasl.mechanism, sasl.jaas.config, ssl.ca.location, ...: the file Kafka's tools and the
    /// managed services hand out; librdkafka's names).
    #[arg(long, env = "EMOSTREAM_KAFKA_CONFIG", value_name = "FILE")]
    pub kafka_config: Option<PathBuf>,
    /// A Kafka client setting over the file's, KEY=VALUE (repeatable; a secret is better in
    /// the file, out of the process list).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    pub kafka_options: Vec<String>,
}

impl std::fmt::Debug for KafkaClientArgs {
    /// The options with the values of secrets left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: Vec<String> = self
            .kafka_options
            .iter()
            .map(|option| match option.split_once('=') {
                Some((key, _)) if service::kafka_settings::is_secret(key.trim()) => {
                    format!("{key}=<redacted>")
                }
                _ => option.clone(),
            })
            .collect();
        f.debug_struct("KafkaClientArgs")
            .field("kafka_config", &self.kafka_config)
            .field("kafka_options", &options)
            .finish()
    }
}

impl KafkaClientArgs {
    /// The settings, read and checked.
    pub fn settings(
        &self,
    ) -> Result<service::kafka_settings::ClientSettings, service::kafka_settings::SettingsError>
    {
        service::kafka_settings::ClientSettings::load(
            self.kafka_config.as_deref(),
            &self.kafka_options,
        )
    }
}

impl Command {
    /// The Kafka client settings of a command that talks to Kafka.
    pub fn kafka(&self) -> Option<&KafkaClientArgs> {
        match self {
            Command::Replay(args) => Some(&args.kafka),
            Command::Generate(_) => None,
            Command::Record(args) => Some(&args.kafka),
            Command::Windows(args) => Some(&args.kafka),
            Command::Ingest(args) => Some(&args.kafka),
            Command::Dataflow(args) => Some(&args.kafka),
            Command::Up(args) => Some(&args.kafka),
            Command::Simulate(args) => Some(&args.kafka),
            Command::Broadcast(args) => Some(&args.kafka),
            Command::Wsload(args) => Some(&args.kafka),
        }
    }
}

fn parse_brokers(text: &str) -> Result<String, String> {
    service::kafka::parse_brokers(text).map_err(|e| e.to_string())
}

/// The ingest service's flags.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct IngestFlags {
    /// HTTP address of the ingest API.
    #[arg(long, default_value = "127.0.0.1:5000", env = "EMOSTREAM_LISTEN")]
    pub listen: SocketAddr,
    /// How long the producer gathers a batch (latency against throughput).
    #[arg(long, default_value = "50ms", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_LINGER")]
    pub linger: Duration,
    /// Events handed to the producer and not yet acknowledged, at most; past it, 503.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "500000", env = "EMOSTREAM_QUEUE_CAPACITY")]
    pub queue_capacity: NonZeroUsize,
    /// Largest request body in bytes; past it, 413.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroU64>, default_value = "1048576", env = "EMOSTREAM_MAX_BODY")]
    pub max_body: NonZeroU64,
    /// Largest distance of an event's timestamp from the server clock.
    #[arg(long, default_value = "10m", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_MAX_SKEW")]
    pub max_skew: Duration,
    /// How long `?ack=true` waits for the broker before answering 503.
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_ACK_TIMEOUT")]
    pub ack_timeout: Duration,
    /// How long the producer tries to deliver an event before it gives up on it; the event is
    /// then looked for in the topic and, if it is not there, sent again on a new producer.
    /// 0s (the default): never give up (the producer tries again itself, and the broker drops
    /// what it stored already).
    #[arg(long, default_value = "0s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_DELIVERY_TIMEOUT")]
    pub delivery_timeout: Duration,
    /// Allowed CORS origins, comma-separated; empty allows any origin.
    #[arg(long, value_delimiter = ',', env = "EMOSTREAM_CORS_ORIGINS")]
    pub cors_origins: Vec<String>,
    /// Serve `POST /load-test`, which runs the traffic simulator against this service
    /// (off by default: it lets a caller generate load).
    #[arg(long, env = "EMOSTREAM_ENABLE_LOAD_TEST")]
    pub enable_load_test: bool,
    /// Events per second one user_id may send (bursts of a second's worth); past it, 429.
    /// 0 disables.
    #[arg(long, default_value = "50", value_parser = parse_limit, env = "EMOSTREAM_USER_RATE_LIMIT")]
    pub user_rate_limit: f64,
    /// Events per second one source address may send; past it, 429. 0 (the default) disables.
    #[arg(long, default_value = "0", value_parser = parse_limit, env = "EMOSTREAM_IP_RATE_LIMIT")]
    pub ip_rate_limit: f64,
    /// Require `Authorization: Bearer <token>` on POST /emoji and /load-test.
    #[arg(
        long,
        env = "EMOSTREAM_INGEST_TOKEN",
        hide_env_values = true,
        conflicts_with = "ingest_token_file"
    )]
    pub ingest_token: Option<String>,
    /// Like --ingest-token, read from a file (its first line).
    #[arg(long, env = "EMOSTREAM_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,
    /// Take taps only with a viewer token from a broadcaster's POST /register
    /// (Authorization: Bearer <token>), as that viewer's: an event's user_id may be left
    /// out, one that differs is refused (403), and the per-user rate limit is per viewer.
    /// Needs the broadcasters' --token-secret. A request with --ingest-token names its users.
    #[arg(long, env = "EMOSTREAM_VIEWER_TOKENS")]
    pub viewer_tokens: bool,
    /// A connection must send a request's headers within this, else it is closed (also the
    /// keep-alive timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_HEADER_TIMEOUT")]
    pub header_timeout: Duration,
    /// A request, body included, must arrive and be answered within this; past it, 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,
    /// HTTP connections open at once, at most; past it a new one waits for a place, and is
    /// answered 503 with Retry-After when none frees within a second.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "10000", env = "EMOSTREAM_MAX_OPEN_CONNECTIONS")]
    pub max_open_connections: NonZeroUsize,
}

fn parse_limit(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches("/s").parse::<f64>() {
        Ok(rate) if rate >= 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "invalid rate limit \"{text}\": expected events per second, like 50, or 0 for none"
        )),
    }
}

impl IngestFlags {
    /// The bearer token, from the flag or the file.
    fn token(&self) -> Result<Option<service::secret::Secret>> {
        let token = match (&self.ingest_token, &self.ingest_token_file) {
            (Some(token), _) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --ingest-token-file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            bail!("the ingest token is empty");
        }
        Ok(Some(service::secret::Secret::new(token)))
    }

    /// The ingest configuration; `token_secret` is the broadcasters' key, which
    /// `--viewer-tokens` needs.
    pub fn config(
        &self,
        brokers: &BrokerArgs,
        token_secret: Option<&Secret>,
    ) -> Result<ingest::IngestConfig> {
        let viewer_tokens = match (self.viewer_tokens, token_secret) {
            (false, _) => None,
            (true, Some(secret)) => Some(service::token::TokenSigner::new(secret.expose())),
            (true, None) => bail!(
                "--viewer-tokens needs --token-secret (EMOSTREAM_TOKEN_SECRET): the broadcasters' key, which signs the viewer tokens"
            ),
        };
        Ok(ingest::IngestConfig {
            viewer_tokens,
            topic: brokers.events_topic.clone(),
            ingests_topic: brokers.ingests_topic(),
            partitions: brokers.partitions.get() as i32,
            replication: brokers.replication.get() as i32,
            linger: self.linger,
            queue_capacity: self.queue_capacity.get(),
            max_body: self.max_body.get(),
            max_skew: self.max_skew,
            ack_timeout: self.ack_timeout,
            delivery_timeout: self.delivery_timeout,
            cors_origins: self
                .cors_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            load_driver: self
                .enable_load_test
                .then(|| std::sync::Arc::new(loadgen::SimulatorDriver) as _),
            user_rate_limit: self.user_rate_limit,
            ip_rate_limit: self.ip_rate_limit,
            token: self.token()?,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_open_connections.get(),
            ..ingest::IngestConfig::new(self.listen, brokers.brokers.clone())
        })
    }
}

/// Where to start reading the events topic.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StartArg {
    /// The first retained event.
    Earliest,
    /// Only new events.
    Latest,
    /// The committed offsets of the consumer group, else the earliest.
    Committed,
}

/// The live dataflow's flags.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct DataflowFlags {
    /// Windows.
    #[command(flatten)]
    pub windows: WindowArgs,
    /// A partition without new data this long stops holding windows back.
    #[arg(long, default_value = "4s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// An ingest not heard from this long is taken as gone: windows stop waiting for taps
    /// it held and the broker has not stored (a broker outage as the ingest sees it).
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_INGEST_TIMEOUT")]
    pub ingest_timeout: Duration,
    /// Events stamped further ahead of the time they were received (the Kafka record's
    /// timestamp) are invalid.
    #[arg(long, default_value = "10m", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_MAX_FUTURE")]
    pub max_future: Duration,
    /// Number of cluster topics (cluster1 ... clusterN).
    #[arg(long, default_value = "3", env = "EMOSTREAM_CLUSTERS")]
    pub clusters: NonZeroU32,
    /// Prefix of the cluster topics.
    #[arg(long, default_value = model::names::CLUSTER_TOPIC_PREFIX, env = "EMOSTREAM_CLUSTER_PREFIX")]
    pub cluster_prefix: String,
    /// Where to start reading.
    #[arg(long, value_enum, default_value = "committed", env = "EMOSTREAM_START")]
    pub start: StartArg,
    /// Consumer group whose offsets the dataflow commits.
    #[arg(long, default_value = "emostream-dataflow", env = "EMOSTREAM_GROUP")]
    pub group: String,
    /// The topic of every window report.
    #[arg(long, default_value = model::names::WINDOWS_TOPIC, env = "EMOSTREAM_WINDOWS_TOPIC")]
    pub windows_topic: String,
    /// The topic of late and invalid events.
    #[arg(long, default_value = model::names::LATE_TOPIC, env = "EMOSTREAM_LATE_TOPIC")]
    pub late_topic: String,
    /// On a restart, messages per partition read again before the committed offsets (they
    /// only rebuild the watermarks).
    #[arg(long, default_value = "10000", env = "EMOSTREAM_RESTART_REWIND")]
    pub restart_rewind: u32,
    /// How often the live size's open windows that changed are published to the cluster
    /// topics with the exact totals read so far ("state": "open"); 0 publishes finals only.
    /// The timely engine makes them (the differential one publishes finals).
    #[arg(long, default_value = "250ms", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_UPDATES")]
    pub updates: Duration,
    /// Publish the open updates to the windows topic too (it carries finals only otherwise).
    #[arg(long, env = "EMOSTREAM_UPDATES_TO_WINDOWS_TOPIC")]
    pub updates_to_windows_topic: bool,
    /// HTTP address of the dataflow's /health and /metrics.
    #[arg(
        long,
        default_value = "127.0.0.1:9100",
        env = "EMOSTREAM_METRICS_LISTEN"
    )]
    pub metrics_listen: SocketAddr,
}

impl DataflowFlags {
    /// The live dataflow configuration.
    pub fn config(
        &self,
        brokers: &BrokerArgs,
        cluster: ClusterConfig,
    ) -> Result<dataflow::LiveConfig> {
        Ok(dataflow::LiveConfig {
            cluster,
            events_topic: brokers.events_topic.clone(),
            ingests_topic: brokers.ingests_topic(),
            ingest_timeout: self.ingest_timeout,
            windows_topic: self.windows_topic.clone(),
            late_topic: self.late_topic.clone(),
            clusters: self.clusters.get(),
            cluster_prefix: self.cluster_prefix.clone(),
            partitions: brokers.partitions.get() as i32,
            replication: brokers.replication.get() as i32,
            group: self.group.clone(),
            windows: self.windows.spec()?,
            idle_timeout: self.idle_timeout,
            max_future: self.max_future,
            start: match self.start {
                StartArg::Earliest => StartFrom::Earliest,
                StartArg::Latest => StartFrom::Latest,
                StartArg::Committed => StartFrom::Committed,
            },
            report: self.windows.report(),
            engine: self.windows.engine(),
            metrics_listen: Some(self.metrics_listen),
            restart_rewind: i64::from(self.restart_rewind),
            updates: (!self.updates.is_zero()).then_some(self.updates),
            updates_to_windows_topic: self.updates_to_windows_topic,
            ..dataflow::LiveConfig::new(brokers.brokers.clone())
        })
    }
}

/// The proxies in front of a service.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct ProxyArgs {
    /// Proxies (load balancers, TLS proxies) whose X-Forwarded-For header names the client,
    /// comma-separated addresses or networks like 10.0.0.0/8: per-address limits then count
    /// clients, not the proxy. Empty: the header is not believed.
    #[arg(long, value_parser = parse_trusted_proxies, env = "EMOSTREAM_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<TrustedProxies>,
}

impl ProxyArgs {
    /// The proxies trusted.
    pub fn trusted(&self) -> Arc<TrustedProxies> {
        Arc::new(self.trusted_proxies.clone().unwrap_or_default())
    }
}

/// Where a service writes its bound addresses once it is up.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct ReadyArgs {
    /// Once up, write the bound addresses here as JSON (`{"ingest": "127.0.0.1:5000", ...}`).
    #[arg(long, env = "EMOSTREAM_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// Arguments of `emostream ingest`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct IngestArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// The Kafka cluster.
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// The API.
    #[command(flatten)]
    pub ingest: IngestFlags,
    /// The address clients use for this ingest, behind a load balancer or a name, like
    /// https://taps.example.com (what it prints; broadcasters' --ingest-url is this).
    #[arg(long, value_parser = parse_public_url, env = "EMOSTREAM_INGEST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The broadcasters' --token-secret, which checks viewer tokens (--viewer-tokens).
    #[arg(long, env = "EMOSTREAM_TOKEN_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub token_secret: Option<Secret>,
    /// The emojis accepted.
    #[command(flatten)]
    pub emojis: EmojisArg,
    /// The proxies in front of it.
    #[command(flatten)]
    pub proxies: ProxyArgs,
    /// Where to say that the service is up.
    #[command(flatten)]
    pub ready: ReadyArgs,
}

/// Arguments of `emostream dataflow`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct DataflowArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// The Kafka cluster.
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The dataflow.
    #[command(flatten)]
    pub dataflow: DataflowFlags,
    /// The emojis accepted.
    #[command(flatten)]
    pub emojis: EmojisArg,
    /// Where to say that the service is up.
    #[command(flatten)]
    pub ready: ReadyArgs,
}

/// Arguments of `emostream up`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct UpArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// The Kafka cluster.
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Workers (of its one process).
    #[command(flatten)]
    pub workers: WorkerArgs,
    /// The ingest API.
    #[command(flatten)]
    pub ingest: IngestFlags,
    /// The dataflow.
    #[command(flatten)]
    pub dataflow: DataflowFlags,
    /// HTTP and WebSocket address of cluster 1's broadcaster; cluster N listens on the next ports.
    #[arg(
        long,
        default_value = "127.0.0.1:8765",
        env = "EMOSTREAM_BROADCAST_LISTEN"
    )]
    pub broadcast_listen: SocketAddr,
    /// The broadcasters.
    #[command(flatten)]
    pub broadcast: BroadcastFlags,
    /// The emojis accepted.
    #[command(flatten)]
    pub emojis: EmojisArg,
    /// The proxies in front of it.
    #[command(flatten)]
    pub proxies: ProxyArgs,
    /// Where to say that the service is up.
    #[command(flatten)]
    pub ready: ReadyArgs,
}

/// Arguments of `emostream simulate`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct SimulateArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// http://HOST:PORT of the ingest API (the default target).
    #[arg(long, env = "EMOSTREAM_TARGET", conflicts_with = "brokers")]
    pub target: Option<String>,
    /// Produce straight into the events topic of these brokers instead of over HTTP
    /// (no environment variable: EMOSTREAM_BROKERS does not switch the target).
    #[arg(long)]
    pub brokers: Option<String>,
    /// The events topic, with --brokers.
    #[arg(long, default_value = model::names::EVENTS_TOPIC, env = "EMOSTREAM_EVENTS_TOPIC")]
    pub events_topic: String,
    /// Audience size.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroU64>, default_value = "100000", env = "EMOSTREAM_USERS")]
    pub users: NonZeroU64,
    /// Offered events per second outside bursts, like 10000/s.
    #[arg(long, default_value = "10000/s", value_parser = parse_rate, env = "EMOSTREAM_RATE")]
    pub rate: f64,
    /// How long to offer the traffic.
    #[arg(long, default_value = "60s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_DURATION")]
    pub duration: Duration,
    /// `steady`, or `match`: wickets bring five times the rate for a few seconds.
    #[arg(long, value_enum, default_value = "steady", env = "EMOSTREAM_PROFILE")]
    pub profile: ProfileArg,
    /// Events per HTTP request (1 sends one object, more send an array).
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1", env = "EMOSTREAM_BATCH")]
    pub batch: NonZeroUsize,
    /// Largest network delay between a tap and its sending (events arrive out of order).
    #[arg(long, default_value = "50ms", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_JITTER")]
    pub jitter: Duration,
    /// Outstanding HTTP requests at most; past it requests are counted as overloaded.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "20000", env = "EMOSTREAM_MAX_IN_FLIGHT")]
    pub max_in_flight: NonZeroUsize,
    /// HTTP connections opened before the clock starts (more open when all are busy).
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "64", env = "EMOSTREAM_CONNECTIONS")]
    pub connections: NonZeroUsize,
    /// HTTP connections at most; past them a due request waits (and the wait is latency).
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "256", env = "EMOSTREAM_MAX_CONNECTIONS")]
    pub max_connections: NonZeroUsize,
    /// Make N request bodies (without timestamps: the server stamps them) before the clock
    /// starts and send them over and over at an even pace, so the simulator spends its time
    /// sending: for measuring the ingest's throughput. 0: realistic traffic.
    #[arg(long, default_value = "0", env = "EMOSTREAM_BODY_POOL")]
    pub body_pool: usize,
    /// Wait for the broker's acknowledgement on every request (?ack=true).
    #[arg(long, env = "EMOSTREAM_ACK")]
    pub ack: bool,
    /// http://HOST:PORT of a broadcaster or of `emostream up` to register viewers with:
    /// they measure the delay from each window's end to its arrival.
    #[arg(long, env = "EMOSTREAM_WATCH")]
    pub watch: Option<String>,
    /// Viewers to connect with --watch.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "10", env = "EMOSTREAM_VIEWERS")]
    pub viewers: NonZeroUsize,
    /// The dataflow's lateness: windows ending within it of the last tap close only after it
    /// once the traffic stops, and are left out of the figures.
    #[command(flatten)]
    pub lateness: LatenessArg,
    /// The dataflow's window size, like 2s (of a list like 2s,60s, the first: the live one
    /// the viewers get). With --watch, each tap is matched to the window of its timestamp.
    #[arg(long, default_value = WindowSpec::DEFAULT_SIZE, value_parser = parse_duration, allow_hyphen_values = true, value_delimiter = ',', env = "EMOSTREAM_WINDOW")]
    pub window: Vec<Duration>,
    /// After the traffic, how long to wait at most for the windows that cover it.
    #[arg(long, default_value = "15s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_DRAIN")]
    pub drain: Duration,
    /// Threads of the simulator.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1", env = "EMOSTREAM_CLIENT_THREADS")]
    pub client_threads: NonZeroUsize,
    /// Seed of the traffic.
    #[arg(long, default_value = "1", env = "EMOSTREAM_SEED")]
    pub seed: u64,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "EMOSTREAM_SUMMARY_JSON")]
    pub summary_json: Option<PathBuf>,
}

impl SimulateArgs {
    /// The dataflow's live window size, validated like the dataflow's own `--window`.
    pub fn live_window(&self) -> Result<model::WindowSize> {
        let spec =
            WindowSpec::from_durations(&self.window, self.lateness.lateness).map_err(|e| {
                let flag = match e {
                    WindowSpecError::Lateness(_) => "--lateness",
                    _ => "--window",
                };
                anyhow::Error::new(e).context(flag)
            })?;
        Ok(spec.live())
    }
}

/// The broadcaster's flags.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct BroadcastFlags {
    /// How much of the past a resuming client can get back.
    #[arg(long, default_value = "60s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_RING")]
    pub ring: Duration,
    /// Bytes a client may have still to get before it is disconnected (close code 4001);
    /// while its socket is full it gets the newest message of each window, superseded
    /// revisions skipped.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1048576", env = "EMOSTREAM_MAX_PENDING")]
    pub max_pending: NonZeroUsize,
    /// A client that takes no byte for this long while it has some to get is disconnected
    /// (close code 4002).
    #[arg(long, default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_WRITE_TIMEOUT")]
    pub write_timeout: Duration,
    /// Shards of the fan-out, each writing every message to its share of the connections
    /// without blocking; 0: one per core.
    #[arg(long, default_value = "0", env = "EMOSTREAM_SHARDS")]
    pub shards: usize,
    /// Largest message a client may send, in bytes (close code 1009 past it).
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "4096", env = "EMOSTREAM_MAX_INBOUND")]
    pub max_inbound: NonZeroUsize,
    /// Interval of keepalive pings.
    #[arg(long, default_value = "20s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_PING_INTERVAL")]
    pub ping_interval: Duration,
    /// Secret that signs connection tokens; every broadcaster of a deployment shares it.
    /// Required by `broadcast`; `up` makes one when none is given.
    #[arg(long, env = "EMOSTREAM_TOKEN_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub token_secret: Option<Secret>,
    /// Topic where broadcasters announce themselves.
    #[arg(long, default_value = model::names::REGISTRY_TOPIC, env = "EMOSTREAM_REGISTRY_TOPIC")]
    pub registry_topic: String,
    /// Where the web page sends taps, like http://127.0.0.1:5000 (`emostream up` sets its own).
    #[arg(long, value_parser = parse_public_url, env = "EMOSTREAM_INGEST_URL")]
    pub ingest_url: Option<String>,
    /// The address viewers use for the broadcaster, behind a TLS proxy or a name, like
    /// wss://live.example.com/c1 (or https://...): registration hands out its /ws. `up`
    /// takes one per cluster, comma-separated. Default: the address listened on.
    #[arg(long, value_parser = parse_public_url, value_delimiter = ',', env = "EMOSTREAM_PUBLIC_URL")]
    pub public_url: Vec<String>,
    /// The windows topic of a longer size, like emoji-windows-60s, for the page's per-minute
    /// timeline (`emostream up --window 2s,60s` sets its own).
    #[arg(long, env = "EMOSTREAM_SUMMARY_TOPIC")]
    pub summary_topic: Option<String>,
    /// Origins whose pages may open WebSockets, comma-separated, like https://match.example;
    /// empty allows any (a handshake without Origin, not from a browser, is always allowed).
    #[arg(long, value_delimiter = ',', env = "EMOSTREAM_WS_ORIGINS")]
    pub ws_origins: Vec<String>,
    /// WebSocket connections one source address may hold at once (429 past it); 0: no limit.
    #[arg(long, default_value = "1000", env = "EMOSTREAM_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: usize,
    /// Handshakes in progress at once; past it a handshake waits its turn, and is answered
    /// 503 with Retry-After when none comes within a second (a client can tell that from a
    /// server that is gone).
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "10000", env = "EMOSTREAM_MAX_HANDSHAKES")]
    pub max_handshakes: NonZeroUsize,
    /// WebSocket clients served at once (503 past it, and registration sends none here); 0:
    /// the open-file limit less 256.
    #[arg(long, default_value = "0", env = "EMOSTREAM_MAX_CLIENTS")]
    pub max_clients: usize,
    /// Show the page's automated sender (a demo tool: that browser taps by itself).
    #[arg(long, env = "EMOSTREAM_DEMO_SENDER")]
    pub demo_sender: bool,
    /// New viewers one source address may register per second (bursts of a second's worth;
    /// 429 past it), so that one client cannot make viewers by the thousand; a registration
    /// with an earlier token keeps its viewer and is not counted. 0 (the default) disables:
    /// viewers behind one address (a NAT, a load test) share its limit.
    #[arg(long, default_value = "0", value_parser = parse_limit, env = "EMOSTREAM_NEW_VIEWER_RATE_LIMIT")]
    pub new_viewer_rate_limit: f64,
}

impl BroadcastFlags {
    /// The configuration of the broadcaster of `cluster` on `listen`.
    pub fn config(
        &self,
        brokers: &str,
        cluster: u32,
        topic: String,
        listen: SocketAddr,
        token_secret: Secret,
    ) -> broadcast::BroadcastConfig {
        broadcast::BroadcastConfig {
            token_secret,
            registry_topic: self.registry_topic.clone(),
            ingest_url: self.ingest_url.clone(),
            summary_topic: self.summary_topic.clone(),
            ws_origins: self
                .ws_origins
                .iter()
                .filter(|o| !o.is_empty())
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            max_connections_per_ip: self.max_connections_per_ip,
            max_handshakes: self.max_handshakes.get(),
            max_clients: self.max_clients,
            demo_sender: self.demo_sender,
            new_viewer_rate_limit: self.new_viewer_rate_limit,
            ring: self.ring,
            max_pending: self.max_pending.get(),
            write_timeout: self.write_timeout,
            shards: self.shards,
            max_inbound: self.max_inbound.get(),
            ping_interval: self.ping_interval,
            ..broadcast::BroadcastConfig::new(brokers.to_owned(), cluster, topic, listen)
        }
    }
}

/// Arguments of `emostream broadcast`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct BroadcastArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// Kafka brokers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "EMOSTREAM_BROKERS", value_parser = parse_brokers)]
    pub brokers: String,
    /// The cluster to serve (1-based): its topic is PREFIX + N.
    #[arg(long, default_value = "1", env = "EMOSTREAM_CLUSTER")]
    pub cluster: NonZeroU32,
    /// Prefix of the cluster topics.
    #[arg(long, default_value = model::names::CLUSTER_TOPIC_PREFIX, env = "EMOSTREAM_CLUSTER_PREFIX")]
    pub cluster_prefix: String,
    /// HTTP and WebSocket address.
    #[arg(
        long,
        default_value = "127.0.0.1:8765",
        env = "EMOSTREAM_BROADCAST_LISTEN"
    )]
    pub listen: SocketAddr,
    /// The broadcaster.
    #[command(flatten)]
    pub broadcast: BroadcastFlags,
    /// The emojis accepted.
    #[command(flatten)]
    pub emojis: EmojisArg,
    /// The proxies in front of it.
    #[command(flatten)]
    pub proxies: ProxyArgs,
    /// Where to say that the service is up.
    #[command(flatten)]
    pub ready: ReadyArgs,
}

/// Arguments of `emostream wsload`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case")]
pub struct WsLoadArgs {
    /// Kafka client settings (TLS, SASL, ...).
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// http://HOST:PORT of a broadcaster to register with (with --register-each, several,
    /// comma-separated: each client tries them in turn from its own).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8765",
        env = "EMOSTREAM_REGISTER"
    )]
    pub register: String,
    /// Each client registers on its own and connects where it is sent (a fleet of
    /// broadcasters); after a drop it registers again and resumes, as the page does.
    #[arg(long, env = "EMOSTREAM_REGISTER_EACH")]
    pub register_each: bool,
    /// WebSocket clients to connect.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1000", env = "EMOSTREAM_CLIENTS")]
    pub clients: NonZeroUsize,
    /// Local addresses to bind, comma-separated (127.0.0.x).
    #[arg(
        long,
        default_value = "127.0.0.1",
        value_delimiter = ',',
        env = "EMOSTREAM_SOURCES"
    )]
    pub sources: Vec<std::net::IpAddr>,
    /// How long to listen once all are connected.
    #[arg(long, default_value = "20s", value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_DURATION")]
    pub duration: Duration,
    /// Feed a synthetic window every 2 s into this cluster topic.
    #[arg(long, env = "EMOSTREAM_FEED_TOPIC")]
    pub feed_topic: Option<String>,
    /// Feed like a live dataflow instead: an open update of the current window at this
    /// interval (like 250ms), and each window's final once the next begins.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, env = "EMOSTREAM_FEED_UPDATES")]
    pub feed_updates: Option<Duration>,
    /// Brokers for --feed-topic.
    #[arg(long, env = "EMOSTREAM_BROKERS")]
    pub brokers: Option<String>,
    /// Threads of the load tool.
    #[arg(long, value_parser = parse_at_least_one::<NonZeroUsize>, default_value = "1", env = "EMOSTREAM_CLIENT_THREADS")]
    pub client_threads: NonZeroUsize,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "EMOSTREAM_SUMMARY_JSON")]
    pub summary_json: Option<PathBuf>,
}

/// A `--public-url` or `--ingest-url`: an absolute http(s) or ws(s) URL with a host.
fn parse_public_url(url: &str) -> Result<String, String> {
    broadcast::check_public_url(url)?;
    Ok(url.trim_end_matches('/').to_owned())
}

/// A secret given on the command line or in the environment (never printed).
fn parse_secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// A `--trusted-proxies` list.
fn parse_trusted_proxies(list: &str) -> Result<TrustedProxies, String> {
    TrustedProxies::parse(list)
}
