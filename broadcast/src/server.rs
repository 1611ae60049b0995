//! Starting and stopping a broadcaster: its topics, consumers and registry, and the HTTP
//! loop that hands each connection to the routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use model::emojis::EmojiSet;
use model::now_ms;
use service::Shutdown;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::BroadcastConfig;
use crate::consumer::{spawn_consumer, spawn_summary_consumer};
use crate::error::BroadcastError;
use crate::hub::Hub;
use crate::metrics::BroadcastMetrics;
use crate::registry::{Heartbeat, Registry, spawn_registry};
use crate::routes::handle;
use crate::session::SessionContext;
use crate::token::TokenSigner;

/// A running broadcaster.
pub struct RunningBroadcaster {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Arc<BroadcastMetrics>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroadcaster {
    /// Waits until it has stopped (after the shutdown signal).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// What every connection of a broadcaster shares.
pub(crate) struct State {
    pub(crate) ctx: SessionContext,
    pub(crate) ws_origins: Vec<String>,
    pub(crate) max_per_ip: usize,
    pub(crate) per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) signer: TokenSigner,
    pub(crate) token_ttl: std::time::Duration,
    pub(crate) ingest_url: Option<String>,
    /// The emojis accepted, the page's buttons.
    pub(crate) emojis: Arc<EmojiSet>,
}

/// The threads that feed a broadcaster from Kafka: the cluster topic into the hub, the
/// summary topic, and the registry (heartbeats in and out).
struct Feeds {
    threads: Vec<std::thread::JoinHandle<()>>,
    registry: Arc<Registry>,
}

/// Starts a broadcaster for `config.cluster`, serving until `shutdown`.
pub async fn start(
    config: BroadcastConfig,
    shutdown: Shutdown,
) -> Result<RunningBroadcaster, BroadcastError> {
    let listen_error = |source| BroadcastError::Listen {
        addr: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let metrics = Arc::new(BroadcastMetrics::default());
    let hub = Arc::new(Hub::new(config.ring.as_millis() as i64, config.max_lag));
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = now_ms();
    let feeds = start_feeds(&config, addr, epoch, &hub, &metrics, &stop).await?;
    // A small read buffer: clients send little, and idle connections are most of them.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(config.max_inbound))
        .max_frame_size(Some(config.max_inbound));
    let state = Arc::new(State {
        ws_origins: config.ws_origins.clone(),
        max_per_ip: config.max_connections_per_ip,
        per_ip: Arc::default(),
        ctx: SessionContext {
            cluster: config.cluster,
            epoch,
            write_timeout: config.write_timeout,
            ping_interval: config.ping_interval,
            hub,
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
        },
        ws_config,
        registry: Arc::clone(&feeds.registry),
        signer: TokenSigner::new(config.token_secret.clone()),
        token_ttl: config.token_ttl,
        ingest_url: config.ingest_url.clone(),
        emojis: Arc::clone(&config.emojis),
    });
    let task = tokio::spawn(serve(listener, state, shutdown, stop, feeds.threads));
    tracing::info!(%addr, cluster = config.cluster, topic = %config.topic, "Broadcaster listening.");
    Ok(RunningBroadcaster {
        addr,
        metrics,
        task,
    })
}

/// Creates the topics when missing and starts the threads that read them.
// Long: the three feeding threads each take their own clones of the shared state.
async fn start_feeds(
    config: &BroadcastConfig,
    addr: SocketAddr,
    epoch: i64,
    hub: &Arc<Hub>,
    metrics: &Arc<BroadcastMetrics>,
    stop: &Arc<AtomicBool>,
) -> Result<Feeds, BroadcastError> {
    // The cluster topic and the registry topic, when missing: one partition each, so every
    // broadcaster reads them in order.
    let topics = [config.registry_topic.clone(), config.topic.clone()].map(|name| {
        service::kafka::TopicSpec {
            name,
            partitions: 1,
        }
    });
    service::kafka::ensure_topics(&config.brokers, &topics, 1).await?;
    let mut threads = Vec::new();
    let (brokers, topic) = (config.brokers.clone(), config.topic.clone());
    let (feed_hub, feed_metrics, feed_stop) =
        (Arc::clone(hub), Arc::clone(metrics), Arc::clone(stop));
    threads.push(
        tokio::task::spawn_blocking(move || {
            spawn_consumer(&brokers, &topic, feed_hub, feed_metrics, feed_stop)
        })
        .await
        .map_err(|e| BroadcastError::Panicked(e.to_string()))??,
    );
    if let Some(topic) = &config.summary_topic {
        threads.push(spawn_summary_consumer(
            &config.brokers,
            topic,
            Arc::clone(hub),
            Arc::clone(stop),
        )?);
    }
    let registry = Arc::new(Registry::default());
    let me = Heartbeat {
        id: format!("{}-{}-{epoch}", addr, std::process::id()),
        cluster: config.cluster,
        ws_url: format!("ws://{addr}/ws"),
        connections: 0,
    };
    let (brokers, topic) = (config.brokers.clone(), config.registry_topic.clone());
    let (heard, own_metrics, registry_stop) =
        (Arc::clone(&registry), Arc::clone(metrics), Arc::clone(stop));
    threads.push(
        tokio::task::spawn_blocking(move || {
            spawn_registry(
                &brokers,
                &topic,
                Some((me, own_metrics)),
                heard,
                registry_stop,
            )
        })
        .await
        .map_err(|e| BroadcastError::Panicked(e.to_string()))??,
    );
    Ok(Feeds { threads, registry })
}

/// Accepts connections until `shutdown`, then stops the feeding threads.
async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut shutdown: Shutdown,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&state), peer));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
            () = shutdown.wait() => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    tracing::info!("Broadcaster stopped.");
}
