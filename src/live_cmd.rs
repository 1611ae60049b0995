//! `emostream ingest`, `emostream dataflow` and `emostream up`: the live services.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use service::Shutdown;
use service::shutdown::trigger_on_signals;

use crate::args::{BroadcastArgs, DataflowArgs, IngestArgs, ReadyArgs, UpArgs, WsLoadArgs};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reaches the brokers (see `reach`) from a blocking thread.
async fn reach_brokers(brokers: &str) -> Result<()> {
    let named = brokers.to_owned();
    tokio::task::spawn_blocking(move || crate::reach::reach_brokers(&named))
        .await
        .context("the broker check stopped")?
}

/// Runs `service` on a new runtime with a shutdown signal that Ctrl-C and SIGTERM trigger,
/// after removing a ready file left by an earlier run (a reader must not take its addresses).
fn until_signal<F: Future<Output = Result<()>>>(
    ready_file: Option<&Path>,
    service: impl FnOnce(Shutdown) -> F,
) -> Result<()> {
    if let Some(path) = ready_file {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| {
                    format!("cannot remove the old ready file {}", path.display())
                });
            }
            _ => {}
        }
    }
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        trigger_on_signals(trigger);
        service(shutdown).await
    })
}

/// Runs `emostream ingest` until Ctrl-C or SIGTERM.
pub fn ingest(args: IngestArgs) -> Result<()> {
    let config = ingest::IngestConfig {
        emojis: Arc::new(args.emojis.emojis.clone()),
        trusted_proxies: args.proxies.trusted(),
        ..args
            .ingest
            .config(&args.brokers, args.token_secret.as_ref())?
    };
    until_signal(
        args.ready.ready_file.clone().as_deref(),
        |shutdown| async move {
            reach_brokers(&config.brokers).await?;
            let running = ingest::start(config, shutdown).await?;
            println!("ingest: POST http://{}/emoji", running.addr);
            if let Some(url) = &args.public_url {
                println!("public: POST {url}/emoji");
            }
            Ready::of(Some(running.addr), None, &[]).write(&args.ready)?;
            running.stopped().await;
            Ok(())
        },
    )
}

/// Runs `emostream dataflow` until Ctrl-C or SIGTERM.
pub fn dataflow(args: DataflowArgs) -> Result<()> {
    let config = dataflow::LiveConfig {
        emojis: Arc::new(args.emojis.emojis.clone()),
        ..args
            .dataflow
            .config(&args.brokers, args.cluster.config()?)?
    };
    until_signal(
        args.ready.ready_file.clone().as_deref(),
        |shutdown| async move {
            reach_brokers(&config.brokers).await?;
            let live = dataflow::start(config, shutdown).await?;
            println!("dataflow: metrics at http://{}/metrics", live.addr);
            Ready::of(None, Some(live.addr), &[]).write(&args.ready)?;
            Ok(live.stopped().await?)
        },
    )
}

/// Runs `emostream up` until Ctrl-C or SIGTERM.
// Long: starts the three services in order and prints their addresses.
pub fn up(args: UpArgs) -> Result<()> {
    let cluster = dataflow::ClusterConfig::new(args.workers.workers.get(), 1, 0, None)?;
    let emojis = Arc::new(args.emojis.emojis.clone());
    let given = args.broadcast.token_secret.clone();
    let secret = match &given {
        Some(secret) => secret.clone(),
        None => service::secret::Secret::new(random_secret()?),
    };
    let ingest_config = ingest::IngestConfig {
        emojis: Arc::clone(&emojis),
        trusted_proxies: args.proxies.trusted(),
        ..args.ingest.config(&args.brokers, Some(&secret))?
    };
    let live_config = dataflow::LiveConfig {
        emojis: Arc::clone(&emojis),
        ..args.dataflow.config(&args.brokers, cluster)?
    };
    until_signal(
        args.ready.ready_file.clone().as_deref(),
        |shutdown| async move {
            let cluster_topics = live_config.cluster_topics();
            let public = &args.broadcast.public_url;
            if !public.is_empty() && public.len() != cluster_topics.len() {
                bail!(
                    "--public-url: {} addresses for {} clusters; give one per cluster, in order",
                    public.len(),
                    cluster_topics.len()
                );
            }
            reach_brokers(&ingest_config.brokers).await?;
            let ingest = ingest::start(ingest_config, shutdown.clone()).await?;
            // The page's per-minute timeline: the windows of the second size, if any.
            let summary_topic = live_config
                .windows
                .more()
                .first()
                .map(|&size| live_config.windows_topic_for(size));
            let live = dataflow::start(live_config, shutdown.clone()).await?;
            let mut broadcasters = Vec::new();
            let key = service::token::TokenSigner::new(secret.expose()).fingerprint();
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
                config.emojis = Arc::clone(&emojis);
                config.public_url = public.get(i).cloned();
                config.trusted_proxies = args.proxies.trusted();
                if config.summary_topic.is_none() {
                    config.summary_topic.clone_from(&summary_topic);
                }
                broadcasters.push(broadcast::start(config, shutdown.clone()).await?);
            }
            // The page first: it is what a new user opens.
            for (i, b) in broadcasters.iter().enumerate() {
                match public.get(i) {
                    Some(url) => println!("page: {url}/   (cluster {})", i + 1),
                    None => println!("page: http://{}/   (cluster {})", b.addr, i + 1),
                }
            }
            println!("EmoStream is up.");
            println!(
                "  ingest:   POST http://{}/emoji   (GET /health, /ready, /metrics)",
                ingest.addr
            );
            println!("  dataflow: http://{}/metrics", live.addr);
            for (i, b) in broadcasters.iter().enumerate() {
                println!(
                    "  cluster {}: {}   (GET /health, /ready, /metrics)",
                    i + 1,
                    broadcast::ws_url(public.get(i).map(String::as_str), b.addr)
                );
            }
            // The secret itself is never printed: a broadcaster started apart needs its own
            // copy, so one made here is said to be made here.
            match given {
                Some(_) => println!("  tokens:   --token-secret, key {key}"),
                None => println!(
                    "  tokens:   a random secret of this run, key {key}; broadcasters started apart need --token-secret given to both"
                ),
            }
            println!("  brokers:  {}", args.brokers.brokers);
            println!("Press Ctrl-C to stop.");
            let addrs: Vec<SocketAddr> = broadcasters.iter().map(|b| b.addr).collect();
            Ready::of(Some(ingest.addr), Some(live.addr), &addrs).write(&args.ready)?;
            // Stop accepting and flush the producer first, then let the dataflow publish what
            // is closed and commit.
            let mut waiting = shutdown.clone();
            waiting.wait().await;
            ingest.stopped().await;
            for b in broadcasters {
                b.stopped().await;
            }
            Ok(live.stopped().await?)
        },
    )
}

