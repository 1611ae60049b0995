//! `GET /ws`: the token and origin checks, the per-address limit, and the WebSocket
//! handshake that hands the connection to a session.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use model::now_ms;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::routes::{json_error, text};
use crate::server::State;
use crate::session::run_session;

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

/// Checks and upgrades a WebSocket handshake.
// Long: the handshake checks in the order a client meets them (token, origin, address limit, headers), each answered with its own status.
pub(crate) fn upgrade(
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
