//! Viewers for the simulator: WebSocket clients of the broadcasters that measure, for every
//! window they receive, the delay from the window's end to its arrival: what a viewer waits
//! for the swarm of a moment.
//!
//! Measured are the windows that close while the traffic goes on: those ending at least the
//! dataflow's allowed lateness before the last tap. The later ones close only once the input
//! has been idle for the dataflow's idle timeout (no later event moves the watermark past
//! them), an effect of the simulation stopping that a live match does not have: the viewers
//! wait for them, but leave them out of the figures.

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
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<i64>,
    window_end: Option<String>,
}

struct Shared {
    from_ms: i64,
    until_ms: AtomicI64,
    connected: AtomicUsize,
    finished: AtomicUsize,
    /// (seq, window end, delay ms) of every arrival.
    seen: Mutex<Vec<(i64, i64, u64)>>,
    progress: Notify,
}

/// Viewers watching; [`Viewers::finish`] collects what they saw.
pub struct Viewers {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Viewers {
    /// Connects one viewer to each URL; windows ending after `from_ms` are measured.
    pub fn start(ws_urls: Vec<String>, from_ms: i64) -> Self {
        let shared = Arc::new(Shared {
            from_ms,
            until_ms: AtomicI64::new(i64::MAX),
            connected: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            progress: Notify::new(),
        });
        let tasks = ws_urls
            .into_iter()
            .map(|url| tokio::spawn(view(url, Arc::clone(&shared))))
            .collect();
        Viewers { shared, tasks }
    }

    /// Waits until every connected viewer has the window holding `until_ms` (one ending
    /// after it), or `timeout` passes; stops the viewers and reports on the windows ending
    /// at least `settle` before `until_ms`.
    pub async fn finish(self, until_ms: i64, settle: Duration, timeout: Duration) -> ViewerReport {
        let shared = &self.shared;
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
        let last_end = until_ms - settle.as_millis() as i64;
        let measured = seen.iter().filter(|(_, end, _)| *end <= last_end);
        let mut report = ViewerReport {
            viewers: self.tasks.len(),
            connected: shared.connected.load(Ordering::Relaxed),
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

/// One viewer: connects and measures every window until it has one ending after `until_ms`.
async fn view(url: String, shared: Arc<Shared>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        tracing::warn!(%url, "A viewer cannot connect.");
        return;
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    while let Some(Ok(message)) = ws.next().await {
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
        let delay = (now_ms() - end_ms).max(0) as u64;
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
