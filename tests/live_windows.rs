//! Exact windows from the live pipeline against a real broker: posted events come out on every topic, lulls close windows, several sizes, where reading starts.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kafka::*;
use common::pipeline::*;
use common::{
    expected_csv_of, metric, wait_for, wait_until_into_10s_window, windows_csv as as_csv,
};
use model::WindowSize;
use model::report::{WindowMessage, WindowState};

#[test]
// Long: one scenario: posts, then every topic compared with the reference.
fn events_posted_over_http_come_out_as_exact_windows_on_every_topic() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("http");
    let ingest = start_ingest(&pipeline, &[]);
    let _dataflow = start_dataflow(&pipeline, &["--lateness", "30s"]);
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let emojis = ["🔥", "😂", "👏", "❤️"];
    let base = WindowSize::default().start_of(now_ms() - 30_000);
    // Out of order: the timestamps go back and forth over four windows.
    let mut events = Vec::new();
    for i in 0..260i64 {
        let ts = base + (i * 7919) % 8000;
        events.push((
            format!("u{}", i % 37),
            emojis[(i % 4) as usize].to_owned(),
            ts,
        ));
    }
    for (u, e, t) in &events[..10] {
        let (status, body, _) = post(&agent, &url, "application/json", &event_json(u, e, *t));
        assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    }
    for chunk in events[10..].chunks(100) {
        let body = format!(
            "[{}]",
            chunk
                .iter()
                .map(|(u, e, t)| event_json(u, e, *t))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (status, text, _) = post(
            &agent,
            &format!("{url}?ack=true"),
            "application/json",
            &body,
        );
        assert_eq!(
            (status, text),
            (201, format!(r#"{{"accepted":{}}}"#, chunk.len()))
        );
    }
    // The ingest's metrics count the requests, the events and their latency.
    let base = ingest.url();
    assert_eq!(metric(&base, "ingest_requests_total{status=\"202\"}"), 10.0);
    assert_eq!(metric(&base, "ingest_requests_total{status=\"201\"}"), 3.0);
    assert_eq!(metric(&base, "ingest_events_accepted_total"), 260.0);
    assert_eq!(metric(&base, "ingest_request_duration_seconds_count"), 13.0);
    assert_eq!(metric(&base, "ingest_produce_errors_total"), 0.0);
    wait_for(WAIT, "every event delivered", || {
        metric(&base, "ingest_queue_depth") == 0.0
            && metric(&base, "ingest_events_delivered_total") == 260.0
    });
    let want = expected_csv(dir.path(), &events, Duration::from_secs(30));
    let last = events.iter().map(|e| e.2).max().unwrap();
    for topic in std::iter::once(pipeline.windows.clone()).chain(pipeline.cluster_topics()) {
        let windows = windows_through(&topic, last);
        common::assert_same_windows(&as_csv(&windows), &want, &topic);
        for (start, m) in &windows {
            assert_eq!(m.seq, start / 2000, "{topic}: seq is the window index");
        }
    }
}

#[test]
// Long: one scenario: events, a lull, a far-future event, then the windows and the metrics.
fn a_lull_closes_pending_windows_and_a_far_future_event_disturbs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("lull");
    let dataflow = start_dataflow(&pipeline, &[]);
    let now = now_ms();
    let mut events: Vec<(String, String, i64)> = (0..40)
        .map(|i| (format!("u{i}"), "🔥".to_owned(), now - 3000 + i * 50))
        .collect();
    let future = ("clock".to_owned(), "😮".to_owned(), now + 86_400_000);
    // A producer that bypasses the ingest, with an emoji the deployment does not accept.
    let spam = ("spam".to_owned(), "<b>BUY NOW</b>".to_owned(), now - 3000);
    let producer = producer();
    produce_events(&producer, &pipeline.events, &events[..20]);
    produce_events(&producer, &pipeline.events, &[future.clone(), spam]);
    produce_events(&producer, &pipeline.events, &events[20..]);
    let produced_at = now_ms();
    // Nothing more comes: the idle timeout (1 s) closes every window, the newest one included.
    let last = events.iter().map(|e| e.2).max().unwrap();
    let windows = windows_through(&pipeline.windows, last);
    let last_start = WindowSize::default().start_of(last);
    let published_at = read_records_until(&pipeline.windows, WAIT, |_| true)
        .into_iter()
        .find(|(_, p)| {
            serde_json::from_slice::<WindowMessage>(p)
                .unwrap()
                .report
                .window_start
                == last_start
        })
        .map(|(ts, _)| ts)
        .unwrap();
    let closed_after = published_at - produced_at;
    assert!(
        (900..10_000).contains(&closed_after),
        "the newest window closes once the idle timeout (1 s) has passed: after {closed_after} ms"
    );
    assert!(
        windows.keys().all(|&start| start < now + 60_000),
        "no window of the far-future event"
    );
    events.sort_by_key(|e| e.2);
    assert_eq!(
        as_csv(&windows),
        expected_csv(dir.path(), &events, Duration::from_secs(1))
    );
    let late = read_until(&pipeline.late, WAIT, |p| p.len() >= 2);
    let reasons: Vec<String> = late
        .iter()
        .map(|p| {
            let record: serde_json::Value = serde_json::from_slice(p).unwrap();
            record["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    // One each, in the order of their partitions.
    let has = |needle: &str| reasons.iter().filter(|r| r.contains(needle)).count() == 1;
    assert!(has("ahead of the time it was received"), "{reasons:?}");
    assert!(
        has(r#"emoji "<b>BUY NOW</b>" is not allowed"#),
        "{reasons:?}"
    );
    // The dataflow's metrics tell the same story.
    let base = dataflow.url();
    wait_for(WAIT, "every window counted in the metrics", || {
        metric(&base, "dataflow_windows_emitted_total") == windows.len() as f64
    });
    let per_partition = |name: &str| -> Vec<f64> {
        (0..4)
            .map(|p| metric(&base, &format!("{name}{{partition=\"{p}\"}}")))
            .collect()
    };
    let consumed: f64 = per_partition("dataflow_events_consumed_total").iter().sum();
    assert_eq!(consumed, 42.0, "40 events, the far-future one and the spam");
    assert_eq!(metric(&base, "dataflow_invalid_events_total"), 2.0);
    assert_eq!(
        metric(&base, "dataflow_late_events_total{window=\"2s\"}"),
        0.0
    );
    assert_eq!(
        metric(&base, "dataflow_emit_delay_seconds_count"),
        windows.len() as f64
    );
    // Partitions without data have no watermark sample.
    let watermark = common::metrics_text(&base)
        .lines()
        .filter(|l| l.starts_with("dataflow_watermark_milliseconds{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(f64::MIN, f64::max);
    assert_eq!(
        watermark as i64,
        last - 1000,
        "the newest event minus the lateness"
    );
}

#[test]
fn several_window_sizes_each_come_out_exactly_on_their_own_topic() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("sizes");
    // Two and a half minutes of events, in time order, ending 10 s ago: nothing is late,
    // and once the input is idle every window closes.
    let emojis = ["🔥", "😂", "👏"];
    let start = now_ms() - 160_000;
    let events: Vec<(String, String, i64)> = (0..1500i64)
        .map(|i| {
            (
                format!("u{}", (i * 31) % 97),
                emojis[(i % 3) as usize].to_owned(),
                start + i * 100,
            )
        })
        .collect();
    // The ingest service creates the events topic.
    drop(start_ingest(&pipeline, &[]));
    produce_events(&producer(), &pipeline.events, &events);
    let _dataflow = start_dataflow(&pipeline, &["--window", "2s,60s"]);
    let last = events.last().unwrap().2;
    for (label, millis) in [("2s", 2_000), ("60s", 60_000)] {
        let size = WindowSize::from_millis(millis).unwrap();
        let topic = format!("{}-{label}", pipeline.windows);
        let windows = windows_of_size_through(&topic, last, size, WAIT);
        let want = expected_csv_of(dir.path(), &events, Duration::from_secs(1), size);
        common::assert_same_windows(&as_csv(&windows), &want, &topic);
        for (start, m) in &windows {
            assert_eq!(m.seq, start / millis, "{topic}: seq is the window index");
        }
    }
    // The clusters get the live (first) size only.
    for topic in pipeline.cluster_topics() {
        let windows = windows_through(&topic, last);
        assert!(windows.keys().all(|start| start % 2_000 == 0));
        assert_eq!(
            windows.len(),
            windows_of_size_through(
                &format!("{}-2s", pipeline.windows),
                last,
                WindowSize::default(),
                WAIT
            )
            .len()
        );
    }
}

#[test]
fn start_latest_reads_only_new_events_and_earliest_reads_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("start");
    create_topic(&pipeline.events, 4);
    let producer = producer();
    let before = now_ms() - 4000;
    let old: Vec<(String, String, i64)> = (0..10)
        .map(|i| (format!("old{i}"), "🔥".to_owned(), before + i))
        .collect();
    produce_events(&producer, &pipeline.events, &old);
    let latest = start_dataflow(&pipeline, &["--start", "latest"]);
    // Once its readers are positioned at the end, new events come.
    let base = latest.url();
    wait_for(WAIT, "the readers positioned", || {
        metric(&base, "dataflow_partitions_reading") >= 4.0
    });
    let now = now_ms();
    let new: Vec<(String, String, i64)> = (0..10)
        .map(|i| (format!("new{i}"), "😂".to_owned(), now + i))
        .collect();
    produce_events(&producer, &pipeline.events, &new);
    let last = now + 9;
    let windows = windows_through(&pipeline.windows, last);
    assert_eq!(
        as_csv(&windows),
        expected_csv(dir.path(), &new, Duration::from_secs(1)),
        "--start latest counts only what came after it started"
    );
    // Stopped (its offsets committed at the end); with the same group, --start earliest
    // reads everything again.
    assert!(
        latest
            .terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let again = Pipeline {
        events: pipeline.events.clone(),
        group: pipeline.group.clone(),
        ..Pipeline::new("start-again")
    };
    let _earliest = start_dataflow(&again, &["--start", "earliest"]);
    let mut all = old.clone();
    all.extend(new);
    let windows = windows_through(&again.windows, last);
    assert_eq!(
        as_csv(&windows),
        expected_csv(dir.path(), &all, Duration::from_secs(1)),
        "--start earliest counts everything, whatever the group committed"
    );
}

/// A long window with a lull longer than the idle timeout in its middle: the lull must not
/// close it early (the taps after the lull would vanish); it is published once, after its end
/// plus the lateness by the wall clock, counting the taps on both sides of the lull.
#[test]
fn a_long_window_outlasts_a_lull_and_counts_both_sides_of_it() {
    let pipeline = Pipeline::new("lull-long");
    let _dataflow = start_dataflow(&pipeline, &["--window", "2s,10s"]);
    let producer = producer();
    // Start at the beginning of a 10 s window, so both bursts fall in it.
    wait_until_into_10s_window(0);
    let burst = |tag: &str| -> Vec<(String, String, i64)> {
        let now = now_ms();
        (0..20)
            .map(|i| (format!("{tag}{i}"), "🔥".to_owned(), now))
            .collect()
    };
    let before = burst("a");
    produce_events(&producer, &pipeline.events, &before);
    // Longer than the idle timeout (1 s): every partition goes idle.
    std::thread::sleep(Duration::from_secs(3));
    let after = burst("b");
    produce_events(&producer, &pipeline.events, &after);
    let size = WindowSize::from_millis(10_000).unwrap();
    let start = size.start_of(before[0].2);
    assert_eq!(
        size.start_of(after[0].2),
        start,
        "both bursts in one window"
    );
    let topic = format!("{}-10s", pipeline.windows);
    let starts_at = |payload: &[u8]| {
        serde_json::from_slice::<WindowMessage>(payload)
            .unwrap()
            .report
            .window_start
    };
    let records = read_records_until(&topic, WAIT, |records| {
        records.iter().any(|(_, p)| starts_at(p) == start)
    });
    let published: Vec<_> = records
        .iter()
        .filter(|(_, p)| starts_at(p) == start)
        .collect();
    assert_eq!(published.len(), 1, "the window is published once");
    let (at, payload) = published[0];
    let window: WindowMessage = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        window.report.events, 40,
        "the taps on both sides of the lull"
    );
    assert!(
        *at >= size.end_of(start) + 1_000,
        "published {} ms before its end plus the lateness",
        size.end_of(start) + 1_000 - at
    );
}

/// With two sizes, each judges lateness by its own windows: an event late for the 2 s windows
/// but on time for its 10 s window is counted there and reported late for the 2 s size, by a
/// late record naming the size; every size accounts for every event.
#[test]
fn every_size_accounts_for_every_event_and_names_its_late_records() {
    let pipeline = Pipeline::new("late-sizes");
    // No allowed lateness: a window once final stays as it is.
    let args = ["--window", "2s,10s", "--allowed-lateness", "0"];
    let dataflow = start_dataflow(&pipeline, &args);
    let producer = producer();
    // Six seconds into a 10 s window, so five seconds back is the same 10 s window.
    wait_until_into_10s_window(6_000);
    let now = now_ms();
    let on_time: Vec<(String, String, i64)> = (0..10)
        .map(|i| (format!("u{i}"), "🔥".to_owned(), now))
        .collect();
    produce_events(&producer, &pipeline.events, &on_time);
    // Wait until the 2 s windows have moved past now - 5 s, then send the straggler.
    wait_for(WAIT, "the newest event read", || {
        metric(
            &dataflow.url(),
            "dataflow_events_consumed_total{partition=\"0\"}",
        ) + metric(
            &dataflow.url(),
            "dataflow_events_consumed_total{partition=\"1\"}",
        ) + metric(
            &dataflow.url(),
            "dataflow_events_consumed_total{partition=\"2\"}",
        ) + metric(
            &dataflow.url(),
            "dataflow_events_consumed_total{partition=\"3\"}",
        ) >= 10.0
    });
    // The same user as an on-time event, so it lands on a partition that has read them.
    let straggler = ("u0".to_owned(), "😂".to_owned(), now - 5_000);
    produce_events(
        &producer,
        &pipeline.events,
        std::slice::from_ref(&straggler),
    );
    let ten = WindowSize::from_millis(10_000).unwrap();
    assert_eq!(
        ten.start_of(straggler.2),
        ten.start_of(now),
        "one 10 s window"
    );
    let counted = |label: &str, size: WindowSize| -> u64 {
        let topic = format!("{}-{label}", pipeline.windows);
        windows_of_size_through(&topic, now, size, WAIT)
            .values()
            .map(|m| m.report.events)
            .sum()
    };
    assert_eq!(counted("10s", ten), 11, "the 10 s size counts all eleven");
    assert_eq!(
        counted("2s", WindowSize::default()),
        10,
        "the 2 s size counts ten"
    );
    let late = read_until(&pipeline.late, WAIT, |p| !p.is_empty());
    let records: Vec<serde_json::Value> = late
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "one late record: {records:?}");
    assert_eq!(records[0]["window"], "2s");
    assert_eq!(records[0]["emoji_type"], "😂");
    let base = dataflow.url();
    wait_for(WAIT, "the late counters", || {
        metric(&base, "dataflow_late_events_total{window=\"2s\"}") == 1.0
    });
    assert_eq!(
        metric(&base, "dataflow_late_events_total{window=\"10s\"}"),
        0.0
    );
}

/// With `--updates`, an open window's totals reach the clusters while it takes events: after
/// k events are read an update reports exactly k (summed over both workers' users), the
/// revisions of the window increase, and the final (the next revision) equals the reference.
#[test]
fn open_windows_are_published_with_exact_totals_and_increasing_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("updates");
    let args = ["-w", "2", "--window", "10s", "--updates", "250ms"];
    let _dataflow = start_dataflow(&pipeline, &args);
    let producer = producer();
    let size = WindowSize::from_millis(10_000).unwrap();
    wait_until_into_10s_window(0);
    let cluster = &pipeline.cluster_topics()[0];
    let mut sent = Vec::new();
    let now = now_ms();
    let start = size.start_of(now);
    for (round, k) in [(0, 30), (1, 20)] {
        let batch: Vec<(String, String, i64)> = (0..k)
            .map(|i| {
                let emoji = ["🔥", "😂"][(i % 2) as usize];
                (format!("u{round}-{i}"), emoji.to_owned(), now + i)
            })
            .collect();
        produce_events(&producer, &pipeline.events, &batch);
        sent.extend(batch);
        let total = sent.len() as u64;
        let payloads = read_until(cluster, WAIT, |p| {
            messages_of_window(start, p)
                .iter()
                .any(|m| m.report.events == total)
        });
        let messages = messages_of_window(start, &payloads);
        assert!(
            messages.iter().all(|m| m.report.events <= total),
            "no update counts more than was sent"
        );
        let update = messages.iter().find(|m| m.report.events == total).unwrap();
        assert_eq!(update.state, model::report::WindowState::Open, "{update:?}");
    }
    let payloads = read_until(cluster, WAIT, |p| {
        messages_of_window(start, p)
            .iter()
            .any(|m| m.state == model::report::WindowState::Final)
    });
    let messages = messages_of_window(start, &payloads);
    let revisions: Vec<u64> = messages.iter().map(|m| m.revision).collect();
    assert!(
        revisions.windows(2).all(|p| p[0] < p[1]),
        "revisions increase: {revisions:?}"
    );
    let last = messages.last().unwrap();
    assert_eq!(last.state, model::report::WindowState::Final);
    let want = expected_csv_of(dir.path(), &sent, Duration::from_secs(1), size);
    let finals: BTreeMap<i64, WindowMessage> = [(start, last.clone())].into();
    assert_eq!(as_csv(&finals), want, "the final equals the reference");
}

/// With an allowed lateness, an event that misses its final window by less than it amends
/// the window: a `revised` message, with the next revision, on the windows topic and the
/// cluster topic, whose totals are the reference's with the event. An event that misses it
/// by more is a late record naming the size; the longer size counts both on time.
#[test]
// Long: one scenario in the wall clock's time: a window, its final, its revision, a late record.
fn an_allowed_late_event_revises_its_final_window_and_a_later_one_is_late() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("revised");
    let args = ["--window", "2s,10s", "--allowed-lateness", "5s"];
    let dataflow = start_dataflow(&pipeline, &args);
    let producer = producer();
    let two = WindowSize::default();
    // S + 4.5 s: five taps in the 2 s window [S + 4 s, S + 6 s).
    wait_until_into_10s_window(4_500);
    let first = now_ms();
    let ten_start = first - first % 10_000;
    let amended_start = two.start_of(first);
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let mut sent: Vec<(String, String, i64)> = users[..5]
        .iter()
        .map(|u| (u.clone(), "🔥".to_owned(), first))
        .collect();
    produce_events(&producer, &pipeline.events, &sent);
    // S + 8 s: ten taps move every partition's watermark to S + 7 s: the first window is final.
    wait_until_into_10s_window(8_000);
    let now = now_ms();
    let batch: Vec<(String, String, i64)> = users
        .iter()
        .map(|u| (u.clone(), "👏".to_owned(), now))
        .collect();
    produce_events(&producer, &pipeline.events, &batch);
    let payloads = read_until(&format!("{}-2s", pipeline.windows), WAIT, |p| {
        windows_by_start(p).contains_key(&amended_start)
    });
    let final_message = &windows_by_start(&payloads)[&amended_start];
    assert_eq!(final_message.state, WindowState::Final);
    assert_eq!(final_message.report.events, 5);
    // A straggler 3.5 s behind its partition's newest event: its window ended 1 s before the
    // watermark, within the allowed 5 s (until the clock moves the watermark past S + 11 s).
    // Another 6.5 s behind: its window [S, S + 2 s) ended 5 s before the watermark, not
    // within it. Same user as taps already read, so the same partition.
    let amend = ("u0".to_owned(), "😂".to_owned(), first);
    let late = ("u0".to_owned(), "😮".to_owned(), ten_start + 1_500);
    produce_events(&producer, &pipeline.events, &[amend.clone(), late.clone()]);
    sent.push(amend);
    let want = expected_csv_of(dir.path(), &sent, Duration::from_secs(1), two);
    for topic in [
        format!("{}-2s", pipeline.windows),
        pipeline.cluster_topics()[0].clone(),
    ] {
        let payloads = read_until(&topic, WAIT, |p| {
            messages_of_window(amended_start, p)
                .iter()
                .any(|m| m.state == WindowState::Revised)
        });
        let messages: Vec<WindowMessage> = messages_of_window(amended_start, &payloads)
            .into_iter()
            .filter(|m| m.state != WindowState::Open)
            .collect();
        assert_eq!(
            messages.len(),
            2,
            "{topic}: a final and a revision: {messages:?}"
        );
        let (final_message, revised) = (&messages[0], &messages[1]);
        assert_eq!(final_message.state, WindowState::Final, "{topic}");
        assert_eq!(revised.state, WindowState::Revised, "{topic}");
        assert!(
            revised.revision > final_message.revision,
            "{topic}: the next revision"
        );
        let revised: BTreeMap<i64, WindowMessage> = [(amended_start, revised.clone())].into();
        assert_eq!(
            as_csv(&revised),
            want,
            "{topic}: the reference with the straggler"
        );
    }
    let records: Vec<serde_json::Value> = read_until(&pipeline.late, WAIT, |p| !p.is_empty())
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "one late record: {records:?}");
    assert_eq!(records[0]["window"], "2s");
    assert_eq!(records[0]["emoji_type"], "😮");
    let ten = WindowSize::from_millis(10_000).unwrap();
    let tens = windows_of_size_through(&format!("{}-10s", pipeline.windows), now, ten, WAIT);
    assert_eq!(
        tens[&ten_start].report.events, 17,
        "the 10 s window counts every tap"
    );
    let base = dataflow.url();
    wait_for(WAIT, "the counters", || {
        metric(&base, "dataflow_revisions_total") == 1.0
            && metric(&base, "dataflow_amends_total") == 1.0
            && metric(&base, "dataflow_late_events_total{window=\"2s\"}") == 1.0
    });
}

/// A viewer whose clock runs `ahead_ms` fast taps once; then other viewers tap, stamped with
/// the server's clock, four times a second for 10 s, on an events topic of `partitions`
/// partitions. Every later tap counts in its own window and none is late; the fast tap
/// counts once, at the time the ingest took it (its stamp is further ahead than the
/// lateness), not minutes from now.
fn a_clock_ahead_delays_nobody(name: &str, partitions: i32, ahead_ms: i64) {
    let pipeline = Pipeline::new(name);
    create_topic(&pipeline.events, partitions);
    let ingest = start_ingest(&pipeline, &[]);
    let dataflow = start_dataflow(&pipeline, &[]);
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let size = WindowSize::default();
    let tap = |user: &str, emoji: &str, ts: i64| {
        let (status, body, _) = post(
            &agent,
            &url,
            "application/json",
            &event_json(user, emoji, ts),
        );
        assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    };
    let before = now_ms();
    tap("fast", "🎉", before + ahead_ms);
    let after = now_ms();
    let mut want: BTreeMap<i64, u64> = BTreeMap::new();
    let mut last = 0;
    for i in 0..40 {
        last = now_ms();
        tap(&format!("u{i}"), "🔥", last);
        *want.entry(size.start_of(last)).or_default() += 1;
        // The traffic's pace, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(250));
    }
    let windows = windows_through(&pipeline.windows, last);
    let counted = |emoji: &str| -> BTreeMap<i64, u64> {
        windows
            .iter()
            .filter_map(|(start, m)| {
                let e = m.report.emojis.iter().find(|e| e.emoji == emoji)?;
                Some((*start, e.count))
            })
            .collect()
    };
    assert_eq!(
        counted("🔥"),
        want,
        "{name}: every later tap counts in its window"
    );
    let fast = counted("🎉");
    assert_eq!(
        fast.values().sum::<u64>(),
        1,
        "{name}: the fast tap counts once"
    );
    let (&at, _) = fast.iter().next().unwrap();
    assert!(
        (size.start_of(before)..=size.start_of(after)).contains(&at),
        "{name}: the fast tap counts when it arrived, not at its stamp"
    );
    let late = metric(&dataflow.url(), "dataflow_late_events_total{window=\"2s\"}");
    assert_eq!(late, 0.0, "{name}: no tap is late");
}

#[test]
fn a_viewer_five_minutes_ahead_makes_nobody_late() {
    a_clock_ahead_delays_nobody("ahead-5m", 1, 300_000);
}

#[test]
fn a_viewer_five_minutes_ahead_makes_nobody_late_on_four_partitions() {
    a_clock_ahead_delays_nobody("ahead-5m-4p", 4, 300_000);
}

#[test]
fn a_viewer_fifteen_seconds_ahead_makes_nobody_late() {
    a_clock_ahead_delays_nobody("ahead-15s", 1, 15_000);
}

/// The events topic grown from 2 to 4 partitions while taps flow, without a restart: the
/// dataflow (two workers) reads the new partitions within seconds, and every tap counts in
/// its window, none late. It needs a broker that grows topics: noida-db (`make
/// second-broker`); on tansu, which refuses CreatePartitions, it says so and stops there.
#[test]
fn partitions_added_while_taps_flow_are_read_and_every_tap_counted() {
    let pipeline = Pipeline::new("grown");
    create_topic(&pipeline.events, 2);
    let dataflow = start_dataflow(&pipeline, &["-w", "2"]);
    let mut sent = Vec::new();
    let mut tap_for = |producer: &rdkafka::producer::BaseProducer, partitions, seconds| {
        for round in 0..seconds * 10 {
            let now = now_ms();
            let batch: Vec<(String, String, i64)> = (0..30)
                .map(|i| (format!("u{}", (round * 30 + i) % 211), "🔥".to_owned(), now))
                .collect();
            produce_to(producer, &pipeline.events, &batch, Some(partitions));
            sent.extend(batch);
            // The traffic's pace, not a wait for a condition.
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    tap_for(&producer(), 2, 2);
    if let Err(refused) = grow_topic(&pipeline.events, 4) {
        eprintln!("This broker cannot grow a topic ({refused}): the test needs one that can.");
        return;
    }
    // A producer made now knows the new partitions.
    tap_for(&producer(), 4, 6);
    let last = sent.iter().map(|e| e.2).max().unwrap();
    let got: BTreeMap<i64, u64> = windows_through(&pipeline.windows, last)
        .into_iter()
        .map(|(start, m)| (start, m.report.events))
        .collect();
    let mut want: BTreeMap<i64, u64> = BTreeMap::new();
    for (_, _, ts) in &sent {
        *want.entry(WindowSize::default().start_of(*ts)).or_default() += 1;
    }
    assert_eq!(
        got, want,
        "every tap, on the old partitions and the new, in its window"
    );
    let base = dataflow.url();
    assert_eq!(
        metric(&base, "dataflow_late_events_total{window=\"2s\"}"),
        0.0
    );
    assert_eq!(metric(&base, "dataflow_partitions_reading"), 4.0);
    // The new partitions' metrics are served like the old ones'.
    let consumed = |p: i32| {
        metric(
            &base,
            &format!("dataflow_events_consumed_total{{partition=\"{p}\"}}"),
        )
    };
    let all: f64 = (0..4).map(consumed).sum();
    assert_eq!(
        all as usize,
        sent.len(),
        "every tap consumed once, by partition"
    );
    assert!(consumed(2) > 0.0 && consumed(3) > 0.0);
}

/// A backfill whose partitions are far apart in event time (one 5 minutes behind the other,
/// and still being written to): the one ahead is paused while the one behind is read, as
/// replay bounds its read-ahead, instead of opening windows 5 minutes ahead; once the one
/// behind is read, the other goes on, and every event counts in its window.
#[test]
fn a_partition_far_ahead_in_a_backfill_waits_for_the_one_behind() {
    let pipeline = Pipeline::new("read-ahead");
    create_topic(&pipeline.events, 2);
    let producer = producer();
    let now = now_ms();
    let behind = now - 300_000;
    // Alternately to partitions 0 (behind) and 1 (ahead).
    let mut sent: Vec<(String, String, i64)> = (0..20)
        .flat_map(|i| {
            [
                (format!("slow{i}"), "🔥".to_owned(), behind + i),
                (format!("fast{i}"), "😂".to_owned(), now + i),
            ]
        })
        .collect();
    produce_to(&producer, &pipeline.events, &sent, Some(2));
    let dataflow = start_dataflow(&pipeline, &[]);
    let base = dataflow.url();
    // Partition 0 keeps getting events 5 minutes old, so it is never idle.
    let mut k = 0;
    let mut trickle = |sent: &mut Vec<(String, String, i64)>, ahead: Option<i64>| {
        k += 1;
        let mut taps = vec![(format!("trickle{k}"), "🔥".to_owned(), behind + 20 + k)];
        taps.extend(ahead.map(|ts| (format!("more{k}"), "😂".to_owned(), ts)));
        produce_to(&producer, &pipeline.events, &taps, Some(2));
        sent.extend(taps);
    };
    wait_for(WAIT, "the partition ahead paused", || {
        trickle(&mut sent, None);
        metric(&base, "dataflow_partitions_paused") >= 1.0
    });
    let consumed = |p: i32| {
        metric(
            &base,
            &format!("dataflow_events_consumed_total{{partition=\"{p}\"}}"),
        )
    };
    let (behind_read, ahead_read) = (consumed(0), consumed(1));
    // More events ahead, while partition 0 goes on being read: they wait.
    for i in 0..10 {
        trickle(&mut sent, Some(now + 20 + i));
    }
    wait_for(WAIT, "partition 0 read on", || {
        trickle(&mut sent, None);
        consumed(0) >= behind_read + 10.0
    });
    assert_eq!(
        consumed(1),
        ahead_read,
        "nothing more of the partition ahead read"
    );
    let last = now + 29;
    // Each partition in event-time order: every event counts in its window.
    let size = WindowSize::from_millis(2000).unwrap();
    let mut want: BTreeMap<i64, u64> = BTreeMap::new();
    for (_, _, ts) in &sent {
        *want.entry(size.start_of(*ts)).or_default() += 1;
    }
    let got: BTreeMap<i64, u64> = windows_through(&pipeline.windows, last)
        .into_iter()
        .map(|(start, m)| (start, m.report.events))
        .collect();
    assert_eq!(got, want, "every event in its window");
    assert_eq!(
        metric(&base, "dataflow_late_events_total{window=\"2s\"}"),
        0.0
    );
    assert_eq!(metric(&base, "dataflow_partitions_paused"), 0.0);
}

/// Says on the ingests topic what an ingest holding the taps taken from `pending_since` on
/// would say (`model::progress`), every quarter second until `quiet` (or the test) ends.
fn speak_as_an_ingest(
    topic: String,
    pending_since: Arc<Mutex<Option<i64>>>,
    quiet: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::Producer;
    std::thread::spawn(move || {
        let producer = producer();
        while !quiet.load(Ordering::Relaxed) {
            let said = model::progress::IngestProgress {
                ingest: "held-up-ingest".into(),
                at: now_ms(),
                pending_since: *pending_since.lock().unwrap(),
                ends: Default::default(),
                stopped: false,
            };
            let payload = serde_json::to_vec(&said).unwrap();
            let record = rdkafka::producer::BaseRecord::to(&topic)
                .key("held-up-ingest")
                .payload(&payload);
            producer.send(record).expect("queued");
            producer.flush(Duration::from_secs(5)).expect("said");
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

#[test]
// Long: one scenario in the wall clock's time: a tap held up, taps flowing past it, its arrival, then an ingest gone quiet.
fn windows_wait_for_a_tap_an_ingest_holds_and_for_a_quiet_ingest_until_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("held");
    // No allowed lateness: a tap that misses its window is late, not an amendment.
    // (The tests' dataflow has an idle timeout of 1 s.)
    // An ingest timeout longer than the first part holds its tap (a tap pending that long
    // is no longer waited for).
    let args = ["--allowed-lateness", "0s", "--ingest-timeout", "15s"];
    let dataflow = start_dataflow(&pipeline, &args);
    let base = dataflow.url();
    let producer = producer();
    // An ingest says it holds a tap taken at `held_at` that the broker has not taken.
    let held_at = now_ms();
    let pending = Arc::new(Mutex::new(Some(held_at)));
    let quiet = Arc::new(AtomicBool::new(false));
    let speaker = speak_as_an_ingest(
        model::names::ingests_topic(&pipeline.events),
        Arc::clone(&pending),
        Arc::clone(&quiet),
    );
    wait_for(WAIT, "the dataflow to wait for the ingest", || {
        metric(&base, "dataflow_ingests_holding") == 1.0 && metric(&base, "dataflow_ingests") == 1.0
    });
    // Other taps flow past it: one of its window, and, 3.5 s later, one whose stamp moves
    // the watermark past that window's end.
    let two = WindowSize::default();
    let held_window = two.start_of(held_at);
    let mut sent = vec![("beside".to_owned(), "🔥".to_owned(), held_at)];
    produce_events(&producer, &pipeline.events, &sent);
    std::thread::sleep(Duration::from_millis(3_500));
    let past = ("past".to_owned(), "👏".to_owned(), now_ms());
    produce_events(&producer, &pipeline.events, std::slice::from_ref(&past));
    sent.push(past.clone());
    read_until(&pipeline.cluster_topics()[0], WAIT, |p| {
        messages_of_window(two.start_of(past.2), p)
            .iter()
            .any(|m| m.report.events == 1)
    });
    let finals = read_until(&pipeline.windows, WAIT, |_| true);
    assert!(
        messages_of_window(held_window, &finals).is_empty(),
        "the held tap's window waits for it: {:?}",
        messages_of_window(held_window, &finals)
    );
    // The held tap arrives; the ingest holds nothing more.
    let held = ("held".to_owned(), "😂".to_owned(), held_at);
    produce_events(&producer, &pipeline.events, std::slice::from_ref(&held));
    // The windows are those of the taps in the order they were taken.
    sent.insert(1, held);
    *pending.lock().unwrap() = None;
    let windows = windows_of_size_through(&pipeline.windows, past.2, two, WAIT);
    assert_eq!(
        windows[&held_window].report.events, 2,
        "the held tap counts in its window, beside the other"
    );
    assert_eq!(
        as_csv(&windows),
        expected_csv_of(dir.path(), &sent, Duration::from_secs(1), two)
    );

    // The ingest goes quiet (its link cut, say) holding a tap taken after its last word:
    // that tap's window waits for it, until the ingest is taken for gone.
    quiet.store(true, Ordering::Relaxed);
    speaker.join().unwrap();
    let last_word = now_ms();
    wait_for(WAIT, "the dataflow to wait for the quiet ingest", || {
        metric(&base, "dataflow_ingests_holding") == 1.0
    });
    let quiet_tap = ("quiet".to_owned(), "👏".to_owned(), last_word);
    wait_for(
        WAIT,
        "the quiet tap's window to be past on the clock",
        || now_ms() > two.start_of(last_word) + 4_500,
    );
    produce_events(
        &producer,
        &pipeline.events,
        std::slice::from_ref(&quiet_tap),
    );
    let windows = windows_of_size_through(&pipeline.windows, last_word, two, WAIT);
    assert_eq!(
        windows[&two.start_of(last_word)].report.events,
        1,
        "the tap held by the quiet ingest counts in its window"
    );
    wait_for(WAIT, "the quiet ingest taken for gone", || {
        metric(&base, "dataflow_ingests") == 0.0
    });
    let after = ("after".to_owned(), "🔥".to_owned(), now_ms());
    produce_events(&producer, &pipeline.events, std::slice::from_ref(&after));
    windows_of_size_through(&pipeline.windows, after.2, two, WAIT);
    assert!(
        late_offsets(&brokers(), &pipeline.late).is_empty(),
        "no tap is late"
    );
}
