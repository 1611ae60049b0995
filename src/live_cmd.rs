//! `emostream ingest`, `emostream dataflow` and `emostream up`: the live services.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use dataflow::RunControl;
use dataflow::metrics::DataflowMetrics;
use service::Shutdown;
use service::shutdown::trigger_on_signals;

use crate::args::{BroadcastArgs, DataflowArgs, IngestArgs, UpArgs, WsLoadArgs};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `emostream ingest` until Ctrl-C or SIGTERM.
pub fn ingest(args: IngestArgs) -> Result<()> {
    let config = args.ingest.config(&args.brokers)?;
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        let running = ingest::start(config, shutdown).await?;
        println!("ingest: POST http://{}/emoji", running.addr);
        running.stopped().await;
        Ok(())
    })
}

/// Runs `emostream dataflow` until Ctrl-C or SIGTERM.
pub fn dataflow(args: DataflowArgs) -> Result<()> {
    let config = args
        .dataflow
        .config(&args.brokers, args.cluster.config()?)?;
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        let live = LiveDataflow::start(config, shutdown.clone()).await?;
        println!("dataflow: metrics at http://{}/metrics", live.metrics_addr);
        live.finish(shutdown).await
    })
}

/// Runs `emostream up` until Ctrl-C or SIGTERM.
pub fn up(args: UpArgs) -> Result<()> {
    let cluster = args.cluster.config()?;
    anyhow::ensure!(
        cluster.processes == 1,
        "emostream up runs in one process; use emostream dataflow for several"
    );
    let ingest_config = args.ingest.config(&args.brokers)?;
    let live_config = args.dataflow.config(&args.brokers, cluster)?;
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        let ingest = ingest::start(ingest_config, shutdown.clone()).await?;
        let cluster_topics = live_config.cluster_topics();
        // The page's per-minute timeline: the windows of the second size, if any.
        let summary_topic = live_config
            .more_windows
            .first()
            .map(|&size| live_config.windows_topic_for(size));
        let live = LiveDataflow::start(live_config, shutdown.clone()).await?;
        let mut broadcasters = Vec::new();
        let secret = args
            .broadcast
            .token_secret
            .clone()
            .unwrap_or_else(random_secret);
        for (i, topic) in cluster_topics.into_iter().enumerate() {
            let mut listen = args.broadcast_listen;
            if listen.port() != 0 {
                listen.set_port(listen.port() + i as u16);
            }
            let mut config = args.broadcast.config(
                &args.brokers.brokers,
                i as u32 + 1,
                topic,
                listen,
                secret.clone(),
            );
            config
                .ingest_url
                .get_or_insert_with(|| format!("http://{}", ingest.addr));
            if config.summary_topic.is_none() {
                config.summary_topic.clone_from(&summary_topic);
            }
            broadcasters.push(broadcast::start(config, shutdown.clone()).await?);
        }
        println!("EmoStream is up.");
        println!(
            "  ingest:   POST http://{}/emoji   (GET /health, /metrics)",
            ingest.addr
        );
        println!("  dataflow: http://{}/metrics", live.metrics_addr);
        for (i, b) in broadcasters.iter().enumerate() {
            println!(
                "  cluster {}: ws://{}/ws   (GET /health, /metrics)",
                i + 1,
                b.addr
            );
        }
        println!("  brokers:  {}", args.brokers.brokers);
        println!("Press Ctrl-C to stop.");
        // Stop accepting and flush the producer first, then let the dataflow publish what
        // is closed and commit.
        let mut waiting = shutdown.clone();
        waiting.wait().await;
        ingest.stopped().await;
        for b in broadcasters {
            b.stopped().await;
        }
        live.finish(shutdown).await
    })
}

