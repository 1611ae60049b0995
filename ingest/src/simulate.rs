//! `emostream simulate`: realistic reaction traffic (the [`generator`](crate::generator)'s
//! skewed mix, broad audience plus heavy clickers, `match` bursts and network jitter),
//! offered open loop to the ingest API over HTTP or straight to the events topic.
//!
//! Open loop: every request is due at its scheduled time whatever earlier responses do, and
//! its latency is measured from that time. A request that finds no idle connection opens
//! another one (up to `max_connections`, as many viewers' phones would; past that it waits
//! for one, and the wait counts in its latency), so a slow server shows as latency and
//! connections in use, never as a lower offered rate. Only past `max_in_flight` outstanding
//! requests does the simulator give up on a request, and it counts those as `overloaded`,
//! separately from the server's answers.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use model::now_ms;
use serde::Serialize;

use crate::generator::{EMOJIS, GeneratedEvent, Generator, Profile, Workload};

/// Where the traffic goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST /emoji` of the ingest API at `host:port`.
    Http {
        /// `host:port`.
        addr: String,
        /// Ask for the broker's acknowledgement (`?ack=true`).
        ack: bool,
    },
    /// Straight into the events topic, keyed by user.
    Kafka {
        /// Brokers.
        brokers: String,
        /// The events topic.
        topic: String,
    },
}

/// What to offer.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    /// Where to.
    pub target: Target,
    /// Audience size.
    pub users: u64,
    /// Offered events per second (outside bursts).
    pub rate: f64,
    /// How long.
    pub duration: Duration,
    /// Steady, or a match with bursts of five times the rate.
    pub profile: Profile,
    /// Events per HTTP request (1 sends one object, more an array).
    pub batch: usize,
    /// Largest network delay between a tap and its sending, so events arrive out of order.
    pub jitter: Duration,
    /// Outstanding HTTP requests at most.
    pub max_in_flight: usize,
    /// HTTP connections opened before the clock starts (more open when all are busy).
    pub connections: usize,
    /// HTTP connections at most.
    pub max_connections: usize,
    /// With N > 0, N request bodies (server-stamped) are made before the clock starts and
    /// sent over and over at an even pace: the client then spends its time sending, for
    /// measuring the server's throughput.
    pub body_pool: usize,
    /// Seed of the traffic.
    pub seed: u64,
    /// Print progress every second (on a terminal).
    pub progress: bool,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            target: Target::Http {
                addr: "127.0.0.1:5000".into(),
                ack: false,
            },
            users: 100_000,
            rate: 10_000.0,
            duration: Duration::from_secs(60),
            profile: Profile::Steady,
            batch: 1,
            jitter: Duration::from_millis(50),
            max_in_flight: 20_000,
            connections: 64,
            max_connections: 256,
            body_pool: 0,
            seed: 1,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

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
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    connections: AtomicU64,
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    statuses: BTreeMap<u16, u64>,
    latencies: Option<Histogram<u64>>,
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
        }
    }
}

impl Tally {
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

    fn answered(&self, status: Option<u16>, events: u64, due: Instant) {
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.accepted.fetch_add(events, Ordering::Relaxed);
            }
            Some(_) => {
                self.rejected.fetch_add(events, Ordering::Relaxed);
            }
            None => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
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

/// The traffic of `config`: the generator started at `start_ms`, ending after `duration`.
fn traffic(config: &SimulateConfig, start_ms: i64) -> impl Iterator<Item = GeneratedEvent> + use<> {
    let end_ms = start_ms + config.duration.as_millis() as i64;
    Generator::new(Workload {
        events: u64::MAX,
        users: config.users,
        rate: config.rate,
        profile: config.profile,
        start_ms,
        disorder_ms: config.jitter.as_millis() as i64,
        late_fraction: 0.0,
        late_delay_ms: 0,
        seed: config.seed,
    })
    .take_while(move |e| e.arrival_ms < end_ms)
}

/// One event as JSON, with its tap time in epoch milliseconds if `stamped` (else the
/// server stamps it).
fn event_json(out: &mut String, event: &GeneratedEvent, stamped: bool) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        r#"{{"user_id":"user{:06}","emoji_type":"{}""#,
        event.user, EMOJIS[event.emoji]
    );
    if stamped {
        let _ = write!(out, r#","timestamp":{}"#, event.timestamp_ms);
    }
    out.push('}');
}

/// Offers the traffic and reports.
pub async fn run_simulation(config: SimulateConfig) -> SimulateReport {
    run_simulation_counted(config, Arc::default()).await
}

