//! Starting and stopping the ingest service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service::Shutdown;
use service::http::{ServeLimits, serve};
use service::kafka::{TopicSpec, ensure_topics};

use crate::api::{AppState, routes};
use crate::config::IngestConfig;
use crate::load_test::LoadTests;
use crate::metrics::IngestMetrics;
use crate::producer::{EventProducer, ProduceError};
use crate::progress::Progress;

/// How often events the broker did not take are sent again.
const RESEND_EVERY: Duration = Duration::from_millis(200);

/// Why the ingest service could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The topics could not be set up.
    #[error(transparent)]
    Topics(#[from] service::kafka::TopicError),
    /// The producer could not be created.
    #[error(transparent)]
    Producer(#[from] ProduceError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl IngestError {
    /// Whether starting again may help: the broker was away or busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Topics(e) => e.is_retryable(),
            IngestError::Producer(e) => e.is_retryable(),
            IngestError::Listen { .. } => false,
        }
    }
}

/// A running ingest service.
pub struct RunningIngest {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Arc<IngestMetrics>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningIngest {
    /// Waits until the service has stopped (after the shutdown signal), its producer flushed.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Creates the events and ingests topics if missing, binds, and serves until `shutdown`; then stops
/// accepting, answers the requests in progress and flushes the producer.
// Long: builds the service in order (topics, producer, state, background tasks, the HTTP loop); each step is short.
pub async fn start(config: IngestConfig, shutdown: Shutdown) -> Result<RunningIngest, IngestError> {
    let topics = [
        TopicSpec {
            name: config.topic.clone(),
            partitions: config.partitions,
        },
        TopicSpec {
            name: config.ingests_topic.clone(),
            partitions: 1,
        },
    ];
    ensure_topics(&config.brokers, &topics, config.replication).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics = Arc::new(IngestMetrics::default());
    let producer = EventProducer::new(&config, Arc::clone(&metrics))?;
    let progress = Arc::new(Progress::new(&config.brokers, &config.ingests_topic, addr)?);
    // A stop waits this long for the broker to take what is queued, then up to a second to
    // say that it stopped (the stop, all told, within 10 s).
    let flush_timeout = Duration::from_secs(8);
    // A load test offers its traffic to this service, through its own HTTP API.
    let own = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let load_tests = LoadTests::new(config.load_driver.clone(), own.to_string());
    let state = Arc::new(AppState::new(
        config,
        producer,
        Arc::clone(&metrics),
        load_tests,
    ));
    service::ready::watch_brokers(
        Arc::clone(&state.ready),
        state.config.brokers.clone(),
        shutdown.clone(),
    );
    {
        // A full producer queue refuses every request (503): not ready, so a load balancer
        // sends the taps to another ingest meanwhile.
        let (state, mut signal) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            let capacity = i64::try_from(state.config.queue_capacity).unwrap_or(i64::MAX);
            loop {
                let depth = state.metrics.queue_depth.get();
                let full = (depth >= capacity).then(|| {
                    format!("the queue is full: {depth} events accepted wait for the broker")
                });
                state.ready.set("producer", full);
                tokio::select! {
                    () = tokio::time::sleep(service::ready::CHECK_EVERY) => {}
                    () = signal.wait() => return,
                }
            }
        });
    }
    {
        let (state, mut signal) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            signal.wait().await;
            state.load_tests.abort();
        });
    }
    crate::progress::spawn(Arc::clone(&progress), Arc::clone(&state));
    {
        // What the broker did not take goes out again (after shutdown, the flush does it).
        let (state, mut signal) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RESEND_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        // Looking events up in the topic blocks on the broker.
                        let state = Arc::clone(&state);
                        let _ = tokio::task::spawn_blocking(move || state.producer.resend_unsent()).await;
                    }
                    _ = signal.wait() => return,
                }
            }
        });
    }
    let limits = ServeLimits {
        header_timeout: state.config.header_timeout,
        request_timeout: state.config.request_timeout,
        timed_out: crate::api::request_timeout,
        max_connections: state.config.max_connections,
        counts: Arc::clone(&state.metrics.connections),
        trusted_proxies: Arc::clone(&state.config.trusted_proxies),
    };
    let filter = routes(Arc::clone(&state));
    let mut signal = shutdown.clone();
    let task = tokio::spawn(async move {
        serve(listener, warp::service(filter), limits, &mut signal).await;
        let flushed = tokio::task::spawn_blocking(move || {
            let flushed = state.producer.flush(flush_timeout);
            progress.stop(&state.producer, Duration::from_secs(1));
            flushed
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("Ingest stopped, producer flushed."),
            Ok(Err(error)) => {
                tracing::error!(%error, "Ingest stopped, but the producer could not flush.")
            }
            Err(error) => tracing::error!(%error, "Ingest stopped, the flush task failed."),
        }
    });
    tracing::info!(%addr, "Ingest listening.");
    Ok(RunningIngest {
        addr,
        metrics,
        task,
    })
}
