//! Helpers shared by the integration tests: generated logs and reference outputs.

#![allow(dead_code)]

pub mod kafka;
pub mod pipeline;
pub mod service;
pub mod tls;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dataflow::reference::{ReferenceOutput, aggregate_files};
use dataflow::sink::WindowCsvWriter;
use dataflow::{ClusterConfig, Engine, ReplayConfig, ReplaySummary, RunControl, run_replay};
use loadgen::generator::{Workload, write_log};
use model::report::WindowMessage;
use model::{ReportConfig, WindowSize};

/// Runs the project's `scripts/NAME ARGS` with `env` set as well, asserts it succeeded and
/// returns what it printed, trimmed.
pub fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    script_through(&[], name, args, env)
}

/// [`script`] through the command `wrapper` (like `ip netns exec HOST`). A failure names the
/// script and its first argument only: another may be a password.
pub fn script_through(wrapper: &[&str], name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let script = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = command_through(wrapper, &script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(
        output.status.success(),
        "scripts/{name} {}: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A command that runs `program` through `wrapper` (like `ip netns exec HOST`), or directly
/// when `wrapper` is empty.
pub fn command_through(wrapper: &[&str], program: &str) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Whether the tests run as root (what building network namespaces needs).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Runs `emostream ARGS` (logging warnings only) and returns what it did.
pub fn emostream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run emostream")
}

/// Runs `emostream ARGS` and asserts it succeeded, showing its stderr when it did not.
pub fn run_ok(args: &[&str]) -> Output {
    let output = emostream(args);
    assert!(
        output.status.success(),
        "emostream {args:?} failed: {}",
        stderr(&output)
    );
    output
}

/// What a command printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A disordered log of `events` events from `users` users, written to `dir/name`.
pub fn generated_log(dir: &Path, name: &str, workload: Workload) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create log");
    write_log(workload, &mut file).expect("write log");
    path
}

/// A workload with a lot of disorder (up to `disorder_ms`) and no late arrivals.
pub fn disordered(events: u64, users: u64, disorder_ms: i64, seed: u64) -> Workload {
    Workload {
        events,
        users,
        rate: 800.0,
        disorder_ms,
        late_fraction: 0.0,
        seed,
        ..Workload::default()
    }
}

/// A replay configuration writing to `dir/out-<tag>.csv`.
pub fn replay_config(
    dir: &Path,
    logs: &[PathBuf],
    workers: usize,
    engine: Engine,
    tag: &str,
) -> ReplayConfig {
    ReplayConfig {
        cluster: ClusterConfig::new(workers, 1, 0, None).expect("cluster"),
        engine,
        out: Some(dir.join(format!("out-{tag}.csv"))),
        late_out: Some(dir.join(format!("late-{tag}.csv"))),
        rejects_out: Some(dir.join(format!("rejects-{tag}.csv"))),
        // Small blocks, so every worker reads parts of every file.
        block_bytes: 16 * 1024,
        ..ReplayConfig::new(logs.to_vec())
    }
}

/// Runs a replay and returns its summary and window output.
pub fn replay(config: ReplayConfig) -> (ReplaySummary, String) {
    let out = config
        .out_for(config.windows.live())
        .expect("an output file");
    let summary = run_replay(config, std::sync::Arc::new(RunControl::new(false)))
        .expect("replay")
        .expect("process 0 has the summary");
    (summary, std::fs::read_to_string(out).expect("read output"))
}

/// The reference aggregation of `logs`.
pub fn reference(
    logs: &[PathBuf],
    window: WindowSize,
    lateness: Duration,
    report: &ReportConfig,
) -> ReferenceOutput {
    reference_allowing(logs, window, lateness, Duration::ZERO, report)
}

/// The reference aggregation of `logs` with an allowed lateness: each window's last revision.
pub fn reference_allowing(
    logs: &[PathBuf],
    window: WindowSize,
    lateness: Duration,
    allowed: Duration,
    report: &ReportConfig,
) -> ReferenceOutput {
    let paths: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    let (lateness, allowed) = (lateness.as_millis() as i64, allowed.as_millis() as i64);
    aggregate_files(&paths, window, lateness, allowed, report).expect("reference")
}

/// The window CSV the reference output would be written as.
pub fn reference_csv(output: &ReferenceOutput) -> String {
    let mut writer = WindowCsvWriter::new(Vec::new()).expect("header");
    for report in &output.reports {
        writer.write(report).expect("write");
    }
    String::from_utf8(writer.into_inner().expect("flush")).expect("utf-8")
}

/// Asserts two window CSVs are equal, naming the first differing record.
pub fn assert_same_windows(got: &str, want: &str, what: &str) {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{what}: record {i} differs");
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "{what}: number of records"
    );
}

/// The reports the reference aggregator makes of `events` (user, emoji, timestamp ms) in
/// windows of `size`, as the CSV rows the tests compare.
pub fn expected_csv_of(
    dir: &Path,
    events: &[(String, String, i64)],
    lateness: Duration,
    size: WindowSize,
) -> String {
    let mut log = String::from("user_id,emoji_type,timestamp\n");
    for (u, e, t) in events {
        log.push_str(&format!("{u},{e},{t}\n"));
    }
    let path = dir.join("events.csv");
    std::fs::write(&path, log).unwrap();
    reference_csv(&reference(
        &[path],
        size,
        lateness,
        &ReportConfig::default(),
    ))
}

/// Window messages as the CSV rows the tests compare.
pub fn windows_csv(windows: &BTreeMap<i64, WindowMessage>) -> String {
    let mut writer = WindowCsvWriter::new(Vec::new()).unwrap();
    for m in windows.values() {
        writer.write(&m.report).unwrap();
    }
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

/// Whether the fault tests run at full length (`make chaos` sets `EMOSTREAM_CHAOS_LONG=1`):
/// longer outages, more load, more clients. `make test` runs them short.
pub fn chaos_long() -> bool {
    std::env::var("EMOSTREAM_CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// Prints a fault test's figures and, when `EMOSTREAM_CHAOS_OUT` names a directory (as in
/// `make chaos`), writes them there as `<scenario>.json` for the chaos report.
pub fn record_figures(scenario: &str, figures: &serde_json::Value) {
    eprintln!("{scenario}: {figures:#}");
    if let Ok(dir) = std::env::var("EMOSTREAM_CHAOS_OUT") {
        let path = Path::new(&dir).join(format!("{scenario}.json"));
        std::fs::write(&path, format!("{figures:#}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// The value of the sample `name` (labels included, as in `name{status="201"}`) on the
/// `/metrics` page of the service at `base`.
pub fn metric(base: &str, name: &str) -> f64 {
    let text = metrics_text(base);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
}

/// The `/metrics` page of the service at `base`.
pub fn metrics_text(base: &str) -> String {
    ureq::get(&format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("a metrics page")
}

/// The status and body of `GET /ready` of the service at `base`.
pub fn readiness(base: &str) -> (u16, serde_json::Value) {
    let mut response = ureq::get(&format!("{base}/ready"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("/ready answers");
    let status = response.status().as_u16();
    let body = response.body_mut().read_json().expect("/ready is JSON");
    (status, body)
}

/// Waits until `condition` holds, checking every 50 ms; fails after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the wall clock is `offset_ms` (to half a second) into a 10 s window, so that
/// a test's taps fall where it wants them.
pub fn wait_until_into_10s_window(offset_ms: i64) {
    let phase = offset_ms..offset_ms + 500;
    wait_for(Duration::from_secs(15), "a point of a 10 s window", || {
        phase.contains(&(kafka::now_ms() % 10_000))
    });
}