/// Offers the traffic, counting in `tally` as it goes, and reports.
pub async fn run_simulation_counted(config: SimulateConfig, tally: Arc<Tally>) -> SimulateReport {
    let progress = config.progress.then(|| {
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let started = Instant::now();
            loop {
                tick.tick().await;
                let p = tally.progress();
                eprint!(
                    "\r{:>5.0} s  sent {}  accepted {}  rejected {}  errors {}  in flight {}   ",
                    started.elapsed().as_secs_f64(),
                    p.sent,
                    p.accepted,
                    p.rejected,
                    p.errors,
                    p.in_flight,
                );
            }
        })
    });
    let started = Instant::now();
    let mut report = match &config.target {
        Target::Http { addr, ack } => {
            offer_http(&config, addr.clone(), *ack, Arc::clone(&tally)).await
        }
        Target::Kafka { brokers, topic } => {
            let (config, brokers, topic, tally) = (
                config.clone(),
                brokers.clone(),
                topic.clone(),
                Arc::clone(&tally),
            );
            tokio::task::spawn_blocking(move || offer_kafka(&config, &brokers, &topic, &tally))
                .await
                .unwrap_or_default()
        }
    };
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.sent = tally.sent.load(Ordering::Relaxed);
    report.events_accepted = tally.accepted.load(Ordering::Relaxed);
    report.errors = tally.errors.load(Ordering::Relaxed);
    report.connections = tally.connections.load(Ordering::Relaxed);
    report.offered_rate = report.events_offered as f64 / config.duration.as_secs_f64();
    report.accepted_rate = report.events_accepted as f64 / report.seconds;
    let answers = tally.answers.lock().unwrap_or_else(|e| e.into_inner());
    report.statuses = answers.statuses.clone();
    if let Some(h) = &answers.latencies
        && !h.is_empty()
    {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        report.p50_ms = ms(0.5);
        report.p90_ms = ms(0.9);
        report.p99_ms = ms(0.99);
        report.p999_ms = ms(0.999);
        report.max_ms = h.max() as f64 / 1000.0;
    }
    report
}

