//! The live pipeline stopped and killed: restarts publish the same windows, SIGTERM stops every service cleanly.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::pipeline::*;
use common::traffic::{Phase, send};
use common::{
    chaos_long, metric, record_figures, wait_for, wait_until_into_10s_window, windows_csv as as_csv,
};
use model::report::{WindowMessage, WindowState};

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
// Long: one fault scenario: load, kills and restarts, then the windows compared with an uninterrupted run.
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

/// SIGTERM to a dataflow of two workers and two window sizes while taps flow: it exits 0
/// within 10 s, and no final or revision of either size went out for a window before its
/// end plus the lateness by the wall clock (the size drained first kept its windows open
/// while the other drained).
#[test]
fn sigterm_with_two_workers_and_two_sizes_closes_no_window_early() {
    let pipeline = Pipeline::new("sigterm-sizes");
    let dataflow = start_dataflow(&pipeline, &["-w", "2", "--window", "2s,60s"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = feed_until(&pipeline.events, Arc::clone(&stop), 0);
    let two = format!("{}-2s", pipeline.windows);
    let sixty = format!("{}-60s", pipeline.windows);
    // Running: the 2 s size has closed a window of the taps.
    read_until(&two, WAIT, |p| !windows_by_start(p).is_empty());
    let asked = Instant::now();
    let status = dataflow.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the dataflow did not exit 0 within 10 s: {status:?}"
    );
    let exited_ms = now_ms();
    let seconds = asked.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    for topic in [&two, &sixty] {
        // Read to the ends of its partitions: the dataflow has exited.
        let payloads = read_until(topic, WAIT, |_| true);
        for p in &payloads {
            let m: WindowMessage = serde_json::from_slice(p).unwrap();
            if m.state == WindowState::Open {
                continue;
            }
            assert!(
                m.report.window_end + 1_000 <= exited_ms,
                "{topic}: window {} went out as {:?} before its end plus the lateness (the dataflow exited at {exited_ms})",
                m.report.window_start,
                m.state
            );
        }
    }
    record_figures(
        "sigterm-two-workers-two-sizes",
        &serde_json::json!({ "seconds_to_exit_0": seconds }),
    );
}

/// A second window size added across a restart (`--window 2s`, then `--window 2s,60s`, which
/// renames the live size's windows topic) while taps flow: on the cluster topic, the last
/// revision of every window, those published before the restart included, counts every tap
/// stamped in it.
#[test]
fn a_size_added_across_a_restart_leaves_every_window_whole() {
    let pipeline = Pipeline::new("size-added");
    let dataflow = start_dataflow(&pipeline, &["--window", "2s"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A little disorder, as over HTTP: some taps of a window come after the first taps of
    // the next.
    let feeder = feed_until(&pipeline.events, Arc::clone(&stop), 700);
    read_until(&pipeline.windows, WAIT, |p| windows_by_start(p).len() >= 2);
    let status = dataflow.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let cluster = &pipeline.cluster_topics()[0];
    let before = read_until(cluster, WAIT, |_| true).len();
    let restart_ms = now_ms();
    let restarted = start_dataflow(&pipeline, &["--window", "2s,60s"]);
    // What the viewers wait for: the restarted dataflow's first update, by the time its
    // producer made it.
    let records = read_records_until(cluster, WAIT, |r| r.len() > before);
    let first_ms = records
        .get(before)
        .map(|r| r.0)
        .expect("an update after the restart");
    record_figures(
        "restart-to-first-update",
        &serde_json::json!({
            "scenario": "SIGTERM, then started with a size added, 300 taps/s flowing",
            "seconds": (first_ms - restart_ms) as f64 / 1e3,
        }),
    );
    let two = format!("{}-2s", pipeline.windows);
    read_until(&two, WAIT, |p| windows_by_start(p).len() >= 2);
    stop.store(true, Ordering::Relaxed);
    let sent = feeder.join().unwrap();
    let last = sent.iter().map(|e| e.2).max().unwrap();
    windows_through(&two, last);
    let mut want: BTreeMap<i64, u64> = BTreeMap::new();
    for (_, _, ts) in &sent {
        *want.entry(ts - ts.rem_euclid(2_000)).or_default() += 1;
    }
    let got: BTreeMap<i64, u64> = windows_through(cluster, last)
        .into_iter()
        .map(|(start, m)| (start, m.report.events))
        .collect();
    assert_eq!(
        got, want,
        "{cluster}: every window's last revision counts all its taps"
    );
    drop(restarted);
}

/// Runs a dataflow of `pipeline` until the window of one tap of `user` (stamped now) is
/// published, then stops it with SIGTERM: the tap's stamp and how many messages the windows
/// topic holds.
fn one_window_published_then_stopped(pipeline: &Pipeline, user: &str) -> (i64, usize) {
    let dataflow = start_dataflow(pipeline, &[]);
    let now = now_ms();
    produce_events(
        &producer(),
        &pipeline.events,
        &[(user.into(), "🔥".into(), now)],
    );
    windows_through(&pipeline.windows, now);
    let status = dataflow.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    (now, read_until(&pipeline.windows, WAIT, |_| true).len())
}

/// A restart with settings its checkpoints cannot be carried over to (another live window
/// size, another events topic) refuses to start, naming the setting, both values and the way
/// out, and publishes nothing.
#[test]
fn a_restart_with_settings_the_checkpoints_do_not_fit_is_refused_by_name() {
    let pipeline = Pipeline::new("settings");
    let (_, published) = one_window_published_then_stopped(&pipeline, "u");
    let brokers = brokers();
    let other_events = format!("{}-other", pipeline.events);
    for (flag, value, was) in [
        ("--window", "5s", "2s"),
        (
            "--events-topic",
            other_events.as_str(),
            pipeline.events.as_str(),
        ),
    ] {
        let (code, text) = run_dataflow_with(&brokers, &pipeline, flag, value);
        assert_eq!(code, Some(1), "{flag}: {text}");
        assert!(
            text.contains(&format!("were made with {flag} {was}, not {value}"))
                && text.contains("a new --group"),
            "{flag}: {text}"
        );
    }
    assert_eq!(
        read_until(&pipeline.windows, WAIT, |_| true).len(),
        published
    );
}

/// Runs the dataflow of `pipeline` with `flag` set to `value`, expecting it to refuse to
/// start: its exit status (it is killed if it still runs after 30 s) and what it wrote to
/// stderr.
fn run_dataflow_with(
    brokers: &str,
    pipeline: &Pipeline,
    flag: &str,
    value: &str,
) -> (Option<i32>, String) {
    let mut args: Vec<String> = vec!["dataflow".into(), "--brokers".into(), brokers.to_owned()];
    args.extend(pipeline.dataflow_args());
    match args.iter().position(|a| a == flag) {
        Some(at) => args[at + 1] = value.to_owned(),
        None => args.extend([flag.to_owned(), value.to_owned()]),
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(log.path()).unwrap())
}

/// Windows were published, and a start would not know which of their events were counted
/// (`--start earliest`, or a group without checkpoints): refused by name, nothing published.
/// `--start latest` goes on: an event of a published window it reads is a late record, not
/// dropped.
#[test]
fn published_windows_no_checkpoint_accounts_for_are_refused_and_latest_reports_their_events_late() {
    let pipeline = Pipeline::new("unaccounted");
    let (then, published) = one_window_published_then_stopped(&pipeline, "before");
    let producer = producer();
    let brokers = brokers();
    let other_group = format!("{}-other", pipeline.group);
    for (flag, value, why) in [
        ("--start", "earliest", "--start earliest would count again"),
        ("--group", other_group.as_str(), "no checkpoint in"),
    ] {
        let (code, text) = run_dataflow_with(&brokers, &pipeline, flag, value);
        assert_eq!(code, Some(1), "{flag} {value}: {text}");
        assert!(
            text.contains(&format!("the windows topic {}", pipeline.windows))
                && text.contains(why)
                && text.contains("--start latest"),
            "{flag} {value}: {text}"
        );
    }
    assert_eq!(
        read_until(&pipeline.windows, WAIT, |_| true).len(),
        published,
        "a refused start publishes nothing"
    );
    let latest = start_dataflow(&pipeline, &["--start", "latest"]);
    let base = latest.url();
    wait_for(WAIT, "the readers positioned", || {
        metric(&base, "dataflow_partitions_reading") >= 1.0
    });
    let now = now_ms();
    produce_events(
        &producer,
        &pipeline.events,
        &[
            ("old".into(), "😂".into(), then + 1),
            ("new".into(), "🔥".into(), now),
        ],
    );
    let windows = windows_through(&pipeline.windows, now);
    let size = model::WindowSize::from_millis(2000).unwrap();
    assert_eq!(windows[&size.start_of(now)].report.events, 1);
    let late = once_each(&read_until(&pipeline.late, WAIT, |p| !p.is_empty()));
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0]["user_id"], "old");
    assert!(
        late[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("published before any run read it")),
        "{late:?}"
    );
    assert_eq!(
        metric(&base, "dataflow_late_events_total{window=\"2s\"}"),
        1.0
    );
    // Killed, and started again from its checkpoints: another event of the published window
    // is late too, and the first is not reported again.
    latest.kill();
    let again = start_dataflow(&pipeline, &[]);
    let now = now_ms();
    produce_events(
        &producer,
        &pipeline.events,
        &[
            ("old2".into(), "😂".into(), then + 2),
            ("new2".into(), "🔥".into(), now),
        ],
    );
    let windows = windows_through(&pipeline.windows, now);
    assert_eq!(windows[&size.start_of(now)].report.events, 1);
    let late = once_each(&read_until(&pipeline.late, WAIT, |p| p.len() >= 2));
    let mut users: Vec<&str> = late
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["old", "old2"], "{late:?}");
    drop(again);
}

