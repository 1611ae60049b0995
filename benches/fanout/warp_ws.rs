//! warp's own `ws()` WebSocket, as a peer of the fan-out benchmark (memory per connection):
//! what `warp::ws()` does (a warp route; on upgrade, tungstenite's stream with its default
//! configuration, 128 KiB of read buffer; warp 0.4 lets one set only the size limits), each
//! client a task fed by a broadcast channel, as in warp's chat example. Sends an open update
//! every 250 ms and each window's final, shaped like benches/fanout/frames.mjs. Prints
//! `{"port": N}` once listening.
//!
//!     cargo run --release --example warp_ws [PORT]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let (frames, _) = broadcast::channel::<String>(16);
    let to_clients = frames.clone();
    let route = warp::path("ws")
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(move |headers: HeaderMap, on_upgrade: Option<OnUpgrade>| {
            let (Some(key), Some(on_upgrade)) =
                (headers.get(header::SEC_WEBSOCKET_KEY), on_upgrade)
            else {
                let mut response = warp::reply::Response::new("not a WebSocket handshake".into());
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return response;
            };
            let receiver = to_clients.subscribe();
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    client(socket, receiver).await;
                }
            });
            let mut response = warp::reply::Response::new(String::new().into());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            response
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!(
        "{{\"port\": {}}}",
        listener.local_addr().expect("an address").port()
    );
    tokio::spawn(schedule(frames));
    warp::serve(route).incoming(listener).run().await;
}

/// One client: every frame as it comes, until it leaves.
async fn client<S>(socket: WebSocketStream<S>, mut frames: broadcast::Receiver<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => if sink.send(Message::text(frame)).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            message = incoming.next() => if !matches!(message, Some(Ok(_))) { return },
        }
    }
}

/// An open update of the current 2 s window every 250 ms, and each window's final once the
/// next begins.
async fn schedule(frames: broadcast::Sender<String>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let (mut current, mut revision) = (None, 0u64);
    loop {
        tick.tick().await;
        let seq = model::now_ms().div_euclid(2000);
        if let Some(previous) = current.filter(|&p| p != seq) {
            revision += 1;
            let _ = frames.send(frame(previous, revision, "final"));
        }
        current = Some(seq);
        revision += 1;
        let _ = frames.send(frame(seq, revision, "open"));
    }
}

fn frame(seq: i64, revision: u64, state: &str) -> String {
    let emojis: Vec<String> = ["🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌"]
        .iter()
        .enumerate()
        .map(|(i, emoji)| {
            format!(
                r#"{{"emoji":"{emoji}","count":{},"unique_users":{},"scaled_count":1,"share":0.083333}}"#,
                1000 + i as u64 * 137 + revision,
                500 + i * 31
            )
        })
        .collect();
    // "type" first: the client tool tells window frames by their start.
    format!(
        r#"{{"type":"window","window_start":{},"window_end":{},"events":{},"unique_users":4000,"emojis":[{}],"seq":{seq},"state":"{state}","revision":{revision},"broadcast_at":{}}}"#,
        seq * 2000,
        seq * 2000 + 2000,
        12000 + revision,
        emojis.join(","),
        model::now_ms()
    )
}