/// Schedules the requests and sends each on a task of its own at its time.
async fn offer_http(
    config: &SimulateConfig,
    addr: String,
    ack: bool,
    tally: Arc<Tally>,
) -> SimulateReport {
    let mut report = SimulateReport::default();
    let warm = futures_util::future::join_all(
        (0..config.connections.max(1)).map(|_| connect(&addr, &tally)),
    )
    .await;
    let pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> =
        Arc::new(Mutex::new(warm.into_iter().flatten().collect()));
    // A request holds a permit while it uses a connection: connections never outnumber them.
    let permits = Arc::new(tokio::sync::Semaphore::new(
        config.max_connections.max(config.connections).max(1),
    ));
    let path: &'static str = if ack { "/emoji?ack=true" } else { "/emoji" };
    let start = Instant::now() + Duration::from_millis(100);
    let start_ms = now_ms() + 100;
    let mut senders = tokio::task::JoinSet::new();
    let mut send_lag = Duration::ZERO;
    for planned in planned_requests(config, start_ms) {
        let events = planned.events;
        report.events_offered += events;
        report.last_event_ms = report.last_event_ms.max(planned.last_tap_ms);
        let due = start + planned.after;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        send_lag = send_lag.max(due.elapsed());
        if tally.in_flight.load(Ordering::Relaxed) >= config.max_in_flight as u64 {
            report.overloaded += events;
            continue;
        }
        while senders.try_join_next().is_some() {}
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let request = Request::post(path)
            .header("host", addr.as_str())
            .header("content-type", "application/json")
            .body(Full::new(planned.body))
            .expect("a valid request");
        let (pool, tally, addr, permits) = (
            Arc::clone(&pool),
            Arc::clone(&tally),
            addr.clone(),
            Arc::clone(&permits),
        );
        senders.spawn(async move {
            let _permit = permits.acquire().await;
            let status = send(&pool, &addr, &tally, request).await;
            tally.answered(status, events, due);
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while senders.join_next().await.is_some() {}
    report.send_lag_max_ms = send_lag.as_secs_f64() * 1e3;
    report
}

/// One request of the schedule.
struct Planned {
    /// When it is due, after the start.
    after: Duration,
    body: Bytes,
    events: u64,
    /// Its latest tap time, UTC ms.
    last_tap_ms: i64,
}

/// The requests of the simulation in schedule order: the traffic's events, `batch` to a
/// request, each request due when its last event arrives; or, with a body pool, the pool's
/// bodies over and over at an even pace.
fn planned_requests(
    config: &SimulateConfig,
    start_ms: i64,
) -> Box<dyn Iterator<Item = Planned> + Send> {
    let batch = config.batch.max(1);
    let encode = move |events: &[GeneratedEvent], stamped: bool| {
        let mut body = String::with_capacity(96 * events.len() + 2);
        if batch > 1 {
            body.push('[');
        }
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            event_json(&mut body, event, stamped);
        }
        if batch > 1 {
            body.push(']');
        }
        Bytes::from(body)
    };
    if config.body_pool > 0 {
        let events: Vec<GeneratedEvent> = traffic(
            &SimulateConfig {
                duration: Duration::from_secs(3600),
                ..config.clone()
            },
            start_ms,
        )
        .take(config.body_pool * batch)
        .collect();
        let bodies: Vec<Bytes> = events.chunks(batch).map(|c| encode(c, false)).collect();
        let every = batch as f64 / config.rate;
        let total = (config.duration.as_secs_f64() / every).round() as usize;
        return Box::new((0..total).map(move |j| Planned {
            after: Duration::from_secs_f64(j as f64 * every),
            body: bodies[j % bodies.len()].clone(),
            events: batch as u64,
            last_tap_ms: start_ms + (j as f64 * every * 1e3) as i64,
        }));
    }
    let mut events = traffic(config, start_ms);
    let mut chunk = Vec::with_capacity(batch);
    Box::new(std::iter::from_fn(move || {
        chunk.clear();
        chunk.extend(events.by_ref().take(batch));
        let last = chunk.last()?;
        Some(Planned {
            after: Duration::from_millis((last.arrival_ms - start_ms).max(0) as u64),
            body: encode(&chunk, true),
            events: chunk.len() as u64,
            last_tap_ms: chunk.iter().map(|e| e.timestamp_ms).max().unwrap_or(0),
        })
    }))
}

/// Sends one request on an idle connection, or a new one; the status, or `None` if no
/// answer came.
async fn send(
    pool: &Mutex<Vec<SendRequest<Full<Bytes>>>>,
    addr: &str,
    tally: &Tally,
    request: Request<Full<Bytes>>,
) -> Option<u16> {
    let idle = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut sender = match idle {
        Some(sender) => sender,
        None => connect(addr, tally).await?,
    };
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let complete = response.into_body().collect().await.is_ok();
    if complete && sender.is_ready() {
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
    }
    Some(status)
}

/// A new keep-alive connection.
async fn connect(addr: &str, tally: &Tally) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    tally.connections.fetch_add(1, Ordering::Relaxed);
    Some(sender)
}

/// Produces the traffic into the events topic, each record at its time.
fn offer_kafka(
    config: &SimulateConfig,
    brokers: &str,
    topic: &str,
    tally: &Arc<Tally>,
) -> SimulateReport {
    let mut report = SimulateReport::default();
    let producer = match service::kafka::KeyedProducer::new(brokers, topic) {
        Ok(p) => p,
        Err(error) => {
            tracing::error!(%error, "Cannot create the Kafka producer.");
            report.errors = 1;
            return report;
        }
    };
    let start = Instant::now() + Duration::from_millis(100);
    let start_ms = now_ms() + 100;
    let mut payload = String::with_capacity(128);
    let mut key = String::with_capacity(16);
    let mut send_lag = Duration::ZERO;
    for event in traffic(config, start_ms) {
        report.events_offered += 1;
        report.last_event_ms = report.last_event_ms.max(event.timestamp_ms);
        let due = start + Duration::from_millis((event.arrival_ms - start_ms).max(0) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        send_lag = send_lag.max(due.elapsed());
        payload.clear();
        event_json(&mut payload, &event, true);
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "user{:06}", event.user);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if producer.send(&key, payload.as_bytes()).is_err() {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
        let (acked, _) = producer.counts();
        tally.accepted.store(acked, Ordering::Relaxed);
    }
    let _ = producer.flush(Duration::from_secs(30));
    let (acked, failed) = producer.counts();
    tally.accepted.store(acked, Ordering::Relaxed);
    tally.errors.fetch_add(failed, Ordering::Relaxed);
    report.send_lag_max_ms = send_lag.as_secs_f64() * 1e3;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_covers_the_duration_at_the_rate() {
        let config = SimulateConfig {
            rate: 1000.0,
            duration: Duration::from_secs(10),
            ..SimulateConfig::default()
        };
        let events: Vec<_> = traffic(&config, 0).collect();
        assert!((9_500..10_500).contains(&events.len()), "{}", events.len());
        assert!(events.iter().all(|e| (0..10_000).contains(&e.arrival_ms)));
        assert!(
            events
                .windows(2)
                .all(|p| p[0].arrival_ms <= p[1].arrival_ms)
        );
        let mut json = String::new();
        event_json(&mut json, &events[0], true);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["timestamp"], events[0].timestamp_ms);
    }

    #[test]
    fn a_match_offers_more_than_a_steady_rate() {
        let base = SimulateConfig {
            rate: 1000.0,
            duration: Duration::from_secs(300),
            ..SimulateConfig::default()
        };
        let steady = traffic(&base, 0).count();
        let game = traffic(
            &SimulateConfig {
                profile: Profile::Match,
                ..base
            },
            0,
        )
        .count();
        assert!(game > steady + steady / 20, "match {game}, steady {steady}");
    }
}