/// Taps flowing (300 a second, a little disorder) into a dataflow of two workers and two
/// window sizes, killed with SIGKILL at random moments and started again at once: every
/// window of both sizes counts exactly the taps stamped in it. `EMOSTREAM_SEED` replays a
/// run.
#[test]
fn a_dataflow_of_two_sizes_killed_under_load_counts_every_tap_once() {
    let seed = std::env::var("EMOSTREAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    eprintln!("run with EMOSTREAM_SEED={seed}");
    let mut rng = loadgen::random::SplitMix64::new(seed);
    let pipeline = Pipeline::new("kill-sizes");
    let args = ["-w", "2", "--window", "2s,10s"];
    let mut victim = start_dataflow(&pipeline, &args);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = feed_until(&pipeline.events, Arc::clone(&stop), 300);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(4_000)));
        victim.kill();
        victim = start_dataflow(&pipeline, &args);
    }
    std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
    stop.store(true, Ordering::Relaxed);
    let sent = feeder.join().unwrap();
    assert_every_window_exact(&pipeline, &sent, &format!("seed {seed}"));
    drop(victim);
}

/// Asserts that every window of both sizes (2 s and 10 s) of `pipeline` counts exactly the
/// taps of `sent` stamped in it.
fn assert_every_window_exact(pipeline: &Pipeline, sent: &[(String, String, i64)], what: &str) {
    let last = sent.iter().map(|e| e.2).max().unwrap();
    for (label, millis) in [("2s", 2_000), ("10s", 10_000)] {
        let size = model::WindowSize::from_millis(millis).unwrap();
        let topic = format!("{}-{label}", pipeline.windows);
        let got: BTreeMap<i64, u64> = windows_of_size_through(&topic, last, size, WAIT)
            .into_iter()
            .map(|(start, m)| (start, m.report.events))
            .collect();
        let mut want: BTreeMap<i64, u64> = BTreeMap::new();
        for (_, _, ts) in sent {
            *want.entry(size.start_of(*ts)).or_default() += 1;
        }
        assert_eq!(got, want, "{what}: {topic}, every window exact");
    }
}

