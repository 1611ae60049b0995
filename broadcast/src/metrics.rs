//! The broadcaster's metrics.

use service::admin::RenderMetrics;
use service::metrics::{Counter, Gauge, Histogram, TextEncoder};

/// Why connections ended (the label set of `broadcast_disconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed or vanished.
    ClientGone,
    /// Took nothing for the write timeout while it had something to get (close code 4002).
    NotReading,
    /// Had more than the pending limit still to get (close code 4001).
    TooFarBehind,
    /// Sent something that is not a resume message (close code 1008 or 1003).
    InvalidMessage,
    /// Sent a message over the size limit (close code 1009).
    TooBig,
    /// The broadcaster is shutting down (close code 1001).
    Shutdown,
}

const REASONS: [(Disconnect, &str); 6] = [
    (Disconnect::ClientGone, "client_gone"),
    (Disconnect::NotReading, "not_reading"),
    (Disconnect::TooFarBehind, "too_far_behind"),
    (Disconnect::InvalidMessage, "invalid_message"),
    (Disconnect::TooBig, "too_big"),
    (Disconnect::Shutdown, "shutdown"),
];

/// Counters of one broadcaster.
#[derive(Debug, Default)]
pub struct BroadcastMetrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Window frames written to sockets.
    pub frames_sent: Counter,
    /// Messages a waiting client was not sent because a newer message of their window
    /// replaced them (or it was disconnected with them queued).
    pub frames_skipped: Counter,
    /// Windows taken from Kafka.
    pub windows_received: Counter,
    /// WebSocket handshakes refused: a missing or invalid token, an origin not allowed, too
    /// many connections from one address, the broadcaster full.
    pub refused: Counter,
    /// The HTTP loop's handshakes: in progress, waiting for their turn, answered 503.
    pub handshakes: std::sync::Arc<service::http::ServeCounts>,
    disconnects: [Counter; REASONS.len()],
    /// From a window's arrival from Kafka to its write on a socket.
    pub fan_out_seconds: Histogram,
    /// From a window's Kafka record timestamp to its write on a socket.
    pub record_to_client_seconds: Histogram,
}

impl BroadcastMetrics {
    /// Counts a disconnect.
    pub fn disconnected(&self, why: Disconnect) {
        if let Some(i) = REASONS.iter().position(|(d, _)| *d == why) {
            self.disconnects[i].add(1);
        }
    }

    /// Disconnects so far for `why`.
    pub fn disconnects(&self, why: Disconnect) -> u64 {
        REASONS
            .iter()
            .position(|(d, _)| *d == why)
            .map_or(0, |i| self.disconnects[i].get())
    }
}

impl RenderMetrics for BroadcastMetrics {
    fn render(&self) -> String {
        let mut e = TextEncoder::default();
        e.gauge(
            "broadcast_connections",
            "Open WebSocket connections.",
            self.connections.get(),
        )
        .counter(
            "broadcast_frames_sent_total",
            "Window frames written to sockets.",
            self.frames_sent.get(),
        )
        .counter(
            "broadcast_frames_skipped_total",
            "Windows slow clients missed.",
            self.frames_skipped.get(),
        )
        .counter(
            "broadcast_windows_received_total",
            "Windows taken from Kafka.",
            self.windows_received.get(),
        )
        .counter(
            "broadcast_refused_total",
            "Handshakes refused: missing or invalid token, origin not allowed, too many from one address, full, or no turn within a second of a burst.",
            self.refused.get() + self.handshakes.refused.get(),
        )
        .gauge(
            "broadcast_handshakes_in_progress",
            "Handshakes being served (at most --max-handshakes).",
            self.handshakes.open.get(),
        )
        .gauge(
            "broadcast_handshakes_waiting",
            "Handshakes waiting for their turn (up to a second, then answered 503).",
            self.handshakes.waiting.get(),
        )
        .family(
            "broadcast_disconnects_total",
            "counter",
            "Connections ended, by reason.",
        );
        for ((_, label), counter) in REASONS.iter().zip(&self.disconnects) {
            e.sample(
                "broadcast_disconnects_total",
                &format!("reason=\"{label}\""),
                counter.get(),
            );
        }
        e.histogram(
            "broadcast_fan_out_seconds",
            "From a window's arrival to its write on a socket.",
            &self.fan_out_seconds,
        )
        .histogram(
            "broadcast_record_to_client_seconds",
            "From a window's Kafka record timestamp to its write on a socket.",
            &self.record_to_client_seconds,
        );
        e.finish()
    }
}
