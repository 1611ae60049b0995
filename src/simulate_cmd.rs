//! `emostream simulate`: realistic traffic offered open loop to the ingest API (or straight
//! into Kafka), with viewers registered at a broadcaster measuring when the windows arrive
//! and when each accepted tap first shows in a viewer's counts (tap-to-swarm latency).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use loadgen::generator::Profile;
use loadgen::register::register;
use loadgen::simulate::{
    SimulateConfig, SimulateReport, Tally, TapToSwarm, Target, run_simulation_counted,
};
use loadgen::viewers::{ViewerReport, Viewers};
use serde::Serialize;

use crate::args::{ProfileArg, SimulateArgs};

#[derive(Serialize)]
struct Summary {
    traffic: SimulateReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    viewers: Option<ViewerReport>,
}

/// Runs `emostream simulate` and prints its summary.
// Long: turns the arguments into the config, registers the viewers, runs, and prints the summary: each step is a few lines.
pub fn simulate(args: SimulateArgs) -> Result<()> {
    let target = match &args.brokers {
        Some(brokers) => {
            let brokers = service::kafka::parse_brokers(brokers)?;
            crate::reach::reach_brokers(&brokers)?;
            Target::Kafka {
                brokers,
                topic: args.events_topic.clone(),
            }
        }
        None => Target::Http {
            addr: args
                .target
                .as_deref()
                .unwrap_or("http://127.0.0.1:5000")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            ack: args.ack,
        },
    };
    let window = args.live_window()?;
    // Only timestamped taps over HTTP have a known window and a known acceptance.
    let follow_taps =
        args.watch.is_some() && matches!(target, Target::Http { .. }) && args.body_pool == 0;
    let config = SimulateConfig {
        target,
        users: args.users.get(),
        rate: args.rate,
        duration: args.duration,
        profile: match args.profile {
            ProfileArg::Steady => Profile::Steady,
            ProfileArg::Match => Profile::Match,
        },
        batch: args.batch.get(),
        jitter: args.jitter,
        max_in_flight: args.max_in_flight.get(),
        connections: args.connections.get(),
        max_connections: args.max_connections.get(),
        body_pool: args.body_pool,
        seed: args.seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.get())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut ws_urls = Vec::new();
    if let Some(watch) = &args.watch {
        for i in 0..args.viewers.get() {
            let id = format!("simulate-viewer-{i}");
            ws_urls.push(runtime.block_on(register(watch, &id))?.ws_url);
        }
    }
    let summary = runtime.block_on(async {
        let from_ms = model::now_ms();
        let tap_to_swarm = follow_taps.then(|| Arc::new(TapToSwarm::new(window, ws_urls.len())));
        let viewers =
            (!ws_urls.is_empty()).then(|| Viewers::start(ws_urls, from_ms, tap_to_swarm.clone()));
        let tally = Arc::new(match tap_to_swarm {
            Some(t) => Tally::with_tap_to_swarm(t),
            None => Tally::default(),
        });
        let progress = std::io::stderr()
            .is_terminal()
            .then(|| tokio::spawn(show_progress(Arc::clone(&tally))));
        let traffic = run_simulation_counted(config, tally).await;
        if let Some(progress) = progress {
            progress.abort();
            eprintln!();
        }
        let viewers = match viewers {
            Some(v) => Some(
                v.finish(traffic.last_event_ms, args.lateness.lateness, args.drain)
                    .await,
            ),
            None => None,
        };
        Summary { traffic, viewers }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let t = &summary.traffic;
    let rejected: Vec<String> = t
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    eprintln!(
        "offered {} events ({:.0}/s) in {} sends, accepted {} ({:.0}/s); rejected [{}], errors {}, overloaded {}; \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} connections; send lag at most {:.1} ms",
        t.events_offered,
        t.offered_rate,
        t.sent,
        t.events_accepted,
        t.accepted_rate,
        rejected.join(", "),
        t.errors,
        t.overloaded,
        t.p50_ms,
        t.p99_ms,
        t.max_ms,
        t.connections,
        t.send_lag_max_ms,
    );
    if let Some(first) = &t.first_error {
        eprintln!("first error: {first}");
    }
    if let Some(v) = &summary.viewers {
        eprintln!(
            "viewers: {} of {} connected, {} windows, {} arrivals; window end to arrival p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
            v.connected, v.viewers, v.windows, v.deliveries, v.p50_ms, v.p95_ms, v.p99_ms, v.max_ms
        );
        match &v.tap_to_swarm {
            Some(s) => eprintln!(
                "tap to swarm (every tap at every viewer, from its 2xx answer to the first frame counting it): \
                 {} taps, {} (tap, viewer) pairs measured; p50 {} ms, p99 {} ms, max {} ms",
                s.taps, s.measured, s.p50_ms, s.p99_ms, s.max_ms
            ),
            None => eprintln!(
                "tap to swarm: not measured (it needs timestamped taps over HTTP: no --brokers, no --body-pool)"
            ),
        }
    }
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string(&summary)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match &t.first_error {
        Some(first) if t.events_accepted == 0 => anyhow::bail!("no event was accepted: {first}"),
        _ => Ok(()),
    }
}

/// A progress line on the terminal, every second.
async fn show_progress(tally: Arc<Tally>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let started = Instant::now();
    loop {
        tick.tick().await;
        let p = tally.progress();
        eprint!(
            "\r{:>5.0} s  sent {}  accepted {}  rejected {}  errors {}  in flight {}   ",
            started.elapsed().as_secs_f64(),
            p.sent,
            p.accepted,
            p.rejected,
            p.errors,
            p.in_flight,
        );
    }
}