/// A second dataflow started with the group of one still running, under load (a double
/// start, or a replacement for one that hangs): the one started last takes the partitions
/// over; the first stops within seconds with an error naming the other, and what it wrote
/// meanwhile is no partition's state: with the second killed and a third started, every
/// window of both sizes counts exactly the taps stamped in it.
#[test]
fn a_second_dataflow_of_a_group_takes_over_and_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("takeover");
    let args = ["-w", "2", "--window", "2s,10s"];
    let log = dir.path().join("first.log");
    let mut first = start_dataflow_logged(&pipeline, &args, &log);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = feed_until(&pipeline.events, Arc::clone(&stop), 300);
    // Waits until the 2 s windows up to now are out.
    let published_until_now = || {
        windows_of_size_through(
            &format!("{}-2s", pipeline.windows),
            now_ms(),
            model::WindowSize::from_millis(2_000).unwrap(),
            WAIT,
        )
    };
    published_until_now();
    let started = Instant::now();
    let second = start_dataflow(&pipeline, &args);
    let status = first.wait_exit(Duration::from_secs(15));
    eprintln!(
        "the first stopped {:?} after the second was started",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("another dataflow of this group") && text.contains("took over partition"),
        "{text}"
    );
    // The second goes on, and is killed while taps flow; a third takes up from the
    // checkpoints.
    published_until_now();
    second.kill();
    let third = start_dataflow(&pipeline, &args);
    published_until_now();
    stop.store(true, Ordering::Relaxed);
    let sent = feeder.join().unwrap();
    assert_every_window_exact(&pipeline, &sent, "taken over");
    assert_eq!(
        metric(&third.url(), "dataflow_late_events_total{window=\"2s\"}"),
        0.0
    );
}

