//! HTTP traffic for the fault tests: senders of event batches that tally every answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::kafka::now_ms;

/// What one sender saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Events of requests answered 201 (acknowledged by the broker).
    pub acknowledged: Vec<String>,
    /// Events of requests answered 202.
    pub accepted: Vec<String>,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// 503 answers without a Retry-After header.
    pub unavailable_without_retry_after: u64,
    /// Requests that got no answer within the client's timeout.
    pub hung: u64,
    /// When the first 201 came for a request sent after the fault ended.
    pub first_acknowledged_after_restart: Option<Instant>,
    /// The largest event timestamp sent, UTC ms.
    pub last_timestamp: i64,
}

/// What the senders and the test share.
#[derive(Default)]
pub struct Phase {
    pub stop: AtomicBool,
    /// When the fault ended (a broker back, a service started again).
    pub restarted: Mutex<Option<Instant>>,
    /// Set once a request sent after the restart is acknowledged.
    pub recovered: AtomicBool,
}

/// Sends a batch of `batch` events every `every` until the phase stops, with `?ack=true`
/// when `ack`. Each event has a user of its own (`<tag>-<n>`), so it can be found anywhere.
// Long: one traffic phase: open-loop schedule, sending and counting share their state.
pub fn send(
    url: String,
    tag: &'static str,
    ack: bool,
    batch: usize,
    every: Duration,
    phase: Arc<Phase>,
) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Longer than the ingest's ack timeout: an answer must come before it.
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = if ack { format!("{url}?ack=true") } else { url };
        let emojis = ["🔥", "😂", "👏"];
        let mut tally = Tally::default();
        let mut n = 0u64;
        let mut next = Instant::now();
        while !phase.stop.load(Ordering::Relaxed) {
            let sent_at = Instant::now();
            let now = now_ms();
            tally.last_timestamp = tally.last_timestamp.max(now);
            let users: Vec<String> = (0..batch)
                .map(|i| format!("{tag}-{}", n + i as u64))
                .collect();
            n += batch as u64;
            let body: Vec<String> = users
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    serde_json::json!({"user_id": u, "emoji_type": emojis[i % 3], "timestamp": now})
                        .to_string()
                })
                .collect();
            let response = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(format!("[{}]", body.join(",")));
            match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    *tally.statuses.entry(status).or_default() += 1;
                    if status == 503 && response.headers().get("retry-after").is_none() {
                        tally.unavailable_without_retry_after += 1;
                    }
                    match status {
                        201 => {
                            let back = *phase.restarted.lock().unwrap();
                            if back.is_some_and(|b| sent_at > b) {
                                tally
                                    .first_acknowledged_after_restart
                                    .get_or_insert_with(Instant::now);
                                phase.recovered.store(true, Ordering::Relaxed);
                            }
                            tally.acknowledged.extend(users);
                        }
                        202 => tally.accepted.extend(users),
                        _ => {}
                    }
                }
                Err(_) => tally.hung += 1,
            }
            next += every;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        tally
    })
}
