//! The broadcaster: HTTP on one port, `GET /ws` upgraded to a WebSocket, `/health` and
//! `/metrics` beside it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use service::Shutdown;
use service::http::RenderMetrics;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::config::BroadcastConfig;
use crate::consumer::spawn_consumer;
use crate::hub::Hub;
use crate::metrics::BroadcastMetrics;
use crate::session::{SessionContext, run_session};

/// Why a broadcaster could not run.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The cluster topic cannot be read.
    #[error("{0}")]
    Kafka(String),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

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

struct State {
    ctx: SessionContext,
    ws_config: WebSocketConfig,
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
    let consumer = {
        let (brokers, topic) = (config.brokers.clone(), config.topic.clone());
        let (hub, metrics, stop) = (Arc::clone(&hub), Arc::clone(&metrics), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || spawn_consumer(&brokers, &topic, hub, metrics, stop))
            .await
            .map_err(|e| BroadcastError::Kafka(e.to_string()))?
            .map_err(BroadcastError::Kafka)?
    };
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // A small read buffer: clients send little, and idle connections are most of them.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(config.max_inbound))
        .max_frame_size(Some(config.max_inbound));
    let state = Arc::new(State {
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
    });
    let mut signal = shutdown.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, Arc::clone(&state)));
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
        let _ = tokio::task::spawn_blocking(move || consumer.join()).await;
        tracing::info!("Broadcaster stopped.");
    });
    tracing::info!(%addr, cluster = config.cluster, topic = %config.topic, "Broadcaster listening.");
    Ok(RunningBroadcaster {
        addr,
        metrics,
        task,
    })
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match req.uri().path() {
        "/ws" => upgrade(req, state),
        "/health" => text(
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.into(),
        ),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.ctx.metrics.render(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"no such path: use GET /ws, /health or /metrics"}"#.into(),
        ),
    };
    Ok(response)
}

fn upgrade(mut req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    let is_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"not a WebSocket handshake"}"#.into(),
        );
    };
    if !is_upgrade {
        return text(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"not a WebSocket handshake"}"#.into(),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(state.ws_config),
        )
        .await;
        run_session(ws, state.ctx.clone()).await;
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, "websocket".parse().expect("a valid header"));
    headers.insert(CONNECTION, "Upgrade".parse().expect("a valid header"));
    if let Ok(accept) = derive_accept_key(key.as_bytes()).parse() {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