/// Produces 300 taps a second into `topic`, on a thread, stamped with the wall clock less up
/// to `disorder_ms`, until `stop`; what it sent.
fn feed_until(
    topic: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    disorder_ms: i64,
) -> std::thread::JoinHandle<Vec<(String, String, i64)>> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let producer = producer();
        let mut sent = Vec::new();
        let mut round = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let now = now_ms();
            let batch: Vec<(String, String, i64)> = (0..30i64)
                .map(|i| {
                    let user = format!("u{}", (round * 30 + i) % 307);
                    (user, "🔥".to_owned(), now - (i * 37) % disorder_ms.max(1))
                })
                .collect();
            produce_events(&producer, &topic, &batch);
            sent.extend(batch);
            round += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    })
}

/// A backfill of past taps (half a minute of them, ending 2 s ago) with a lateness longer than
/// their span keeps many windows open at once; the dataflow is killed while it reads it and
/// started again at once. Every window must equal the reference: nothing counted twice,
/// nothing lost.
#[test]
fn a_dataflow_killed_during_a_backfill_counts_every_event_once() {
    let pipeline = Pipeline::new("backfill");
    // A lateness longer than the backfill's span: no event is late, so every window has one
    // exact answer whatever order the partitions are read in.
    let lateness = Duration::from_secs(40);
    let args = ["-w", "2", "--lateness", "40s"];
    let victim = start_dataflow(&pipeline, &args);
    let end = now_ms() - 2_000;
    let events = backfill(end, 30_000);
    let feeder = feed_paced(pipeline.events.clone(), events.clone());
    std::thread::sleep(Duration::from_millis(2_500));
    victim.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _again = start_dataflow(&pipeline, &args);
    feeder.join().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = common::expected_csv_of(dir.path(), &events, lateness, model::WindowSize::default());
    // The last window closes once the wall clock passes its end plus the lateness.
    let closes_in =
        Duration::from_millis((end + lateness.as_millis() as i64 - now_ms()).max(0) as u64);
    let got = windows_of_size_through(
        &pipeline.windows,
        end,
        model::WindowSize::default(),
        closes_in + WAIT,
    );
    let counted: u64 = got.values().map(|m| m.report.events).sum();
    assert_eq!(counted, events.len() as u64, "every event counted once");
    assert_eq!(as_csv(&got), want, "every window equals the reference");
}

/// 200,000 taps of 5,003 users over the `span_ms` before `end`, in an order that jumps about
/// in that span (a backfill of past taps).
fn backfill(end: i64, span_ms: i64) -> Vec<(String, String, i64)> {
    (0..200_000i64)
        .map(|n| {
            (
                format!("u{}", (n * 7919) % 5003),
                ["🔥", "😂", "👏", "🎉"][(n % 4) as usize].to_owned(),
                end - span_ms + (n * 104_729) % span_ms,
            )
        })
        .collect()
}