/// Runs `emostream broadcast` until Ctrl-C or SIGTERM.
pub fn broadcast(args: BroadcastArgs) -> Result<()> {
    let topic = model::names::cluster_topic(&args.cluster_prefix, args.cluster.get());
    let secret = args.broadcast.token_secret.clone().context(
        "--token-secret (EMOSTREAM_TOKEN_SECRET) is required: every broadcaster of a deployment signs and checks tokens with it",
    )?;
    let mut config = args.broadcast.config(
        &args.brokers,
        args.cluster.get(),
        topic,
        args.listen,
        secret,
    );
    config.public_url = match args.broadcast.public_url.as_slice() {
        [] => None,
        [url] => Some(url.clone()),
        more => bail!(
            "--public-url: {} addresses given; a broadcaster has one (`up` takes one per cluster)",
            more.len()
        ),
    };
    config.emojis = Arc::new(args.emojis.emojis.clone());
    config.trusted_proxies = args.proxies.trusted();
    until_signal(
        args.ready.ready_file.clone().as_deref(),
        |shutdown| async move {
            reach_brokers(&config.brokers).await?;
            let public = config
                .public_url
                .as_deref()
                .map(|u| broadcast::ws_url(Some(u), args.listen));
            let running = broadcast::start(config, shutdown).await?;
            println!("page: http://{}/", running.addr);
            println!("broadcast: ws://{}/ws", running.addr);
            if let Some(url) = &public {
                println!("public: {url}");
            }
            Ready::of(None, None, &[running.addr]).write(&args.ready)?;
            running.stopped().await;
            Ok(())
        },
    )
}

/// The addresses a started service listens on, written as JSON to `--ready-file` once
/// every part of it is up: what tests and scripts read instead of the banner.
#[derive(Debug, Serialize)]
struct Ready {
    #[serde(skip_serializing_if = "Option::is_none")]
    ingest: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataflow: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    broadcast: Vec<SocketAddr>,
}

impl Ready {
    /// The addresses of the parts a command runs.
    fn of(
        ingest: Option<SocketAddr>,
        dataflow: Option<SocketAddr>,
        broadcast: &[SocketAddr],
    ) -> Self {
        Ready {
            ingest,
            dataflow,
            broadcast: broadcast.to_vec(),
        }
    }

    /// Writes the file whole (a reader never sees half of it).
    fn write(&self, to: &ReadyArgs) -> Result<()> {
        let Some(path) = &to.ready_file else {
            return Ok(());
        };
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        std::fs::write(&partial, serde_json::to_string(self)? + "\n")
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write the ready file {}", path.display()))
    }
}

/// A fresh secret for the tokens of one `emostream up`, from the operating system's random
/// source.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `emostream wsload` and prints its report.
pub fn ws_load(args: WsLoadArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.get())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bases: Vec<String> = args
        .register
        .split(',')
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    // The brokers first: a wrong one is told before any viewer connects.
    let feed = match (&args.feed_topic, &args.brokers) {
        (Some(topic), Some(brokers)) => {
            crate::reach::reach_brokers(brokers)?;
            Some((brokers.clone(), topic.clone()))
        }
        (Some(_), None) => anyhow::bail!("--feed-topic needs --brokers"),
        _ => None,
    };
    let ws_url = runtime
        .block_on(loadgen::register::register(
            bases.first().map_or("", String::as_str),
            "wsload",
        ))?
        .ws_url;
    let config = loadgen::ws_load::WsLoadConfig {
        ws_url,
        register_each: if args.register_each {
            bases
        } else {
            Vec::new()
        },
        clients: args.clients.get(),
        sources: args.sources.clone(),
        duration: args.duration,
        feed,
        feed_every: std::time::Duration::from_secs(2),
        feed_updates: args.feed_updates,
    };
    let report = runtime.block_on(loadgen::ws_load::run_ws_load(config));
    eprintln!(
        "{} connected ({} failed) in {:.1} s; {} reconnections (longest {} ms); {} windows, {} complete; {} finals, {} complete; fan-out completion p50 {} ms, p99 {} ms, max {} ms; delivery p50 {} ms, p99 {} ms",
        report.connected,
        report.failed,
        report.connect_seconds,
        report.reconnects,
        report.reconnect_max_ms,
        report.windows,
        report.complete_windows,
        report.finals,
        report.complete_finals,
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
