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

//!
//! # Layout
//! - [`tally`]: the counters the senders share, and the report.
//! - [`tap_to_swarm`]: accepted taps matched to the viewers' frames that first count them.
//! - `http`: the HTTP driver (a pool of keep-alive connections).
//! - `kafka`: the Kafka driver (records straight into the events topic).

mod http;
mod kafka;
pub mod tally;
pub mod tap_to_swarm;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use tally::{Progress, SimulateReport, Tally};
pub use tap_to_swarm::{Tap, TapToSwarm, TapToSwarmReport};

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

/// Offers the traffic, counting in `tally` as it goes (a caller may show its progress), and
/// reports.
pub async fn run_simulation_counted(config: SimulateConfig, tally: Arc<Tally>) -> SimulateReport {
    let started = Instant::now();
    let mut report = match &config.target {
        Target::Http { addr, ack } => {
            http::offer_http(&config, addr.clone(), *ack, Arc::clone(&tally)).await
        }
        Target::Kafka { brokers, topic } => {
            let (config, brokers, topic, tally) = (
                config.clone(),
                brokers.clone(),
                topic.clone(),
                Arc::clone(&tally),
            );
            tokio::task::spawn_blocking(move || {
                kafka::offer_kafka(&config, &brokers, &topic, &tally)
            })
            .await
            .unwrap_or_default()
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    report.sent = tally.sent.load(Ordering::Relaxed);
    report.events_accepted = tally.accepted.load(Ordering::Relaxed);
    report.errors = tally.errors.load(Ordering::Relaxed);
    report.connections = tally.connections.load(Ordering::Relaxed);
    report.offered_rate = report.events_offered as f64 / config.duration.as_secs_f64();
    report.accepted_rate = report.events_accepted as f64 / report.seconds;
    let answers = tally.answers.lock().unwrap_or_else(|e| e.into_inner());
    report.statuses = answers.statuses.clone();
    report.first_error = answers.first_error.clone();
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
