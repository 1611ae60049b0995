//! Locust, the original system's load tool, against the ingest: `benches/locustfile.py` taps
//! like the page (single events and batches, the allowed emojis, the bearer token) for a few
//! seconds; no request fails, and the events topic holds exactly what the ingest counted as
//! accepted (Locust's own tally misses requests cut off at its end).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::kafka::*;
use common::pipeline::*;
use common::{metric, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The tests' Python environment (tests/requirements.txt), created the first time.
fn python_env() -> String {
    common::script(
        "python-env.sh",
        &[&format!("{ROOT}/tests/requirements.txt"), "tests"],
        &[],
    )
}

#[test]
fn locust_taps_for_a_few_seconds_without_a_failure_and_the_topic_holds_every_accepted_event() {
    let venv = python_env();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("locust");
    let token = "locust-secret";
    let ingest = start_ingest(
        &pipeline,
        &["--ingest-token", token, "--user-rate-limit", "0"],
    );
    let csv = dir.path().join("run");
    let output = Command::new(Path::new(&venv).join("bin/python"))
        .args([
            "-m",
            "locust",
            "-f",
            &format!("{ROOT}/benches/locustfile.py"),
        ])
        .args([
            "--headless",
            "-u",
            "20",
            "-r",
            "20",
            "-t",
            "5s",
            "--stop-timeout",
            "2",
        ])
        .args(["--host", &ingest.url(), "--csv", csv.to_str().unwrap()])
        .env("EMOSTREAM_INGEST_TOKEN", token)
        .output()
        .expect("run locust");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "locust failed: {log}");
    // Locust's totals: requests made, none failed.
    let stats = std::fs::read_to_string(dir.path().join("run_stats.csv")).unwrap();
    let header: Vec<&str> = stats.lines().next().unwrap().split(',').collect();
    let total: Vec<&str> = stats
        .lines()
        .find(|l| l.contains(",Aggregated,"))
        .expect("an aggregated row")
        .split(',')
        .collect();
    let column = |name: &str| -> u64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        total[i].parse().unwrap()
    };
    assert!(column("Request Count") > 50, "Locust tapped: {stats}");
    assert_eq!(column("Failure Count"), 0, "no failed request: {log}");
    let batches = stats
        .lines()
        .find(|l| l.contains("/emoji (batch)"))
        .and_then(|l| {
            l.split(',')
                .nth(header.iter().position(|h| *h == "Request Count")?)
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(batches.is_some_and(|n| n > 0), "batches were sent: {stats}");
    // Every event the ingest accepted is in the topic, once: once the ingest has delivered
    // all it accepted (requests cut off at Locust's end included), the topic to its end.
    let base = ingest.url();
    assert_eq!(metric(&base, "ingest_requests_total{status=\"401\"}"), 0.0);
    let mut accepted = 0;
    wait_for(WAIT, "the ingest to deliver what it accepted", || {
        accepted = metric(&base, "ingest_events_accepted_total") as usize;
        metric(&base, "ingest_queue_depth") == 0.0
            && metric(&base, "ingest_events_delivered_total") as usize == accepted
    });
    let events = read_until(&pipeline.events, WAIT, |p| p.len() >= accepted);
    assert_eq!(
        events.len(),
        accepted,
        "the topic holds what the ingest accepted"
    );
    let of_locust = events
        .iter()
        .filter(|p| String::from_utf8_lossy(p).contains("\"user_id\":\"locust-"))
        .count();
    assert_eq!(of_locust, accepted, "every event is a Locust viewer's");
}
