//! Starting and stopping a broadcaster: its topics, consumers and registry, and the HTTP
//! loop that hands each connection to the routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
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
}

/// Starts a broadcaster for `config.cluster`, serving until `shutdown`.
pub async fn start(
    config: BroadcastConfig,
    shutdown: Shutdown,
) -> Result<RunningBroadcaster, BroadcastError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| BroadcastError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| BroadcastError::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics = Arc::new(BroadcastMetrics::default());
    let hub = Arc::new(Hub::new(config.ring.as_millis() as i64, config.max_lag));
    let stop = Arc::new(AtomicBool::new(false));
    // The cluster topic and the registry topic, when missing: one partition each, so every
    // broadcaster reads them in order.
    let topics = [config.registry_topic.clone(), config.topic.clone()].map(|name| {
        service::kafka::TopicSpec {
            name,
            partitions: 1,
        }
    });
    service::kafka::ensure_topics(&config.brokers, &topics, 1).await?;
    let consumer = {
        let (brokers, topic) = (config.brokers.clone(), config.topic.clone());
        let (hub, metrics, stop) = (Arc::clone(&hub), Arc::clone(&metrics), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || spawn_consumer(&brokers, &topic, hub, metrics, stop))
            .await
            .map_err(|e| BroadcastError::Panicked(e.to_string()))??
    };
    let summaries = match &config.summary_topic {
        Some(topic) => Some(spawn_summary_consumer(
            &config.brokers,
            topic,
            Arc::clone(&hub),
            Arc::clone(&stop),
        )?),
        None => None,
    };
    let epoch = now_ms();
    let registry = Arc::new(Registry::default());
    let me = Heartbeat {
        id: format!("{}-{}-{epoch}", addr, std::process::id()),
        cluster: config.cluster,
        ws_url: format!("ws://{addr}/ws"),
        connections: 0,
    };
    let registry_thread = {
        let (brokers, topic) = (config.brokers.clone(), config.registry_topic.clone());
        let (registry, metrics, stop) = (
            Arc::clone(&registry),
            Arc::clone(&metrics),
            Arc::clone(&stop),
        );
        tokio::task::spawn_blocking(move || {
            spawn_registry(&brokers, &topic, Some((me, metrics)), registry, stop)
        })
        .await
        .map_err(|e| BroadcastError::Panicked(e.to_string()))??
    };
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
        registry,
        signer: TokenSigner::new(config.token_secret.clone()),
        token_ttl: config.token_ttl,
        ingest_url: config.ingest_url.clone(),
    });
    let mut signal = shutdown.clone();
    let task = tokio::spawn(async move {
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
                () = signal.wait() => break,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = consumer.join();
            if let Some(summaries) = summaries {
                let _ = summaries.join();
            }
            let _ = registry_thread.join();
        })
        .await;
        tracing::info!("Broadcaster stopped.");
    });
    tracing::info!(%addr, cluster = config.cluster, topic = %config.topic, "Broadcaster listening.");
    Ok(RunningBroadcaster {
        addr,
        metrics,
        task,
    })
}
