//! Command-line arguments, and their conversion into the services' typed configs.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use dataflow::{ClusterConfig, Engine, ReplayConfig};
use model::duration::parse_duration;
use model::{ReportConfig, WindowSize};

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
}

/// Which implementation counts the windows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// The hand-written timely operator.
    Timely,
    /// The differential-dataflow formulation.
    Differential,
}

/// Arguments of `emostream replay`.
#[derive(Debug, Args)]
#[command(rename_all = "kebab-case", disable_help_flag = true)]
pub struct ReplayArgs {
    /// CSV logs, or directories of them (their .csv files, in name order).
    #[arg(required = true, env = "EMOSTREAM_REPLAY_PATHS", value_delimiter = ',')]
    pub paths: Vec<PathBuf>,
    /// Worker threads per process.
    #[arg(
        short = 'w',
        long,
        alias = "threads",
        default_value = "1",
        env = "EMOSTREAM_WORKERS"
    )]
    pub workers: NonZeroUsize,
    /// Number of processes.
    #[arg(short = 'n', long, default_value = "1", env = "EMOSTREAM_PROCESSES")]
    pub processes: NonZeroUsize,
    /// Index of this process, from 0 to processes-1.
    #[arg(short = 'p', long, default_value = "0", env = "EMOSTREAM_PROCESS")]
    pub process: usize,
    /// File of `host:port` lines, one per process, in process order.
    #[arg(short = 'h', long, env = "EMOSTREAM_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
    /// Tumbling window size, like 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "EMOSTREAM_WINDOW")]
    pub window: Duration,
    /// How far behind the newest event of a partition an event may be and still count.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "EMOSTREAM_LATENESS")]
    pub lateness: Duration,
    /// Each SCALE emojis of a type count as one in scaled_count.
    #[arg(long, default_value = "1000", env = "EMOSTREAM_SCALE")]
    pub scale: NonZeroU64,
    /// Leave out of a window's report the emojis with fewer events than this.
    #[arg(long, default_value = "1", env = "EMOSTREAM_MIN_COUNT")]
    pub min_count: u64,
    /// Write the window rows to this file instead of stdout.
    #[arg(long, env = "EMOSTREAM_OUT")]
    pub out: Option<PathBuf>,
    /// Write late events to this file (a replayable log).
    #[arg(long, env = "EMOSTREAM_LATE_OUT")]
    pub late_out: Option<PathBuf>,
    /// Write rejected rows to this file (line,reason,raw,file).
    #[arg(long, env = "EMOSTREAM_REJECTS_OUT")]
    pub rejects_out: Option<PathBuf>,
    /// Stop at the first rejected row with exit code 2.
    #[arg(long, env = "EMOSTREAM_STRICT")]
    pub strict: bool,
    /// Which implementation counts the windows.
    #[arg(long, value_enum, default_value = "timely", env = "EMOSTREAM_ENGINE")]
    pub engine: EngineArg,
    /// Bytes per block when workers share a file.
    #[arg(long, default_value = "1048576", env = "EMOSTREAM_BLOCK_BYTES")]
    pub block_bytes: NonZeroU64,
    /// Also write the summary as JSON to this file.
    #[arg(long, env = "EMOSTREAM_SUMMARY_JSON")]
    pub summary_json: Option<PathBuf>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl ReplayArgs {
    /// The validated replay configuration.
    pub fn config(&self) -> Result<ReplayConfig> {
        let cluster = ClusterConfig::new(
            self.workers.get(),
            self.processes.get(),
            self.process,
            self.hostfile.as_deref(),
        )?;
        let window = WindowSize::from_duration(self.window).context("--window")?;
        if !self.lateness.subsec_nanos().is_multiple_of(1_000_000) {
            bail!("--lateness must be a whole number of milliseconds");
        }
        Ok(ReplayConfig {
            paths: self.paths.clone(),
            cluster,
            window,
            lateness: self.lateness,
            report: ReportConfig {
                scale: self.scale,
                min_count: self.min_count,
            },
            engine: match self.engine {
                EngineArg::Timely => Engine::Timely,
                EngineArg::Differential => Engine::Differential,
            },
            out: self.out.clone(),
            late_out: self.late_out.clone(),
            rejects_out: self.rejects_out.clone(),
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
    #[arg(long, default_value = "100000", env = "EMOSTREAM_USERS")]
    pub users: NonZeroU64,
    /// Offered rate in event time, like 10000/s.
    #[arg(long, default_value = "10000/s", value_parser = parse_rate, env = "EMOSTREAM_RATE")]
    pub rate: f64,
    /// Shape of the rate over time.
    #[arg(long, value_enum, default_value = "match", env = "EMOSTREAM_PROFILE")]
    pub profile: ProfileArg,
    /// Event time of the first event (any accepted timestamp form).
    #[arg(long, default_value = "2026-11-22T10:00:00Z", value_parser = parse_start, env = "EMOSTREAM_START")]
    pub start: i64,
    /// Largest network delay of an ordinary event.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, env = "EMOSTREAM_DISORDER")]
    pub disorder: Duration,
    /// Share of events that arrive late, after --late-delay.
    #[arg(long, default_value = "0", env = "EMOSTREAM_LATE_FRACTION")]
    pub late_fraction: f64,
    /// Delay of a late event.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "EMOSTREAM_LATE_DELAY")]
    pub late_delay: Duration,
    /// Seed of the generator: the same seed gives the same log.
    #[arg(long, default_value = "1", env = "EMOSTREAM_SEED")]
    pub seed: u64,
    /// Write the log here instead of stdout.
    #[arg(long, env = "EMOSTREAM_OUT")]
    pub out: Option<PathBuf>,
}

/// Parses a rate like `10000/s` or `10000`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "invalid rate \"{text}\": expected events per second, like 10000/s"
        )),
    }
}

fn parse_start(text: &str) -> Result<i64, String> {
    model::parse_timestamp(text).map_err(|e| e.to_string())
}
