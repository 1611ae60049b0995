//! Viewers for the simulator: WebSocket clients of the broadcasters that measure, for every
//! window they receive, the delay from the window's end to its arrival: what a viewer waits
//! for the swarm of a moment.
//!
//! Measured are the windows that close while the traffic goes on: those ending at least the
//! dataflow's allowed lateness before the last tap. The later ones close only once the input
//! has been idle for the dataflow's idle timeout (no later event moves the watermark past
//! them), an effect of the simulation stopping that a live match does not have: the viewers
//! wait for them, but leave them out of the figures.
//!
//! A window's delay is that of its closed frames (final or revised): with open updates
//! (`--updates`), a window's open frames arrive before its end and say nothing of when it
//! closes. The open frames count for tap-to-swarm latency ([`TapToSwarm`]), which the viewers
//! measure when given one: every frame, open or closed, credits the taps it newly counts.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use model::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::generator::EMOJIS;
use crate::simulate::{TapToSwarm, TapToSwarmReport};

/// What the viewers saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerReport {
    /// Viewers started.
    pub viewers: usize,
    /// Viewers that connected.
    pub connected: usize,
    /// Windows measured (distinct sequence numbers; ending by the last tap).
    pub windows: usize,
    /// Window arrivals measured over all viewers.
    pub deliveries: u64,
    /// Delay from a window's end to its arrival at a viewer, ms: median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Every measured delay, ms, in arrival order.
    pub delays_ms: Vec<u64>,
    /// From each tap's acceptance to the first frame counting it, over every (tap, viewer)
    /// pair, for the taps of the windows measured (absent when not followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap_to_swarm: Option<TapToSwarmReport>,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<i64>,
    window_start: Option<String>,
    window_end: Option<String>,
    /// "open", "final" or "revised" (final when absent).
    state: Option<String>,
    #[serde(default)]
    emojis: Vec<FrameEmoji>,
}

#[derive(Deserialize)]
struct FrameEmoji {
    emoji: String,
    count: u64,
}

struct Shared {
    from_ms: i64,
    until_ms: AtomicI64,
    connected: AtomicUsize,
    finished: AtomicUsize,
    /// (seq, window end, delay ms) of every arrival.
    seen: Mutex<Vec<(i64, i64, u64)>>,
    progress: Notify,
    tap_to_swarm: Option<Arc<TapToSwarm>>,
}

/// Viewers watching; [`Viewers::finish`] collects what they saw.
pub struct Viewers {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Viewers {
    /// Connects one viewer to each URL; windows ending after `from_ms` are measured. Viewer
    /// `i` (of `ws_urls[i]`) credits `tap_to_swarm`'s taps as viewer `i`.
    pub fn start(
        ws_urls: Vec<String>,
        from_ms: i64,
        tap_to_swarm: Option<Arc<TapToSwarm>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            from_ms,
            until_ms: AtomicI64::new(i64::MAX),
            connected: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            progress: Notify::new(),
            tap_to_swarm,
        });
        let tasks = ws_urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| tokio::spawn(view(url, i, Arc::clone(&shared))))
            .collect();
        Viewers { shared, tasks }
    }

    /// Waits until every connected viewer has the window holding `until_ms` (one ending
    /// after it) closed, or `timeout` passes; stops the viewers and reports on the windows
    /// ending at least `settle` before `until_ms`, and on their taps.
    pub async fn finish(self, until_ms: i64, settle: Duration, timeout: Duration) -> ViewerReport {
        let shared = &self.shared;
        let last_end = until_ms - settle.as_millis() as i64;
        if let Some(tap_to_swarm) = &shared.tap_to_swarm {
            tap_to_swarm.measure_until(last_end);
        }
        shared.until_ms.store(until_ms, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        loop {
            let notified = shared.progress.notified();
            let connected = shared.connected.load(Ordering::Relaxed);
            if shared.finished.load(Ordering::Relaxed) >= connected {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                break;
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        let seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        tracing::debug!(arrivals = ?*seen, until_ms, "Window arrivals: seq, end, delay ms.");
        let measured = seen.iter().filter(|(_, end, _)| *end <= last_end);
        let mut report = ViewerReport {
            viewers: self.tasks.len(),
            connected: shared.connected.load(Ordering::Relaxed),
            tap_to_swarm: shared.tap_to_swarm.as_ref().map(|t| t.report()),
            windows: measured
                .clone()
                .map(|(seq, _, _)| *seq)
                .collect::<BTreeSet<_>>()
                .len(),
            ..ViewerReport::default()
        };
        let mut h = Histogram::<u64>::new(3).expect("a histogram");
        for (_, _, delay) in measured {
            let _ = h.record((*delay).max(1));
            report.delays_ms.push(*delay);
        }
        if !h.is_empty() {
            report.deliveries = h.len();
            report.p50_ms = h.value_at_quantile(0.5) as f64;
            report.p95_ms = h.value_at_quantile(0.95) as f64;
            report.p99_ms = h.value_at_quantile(0.99) as f64;
            report.max_ms = h.max() as f64;
        }
        report
    }
}

/// One viewer: connects and measures every window until it has one ending after `until_ms`
/// closed.
async fn view(url: String, index: usize, shared: Arc<Shared>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        tracing::warn!(%url, "A viewer cannot connect.");
        return;
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if let Some(tap_to_swarm) = &shared.tap_to_swarm {
        tap_to_swarm.viewer_connected();
    }
    while let Some(Ok(message)) = ws.next().await {
        let at_ms = now_ms();
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            continue;
        };
        let (Some(seq), Some(end)) = (frame.seq, frame.window_end.as_deref()) else {
            continue;
        };
        let Ok(end_ms) = model::timestamp::parse_timestamp(end) else {
            continue;
        };
        if frame.kind != "window" || end_ms <= shared.from_ms {
            continue;
        }
        let closed = frame.state.as_deref() != Some("open");
        if let Some(tap_to_swarm) = &shared.tap_to_swarm {
            credit_taps(tap_to_swarm, index, &frame, closed, at_ms);
        }
        if !closed {
            continue;
        }
        let delay = (at_ms - end_ms).max(0) as u64;
        shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((seq, end_ms, delay));
        if end_ms > shared.until_ms.load(Ordering::Relaxed) {
            break;
        }
        shared.progress.notify_one();
    }
    shared.finished.fetch_add(1, Ordering::Relaxed);
    shared.progress.notify_one();
}

/// Hands a frame's counts to `tap_to_swarm` as viewer `index`'s.
fn credit_taps(tap_to_swarm: &TapToSwarm, index: usize, frame: &Frame, closed: bool, at_ms: i64) {
    let Some(Ok(start_ms)) = frame
        .window_start
        .as_deref()
        .map(model::timestamp::parse_timestamp)
    else {
        return;
    };
    let counts = frame.emojis.iter().filter_map(|e| {
        let emoji = EMOJIS.iter().position(|known| *known == e.emoji)?;
        Some((emoji, e.count))
    });
    tap_to_swarm.shown(index, start_ms, counts, closed, at_ms);
}
