//! `GET /ws`: the token and origin checks, the per-address limit, and the WebSocket
//! handshake; the upgraded socket goes to the fan-out (its writes) and a reader task.
//!
//! warp's own `ws()` filter is not used: it gives each connection tungstenite's stream with
//! a 128 KiB read buffer and no setting for it, and a task woken for every message. Here the
//! route stays a warp filter, and the socket itself goes on: a shard writes the shared frames
//! to it, and the reader reads what the client sends into a small buffer.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use model::now_ms;
use service::http::Peer;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::fanout::{Fanout, Joined, register};
use crate::metrics::BroadcastMetrics;
use crate::reader::read_client;
use crate::reply::{json_error, text};
use service::token::TokenSigner;

/// What a handshake is checked against, and where an accepted one goes.
pub(crate) struct Gate {
    pub(crate) cluster: u32,
    pub(crate) signer: TokenSigner,
    /// Origins whose pages may connect; empty: any.
    pub(crate) ws_origins: Vec<String>,
    /// Connections one address may hold; 0: no limit.
    pub(crate) max_per_ip: usize,
    pub(crate) per_ip: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    /// WebSocket clients served at once, at most.
    pub(crate) max_clients: usize,
    /// WebSocket clients served now (handshakes accepted, not yet ended).
    pub(crate) clients: Arc<AtomicUsize>,
    /// The largest message a client may send.
    pub(crate) max_inbound: usize,
    pub(crate) metrics: Arc<BroadcastMetrics>,
    pub(crate) fanout: Arc<Fanout>,
}

/// Holds a client's place and one of its address's connection slots; gives both back when
/// dropped.
struct Slot {
    ip: IpAddr,
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    clients: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a handshake gets no slot.
enum NoSlot {
    /// The broadcaster serves its `max_clients` already.
    Full,
    /// The address holds its `max_per_ip` already.
    Address,
}

/// A place for a client from `ip`, unless the broadcaster is full or the address holds
/// `max_per_ip` already (0: no limit).
fn take_slot(gate: &Gate, ip: IpAddr) -> Result<Slot, NoSlot> {
    let mut per_ip = gate.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let held = per_ip.get(&ip).copied().unwrap_or(0);
    if gate.max_per_ip > 0 && held >= gate.max_per_ip {
        return Err(NoSlot::Address);
    }
    if gate.clients.fetch_add(1, Ordering::Relaxed) >= gate.max_clients {
        gate.clients.fetch_sub(1, Ordering::Relaxed);
        return Err(NoSlot::Full);
    }
    // An entry only for an address holding a slot: a refused one leaves none behind.
    *per_ip.entry(ip).or_default() += 1;
    Ok(Slot {
        ip,
        per_ip: Arc::clone(&gate.per_ip),
        clients: Arc::clone(&gate.clients),
    })
}

/// Counts a refused handshake and answers it with `status` and `message`.
fn refuse(gate: &Gate, status: StatusCode, message: &str) -> Response {
    gate.metrics.refused.add(1);
    json_error(status, message)
}

/// Checks and upgrades a WebSocket handshake.
// Long: the handshake checks in the order a client meets them (token, origin, address limit, headers), each answered with its own status.
pub(crate) fn upgrade(
    headers: HeaderMap,
    query: String,
    on_upgrade: Option<OnUpgrade>,
    peer: Option<Peer>,
    gate: Arc<Gate>,
) -> Response {
    let token = query.split('&').find_map(|kv| kv.strip_prefix("token="));
    if let Err(error) = gate.signer.verify(token, gate.cluster, now_ms()) {
        return refuse(&gate, StatusCode::UNAUTHORIZED, &error.to_string());
    }
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(key), true, Some(on_upgrade)) = (
        headers.get(header::SEC_WEBSOCKET_KEY),
        is_upgrade,
        on_upgrade,
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"not a WebSocket handshake"}"#,
        );
    };
    // A page from another site may not open a WebSocket here (tools send no Origin).
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(origin) = origin
        && !gate.ws_origins.is_empty()
        && !gate
            .ws_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    {
        return refuse(
            &gate,
            StatusCode::FORBIDDEN,
            &format!("origin {origin} may not connect: not in the broadcaster's --ws-origins"),
        );
    }
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    let slot = match take_slot(&gate, ip) {
        Ok(slot) => slot,
        Err(NoSlot::Address) => {
            return refuse(
                &gate,
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many WebSocket connections from {ip}: at most {} at once",
                    gate.max_per_ip
                ),
            );
        }
        Err(NoSlot::Full) => {
            let mut response = refuse(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "this broadcaster is full ({} clients, --max-clients): register again to be sent to another",
                    gate.max_clients
                ),
            );
            // As the HTTP loop answers a burst: come back in a second (registered again,
            // another broadcaster of the cluster).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let _slot = slot;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("An upgraded connection is not a TCP stream.");
            return;
        };
        // Registered for reading only (see the fan-out), non-blocking.
        let Ok(std_stream) = parts.io.into_inner().into_std() else {
            return;
        };
        let Ok(stream) = register(std_stream, Interest::READABLE) else {
            return;
        };
        let stream = Arc::new(stream);
        let (gone, stopped) = tokio::sync::oneshot::channel();
        let client = gate.fanout.join(Joined {
            stream: Arc::clone(&stream),
            gone,
        });
        read_client(stream, parts.read_buf, client, stopped, gate.max_inbound).await;
    });
    let mut response = Response::new(String::new().into());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
