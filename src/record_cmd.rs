//! Recorded matches: `emostream record` writes a topic to a CSV log, and
//! `emostream replay --to-kafka` puts logs back into the events topic at their pace.

use anyhow::{Context, Result};
use loadgen::recording::{
    From, InjectConfig, RecordConfig, dump_topic, inject, record as record_topic,
};
use service::Shutdown;
use service::kafka::{TopicSpec, ensure_topics};
use service::shutdown::trigger_on_signals;

use crate::args::{FromArg, RecordArgs, ReplayArgs, WindowsArgs};

/// Runs `work` on a blocking thread with a stop flag raised by SIGINT or SIGTERM.
fn until_signal<T: Send + 'static>(
    prepare: impl Future<Output = Result<()>>,
    work: impl FnOnce(&dyn Fn() -> bool) -> T + Send + 'static,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        prepare.await?;
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        tokio::task::spawn_blocking(move || work(&|| shutdown.is_triggered()))
            .await
            .context("the worker thread failed")
    })
}

/// Runs `emostream record`.
pub fn record(args: RecordArgs) -> Result<()> {
    let config = RecordConfig {
        brokers: args.brokers,
        topic: args.topic,
        out: args.out,
        from: match args.from {
            FromArg::Earliest => From::Earliest,
            FromArg::Now => From::Now,
        },
        until: args.until,
    };
    crate::reach::reach_brokers(&config.brokers)?;
    let out = config.out.clone();
    let report = until_signal(async { Ok(()) }, move |stop| record_topic(&config, stop))??;
    eprintln!(
        "recorded {} events to {} ({} records skipped: not events)",
        report.events,
        out.display(),
        report.skipped
    );
    Ok(())
}

/// Runs `emostream windows`.
pub fn windows(args: WindowsArgs) -> Result<()> {
    crate::reach::reach_brokers(&args.brokers)?;
    let written = until_signal(async { Ok(()) }, move |stop| {
        let mut out: Box<dyn std::io::Write> = match &args.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        Ok::<_, anyhow::Error>(dump_topic(&args.brokers, &args.topic, &mut out, stop)?)
    })??;
    eprintln!("{written} window messages");
    Ok(())
}

/// Runs `emostream replay --to-kafka`.
pub fn to_kafka(args: &ReplayArgs) -> Result<()> {
    let brokers = args
        .brokers
        .clone()
        .context("--to-kafka needs --brokers or EMOSTREAM_BROKERS")?;
    crate::reach::reach_brokers(&brokers)?;
    let config = InjectConfig {
        paths: args.paths.clone(),
        brokers: brokers.clone(),
        topic: args.events_topic.clone(),
        speed: args.speed,
        keep_timestamps: args.keep_timestamps,
    };
    let topic = TopicSpec {
        name: args.events_topic.clone(),
        partitions: args.partitions.get() as i32,
    };
    let report = until_signal(
        async move {
            ensure_topics(&brokers, &[topic], 1).await?;
            Ok(())
        },
        move |stop| inject(&config, stop),
    )??;
    eprintln!(
        "sent {} events ({} acknowledged, {} refused, {} rows rejected) in {:.1} s; the log covers {:.1} s",
        report.events,
        report.acknowledged,
        report.failed,
        report.rejected,
        report.seconds,
        report.log_seconds
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    anyhow::ensure!(
        report.failed == 0,
        "the broker refused {} events",
        report.failed
    );
    Ok(())
}
