//! Simulated traffic and viewers through the whole live pipeline.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::kafka::*;
use common::pipeline::*;
use common::{path, run_ok};

/// `emostream up` prints each broadcaster's page first, and the page is there.
#[test]
fn up_prints_each_page_first_and_serves_it_there() {
    let pipeline = Pipeline::new("banner");
    let mut up = Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--broadcast-listen",
            "127.0.0.1:0",
            "--token-secret",
            "banner",
        ])
        .args(["--registry-topic", &unique("banner-registry")])
        .args(pipeline.dataflow_args())
        .env("EMOSTREAM_BROKERS", brokers())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Its banner, up to "Press Ctrl-C", read on a thread: a silent `up` fails, not hangs.
    let stdout = up.stdout.take().unwrap();
    let (sender, banner) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("Press Ctrl-C"))
            .collect();
        let _ = sender.send(lines);
    });
    let lines = banner.recv_timeout(WAIT).unwrap_or_else(|_| {
        let _ = up.kill();
        panic!("up printed no banner within {WAIT:?}")
    });
    let clusters = pipeline.clusters as usize;
    // The pages, fetched while `up` runs; then it is stopped, and the lines checked.
    let pages: Vec<(String, Option<String>)> = lines
        .iter()
        .take(clusters)
        .map(|line| {
            let url = line
                .strip_prefix("page: ")
                .and_then(|rest| rest.split_whitespace().next());
            let body = url.and_then(|url| {
                let mut answer = agent().get(url).call().ok()?;
                answer.body_mut().read_to_string().ok()
            });
            (line.clone(), body)
        })
        .collect();
    let _ = up.kill();
    let _ = up.wait();
    for (i, (line, body)) in pages.iter().enumerate() {
        assert!(
            line.starts_with("page: http://") && line.ends_with(&format!("(cluster {})", i + 1)),
            "a page line first for each cluster: {lines:?}"
        );
        assert!(
            body.as_deref()
                .is_some_and(|b| b.contains("<title>EmoStream")),
            "{line} serves the page"
        );
    }
    assert_eq!(
        lines.get(clusters).map(String::as_str),
        Some("EmoStream is up."),
        "{lines:?}"
    );
}

#[test]
fn simulated_viewers_measure_every_window_of_simulated_traffic() {
    let pipeline = Pipeline::new("simulate");
    let _dataflow = start_dataflow(&pipeline, &[]);
    let ingest = start_ingest(&pipeline, &[]);
    let broadcaster = start_broadcaster(&pipeline, "simulate");
    let addr = &broadcaster.ready.broadcast[0];
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("simulate.json");
    let (target, watch) = (ingest.url(), format!("http://{addr}"));
    run_ok(&[
        "simulate",
        "--target",
        &target,
        "--rate",
        "500/s",
        "--duration",
        "8s",
        "--users",
        "1000",
        "--watch",
        &watch,
        "--viewers",
        "3",
        "--summary-json",
        path(&summary),
    ]);
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
