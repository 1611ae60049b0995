//! A broker outage under load. A broker of its own, with durable storage, stops for a while
//! and comes back at the same address: meanwhile the ingest answers 503 with Retry-After and
//! never hangs; afterwards it heals by itself; every event acknowledged with `?ack=true` is
//! counted exactly once in the windows, every event answered 202 is in the topic once, and
//! windows plus late records account for every event in the topic. No service is restarted.
//! And a broker that stalls past the delivery timeout: every event in the topic once.
//!
//! The outage lasts 8 s, 30 s in `make chaos` (`EMOSTREAM_OUTAGE_SECONDS` sets it).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::kafka::{Pipeline, count_by_user, event_of, late_offsets, read_from, windows_counting};
use common::pipeline::{start_dataflow_on, start_ingest_on};
use common::traffic::{Phase, send};
use common::{
    chaos_long, expected_csv_of, metric, readiness, record_figures, wait_for, windows_csv,
};
use model::WindowSize;

/// A broker of this test's own in `dir`, of the kind `EMOSTREAM_BROKER_KIND` names, keeping
/// its data across a restart (tansu on sqlite storage; noida-db writes it out when stopped).
struct Broker {
    dir: PathBuf,
    address: String,
}

impl Broker {
    fn script(action: &str, dir: &Path) -> String {
        Broker::script_with(action, dir, "sqlite://tansu.db")
    }

    /// Runs `scripts/broker.sh ACTION DIR` with tansu's storage at `storage`.
    fn script_with(action: &str, dir: &Path, storage: &str) -> String {
        common::script(
            "broker.sh",
            &[action, dir.to_str().unwrap()],
            &[("EMOSTREAM_BROKER_STORAGE", storage)],
        )
    }

    fn start(dir: &Path) -> Self {
        Broker::start_with(dir, "sqlite://tansu.db")
    }

    /// A broker with tansu's storage at `storage`.
    fn start_with(dir: &Path, storage: &str) -> Self {
        let address = Broker::script_with("start", dir, storage);
        Broker {
            dir: dir.to_owned(),
            address,
        }
    }

    fn stop(&self) {
        Broker::script("stop", &self.dir);
    }