/// Produces `events` into `topic` in batches of 5,000 every 100 ms, on a thread.
fn feed_paced(topic: String, events: Vec<(String, String, i64)>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer = producer();
        for batch in events.chunks(5_000) {
            produce_events(&producer, &topic, batch);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Randomized backfills (bursts of past taps in an order that jumps about, with pauses longer
/// than the idle timeout between some of them, so windows close while taps of them are still
/// coming) and kills at random points, each followed by an immediate restart. Every event must
/// be counted once: per window and emoji, the windows' count plus the late records equals the
/// events sent. The seed of each round is printed; `EMOSTREAM_SEED` replays one.
#[test]
fn a_dataflow_killed_at_random_points_of_random_backfills_counts_every_event_once() {
    let rounds = if chaos_long() { 12 } else { 2 };
    let first_seed = std::env::var("EMOSTREAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    for round in 0..rounds {
        killed_backfill_round(first_seed + round);
    }
}

fn killed_backfill_round(seed: u64) {
    eprintln!("round with EMOSTREAM_SEED={seed}");
    let mut rng = loadgen::random::SplitMix64::new(seed);
    let pipeline = Pipeline::new("random-backfill");
    let args = ["-w", "2", "--lateness", "3s"];
    let mut victim = start_dataflow(&pipeline, &args);
    let end = now_ms() - 1_000;
    let span = 10_000 + rng.below(20_000) as i64;
    type Burst = (Vec<(String, String, i64)>, Duration);
    let bursts: Vec<Burst> = (0..8)
        .map(|b| {
            let events = (0..4_000)
                .map(|_| {
                    (
                        format!("u{}", rng.below(3_000)),
                        ["🔥", "😂", "👏", "🎉"][rng.below(4) as usize].to_owned(),
                        end - span + rng.below(span as u64) as i64,
                    )
                })
                .collect();
            let pause = Duration::from_millis(if b % 3 == 2 { 1_500 } else { rng.below(300) });
            (events, pause)
        })
        .collect();
    let events: Vec<_> = bursts.iter().flat_map(|(e, _)| e.clone()).collect();
    let topic = pipeline.events.clone();
    let feeder = std::thread::spawn(move || {
        let producer = producer();
        for (batch, pause) in bursts {
            produce_events(&producer, &topic, &batch);
            std::thread::sleep(pause);
        }
    });
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(500 + rng.below(3_000)));
        victim.kill();
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        victim = start_dataflow(&pipeline, &args);
    }
    feeder.join().unwrap();
    let mut want: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for (_, emoji, ts) in &events {
        *want
            .entry((ts - ts.rem_euclid(2_000), emoji.clone()))
            .or_default() += 1;
    }
    // Every event is in a window (its last revision) or a late record once the last window
    // is published and no event can amend one any more (the watermark has passed the last
    // end plus the allowed lateness): until then, read again.
    let deadline = std::time::Instant::now() + WAIT + Duration::from_secs(20);
    let (windows, late) = loop {
        let windows =
            windows_of_size_through(&pipeline.windows, end, model::WindowSize::default(), WAIT);
        let counted: usize = windows.values().map(|m| m.report.events as usize).sum();
        let missing = events.len().saturating_sub(counted);
        let late = late_by_window(&pipeline.late, missing, Duration::from_secs(2));
        let late_total: i64 = late.values().sum();
        if counted + late_total as usize >= events.len() || std::time::Instant::now() > deadline {
            break (windows, late);
        }
    };
    let mut got: BTreeMap<(i64, String), i64> = late.clone();
    for (start, m) in &windows {
        for e in &m.report.emojis {
            *got.entry((*start, e.emoji.to_string())).or_default() += e.count as i64;
        }
    }
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, n)| got.get(*k) != Some(*n))
        .map(|((start, emoji), n)| {
            format!(
                "window {start} {emoji}: {n} sent, {:?} counted + late ({:?} late)",
                got.get(&(*start, emoji.clone())),
                late.get(&(*start, emoji.clone()))
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "seed {seed}: every event once, in a window or a late record; wrong: {wrong:#?}"
    );
    assert_eq!(
        got.len(),
        want.len(),
        "seed {seed}: no window or emoji made up"
    );
    // And the distinct users: those of the events counted (every event but the late ones),
    // per window and per window and emoji.
    let mut counted: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for event in &events {
        *counted.entry(event.clone()).or_default() += 1;
    }
    let late_total = late.values().sum::<i64>() as usize;
    let records = read_until(&pipeline.late, WAIT, |p| once_each(p).len() >= late_total);
    for record in once_each(&records) {
        let event = (
            record["user_id"].as_str().unwrap().to_owned(),
            record["emoji_type"].as_str().unwrap().to_owned(),
            model::parse_timestamp(record["timestamp"].as_str().unwrap()).unwrap(),
        );
        *counted
            .get_mut(&event)
            .expect("a late record of an event sent") -= 1;
    }
    type Users = std::collections::BTreeSet<String>;
    let mut users: BTreeMap<i64, (Users, BTreeMap<String, Users>)> = BTreeMap::new();
    for ((user, emoji, ts), n) in counted {
        if n > 0 {
            let window = users.entry(ts - ts.rem_euclid(2_000)).or_default();
            window.0.insert(user.clone());
            window.1.entry(emoji).or_default().insert(user);
        }
    }
    for (start, m) in &windows {
        let (all, by_emoji) = &users[start];
        assert_eq!(
            m.report.unique_users,
            all.len() as u64,
            "seed {seed}: window {start}'s distinct users ({:?} revision {}, {} events)",
            m.state,
            m.revision,
            m.report.events
        );
        for e in &m.report.emojis {
            assert_eq!(
                e.unique_users,
                by_emoji[e.emoji.as_str()].len() as u64,
                "seed {seed}: window {start} {}'s distinct users",
                e.emoji
            );
        }
    }
}

/// The late records of `topic` (read until there are `expected` of them, or `wait`), each
/// asserted once (by partition, offset and size), counted per window start and emoji.
fn late_by_window(topic: &str, expected: usize, wait: Duration) -> BTreeMap<(i64, String), i64> {
    let records = read_until(topic, wait, |p| p.len() >= expected);
    let mut counts = BTreeMap::new();
    for record in once_each(&records) {
        let ts = model::parse_timestamp(record["timestamp"].as_str().unwrap()).unwrap();
        let emoji = record["emoji_type"].as_str().unwrap().to_owned();
        *counts
            .entry((ts - ts.rem_euclid(2_000), emoji))
            .or_default() += 1;
    }
    counts
}

/// Late records, asserting that each event (partition, offset) is reported once per size.
fn once_each(payloads: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let mut seen = std::collections::HashMap::new();
    let records: Vec<serde_json::Value> = payloads
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(p).unwrap())
        .collect();
    for r in &records {
        let key = (
            r["partition"].as_i64(),
            r["offset"].as_i64(),
            r["window"].as_str().map(str::to_owned),
        );
        if let Some(before) = seen.insert(key, r) {
            panic!("reported twice: {before} and {r}");
        }
    }
    records
}