/// Runs `emostream broadcast` until Ctrl-C or SIGTERM.
pub fn broadcast(args: BroadcastArgs) -> Result<()> {
    let topic = format!("{}{}", args.cluster_prefix, args.cluster);
    let secret = args.broadcast.token_secret.clone().context(
        "--token-secret (EMOSTREAM_TOKEN_SECRET) is required: every broadcaster of a deployment signs and checks tokens with it",
    )?;
    let config = args.broadcast.config(
        &args.brokers,
        args.cluster.get(),
        topic,
        args.listen,
        secret,
    );
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        let running = broadcast::start(config, shutdown).await?;
        println!("broadcast: ws://{}/ws", running.addr);
        running.stopped().await;
        Ok(())
    })
}

/// The live dataflow running on its own threads, with its metrics server.
struct LiveDataflow {
    metrics_addr: SocketAddr,
    control: Arc<RunControl>,
    task: tokio::task::JoinHandle<Result<(), dataflow::LiveError>>,
}

impl LiveDataflow {
    async fn start(config: dataflow::LiveConfig, shutdown: Shutdown) -> Result<Self> {
        let prepared = dataflow::live::prepare(&config).await?;
        let metrics = Arc::new(DataflowMetrics::new(prepared.partitions));
        let listen = config
            .metrics_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let metrics_addr = listener.local_addr()?;
        let routes = service::http::health_and_metrics(Arc::clone(&metrics));
        let mut signal = shutdown.clone();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move { signal.wait().await })
                .run(),
        );
        let control = Arc::new(RunControl::new(false));
        let worker_control = Arc::clone(&control);
        let task = tokio::task::spawn_blocking(move || {
            dataflow::run_live(config, prepared, worker_control, metrics)
        });
        Ok(LiveDataflow {
            metrics_addr,
            control,
            task,
        })
    }

    /// Waits for the shutdown (or a failure), then stops the dataflow cleanly.
    async fn finish(mut self, mut shutdown: Shutdown) -> Result<()> {
        tokio::select! {
            () = shutdown.wait() => {}
            result = &mut self.task => {
                return match result {
                    Ok(Ok(())) => Err(anyhow!("the dataflow stopped by itself")),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(anyhow!("the dataflow failed: {e}")),
                };
            }
        }
        self.control.request_stop();
        self.task
            .await
            .map_err(|e| anyhow!("the dataflow failed: {e}"))??;
        tracing::info!("Dataflow stopped: closed windows published, offsets committed.");
        Ok(())
    }
}

/// A fresh random secret for the tokens of one `emostream up`.
fn random_secret() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let a = state.hash_one(std::time::SystemTime::now());
    let b = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{a:016x}{b:016x}")
}

/// Runs `emostream wsload` and prints its report.
pub fn ws_load(args: WsLoadArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.get())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ws_url = runtime
        .block_on(loadgen::register::register(&args.register, "wsload"))?
        .ws_url;
    let feed = match (&args.feed_topic, &args.brokers) {
        (Some(topic), Some(brokers)) => Some((brokers.clone(), topic.clone())),
        (Some(_), None) => anyhow::bail!("--feed-topic needs --brokers"),
        _ => None,
    };
    let config = loadgen::ws_load::WsLoadConfig {
        ws_url,
        clients: args.clients.get(),
        sources: args.sources.clone(),
        duration: args.duration,
        feed,
        feed_every: std::time::Duration::from_secs(2),
    };
    let report = runtime.block_on(loadgen::ws_load::run_ws_load(config));
    eprintln!(
        "{} connected ({} failed) in {:.1} s; {} reconnections (longest {} ms); {} windows, {} complete; fan-out completion p50 {} ms, p99 {} ms, max {} ms; delivery p50 {} ms, p99 {} ms",
        report.connected,
        report.failed,
        report.connect_seconds,
        report.reconnects,
        report.reconnect_max_ms,
        report.windows,
        report.complete_windows,
        report.completion_p50_ms,
        report.completion_p99_ms,
        report.completion_max_ms,
        report.delivery_p50_ms,
        report.delivery_p99_ms
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
