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
use model::now_ms;
use service::Shutdown;
use service::http::RenderMetrics;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::config::BroadcastConfig;
use crate::consumer::{spawn_consumer, spawn_summary_consumer};
use crate::hub::Hub;
use crate::metrics::BroadcastMetrics;
use crate::registry::{Heartbeat, Registry, spawn_registry};
use crate::session::{SessionContext, run_session};
use crate::token::TokenSigner;

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
    ws_origins: Vec<String>,
    max_per_ip: usize,
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ws_config: WebSocketConfig,
    registry: Arc<Registry>,
    signer: TokenSigner,
    token_ttl: std::time::Duration,
    ingest_url: Option<String>,
}

/// The live page and its script, served from the binary (no build step, no CDN).
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");

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
    service::kafka::ensure_topics(&config.brokers, &topics, 1)
        .await
        .map_err(|e| BroadcastError::Kafka(e.to_string()))?;
    let consumer = {
        let (brokers, topic) = (config.brokers.clone(), config.topic.clone());
        let (hub, metrics, stop) = (Arc::clone(&hub), Arc::clone(&metrics), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || spawn_consumer(&brokers, &topic, hub, metrics, stop))
            .await
            .map_err(|e| BroadcastError::Kafka(e.to_string()))?
            .map_err(BroadcastError::Kafka)?
    };
    let summaries = match &config.summary_topic {
        Some(topic) => Some(
            spawn_summary_consumer(&config.brokers, topic, Arc::clone(&hub), Arc::clone(&stop))
                .map_err(BroadcastError::Kafka)?,
        ),
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
        .map_err(|e| BroadcastError::Kafka(e.to_string()))?
        .map_err(BroadcastError::Kafka)?
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

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: std::net::SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match req.uri().path() {
        "/ws" => upgrade(req, state, peer),
        "/register" => register(req, &state).await,
        "/" | "/index.html" => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            INDEX_HTML.into(),
        ),
        "/app.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            APP_JS.into(),
        ),
        "/config.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            format!(
                "window.EMOSTREAM = {};\n",
                serde_json::json!({ "ingestUrl": state.ingest_url })
            ),
        ),
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
            r#"{"error":"no such path: use GET /, /ws, /health, /metrics or POST /register"}"#
                .into(),
        ),
    };
    Ok(response)
}

#[derive(serde::Deserialize)]
struct Registration {
    client_id: String,
}

async fn register(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    if req.method() == hyper::Method::OPTIONS {
        return cors(text(StatusCode::NO_CONTENT, "text/plain", String::new()));
    }
    if req.method() != hyper::Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST /register");
    }
    let body = match http_body_util::Limited::new(req.into_body(), 4096)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "registration body over 4096 bytes",
            );
        }
    };
    let client_id = match serde_json::from_slice::<Registration>(&body) {
        Ok(r) => r.client_id.trim().to_owned(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("malformed registration: {e}"),
            );
        }
    };
    if client_id.is_empty() || client_id.len() > 128 || client_id.chars().any(char::is_control) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "client_id must be 1 to 128 bytes without control characters",
        );
    }
    let Some((cluster, ws_url)) = state.registry.choose(&client_id) else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "no live broadcaster");
    };
    let expires = now_ms() + state.token_ttl.as_millis() as i64;
    let token = state.signer.sign(&client_id, cluster, expires);
    let body = serde_json::json!({
        "cluster": cluster,
        "ws_url": format!("{ws_url}?token={token}"),
        "client_id": client_id,
        "expires": model::format_rfc3339_millis(expires),
    });
    cors(text(StatusCode::OK, "application/json", body.to_string()))
}

fn cors(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        "access-control-allow-origin",
        hyper::header::HeaderValue::from_static("*"),
    );
    headers.insert(
        "access-control-allow-methods",
        hyper::header::HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        "access-control-allow-headers",
        hyper::header::HeaderValue::from_static("content-type"),
    );
    response
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    text(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// Holds one of an address's connection slots; gives it back when dropped.
struct Slot {
    ip: std::net::IpAddr,
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// A connection slot for `ip`, unless it holds `max` already (0: no limit).
fn take_slot(state: &State, ip: std::net::IpAddr) -> Option<Slot> {
    let mut per_ip = state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let held = per_ip.entry(ip).or_default();
    if state.max_per_ip > 0 && *held >= state.max_per_ip {
        return None;
    }
    *held += 1;
    Some(Slot {
        ip,
        per_ip: Arc::clone(&state.per_ip),
    })
}

fn upgrade(
    mut req: Request<Incoming>,
    state: Arc<State>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let token = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if let Err(error) = state.signer.verify(token, state.ctx.cluster, now_ms()) {
        state.ctx.metrics.refused.add(1);
        return json_error(StatusCode::UNAUTHORIZED, &error.to_string());
    }
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
    // A page from another site may not open a WebSocket here (tools send no Origin).
    let origin = req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if let Some(origin) = origin
        && !state.ws_origins.is_empty()
        && !state
            .ws_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    {
        state.ctx.metrics.refused.add(1);
        return json_error(
            StatusCode::FORBIDDEN,
            &format!("origin {origin} may not connect: not in the broadcaster's --ws-origins"),
        );
    }
    let Some(slot) = take_slot(&state, peer.ip()) else {
        state.ctx.metrics.refused.add(1);
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many WebSocket connections from {}: at most {} at once",
                peer.ip(),
                state.max_per_ip
            ),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _slot = slot;
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