/// Taps stamped 5 minutes in the past (late by far), each followed within half a second by a
/// stop of the dataflow (SIGTERM, SIGTERM, then SIGKILL) and a restart, which reads the tap
/// again (the window step it was reported at is not committed yet): each is reported once.
#[test]
fn a_late_tap_is_reported_once_across_stops_right_after_it() {
    let pipeline = Pipeline::new("late-once");
    let producer = producer();
    let mut dataflow = start_dataflow(&pipeline, &[]);
    // A tap on time, and its window out.
    let on_time = |user: &str| {
        let now = now_ms();
        produce_events(
            &producer,
            &pipeline.events,
            &[(user.into(), "🔥".into(), now)],
        );
        windows_through(&pipeline.windows, now);
    };
    // First: the watermark is past, so the taps after it stamped 5 minutes ago are late.
    on_time("first");
    for (k, kill) in [false, false, true].into_iter().enumerate() {
        let tap = (format!("late{k}"), "🔥".to_owned(), now_ms() - 300_000);
        produce_events(&producer, &pipeline.events, &[tap]);
        // The stop comes within half a second of the tap (the scenario, not a wait for a
        // condition): before or just after its late record is out, and before the window
        // step it was reported at is committed.
        std::thread::sleep(Duration::from_millis(300));
        if kill {
            dataflow.kill();
        } else {
            let status = dataflow.terminate(Duration::from_secs(10));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
        }
        dataflow = start_dataflow(&pipeline, &[]);
    }
    // Last, read after the three: once its window is out, all three were read again.
    on_time("last");
    let records = once_each(&read_until(&pipeline.late, WAIT, |_| true));
    let mut users: Vec<&str> = records
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["late0", "late1", "late2"]);
    drop(dataflow);
}

