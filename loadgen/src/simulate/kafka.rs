//! The Kafka driver: the traffic produced straight into the events topic, each record at
//! its time, keyed by user.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use model::now_ms;

use super::tally::{SimulateReport, Tally};
use super::{SimulateConfig, event_json, traffic};

/// Produces the traffic into the events topic, each record at its time.
pub(super) fn offer_kafka(
    config: &SimulateConfig,
    brokers: &str,
    topic: &str,
    tally: &Arc<Tally>,
) -> SimulateReport {
    let mut report = SimulateReport::default();
    let producer = match service::kafka::KeyedProducer::new(brokers, topic) {
        Ok(p) => p,
        Err(error) => {
            tally.failed(|| format!("cannot create the Kafka producer: {error}"));
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
        if let Err(error) = producer.send(&key, payload.as_bytes()) {
            tally.failed(|| format!("cannot send to {topic}: {error}"));
        }
        let (acked, _) = producer.counts();
        tally.accepted.store(acked, Ordering::Relaxed);
    }
    let _ = producer.flush(Duration::from_secs(30));
    let (acked, failed) = producer.counts();
    tally.accepted.store(acked, Ordering::Relaxed);
    if failed > 0 {
        tally.errors.fetch_add(failed - 1, Ordering::Relaxed);
        tally.failed(|| format!("the broker did not take {failed} records of {topic}"));
    }
    report.send_lag_max_ms = send_lag.as_secs_f64() * 1e3;
    report
}
