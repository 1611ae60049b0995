//! The live pipeline against a real broker: HTTP ingest, the Kafka dataflow, restarts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::traffic::{Phase, send};
use common::{
    chaos_long, expected_csv_of, metric, record_figures, wait_for, windows_csv as as_csv,
};
use model::WindowSize;
use model::report::WindowMessage;

const WAIT: Duration = Duration::from_secs(60);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` to `url` as JSON; returns the status, the body and the Retry-After header.
fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, Option<String>) {
    let mut response = agent
        .post(url)
        .header("content-type", content_type)
        .send(body)
        .expect("a response");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), text, retry)
}

fn event_json(user: &str, emoji: &str, ts: i64) -> String {
    serde_json::json!({"user_id": user, "emoji_type": emoji, "timestamp": model::format_rfc3339_millis(ts)}).to_string()
}

/// The reports the reference aggregator makes of `events`, as the CSV rows the tests compare.
fn expected_csv(dir: &Path, events: &[(String, String, i64)], lateness: Duration) -> String {
    expected_csv_of(dir, events, lateness, WindowSize::default())
}

fn start_dataflow(pipeline: &Pipeline, extra: &[&str]) -> Service {
    let mut args: Vec<String> = [
        "dataflow",
        "--metrics-listen",
        "127.0.0.1:0",
        "--idle-timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(pipeline.dataflow_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    Service::start(&args)
}

fn start_ingest(pipeline: &Pipeline, extra: &[&str]) -> Service {
    let mut args: Vec<String> = [
        "ingest",
        "--listen",
        "127.0.0.1:0",
        "--linger",
        "5ms",
        "--events-topic",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(pipeline.events.clone());
    args.extend(extra.iter().map(|s| s.to_string()));
    Service::start(&args)
}

/// Starts `emostream broadcast` for cluster 1 of `pipeline`, with a registry of its own.
fn start_broadcaster(pipeline: &Pipeline, name: &str) -> Service {
    let registry = unique(&format!("{name}-registry"));
    Service::start(
        &[
            "broadcast",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            "1",
            "--cluster-prefix",
            &pipeline.cluster_prefix,
            "--registry-topic",
            &registry,
            "--token-secret",
            name,
        ]
        .map(String::from),
    )
}

/// Reads the windows topic until the window holding `last_ts` is there.
fn windows_through(topic: &str, last_ts: i64) -> BTreeMap<i64, WindowMessage> {
    windows_of_size_through(topic, last_ts, WindowSize::default())
}

/// Like [`windows_through`], for windows of `size`.
fn windows_of_size_through(
    topic: &str,
    last_ts: i64,
    size: WindowSize,
) -> BTreeMap<i64, WindowMessage> {
    let last_start = size.start_of(last_ts);
    let payloads = read_until(topic, WAIT, |p| {
        windows_by_start(p).contains_key(&last_start)
    });
    let windows = windows_by_start(&payloads);
    assert!(
        windows.contains_key(&last_start),
        "{topic}: the last window was published"
    );
    windows
}

#[test]
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
fn bad_requests_get_their_status_and_nothing_reaches_the_topic() {
    let pipeline = Pipeline::new("bad");
    let ingest = start_ingest(&pipeline, &["--max-body", "2000"]);
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let now = now_ms();
    let good = event_json("u1", "🔥", now);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "application/json",
            "{\"user_id\":".into(),
            400,
            "malformed JSON",
        ),
        (
            "application/json",
            format!("[{good},{{\"user_id\":\"u2\"}}]"),
            400,
            r#""field":"emoji_type","index":1"#,
        ),
        (
            "application/json",
            event_json("u1", "🔥", now + 3_600_000),
            400,
            "too far from the server clock",
        ),
        (
            "application/json",
            event_json("", "🔥", now),
            400,
            r#""field":"user_id""#,
        ),
        ("text/plain", good.clone(), 415, "unsupported content type"),
        (
            "application/json",
            format!("[{}]", vec![good.clone(); 40].join(",")),
            413,
            "payload",
        ),
    ];
    for (content_type, body, status, needle) in cases {
        let (got, text, _) = post(&agent, &url, content_type, &body);
        assert_eq!(got, status, "{text}");
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{text} should mention {needle}"
        );
    }
    // No room for three events: the whole request is refused with Retry-After.
    let tiny = start_ingest(&pipeline, &["--queue-capacity", "2"]);
    let three = format!("[{good},{good},{good}]");
    let (status, text, retry) = post(
        &agent,
        &format!("{}/emoji", tiny.url()),
        "application/json",
        &three,
    );
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{text}");
    // One good event, acknowledged: it is the only message on the topic.
    let (status, _, _) = post(
        &agent,
        &format!("{url}?ack=true"),
        "application/json",
        &event_json("only", "🎉", now),
    );
    assert_eq!(status, 201);
    let payloads = read_until(&pipeline.events, Duration::from_secs(3), |_| false);
    assert_eq!(payloads.len(), 1, "only the good event was produced");
    let m: model::EmojiEvent = serde_json::from_slice(&payloads[0]).unwrap();
    assert_eq!(m.user_id, "only");
}

#[test]
fn a_dataflow_killed_and_restarted_publishes_the_same_windows() {
    let pipeline = Pipeline::new("restart");
    let steady = start_dataflow(&pipeline, &[]);
    let restarted = pipeline.sibling("restart-b");
    let victim = start_dataflow(&restarted, &[]);
    // Events keep coming for about 8 s, stamped with the wall clock and a little disorder.
    let topic = pipeline.events.clone();
    let feeder = std::thread::spawn(move || {
        let producer = producer();
        let mut sent = Vec::new();
        for round in 0..80i64 {
            let now = now_ms();
            let batch: Vec<(String, String, i64)> = (0..50i64)
                .map(|i| {
                    let n = round * 50 + i;
                    (
                        format!("u{}", n % 113),
                        ["🔥", "😂", "👏"][(n % 3) as usize].to_owned(),
                        now - (n * 37) % 300,
                    )
                })
                .collect();
            produce_events(&producer, &topic, &batch);
            sent.extend(batch);
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    });
    // Kill the second dataflow once it has published a few windows, then start it again.
    let early = read_until(&restarted.windows, WAIT, |p| p.len() >= 2);
    assert!(early.len() >= 2, "windows are published while events flow");
    victim.kill();
    let _again = start_dataflow(&restarted, &[]);
    let sent = feeder.join().unwrap();
    let last = sent.iter().map(|e| e.2).max().unwrap();
    let want = windows_through(&pipeline.windows, last);
    let got = windows_through(&restarted.windows, last);
    let total = |w: &BTreeMap<i64, WindowMessage>| w.values().map(|m| m.report.events).sum::<u64>();
    assert_eq!(
        total(&want),
        sent.len() as u64,
        "the uninterrupted run counts every event once"
    );
    assert_eq!(
        total(&got),
        sent.len() as u64,
        "the restarted run counts every event once"
    );
    assert_eq!(
        as_csv(&got),
        as_csv(&want),
        "per window, the restarted run equals the uninterrupted one"
    );
    drop(steady);
}

#[test]
fn a_lull_closes_pending_windows_and_a_far_future_event_disturbs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("lull");
    let dataflow = start_dataflow(&pipeline, &[]);
    let now = now_ms();
    let mut events: Vec<(String, String, i64)> = (0..40)
        .map(|i| (format!("u{i}"), "🔥".to_owned(), now - 3000 + i * 50))
        .collect();
    let future = ("clock".to_owned(), "😮".to_owned(), now + 86_400_000);
    let producer = producer();
    produce_events(&producer, &pipeline.events, &events[..20]);
    produce_events(&producer, &pipeline.events, std::slice::from_ref(&future));
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
    let late = read_until(&pipeline.late, WAIT, |p| !p.is_empty());
    let record: serde_json::Value = serde_json::from_slice(&late[0]).unwrap();
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("ahead of the wall clock"),
        "{record}"
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
    assert_eq!(consumed, 41.0, "40 events and the far-future one");
    assert_eq!(metric(&base, "dataflow_invalid_events_total"), 1.0);
    assert_eq!(metric(&base, "dataflow_late_events_total"), 0.0);
    assert_eq!(
        metric(&base, "dataflow_emit_delay_seconds_count"),
        windows.len() as f64
    );
    let watermark = per_partition("dataflow_watermark_milliseconds")
        .into_iter()
        .fold(f64::MIN, f64::max);
    assert_eq!(
        watermark as i64,
        last - 1000,
        "the newest event minus the lateness"
    );
}

#[test]
fn simulated_viewers_measure_every_window_of_simulated_traffic() {
    let pipeline = Pipeline::new("simulate");
    let _dataflow = start_dataflow(&pipeline, &[]);
    let ingest = start_ingest(&pipeline, &[]);
    let broadcaster = start_broadcaster(&pipeline, "simulate");
    let ws = broadcaster.banner.trim();
    let addr = ws
        .strip_prefix("broadcast: ws://")
        .and_then(|rest| rest.strip_suffix("/ws"))
        .unwrap_or_else(|| panic!("a ws:// address in {ws:?}"));
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("simulate.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args([
            "simulate",
            "--target",
            &ingest.url(),
            "--rate",
            "500/s",
            "--duration",
            "8s",
        ])
        .args([
            "--users",
            "1000",
            "--watch",
            &format!("http://{addr}"),
            "--viewers",
            "3",
        ])
        .arg("--summary-json")
        .arg(&summary)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run emostream simulate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let (traffic, viewers) = (&report["traffic"], &report["viewers"]);
    let offered = traffic["events_offered"].as_u64().unwrap();
    assert!(offered > 2_000, "{report}");
    assert_eq!(traffic["events_accepted"], offered, "{report}");
    assert_eq!(viewers["connected"], 3, "{report}");
    let windows = viewers["windows"].as_u64().unwrap();
    assert!(windows >= 2, "{report}");
    // Every viewer saw every measured window, each after its end.
    assert_eq!(
        viewers["deliveries"].as_u64().unwrap(),
        3 * windows,
        "{report}"
    );
    assert!(viewers["p50_ms"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn the_load_test_endpoint_refuses_unless_enabled_and_runs_when_enabled() {
    let pipeline = Pipeline::new("load-test");
    let agent = agent();
    let get = |url: &str| -> (u16, serde_json::Value) {
        let mut response = agent.get(url).call().expect("a response");
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (
            response.status().as_u16(),
            serde_json::from_str(&body).expect("a JSON body"),
        )
    };
    let request = r#"{"duration": "2s", "rate": "400/s", "users": 1000}"#;

    let off = start_ingest(&pipeline, &[]);
    let url = format!("{}/load-test", off.url());
    let (status, body, _) = post(&agent, &url, "application/json", request);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--enable-load-test"), "{body}");
    assert_eq!(get(&url).0, 403);
    drop(off);

    let on = start_ingest(&pipeline, &["--enable-load-test"]);
    let url = format!("{}/load-test", on.url());
    assert_eq!(get(&url).1["state"], "idle");
    let (status, body, _) = post(
        &agent,
        &url,
        "application/json",
        r#"{"duration": "2s", "rate": "fast"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["field"],
        "rate"
    );
    let (status, body, _) = post(&agent, &url, "application/json", request);
    assert_eq!(status, 202, "{body}");
    let (status, body, _) = post(&agent, &url, "application/json", request);
    assert_eq!(status, 409, "one at a time: {body}");

    let deadline = std::time::Instant::now() + WAIT;
    let done = loop {
        let (status, body) = get(&url);
        assert_eq!(status, 200);
        if body["state"] == "done" {
            break body;
        }
        assert_eq!(body["state"], "running", "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let summary = &done["summary"];
    let offered = summary["events_offered"].as_u64().unwrap();
    assert!((700..=900).contains(&offered), "{done}");
    assert_eq!(summary["events_accepted"], offered, "{done}");
    assert_eq!(done["progress"]["accepted"], offered, "{done}");
    // Its events went through the API into the events topic, all of them.
    let payloads = read_until(&pipeline.events, WAIT, |p| p.len() as u64 >= offered);
    assert_eq!(payloads.len() as u64, offered);
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
        let windows = windows_of_size_through(&topic, last, size);
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
                WindowSize::default()
            )
            .len()
        );
    }
}

#[test]
fn rate_limits_answer_429_and_nothing_of_a_refused_request_is_produced() {
    let pipeline = Pipeline::new("limits");
    let ingest = start_ingest(
        &pipeline,
        &["--user-rate-limit", "5", "--ip-rate-limit", "10"],
    );
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let batch = |events: &[&str]| {
        let now = now_ms();
        let json: Vec<String> = events.iter().map(|u| event_json(u, "🔥", now)).collect();
        format!("[{}]", json.join(","))
    };
    // A user's second's worth passes at once.
    let (status, body, _) = post(&agent, &url, "application/json", &batch(&["u1"; 5]));
    assert_eq!(status, 202, "{body}");
    // One more from that user is refused, and a batch naming it is refused whole.
    let (status, body, retry) = post(&agent, &url, "application/json", &batch(&["u2", "u1"]));
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    let refusal: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["field"], "user_id");
    assert!(
        refusal["error"].as_str().unwrap().contains("\"u1\""),
        "{body}"
    );
    // Other users pass, until the address has sent its second's worth (10).
    let (status, body, _) = post(&agent, &url, "application/json", &batch(&["u2"; 3]));
    assert_eq!(status, 202, "{body}");
    let (status, body, retry) = post(&agent, &url, "application/json", &batch(&["u3"; 3]));
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    assert!(body.contains("this address"), "{body}");
    // Exactly the accepted events reached the topic: five of u1, three of u2.
    let payloads = read_until(&pipeline.events, Duration::from_secs(5), |p| p.len() >= 8);
    let mut users: Vec<String> = payloads
        .iter()
        .map(|p| {
            serde_json::from_slice::<model::EmojiEvent>(p)
                .unwrap()
                .user_id
        })
        .collect();
    users.sort();
    assert_eq!(users, ["u1", "u1", "u1", "u1", "u1", "u2", "u2", "u2"]);
    let metrics = agent
        .get(&format!("{}/metrics", ingest.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("ingest_requests_total{status=\"429\"} 2"),
        "{metrics}"
    );
}

#[test]
fn a_bearer_token_guards_the_api_and_never_shows_in_logs_or_metrics() {
    const TOKEN: &str = "s3cret-ingest-token";
    let pipeline = Pipeline::new("token");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log_path = dir.path().join("ingest.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args([
            "ingest",
            "--listen",
            "127.0.0.1:0",
            "--linger",
            "5ms",
            "--enable-load-test",
        ])
        .arg("--events-topic")
        .arg(&pipeline.events)
        .arg("--ingest-token-file")
        .arg(&token_file)
        .env("EMOSTREAM_BROKERS", brokers())
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches("/emoji")
        .to_owned();
    let agent = agent();
    let event = event_json("u1", "🔥", now_ms());
    let send = |authorization: Option<&str>| {
        let mut request = agent
            .post(&format!("{base}/emoji"))
            .header("content-type", "application/json");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let mut response = request.send(&event).unwrap();
        let challenge = response.headers().get("www-authenticate").is_some();
        (
            response.status().as_u16(),
            challenge,
            response.body_mut().read_to_string().unwrap(),
        )
    };
    let (status, challenge, body) = send(None);
    assert_eq!((status, challenge), (401, true), "{body}");
    assert!(body.contains("missing bearer token"), "{body}");
    let (status, _, body) = send(Some("Bearer not-the-token"));
    assert_eq!(status, 401);
    assert!(body.contains("wrong bearer token"), "{body}");
    assert_eq!(send(Some(&format!("Bearer {TOKEN}"))).0, 202);
    // The load test needs it too; health and metrics do not.
    let status = agent
        .get(&format!("{base}/load-test"))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401);
    let metrics = agent
        .get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("ingest_requests_total{status=\"401\"} 3"),
        "{metrics}"
    );
    assert_eq!(
        agent
            .get(&format!("{base}/health"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    assert!(
        child.wait().unwrap().success(),
        "a graceful stop on SIGTERM"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("Ingest stopped"), "{log}");
    assert!(
        !log.contains(TOKEN) && !metrics.contains(TOKEN),
        "the token leaked"
    );
}

#[test]
fn every_service_stops_cleanly_within_10_s_of_sigterm() {
    let pipeline = Pipeline::new("sigterm");
    let ingest = start_ingest(&pipeline, &[]);
    let dataflow = start_dataflow(&pipeline, &[]);
    let broadcaster = start_broadcaster(&pipeline, "sigterm");
    // Under traffic: events in the producer's queue and open windows in the dataflow.
    // 50 single events; in `make chaos`, 200 batches of 100 as well.
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let batches = if chaos_long() { 200 } else { 0 };
    let accepted = 50 + batches * 100;
    for i in 0..50 + batches {
        let body = if i < 50 {
            event_json(&format!("u{i}"), "🔥", now_ms())
        } else {
            let now = now_ms();
            let events: Vec<String> = (0..100)
                .map(|j| event_json(&format!("b{i}-{j}"), "😂", now))
                .collect();
            format!("[{}]", events.join(","))
        };
        let (status, body, _) = post(&agent, &url, "application/json", &body);
        assert_eq!(status, 202, "{body}");
    }
    let mut exits = serde_json::Map::new();
    for (name, service) in [
        ("ingest", ingest),
        ("dataflow", dataflow),
        ("broadcast", broadcaster),
    ] {
        let asked = Instant::now();
        let status = service.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not exit 0 within 10 s: {status:?}"
        );
        exits.insert(name.into(), asked.elapsed().as_secs_f64().into());
    }
    // The ingest flushed its producer on the way out: every accepted event is in the topic.
    let payloads = read_until(&pipeline.events, WAIT, |p| p.len() >= accepted);
    assert_eq!(payloads.len(), accepted);
    record_figures(
        "sigterm",
        &serde_json::json!({
            "fault": "SIGTERM to each service under traffic",
            "seconds_to_exit_0": exits,
            "events_accepted": accepted,
            "events_in_topic": payloads.len(),
        }),
    );
}

#[test]
fn a_dataflow_killed_again_and_again_under_http_load_publishes_the_same_windows() {
    // `make test`: 2,500 events/s for 8 s, one kill; `make chaos`: 25,000 events/s for 60 s,
    // a kill every 10 s.
    let (batch, seconds, kills) = if chaos_long() {
        (250, 60, 5)
    } else {
        (25, 8, 1)
    };
    let pipeline = Pipeline::new("kill-load");
    let ingest = start_ingest(&pipeline, &["--user-rate-limit", "0"]);
    let steady = start_dataflow(&pipeline, &[]);
    let restarted = pipeline.sibling("kill-load-b");
    let mut victim = start_dataflow(&restarted, &[]);
    let phase = Arc::new(Phase::default());
    let url = format!("{}/emoji", ingest.url());
    let every = Duration::from_millis(20);
    let senders = [
        send(url.clone(), "a", true, batch, every, Arc::clone(&phase)),
        send(url, "b", true, batch, every, Arc::clone(&phase)),
    ];
    let started = Instant::now();
    let mut recoveries = Vec::new();
    for k in 1..=kills {
        let at = Duration::from_secs(seconds) * k / (kills + 1);
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        victim.kill();
        std::thread::sleep(Duration::from_secs(1));
        let restart = Instant::now();
        victim = start_dataflow(&restarted, &[]);
        let base = victim.url();
        wait_for(WAIT, "a window from the restarted dataflow", || {
            metric(&base, "dataflow_windows_emitted_total") >= 1.0
        });
        recoveries.push(restart.elapsed().as_secs_f64());
    }
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed()));
    phase.stop.store(true, Ordering::Relaxed);
    let tallies: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let acknowledged: usize = tallies.iter().map(|t| t.acknowledged.len()).sum();
    let last = tallies.iter().map(|t| t.last_timestamp).max().unwrap();
    assert!(
        tallies.iter().all(|t| t.hung == 0),
        "every request answered"
    );
    let delivered = metric(&ingest.url(), "ingest_events_delivered_total") as u64;
    let want = windows_through(&pipeline.windows, last);
    let got = windows_through(&restarted.windows, last);
    let total = |w: &BTreeMap<i64, WindowMessage>| w.values().map(|m| m.report.events).sum::<u64>();
    assert!(acknowledged as u64 <= delivered);
    assert_eq!(
        total(&want),
        delivered,
        "the uninterrupted run counts every event once"
    );
    assert_eq!(
        total(&got),
        delivered,
        "the killed run counts every event once"
    );
    let equal = as_csv(&got) == as_csv(&want);
    assert!(
        equal,
        "per window, the killed run equals the uninterrupted one"
    );
    record_figures(
        "dataflow-killed",
        &serde_json::json!({
            "fault": "dataflow SIGKILL under load, restarted after 1 s",
            "kills": kills,
            "seconds": seconds,
            "offered_events_per_second": 2 * batch * 50,
            "requests": tallies.iter().map(|t| &t.statuses).collect::<Vec<_>>(),
            "events_acknowledged": acknowledged,
            "events_delivered": delivered,
            "events_counted_uninterrupted": total(&want),
            "events_counted_killed": total(&got),
            "windows": want.len(),
            "windows_equal": equal,
            "recovery_seconds": recoveries,
        }),
    );
    drop(steady);
}

#[test]
fn cors_lets_a_page_of_another_origin_post_unless_origins_are_listed() {
    let pipeline = Pipeline::new("cors");
    let any = start_ingest(&pipeline, &[]);
    let listed = start_ingest(&pipeline, &["--cors-origins", "http://allowed.test"]);
    let agent = agent();
    // The browser's preflight before a JSON POST from another origin.
    let preflight = |base: &str, origin: &str| {
        let response = agent
            .options(&format!("{base}/emoji"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .call()
            .expect("a response");
        let allowed = response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), allowed)
    };
    let (status, allowed) = preflight(&any.url(), "http://page.test");
    assert_eq!(status, 200);
    assert!(
        allowed.as_deref() == Some("http://page.test") || allowed.as_deref() == Some("*"),
        "{allowed:?}"
    );
    assert_eq!(
        preflight(&listed.url(), "http://allowed.test"),
        (200, Some("http://allowed.test".to_owned()))
    );
    let (status, allowed) = preflight(&listed.url(), "http://other.test");
    assert_eq!((status, allowed), (403, None), "an origin not listed");
    // The POST itself carries the header for the page's script.
    let response = agent
        .post(&format!("{}/emoji", listed.url()))
        .header("origin", "http://allowed.test")
        .header("content-type", "application/json")
        .send(event_json("u1", "🔥", now_ms()).as_str())
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://allowed.test")
    );
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