/// With `--updates`, a dataflow killed while a window is open and started again goes on with
/// higher revisions of that window (never a lower one after a higher), and its final equals
/// the reference over every event of the window, before and after the kill.
#[test]
fn a_restarted_dataflow_never_publishes_a_lower_revision() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("revisions");
    let args = ["-w", "2", "--window", "10s", "--updates", "250ms"];
    let victim = start_dataflow(&pipeline, &args);
    let size = model::WindowSize::from_millis(10_000).unwrap();
    wait_until_into_10s_window(0);
    let cluster = &pipeline.cluster_topics()[0];
    let now = now_ms();
    let start = size.start_of(now);
    let batch = |round: i64| -> Vec<(String, String, i64)> {
        (0..40)
            .map(|i| (format!("u{round}-{i}"), "🔥".to_owned(), now + i))
            .collect()
    };
    let producer = producer();
    let mut sent = batch(0);
    produce_events(&producer, &pipeline.events, &sent);
    read_until(cluster, WAIT, |p| {
        messages_of_window(start, p)
            .iter()
            .any(|m| m.report.events == 40)
    });
    victim.kill();
    let _again = start_dataflow(&pipeline, &args);
    let more = batch(1);
    produce_events(&producer, &pipeline.events, &more);
    sent.extend(more);
    let payloads = read_until(cluster, WAIT, |p| {
        messages_of_window(start, p)
            .iter()
            .any(|m| m.state == WindowState::Final)
    });
    let messages = messages_of_window(start, &payloads);
    let revisions: Vec<(u64, WindowState, u64)> = messages
        .iter()
        .map(|m| (m.revision, m.state, m.report.events))
        .collect();
    assert!(
        revisions.windows(2).all(|p| p[0].0 < p[1].0),
        "every message a higher revision than the one before: {revisions:?}"
    );
    let last = messages.last().unwrap();
    assert_eq!(last.state, WindowState::Final, "{revisions:?}");
    let want = common::expected_csv_of(dir.path(), &sent, Duration::from_secs(1), size);
    let finals: BTreeMap<i64, WindowMessage> = [(start, last.clone())].into();
    assert_eq!(as_csv(&finals), want, "the final equals the reference");
}

/// With `--updates-to-windows-topic`, open updates go to the windows topic too; a dataflow
/// killed while the newest messages there are a window's open updates resumes after the last
/// final one: that window is counted whole, and no earlier final is published again.
#[test]
fn a_restart_resumes_after_the_last_final_among_open_updates() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new("open-in-windows");
    let args = [
        "-w",
        "2",
        "--window",
        "10s",
        "--lateness",
        "3s",
        "--updates-to-windows-topic",
    ];
    let victim = start_dataflow(&pipeline, &args);
    let size = model::WindowSize::from_millis(10_000).unwrap();
    wait_until_into_10s_window(0);
    let producer = producer();
    let taps = |round: i64, at: i64| -> Vec<(String, String, i64)> {
        (0..30)
            .map(|i| (format!("u{round}-{i}"), "🔥".to_owned(), at + i))
            .collect()
    };
    let is_final = |start: i64| {
        move |p: &[Vec<u8>]| {
            messages_of_window(start, p)
                .iter()
                .any(|m| m.state == WindowState::Final)
        }
    };
    // The window before (final 3 s into this one), then the current one, whose open updates
    // are the newest messages when the dataflow dies.
    let second = size.start_of(now_ms());
    let first = second - 10_000;
    produce_events(&producer, &pipeline.events, &taps(0, first + 100));
    read_until(&pipeline.windows, WAIT, is_final(first));
    let mut sent = taps(1, second + 100);
    produce_events(&producer, &pipeline.events, &sent);
    read_until(&pipeline.windows, WAIT, |p| {
        messages_of_window(second, p)
            .iter()
            .any(|m| m.state == WindowState::Open && m.report.events == 30)
    });
    victim.kill();
    let _again = start_dataflow(&pipeline, &args);
    let more = taps(2, second + 5_000);
    produce_events(&producer, &pipeline.events, &more);
    sent.extend(more);
    let payloads = read_until(&pipeline.windows, WAIT, is_final(second));
    let finals_of_first = messages_of_window(first, &payloads)
        .iter()
        .filter(|m| m.state == WindowState::Final)
        .count();
    assert_eq!(finals_of_first, 1, "the earlier window's final, once");
    let last = messages_of_window(second, &payloads)
        .into_iter()
        .rfind(|m| m.state == WindowState::Final)
        .unwrap();
    let want = common::expected_csv_of(dir.path(), &sent, Duration::from_secs(3), size);
    let finals: BTreeMap<i64, WindowMessage> = [(second, last)].into();
    assert_eq!(as_csv(&finals), want, "the window counted whole");
}

/// A dataflow killed once a final is on the cluster topics and before it is on the windows
/// topic: the restart completes it on the windows topic and sends it to no cluster topic
/// twice.
#[test]
fn a_final_cut_off_by_a_kill_is_completed_by_the_restart_once() {
    cut_off_publication(WindowState::Final, "final", &["--updates", "0"]);
}

