//! Starting and stopping the ingest service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use service::Shutdown;
use service::kafka::{TopicSpec, ensure_topics};
use tower_service::Service;

use crate::api::{AppState, Peer, routes};
use crate::config::IngestConfig;
use crate::load_test::LoadTests;
use crate::metrics::IngestMetrics;
use crate::producer::{EventProducer, ProduceError};

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

/// What one client may hold of the service.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

/// Serves HTTP/1.1 connections until `signal`, then lets the requests in progress finish
/// (at most 10 s). A connection must send a request's headers within `header_timeout` (so
/// a client that trickles them, or an idle keep-alive connection, is closed), a request is
/// answered `408` past `request_timeout` (a body that trickles in), and past
/// `max_connections` new connections are closed at once.
// Long: the accept loop with its limits and the graceful stop.
async fn serve<S>(
    listener: tokio::net::TcpListener,
    routes: S,
    limits: ConnectionLimits,
    metrics: Arc<IngestMetrics>,
    signal: &mut Shutdown,
) where
    S: Service<
            hyper::Request<Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = signal.wait() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.add(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let mut routes = routes.clone();
            async move {
                match tokio::time::timeout(limits.request_timeout, routes.call(request)).await {
                    Ok(response) => response,
                    Err(_) => Ok(crate::api::request_timeout(limits.request_timeout)),
                }
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _slot = slot;
            let _ = connection.await;
        });
    }
    drop(listener);
    // Connections still open 10 s after the signal do not hold the process.
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Connections still open 10 s after shutdown; closing them.");
    }
}

/// Creates the events topic if missing, binds, and serves until `shutdown`; then stops
/// accepting, answers the requests in progress and flushes the producer.
// Long: builds the service in order (topics, producer, state, background tasks, the HTTP loop); each step is short.
pub async fn start(config: IngestConfig, shutdown: Shutdown) -> Result<RunningIngest, IngestError> {
    let topic = TopicSpec {
        name: config.topic.clone(),
        partitions: config.partitions,
    };
    ensure_topics(&config.brokers, &[topic], config.replication).await?;
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
    let flush_timeout = config.delivery_timeout;
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
    {
        let (state, mut signal) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            signal.wait().await;
            state.load_tests.abort();
        });
    }
    {
        // What the broker did not take goes out again (after shutdown, the flush does it).
        let (state, mut signal) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RESEND_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        state.producer.resend_unsent();
                    }
                    _ = signal.wait() => return,
                }
            }
        });
    }
    let limits = ConnectionLimits {
        header_timeout: state.config.header_timeout,
        request_timeout: state.config.request_timeout,
        max_connections: state.config.max_connections,
    };
    let filter = routes(Arc::clone(&state));
    let mut signal = shutdown.clone();
    let task = tokio::spawn(async move {
        serve(
            listener,
            warp::service(filter),
            limits,
            Arc::clone(&state.metrics),
            &mut signal,
        )
        .await;
        let flushed =
            tokio::task::spawn_blocking(move || state.producer.flush(flush_timeout)).await;
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
