//! The simulator's counters, shared by its senders and read while it runs, and its report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use model::now_ms;
use serde::Serialize;

use super::tap_to_swarm::{Tap, TapToSwarm};

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulateReport {
    /// Events scheduled (and sent, but for `overloaded`).
    pub events_offered: u64,
    /// Requests (HTTP) or records (Kafka) sent.
    pub sent: u64,
    /// Events accepted: in a 2xx answer, or acknowledged by the broker.
    pub events_accepted: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connection refused or broken), or records the broker
    /// refused.
    pub errors: u64,
    /// The first of those errors, as said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Events not sent because `max_in_flight` requests were outstanding.
    pub overloaded: u64,
    /// Seconds from the first scheduled send to the last answer.
    pub seconds: f64,
    /// Offered events per second, scheduled.
    pub offered_rate: f64,
    /// Accepted events per second.
    pub accepted_rate: f64,
    /// How late the simulator itself sent a request after its scheduled time, at most, ms.
    pub send_lag_max_ms: f64,
    /// Connections opened (HTTP).
    pub connections: u64,
    /// The latest tap time offered, UTC milliseconds.
    pub last_event_ms: i64,
    /// Latency from the scheduled time to the answer, ms: median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Counters shared by the senders, read by the progress line and [`Tally::progress`].
pub struct Tally {
    pub(crate) sent: AtomicU64,
    pub(crate) accepted: AtomicU64,
    rejected: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) answers: Mutex<Answers>,
    /// Where the accepted taps go, when viewers measure tap-to-swarm latency.
    tap_to_swarm: Option<Arc<TapToSwarm>>,
}

#[derive(Default)]
pub(crate) struct Answers {
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) first_error: Option<String>,
    pub(crate) latencies: Option<Histogram<u64>>,
}

/// How far a simulation got.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Progress {
    /// Requests (or records) sent.
    pub sent: u64,
    /// Events accepted.
    pub accepted: u64,
    /// Events in refused requests.
    pub rejected: u64,
    /// Requests without an answer, records refused.
    pub errors: u64,
    /// Requests outstanding.
    pub in_flight: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            answers: Mutex::new(Answers {
                latencies: Histogram::new(3).ok(),
                ..Answers::default()
            }),
            tap_to_swarm: None,
        }
    }
}

impl Tally {
    /// Counters that also hand every accepted tap to `tap_to_swarm` (over HTTP, with
    /// timestamped events: the Kafka driver and body pools make no taps).
    pub fn with_tap_to_swarm(tap_to_swarm: Arc<TapToSwarm>) -> Self {
        Tally {
            tap_to_swarm: Some(tap_to_swarm),
            ..Tally::default()
        }
    }

    /// Whether the senders should say which taps each request carried.
    pub(crate) fn follows_taps(&self) -> bool {
        self.tap_to_swarm.is_some()
    }

    /// The counters now.
    pub fn progress(&self) -> Progress {
        Progress {
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// A request or record failed without an answer, for `reason`.
    pub(crate) fn failed(&self, reason: impl FnOnce() -> String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.first_error.is_none() {
            answers.first_error = Some(reason());
        }
    }

    /// A request of `events` events due at `due` was answered with `status` (`None`: no
    /// answer); `taps` are its events, if [`Tally::follows_taps`].
    pub(crate) fn answered(&self, status: Option<u16>, events: u64, taps: &[Tap], due: Instant) {
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.accepted.fetch_add(events, Ordering::Relaxed);
                if let Some(tap_to_swarm) = &self.tap_to_swarm {
                    tap_to_swarm.accepted(taps, now_ms());
                }
            }
            Some(_) => {
                self.rejected.fetch_add(events, Ordering::Relaxed);
            }
            // Counted as an error where it failed.
            None => {}
        }
        let micros = due.elapsed().as_micros() as u64;
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = status {
            *answers.statuses.entry(s).or_default() += 1;
        }
        if let Some(h) = answers.latencies.as_mut() {
            let _ = h.record(micros.max(1));
        }
    }
}
