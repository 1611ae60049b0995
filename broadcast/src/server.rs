//! Starting and stopping a broadcaster: its topics, consumers and registry, and the HTTP
//! loop that hands each connection to the routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use model::now_ms;
use service::Shutdown;
use service::http::{ServeLimits, serve};

use crate::config::BroadcastConfig;
use crate::consumer::{spawn_consumer, spawn_summary_consumer};
use crate::error::BroadcastError;
use crate::fanout::{Fanout, FanoutConfig};
use crate::hub::Hub;
use crate::metrics::BroadcastMetrics;
use crate::registration::Registrar;
use crate::registry::{Heartbeat, Registry, spawn_registry};
use crate::reply::json_error;
use crate::routes::{Site, routes};
use crate::upgrade::Gate;
use service::token::TokenSigner;

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
    if config.public_url.is_none() && addr.ip().is_unspecified() {
        return Err(BroadcastError::NoPublicUrl(addr));
    }
    let metrics = Arc::new(BroadcastMetrics::default());
    let hub = Arc::new(Hub::new(config.ring.as_millis() as i64));
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = now_ms();
    let fanout = Fanout::start(
        FanoutConfig {
            cluster: config.cluster,
            epoch,
            write_timeout: config.write_timeout,
            max_pending: config.max_pending,
            ping_interval: config.ping_interval,
            shards: config.shards,
        },
        hub,
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    let capacity = clients_capacity(config.max_clients);
    let feeds = start_feeds(&config, addr, epoch, capacity, &fanout, &metrics, &stop).await?;
    let ready = service::ready::Readiness::starting();
    service::ready::watch_brokers(Arc::clone(&ready), config.brokers.clone(), shutdown.clone());
    let signer = TokenSigner::new(config.token_secret.expose());
    let gate = Arc::new(Gate {
        cluster: config.cluster,
        signer: signer.clone(),
        ws_origins: config.ws_origins.clone(),
        max_per_ip: config.max_connections_per_ip,
        per_ip: Arc::default(),
        max_clients: capacity,
        clients: Arc::default(),
        max_inbound: config.max_inbound,
        metrics: Arc::clone(&metrics),
        fanout,
    });
    let site = Site {
        gate,
        registrar: Arc::new(Registrar {
            registry: Arc::clone(&feeds.registry),
            signer,
            token_ttl: config.token_ttl,
            new_viewers: (config.new_viewer_rate_limit > 0.0).then(|| {
                service::limits::RateLimiter::new(
                    config.new_viewer_rate_limit,
                    service::limits::DEFAULT_MAX_KEYS,
                )
            }),
        }),
        metrics: Arc::clone(&metrics),
        ready,
        ingest_url: config.ingest_url.clone(),
        emojis: Arc::clone(&config.emojis),
        demo_sender: config.demo_sender,
    };
    let limits = serve_limits(
        config.max_handshakes,
        &config.trusted_proxies,
        Arc::clone(&metrics.handshakes),
    );
    let task = tokio::spawn(run(listener, site, limits, shutdown, stop, feeds.threads));
    tracing::info!(%addr, cluster = config.cluster, topic = %config.topic, "Broadcaster listening.");
    Ok(RunningBroadcaster {
        addr,
        metrics,
        task,
    })
}

/// Descriptors kept for everything but clients: the listener, Kafka's connections, HTTP
/// requests, the duplicates of parked sockets.
const RESERVED_FILES: usize = 256;

/// The clients a broadcaster takes: `configured`, or (0) its open-file limit less
/// [`RESERVED_FILES`].
fn clients_capacity(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    open_file_limit().map_or(usize::MAX, |limit| {
        limit.saturating_sub(RESERVED_FILES).max(1)
    })
}

/// This process's soft limit of open files (`None`: unlimited or unknown).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Creates the topics when missing and starts the threads that read them.
// Long: the three feeding threads each take their own clones of the shared state.
async fn start_feeds(
    config: &BroadcastConfig,
    addr: SocketAddr,
    epoch: i64,
    capacity: usize,
    fanout: &Arc<Fanout>,
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
    let (feed, feed_metrics, feed_stop) =
        (Arc::clone(fanout), Arc::clone(metrics), Arc::clone(stop));
    threads.push(
        tokio::task::spawn_blocking(move || {
            spawn_consumer(&brokers, &topic, feed, feed_metrics, feed_stop)
        })
        .await
        .map_err(|e| BroadcastError::Panicked(e.to_string()))??,
    );
    if let Some(topic) = &config.summary_topic {
        threads.push(spawn_summary_consumer(
            &config.brokers,
            topic,
            Arc::clone(fanout),
            Arc::clone(stop),
        )?);
    }
    let key = TokenSigner::new(config.token_secret.expose()).fingerprint();
    let registry = Arc::new(Registry::new(key.clone()));
    let me = Heartbeat {
        id: format!("{}-{}-{epoch}", addr, std::process::id()),
        cluster: config.cluster,
        ws_url: crate::config::ws_url(config.public_url.as_deref(), addr),
        connections: 0,
        capacity: i64::try_from(capacity).unwrap_or(i64::MAX),
        key,
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

/// The HTTP loop's limits: `max_handshakes` in progress (an upgraded connection leaves the
/// count), the handshakes and refusals counted in `counts`.
fn serve_limits(
    max_handshakes: usize,
    trusted_proxies: &Arc<service::http::TrustedProxies>,
    counts: Arc<service::http::ServeCounts>,
) -> ServeLimits {
    ServeLimits {
        header_timeout: std::time::Duration::from_secs(10),
        request_timeout: std::time::Duration::from_secs(10),
        timed_out: |_| {
            json_error(
                warp::http::StatusCode::REQUEST_TIMEOUT,
                "request not received and answered within 10 s",
            )
        },
        max_connections: max_handshakes,
        counts,
        trusted_proxies: Arc::clone(trusted_proxies),
    }
}

/// Serves the routes until `shutdown`, then stops the feeding threads.
async fn run(
    listener: tokio::net::TcpListener,
    site: Site,
    limits: ServeLimits,
    mut shutdown: Shutdown,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
) {
    serve(listener, warp::service(routes(site)), limits, &mut shutdown).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    tracing::info!("Broadcaster stopped.");
}
