//! `emostream`: the command-line entry point. It parses arguments into typed configs and
//! hands them to the service crates; it holds no logic of its own.

mod args;
mod generate_cmd;
mod live_cmd;
mod peak_memory;
mod reach;
mod record_cmd;
mod replay_cmd;
mod simulate_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Exit code of a run that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a strict replay that met a rejected row (and of bad arguments).
const EXIT_REJECTED: u8 = 2;
/// Exit code of a run that failed on something passing (a broker away or busy): running it
/// again may succeed.
const EXIT_RETRYABLE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| exit_on(error));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(kafka) = cli.command.kafka() {
        match kafka.settings() {
            Ok(settings) => {
                if !settings.left_out().is_empty() {
                    tracing::warn!(settings = ?settings.left_out(), "Java client settings librdkafka has no equivalent of: left out.");
                }
                if !settings.is_empty() {
                    tracing::info!(%settings, "Kafka client settings.");
                }
                service::kafka_settings::use_settings(settings);
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_REJECTED);
            }
        }
    }
    let result = match cli.command {
        Command::Replay(args) => replay_cmd::run(*args),
        Command::Generate(args) => generate_cmd::run(args),
        Command::Record(args) => record_cmd::record(args),
        Command::Windows(args) => record_cmd::windows(args),
        Command::Ingest(args) => live_cmd::ingest(*args),
        Command::Dataflow(args) => live_cmd::dataflow(*args),
        Command::Up(args) => live_cmd::up(*args),
        Command::Simulate(args) => simulate_cmd::simulate(*args),
        Command::Broadcast(args) => live_cmd::broadcast(*args),
        Command::Wsload(args) => live_cmd::ws_load(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let rejected = e
                .downcast_ref::<dataflow::ReplayError>()
                .is_some_and(|e| matches!(e, dataflow::ReplayError::Rejected(_)));
            // One line: what went wrong, and whether running it again can help.
            if rejected {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_REJECTED)
            } else if is_retryable(&e) {
                eprintln!(
                    "error: {e:#} (the brokers were away or busy: running it again may succeed)"
                );
                ExitCode::from(EXIT_RETRYABLE)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// Prints a bad command line's error and exits; a missing broker also says how to get one.
fn exit_on(error: clap::Error) -> ! {
    // The missing arguments are the error's context (its usage line names every required one).
    let missing_brokers = error.kind() == clap::error::ErrorKind::MissingRequiredArgument
        && matches!(
            error.get(clap::error::ContextKind::InvalidArg),
            Some(clap::error::ContextValue::Strings(missing))
                if missing.iter().any(|m| m.starts_with("--brokers"))
        );
    if !missing_brokers {
        error.exit()
    }
    let _ = error.print();
    eprintln!(
        "\nNo Kafka broker named: `make up` starts one on this machine and runs the system on \
         it; --brokers HOST:PORT (or EMOSTREAM_BROKERS) names one that runs already."
    );
    std::process::exit(EXIT_REJECTED.into())
}

/// Whether the error, or one of its causes, says that running again may help.
fn is_retryable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<dataflow::LiveError>()
            .map(dataflow::LiveError::is_retryable)
            .or_else(|| {
                cause
                    .downcast_ref::<ingest::IngestError>()
                    .map(ingest::IngestError::is_retryable)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<broadcast::BroadcastError>()
                    .map(broadcast::BroadcastError::is_retryable)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<loadgen::recording::RecordingError>()
                    .map(loadgen::recording::RecordingError::is_retryable)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<service::kafka::TopicError>()
                    .map(service::kafka::TopicError::is_retryable)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<service::kafka::ReachError>()
                    .map(service::kafka::ReachError::is_retryable)
            })
            // The brokers did not answer a service starting up.
            .or_else(|| {
                cause
                    .downcast_ref::<service::kafka::KafkaError>()
                    .map(|_| true)
            })
            .unwrap_or(false)
    })
}