/// Likewise for a correction: completed once, and the straggler it carries counted once, not
/// reported late as well.
#[test]
fn a_correction_cut_off_by_a_kill_is_completed_by_the_restart_once() {
    cut_off_publication(WindowState::Revised, "revised", &["--updates", "0"]);
}

/// With open updates (revisions are the dataflow's clock, a final and a correction of one
/// step alike), a correction cut off after the first of the cluster topics: the restart
/// completes it on the others and the windows topic.
#[test]
fn a_correction_on_one_cluster_topic_only_is_completed_on_the_others() {
    cut_off_publication(WindowState::Revised, "revised:1", &[]);
}

// Long: one scenario, cut off at one message then restarted, checked on every topic.
fn cut_off_publication(state: WindowState, cut: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let name = cut.replace(':', "-");
    let pipeline = Pipeline::new(&format!("cut-{name}"));
    let mut args = vec!["--allowed-lateness", "5s"];
    args.extend(extra);
    let mut victim = start_dataflow_with_env(
        &pipeline,
        &args,
        &[("EMOSTREAM_ABORT_BEFORE_WINDOWS_TOPIC", cut)],
    );
    let two = model::WindowSize::default();
    let producer = producer();
    let clusters = pipeline.cluster_topics();
    assert!(clusters.len() >= 2, "several cluster topics");
    let cluster = clusters[0].clone();
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let taps = |emoji: &str, at: i64, users: &[String]| -> Vec<(String, String, i64)> {
        users
            .iter()
            .map(|u| (u.clone(), emoji.to_owned(), at))
            .collect()
    };
    // Five taps in the window [S + 4 s, S + 6 s), final once ten taps at S + 8 s move every
    // partition's watermark past it.
    wait_until_into_10s_window(4_500);
    let first = now_ms();
    let start = two.start_of(first);
    let mut in_window = taps("🔥", first, &users[..5]);
    produce_events(&producer, &pipeline.events, &in_window);
    wait_until_into_10s_window(8_000);
    produce_events(&producer, &pipeline.events, &taps("👏", now_ms(), &users));
    if state == WindowState::Revised {
        // A straggler within the allowed lateness, once the window is final: a correction.
        read_until(&pipeline.windows, WAIT, |p| {
            windows_by_start(p).contains_key(&start)
        });
        let straggler = taps("😂", first, &users[..1]);
        produce_events(&producer, &pipeline.events, &straggler);
        in_window.extend(straggler);
    }
    let status = victim.wait_exit(WAIT);
    assert!(!status.success(), "cut off: {status}");
    let of_state = |payloads: &[Vec<u8>]| -> Vec<WindowMessage> {
        messages_of_window(start, payloads)
            .into_iter()
            .filter(|m| m.state == state)
            .collect()
    };
    read_until(&cluster, WAIT, |p| !of_state(p).is_empty());
    let windows_before = read_until(&pipeline.windows, WAIT, |_| true);
    assert!(
        of_state(&windows_before).is_empty(),
        "cut off before the windows topic"
    );
    let again = start_dataflow(&pipeline, &args);
    // Taps of every user in a later window: once it is final, every event before it in each
    // partition was read again and decided.
    let closing = taps("🎉", now_ms(), &users);
    let closing_start = two.start_of(closing[0].2);
    produce_events(&producer, &pipeline.events, &closing);
    let on_windows = read_until(&pipeline.windows, WAIT, |p| {
        windows_by_start(p).contains_key(&closing_start)
    });
    let mut read = vec![(pipeline.windows.clone(), on_windows)];
    for topic in &clusters {
        let payloads = read_until(topic, WAIT, |p| {
            windows_by_start(p).contains_key(&closing_start)
        });
        read.push((topic.clone(), payloads));
    }
    for (topic, payloads) in &read {
        let messages = of_state(payloads);
        assert_eq!(
            messages.len(),
            1,
            "{topic}: the {cut} message once: {messages:?}"
        );
        let got: BTreeMap<i64, WindowMessage> = [(start, messages[0].clone())].into();
        let want = common::expected_csv_of(dir.path(), &in_window, Duration::from_secs(1), two);
        assert_eq!(as_csv(&got), want, "{topic}: the reference");
    }
    let late = read_until(&pipeline.late, WAIT, |_| true);
    assert!(late.is_empty(), "no event reported late: {late:?}");
    assert_eq!(
        metric(&again.url(), "dataflow_late_events_total{window=\"2s\"}"),
        0.0
    );
}
