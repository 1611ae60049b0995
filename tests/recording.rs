//! Recorded matches against a real broker: `emostream record` and `emostream replay
//! --to-kafka`, run as a user runs them.

use crate::common;

use std::path::Path;

use std::time::Duration;

use common::kafka::{now_ms, read_records_until, unique};
use common::*;

/// `emostream replay LOG --to-kafka --events-topic TOPIC` with `extra` flags.
fn to_kafka(log: &Path, topic: &str, extra: &[&str]) {
    let mut args = vec!["replay", path(log), "--to-kafka", "--events-topic", topic];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// `emostream record` of the whole of `topic` into `out`.
fn record_whole(topic: &str, out: &Path) {
    let args = ["record", "--topic", topic, "--out", path(out)];
    run_ok(&[&args[..], &["--from", "earliest", "--until", "end"]].concat());
}

/// The events of a log, sorted: (user, emoji, timestamp ms).
fn events_of(log: &Path) -> Vec<(String, String, i64)> {
    let mut reader = csv::Reader::from_path(log).expect("a log");
    let mut events: Vec<(String, String, i64)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a row");
            let ts = model::parse_timestamp(&r[2]).expect("a timestamp");
            (r[0].to_owned(), r[1].to_owned(), ts)
        })
        .collect();
    events.sort();
    events
}

#[test]
fn record_then_replay_gives_back_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let original = generated_log(dir.path(), "match.csv", disordered(3_000, 400, 600, 5));
    let want = events_of(&original);
    let mut log = original;
    // Twice round: the log into a topic, the topic into a log.
    for round in 1..=2 {
        let topic = unique(&format!("recorded-{round}"));
        to_kafka(&log, &topic, &["--speed", "0", "--keep-timestamps"]);
        let recorded = dir.path().join(format!("recorded-{round}.csv"));
        record_whole(&topic, &recorded);
        let got = events_of(&recorded);
        assert_eq!(got.len(), want.len(), "round {round}: events recorded");
        assert_eq!(got, want, "round {round}");
        log = recorded;
    }
}

#[test]
fn replay_at_speed_one_keeps_the_original_pace_and_moves_the_match_to_now() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(
        dir.path(),
        "match.csv",
        loadgen::generator::Workload {
            events: 1_500,
            users: 300,
            rate: 500.0,
            disorder_ms: 200,
            ..loadgen::generator::Workload::default()
        },
    );
    let logged = events_of(&log);
    let span = |ts: &mut dyn Iterator<Item = i64>| {
        let all: Vec<i64> = ts.collect();
        all.iter().max().unwrap() - all.iter().min().unwrap()
    };
    let log_span = span(&mut logged.iter().map(|e| e.2));
    assert!(log_span > 2_500, "the log spans {log_span} ms");

    let topic = unique("paced");
    let started = now_ms();
    to_kafka(&log, &topic, &["--speed", "1"]);
    let records = read_records_until(&topic, Duration::from_secs(30), |r| r.len() >= logged.len());
    assert_eq!(records.len(), logged.len());
    let sent_span = span(&mut records.iter().map(|(at, _)| *at));
    let off = (sent_span - log_span).abs() as f64 / log_span as f64;
    assert!(
        off <= 0.05,
        "sent over {sent_span} ms, the log spans {log_span} ms"
    );
    // The match happens now: each event's timestamp is close to when it was sent.
    for (at, payload) in &records {
        let event: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let ts = event["timestamp"].as_i64().unwrap();
        assert!(
            ts >= started - 1_000,
            "{ts} before the replay started at {started}"
        );
        assert!((at - ts).abs() <= 1_000, "sent at {at}, stamped {ts}");
    }
}

/// A live run recorded and replayed gives the live windows. 30,000 taps over 5 s on four
/// partitions read by two workers: most a little behind the clock, one in 25 from a client
/// 30 s ahead (counted when it arrived), one in 25 five minutes old (late), after a first
/// second of taps on time; `record` of the events topic (more than its merge buffer holds of
/// one partition), then `replay` of the recording: every window equals the live windows
/// topic's last revision.
#[test]
fn a_live_run_recorded_and_replayed_gives_the_live_windows() {
    use common::kafka::{Pipeline, create_topic, produce_events, producer};
    use common::pipeline::{start_dataflow, windows_through};
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("recorded-live");
    create_topic(&pipeline.events, 4);
    let _dataflow = start_dataflow(&pipeline, &["-w", "2"]);
    let producer = producer();
    let emojis = ["🔥", "😂", "👏"];
    let mut last = 0;
    for round in 0..60i64 {
        let now = now_ms();
        let batch: Vec<(String, String, i64)> = (0..600i64)
            .map(|i| {
                let n = round * 600 + i;
                let ts = match (round >= 10).then_some(n % 25) {
                    Some(0) => now + 30_000,
                    Some(1) => now - 300_000,
                    _ => now - (n * 37) % 400,
                };
                (
                    format!("u{}", n % 1_009),
                    emojis[(n % 3) as usize].to_owned(),
                    ts,
                )
            })
            .collect();
        produce_events(&producer, &pipeline.events, &batch);
        last = now;
        // The traffic's pace, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = windows_through(&pipeline.windows, last);
    let recorded = dir.path().join("match.csv");
    record_whole(&pipeline.events, &recorded);
    let replayed = dir.path().join("windows.csv");
    run_ok(&["replay", path(&recorded), "--out", path(&replayed)]);
    let replayed = std::fs::read_to_string(&replayed).unwrap();
    assert_same_windows(&replayed, &windows_csv(&live), "the replayed recording");
}

/// `emostream windows` writes every record of a topic, a line each, partition by partition in
/// offset order, and stops at the end.
#[test]
fn windows_writes_every_message_of_a_topic_up_to_its_end() {
    let topic = unique("dump");
    common::kafka::create_topic(&topic, 2);
    let records: Vec<(String, String, i64)> = (0..6)
        .map(|i| (format!("u{i}"), "🔥".to_owned(), 1_795_341_600_000 + i))
        .collect();
    common::kafka::produce_to(&common::kafka::producer(), &topic, &records, Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("windows.jsonl");
    run_ok(&["windows", "--topic", &topic, "--out", path(&out)]);
    let users: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["user_id"].to_string())
        .collect();
    assert_eq!(
        users,
        ["u0", "u2", "u4", "u1", "u3", "u5"].map(|u| format!("\"{u}\""))
    );
}
