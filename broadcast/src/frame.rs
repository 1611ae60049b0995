//! Frames: encoded once per window, shared by every connection.

use bytes::Bytes;
use model::report::WindowMessage;
use serde::Serialize;

use crate::wire;

/// One window, ready to send.
#[derive(Debug, Clone)]
pub struct WindowFrame {
    /// The window's sequence number.
    pub seq: i64,
    /// The message's revision of the window (higher replaces lower).
    pub revision: u64,
    /// The window's end, UTC milliseconds.
    pub window_end: i64,
    /// When the window's record was written to Kafka, UTC milliseconds.
    pub kafka_timestamp: Option<i64>,
    /// When the broadcaster took the window from Kafka.
    pub arrived: std::time::Instant,
    /// The same, UTC milliseconds.
    pub arrived_ms: i64,
    /// Its place among the messages the hub took in (see [`crate::hub::Hub::publish`]):
    /// 0 until the hub takes it.
    pub order: u64,
    /// `{"type":"window", ...WindowReport fields..., "seq": K}` as a complete WebSocket
    /// text frame, written as it is to every socket.
    pub wire: Bytes,
}

#[derive(Serialize)]
struct Typed<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
    /// When the broadcaster took the window from Kafka (UTC ms): clients measure fan-out by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcast_at: Option<i64>,
}

impl WindowFrame {
    /// Encodes a window message as a `window` frame.
    pub fn new(message: &WindowMessage, kafka_timestamp: Option<i64>) -> Self {
        Self::of_kind("window", message, kafka_timestamp)
    }

    /// Encodes a window of a longer size (the per-minute timeline) as a `summary` frame.
    pub fn summary(message: &WindowMessage, kafka_timestamp: Option<i64>) -> Self {
        Self::of_kind("summary", message, kafka_timestamp)
    }

    fn of_kind(kind: &str, message: &WindowMessage, kafka_timestamp: Option<i64>) -> Self {
        let now_ms = model::now_ms();
        let json = serde_json::to_vec(&Typed {
            kind,
            body: message,
            broadcast_at: Some(now_ms),
        })
        .expect("a window serializes to JSON");
        WindowFrame {
            seq: message.seq,
            revision: message.revision,
            window_end: message.report.window_end,
            kafka_timestamp,
            arrived: std::time::Instant::now(),
            arrived_ms: now_ms,
            order: 0,
            wire: wire::text(&json),
        }
    }

    /// The JSON text the frame carries.
    pub fn json(&self) -> &[u8] {
        let header = match self.wire.get(1).map(|b| b & 0x7F) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        &self.wire[header..]
    }
}

/// The first frame a client gets: `snapshot` window frames follow it at once, the latest
/// message of each window still in the ring (history: a page shows them without a swarm).
pub fn hello(cluster: u32, epoch: i64, snapshot: usize) -> Bytes {
    let json = serde_json::json!({"type": "hello", "cluster": cluster, "epoch": epoch, "snapshot": snapshot});
    wire::text(json.to_string().as_bytes())
}

/// Precedes the `windows` frames a `resume` asked for (history, like the snapshot).
pub fn resumed(windows: usize) -> Bytes {
    let json = serde_json::json!({"type": "resumed", "windows": windows});
    wire::text(json.to_string().as_bytes())
}

/// The answer to a client's `{"type":"ping"}`.
pub fn pong() -> Bytes {
    wire::text(br#"{"type":"pong"}"#)
}