    fn restart(&self) {
        let address = Broker::script("restart", &self.dir);
        assert_eq!(address, self.address, "the broker is back at its address");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
// Long: one fault scenario from start to end: traffic, the outage, the recovery, then every count checked against every other.
fn a_broker_outage_under_load_loses_nothing_acknowledged_and_heals_by_itself() {
    let outage = Duration::from_secs(
        std::env::var("EMOSTREAM_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if chaos_long() { 30 } else { 8 }),
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let brokers = broker.address.clone();
    let pipeline = Pipeline {
        clusters: 1,
        ..Pipeline::new("outage")
    };
    let (events, windows, late) = (&pipeline.events, &pipeline.windows, &pipeline.late);
    let ingest = start_ingest_on(
        &brokers,
        &pipeline,
        &[
            "--user-rate-limit",
            "0",
            "--ack-timeout",
            "3s",
            "--queue-capacity",
            "3000",
        ],
    );
    // Windows wait for what the ingest holds through the outage (it says so on the ingests
    // topic) as long as it is not taken for gone: the default timeout (30 s) outlasts the
    // short outage with its reconnection and drain; the long one needs more.
    let ingest_timeout = if outage <= Duration::from_secs(15) {
        "30s".to_owned()
    } else {
        format!("{}s", outage.as_secs() + 30)
    };
    let dataflow = start_dataflow_on(&brokers, &pipeline, &["--ingest-timeout", &ingest_timeout]);
    let url = format!("{}/emoji", ingest.url());
    let phase = Arc::new(Phase::default());
    // Acknowledged traffic, and fire-and-forget traffic that fills the queue in an outage.
    let acked = send(
        url.clone(),
        "ack",
        true,
        10,
        Duration::from_millis(50),
        Arc::clone(&phase),
    );
    let loose = send(
        url,
        "loose",
        false,
        100,
        Duration::from_millis(50),
        Arc::clone(&phase),
    );
    std::thread::sleep(Duration::from_secs(3));
    let services = [("ingest", ingest.url()), ("dataflow", dataflow.url())];
    for (name, url) in &services {
        assert_eq!(readiness(url).0, 200, "{name} ready before the outage");
    }
    let stopping = Instant::now();
    broker.stop();
    // Each service says within 5 s of the broker's end that it is not ready, and why.
    let down_at = Instant::now();
    eprintln!("the broker took {:?} to stop", down_at - stopping);
    for (name, url) in &services {
        wait_for(
            Duration::from_secs(5).saturating_sub(down_at.elapsed()),
            &format!("{name}'s /ready 503 after the broker stopped"),
            || readiness(url).0 == 503,
        );
        eprintln!(
            "{name} not ready {:?} after the broker stopped",
            down_at.elapsed()
        );
        let reasons = readiness(url).1["reasons"].to_string();
        assert!(
            reasons.contains("broker") && reasons.contains(&brokers),
            "{name} names the broker: {reasons}"
        );
    }
    let unready_after = down_at.elapsed();
    std::thread::sleep(outage.saturating_sub(stopping.elapsed()));
    broker.restart();
    let back_at = Instant::now();
    *phase.restarted.lock().unwrap() = Some(back_at);
    for (name, url) in &services {
        wait_for(
            Duration::from_secs(30),
            &format!("{name}'s /ready 200 after the broker came back"),
            || readiness(url).0 == 200,
        );
    }
    eprintln!(
        "not ready {unready_after:?} after the outage began, ready {:?} after it ended",
        back_at.elapsed()
    );
    // Traffic goes on until acknowledgements come back (the ingest heals by itself), and
    // a few seconds more.
    wait_for(
        Duration::from_secs(90),
        "acknowledgements after the restart",
        || phase.recovered.load(Ordering::Relaxed),
    );
    std::thread::sleep(Duration::from_secs(4));
    phase.stop.store(true, Ordering::Relaxed);
    let acked = acked.join().unwrap();
    let loose = loose.join().unwrap();
    eprintln!(
        "statuses: acknowledged {:?}, fire-and-forget {:?}",
        acked.statuses, loose.statuses
    );

    // Never a hang; 503 with Retry-After in the outage; acknowledgements again after it.
    assert_eq!(acked.hung + loose.hung, 0, "every request got an answer");
    assert!(
        acked.statuses.contains_key(&503) && loose.statuses.contains_key(&503),
        "503 answers in the outage: {:?} {:?}",
        acked.statuses,
        loose.statuses
    );
    assert_eq!(
        acked.unavailable_without_retry_after + loose.unavailable_without_retry_after,
        0,
        "every 503 carries Retry-After"
    );
    let recovered = acked
        .first_acknowledged_after_restart
        .expect("an acknowledgement for a request sent after the restart");
    let recovery = recovered.duration_since(back_at);

    // Everything the producer delivered is in the topic; each acknowledged event exactly once.
    wait_for(
        Duration::from_secs(60),
        "the ingest's queue to drain",
        || metric(&ingest.url(), "ingest_queue_depth") == 0.0,
    );
    let delivered = metric(&ingest.url(), "ingest_events_delivered_total") as usize;
    let topic = read_from(&brokers, events, Duration::from_secs(60), |r| {
        r.len() >= delivered
    });
    assert_eq!(topic.len(), delivered, "the topic holds what was delivered");
    let user = event_of;
    let in_topic = count_by_user(&topic);
    for u in &acked.acknowledged {
        assert_eq!(
            in_topic.get(u).copied().unwrap_or(0),
            1,
            "acknowledged event {u} is in the topic exactly once"
        );
    }
    // Nothing answered 202 is lost either (what the broker refused was sent again).
    let accepted: Vec<&String> = loose.accepted.iter().chain(&acked.accepted).collect();
    let lost = accepted
        .iter()
        .filter(|u| !in_topic.contains_key(**u))
        .count();
    assert_eq!(lost, 0, "events answered 202 missing from the topic");
    let repeated = accepted
        .iter()
        .filter(|u| in_topic.get(**u).is_some_and(|n| *n > 1))
        .count();
    assert_eq!(repeated, 0, "events answered 202 in the topic twice");

    // Windows and late records account for every event in the topic; no event is late, not
    // even those the ingest held through the outage; the windows are exactly those of the
    // on-time events.
    let late_at = late_offsets(&brokers, late);
    let on_time: Vec<(String, String, i64)> = topic
        .iter()
        .filter(|r| !late_at.contains(&(r.partition, r.offset)))
        .map(user)
        .collect();
    let counted = windows_counting(&brokers, windows, on_time.len() as u64);
    let acked_users: BTreeSet<&String> = acked.acknowledged.iter().collect();
    let late_acknowledged = topic
        .iter()
        .filter(|r| late_at.contains(&(r.partition, r.offset)))
        .filter(|r| acked_users.contains(&user(r).0))
        .count();
    if !late_at.is_empty() {
        for r in topic
            .iter()
            .filter(|r| late_at.contains(&(r.partition, r.offset)))
            .take(5)
        {
            eprintln!(
                "late: {} at {}",
                String::from_utf8_lossy(&r.payload),
                r.timestamp
            );
        }
        eprintln!(
            "down at {} ms ago, back at {} ms ago",
            down_at.elapsed().as_millis(),
            back_at.elapsed().as_millis()
        );
    }
    assert_eq!(late_acknowledged, 0, "no acknowledged event is late");
    assert!(
        late_at.is_empty(),
        "{} events late, none acknowledged",
        late_at.len()
    );
    let in_windows: u64 = counted.values().map(|w| w.report.events).sum();
    assert_eq!(
        in_windows as usize + late_at.len(),
        topic.len(),
        "windows + late = events in the topic"
    );
    let work = tempfile::tempdir().unwrap();
    assert_eq!(
        windows_csv(&counted),
        expected_csv_of(
            work.path(),
            &on_time,
            Duration::from_secs(3600),
            WindowSize::default()
        ),
        "the windows are exactly those of the on-time events"
    );
    // No service was restarted.
    let mut ingest = ingest;
    let mut dataflow = dataflow;
    assert!(
        ingest.child.try_wait().unwrap().is_none(),
        "the ingest runs"
    );
    assert!(
        dataflow.child.try_wait().unwrap().is_none(),
        "the dataflow runs"
    );

    let figures = serde_json::json!({
        "fault": "broker outage",
        "outage_seconds": outage.as_secs_f64(),
        "requests": {
            "acknowledged_traffic": acked.statuses,
            "fire_and_forget_traffic": loose.statuses,
        },
        "events_acknowledged": acked.acknowledged.len(),
        "events_accepted_202": accepted.len(),
        "events_accepted_202_lost": lost,
        "events_accepted_202_twice": repeated,
        "ingest_events_resent": metric(&ingest.url(), "ingest_events_resent_total"),
        "events_in_topic": topic.len(),
        "events_in_windows": in_windows,
        "events_late": late_at.len(),
        "acknowledged_counted_once": acked.acknowledged.len(),
        "acknowledged_late": late_acknowledged,
        "windows": counted.len(),
        "windows_equal_reference": true,
        "recovery_seconds": recovery.as_secs_f64(),
        "ingest_producer_replacements": metric(&ingest.url(), "ingest_producer_replacements_total"),
    });
    record_figures("broker-outage", &figures);
}

/// A broker that stalls (SIGSTOP) for longer than the ingest's delivery timeout, then goes on
/// (SIGCONT): the produce requests it held are stored when it wakes, though their deliveries
/// timed out meanwhile. The ingest looks for such events in the topic before it sends them
/// again: every event answered 202 is in the topic exactly once.
#[test]
fn a_broker_stalled_past_the_delivery_timeout_gets_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    // In memory: tansu's sqlite storage does not survive a stall (its storage task fails
    // after SIGCONT, and the broker answers nothing any more).
    let broker = Broker::start_with(dir.path(), "memory://tansu/");
    let brokers = broker.address.clone();
    let pipeline = Pipeline::new("stall");
    let ingest = start_ingest_on(
        &brokers,
        &pipeline,
        &["--user-rate-limit", "0", "--delivery-timeout", "2s"],
    );
    let base = ingest.url();
    let phase = Arc::new(Phase::default());
    let loose = send(
        format!("{base}/emoji"),
        "loose",
        false,
        20,
        Duration::from_millis(50),
        Arc::clone(&phase),
    );
    wait_for(Duration::from_secs(30), "deliveries", || {
        metric(&base, "ingest_events_delivered_total") > 0.0
    });
    let pid = std::fs::read_to_string(dir.path().join("broker.pid")).unwrap();
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, pid.trim()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    let stalled = std::panic::catch_unwind(|| {
        // Requests sent into the stalled broker time out one after the other.
        wait_for(Duration::from_secs(30), "deliveries timed out", || {
            metric(&base, "ingest_produce_errors_total") >= 300.0
        })
    });
    signal("-CONT");
    stalled.unwrap();
    let delivered = metric(&base, "ingest_events_delivered_total");
    wait_for(Duration::from_secs(60), "deliveries again", || {
        metric(&base, "ingest_events_delivered_total") > delivered
    });
    phase.stop.store(true, Ordering::Relaxed);
    let loose = loose.join().unwrap();
    wait_for(
        Duration::from_secs(60),
        "the ingest's queue to drain",
        || metric(&base, "ingest_queue_depth") == 0.0,
    );
    let accepted = loose.accepted.len();
    let topic = read_from(&brokers, &pipeline.events, Duration::from_secs(60), |r| {
        r.len() >= accepted
    });
    let in_topic = count_by_user(&topic);
    let lost = loose
        .accepted
        .iter()
        .filter(|u| !in_topic.contains_key(*u))
        .count();
    let twice: Vec<(&String, &usize)> = in_topic.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "accepted {accepted}, in the topic {}, lost {lost}, twice {}, resent {}, looked up {}",
        topic.len(),
        twice.len(),
        metric(&base, "ingest_events_resent_total"),
        metric(&base, "ingest_events_found_stored_total"),
    );
    assert_eq!(lost, 0, "events answered 202 missing from the topic");
    assert!(
        twice.is_empty(),
        "events in the topic twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(
        topic.len(),
        accepted,
        "the topic holds each accepted event once"
    );
    drop(ingest);
}
