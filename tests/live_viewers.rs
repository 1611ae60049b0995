//! Simulated traffic and viewers through the whole live pipeline.

mod common;

use common::kafka::*;
use common::pipeline::*;

#[test]
fn simulated_viewers_measure_every_window_of_simulated_traffic() {
    let pipeline = Pipeline::new("simulate");
    let _dataflow = start_dataflow(&pipeline, &[]);
    let ingest = start_ingest(&pipeline, &[]);
    let broadcaster = start_broadcaster(&pipeline, "simulate");
    let addr = &broadcaster.ready.broadcast[0];
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
