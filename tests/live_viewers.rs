//! Simulated traffic and viewers through the whole live pipeline.

mod common;

use common::kafka::*;
use common::pipeline::*;
use common::{path, run_ok};

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
