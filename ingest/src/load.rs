//! An open-loop HTTP load generator for the ingest API: requests go out at their scheduled
//! times whatever the responses do, so a slow server shows as latency, not as a lower
//! offered rate. Latency is measured from the scheduled send time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::generator::EMOJIS;
use crate::random::SplitMix64;

/// What load to offer.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `host:port` of the ingest API.
    pub target: String,
    /// Requests per second, offered.
    pub rate: f64,
    /// How long to offer it.
    pub duration: Duration,
    /// Keep-alive connections the requests are spread over.
    pub connections: usize,
    /// Events per request (1 sends a single object, more send an array).
    pub batch: usize,
    /// Audience size.
    pub users: u64,
    /// Ask for broker acknowledgement (`?ack=true`).
    pub ack: bool,
    /// Seed of the traffic.
    pub seed: u64,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Responses by status.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Requests that failed without a response.
    pub errors: u64,
    /// Events in 2xx responses.
    pub events_accepted: u64,
    /// Seconds from the first scheduled send to the last response.
    pub seconds: f64,
    /// Offered requests per second.
    pub offered_rate: f64,
    /// Responses per second.
    pub achieved_rate: f64,
    /// Accepted events per second.
    pub events_per_second: f64,
    /// Latency percentiles from the scheduled send time, milliseconds.
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

struct ConnectionResult {
    latencies: Histogram<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
    sent: u64,
}

/// Offers the load and reports.
pub async fn run_load(config: LoadConfig) -> LoadReport {
    let config = Arc::new(config);
    let start = Instant::now() + Duration::from_millis(200);
    let total = (config.rate * config.duration.as_secs_f64()).round() as u64;
    let mut tasks = Vec::new();
    for k in 0..config.connections as u64 {
        let config = Arc::clone(&config);
        tasks.push(tokio::spawn(async move {
            connection(config, k, start, total).await
        }));
    }
    let mut report = LoadReport::default();
    let mut latencies = Histogram::<u64>::new(3).expect("a histogram");
    for task in tasks {
        if let Ok(result) = task.await {
            latencies
                .add(&result.latencies)
                .expect("histograms of the same range");
            for (status, n) in result.statuses {
                *report.statuses.entry(status).or_default() += n;
            }
            report.errors += result.errors;
            report.sent += result.sent;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    let ok: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let responses: u64 = report.statuses.values().sum();
    report.events_accepted = ok * config.batch as u64;
    report.offered_rate = config.rate;
    report.achieved_rate = responses as f64 / report.seconds;
    report.events_per_second = report.events_accepted as f64 / report.seconds;
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    report.p50_ms = ms(0.5);
    report.p90_ms = ms(0.9);
    report.p99_ms = ms(0.99);
    report.p999_ms = ms(0.999);
    report.max_ms = latencies.max() as f64 / 1000.0;
    report
}

/// One keep-alive connection sending requests `k, k + C, k + 2C, ...` at their times.
async fn connection(
    config: Arc<LoadConfig>,
    k: u64,
    start: Instant,
    total: u64,
) -> ConnectionResult {
    let mut result = ConnectionResult {
        latencies: Histogram::new(3).expect("a histogram"),
        statuses: Default::default(),
        errors: 0,
        sent: 0,
    };
    let bodies = bodies(&config, k);
    let path = if config.ack {
        "/emoji?ack=true"
    } else {
        "/emoji"
    };
    let mut sender = None;
    let c = config.connections as u64;
    let mut j = k;
    while j < total {
        let due = start + Duration::from_secs_f64(j as f64 / config.rate);
        tokio::time::sleep_until(due.into()).await;
        if sender.is_none() {
            sender = connect(&config.target).await;
        }
        let Some(send) = sender.as_mut() else {
            result.errors += 1;
            j += c;
            continue;
        };
        let body = bodies[(j / c) as usize % bodies.len()].clone();
        let request = Request::post(path)
            .header("host", config.target.as_str())
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        result.sent += 1;
        match send.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                *result.statuses.entry(status).or_default() += 1;
                let micros = due.elapsed().as_micros() as u64;
                let _ = result.latencies.record(micros.max(1));
            }
            Err(_) => {
                result.errors += 1;
                sender = None;
            }
        }
        j += c;
    }
    result
}

async fn connect(target: &str) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(target).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// A pool of request bodies, made before the clock starts so the client spends its time
/// sending. Events carry no timestamp: the server stamps them.
fn bodies(config: &LoadConfig, k: u64) -> Vec<Bytes> {
    let mut rng = SplitMix64::new(config.seed.wrapping_add(k));
    (0..256)
        .map(|_| {
            let events: Vec<String> = (0..config.batch)
                .map(|_| {
                    let user = rng.below(config.users.max(1));
                    let emoji =
                        EMOJIS[(rng.below(EMOJIS.len() as u64 * 3) % EMOJIS.len() as u64) as usize];
                    format!(r#"{{"user_id":"user{user:06}","emoji_type":"{emoji}"}}"#)
                })
                .collect();
            let body = if config.batch == 1 {
                events.into_iter().next().unwrap_or_default()
            } else {
                format!("[{}]", events.join(","))
            };
            Bytes::from(body)
        })
        .collect()
}
