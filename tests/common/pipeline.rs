//! The live pipeline's pieces for the tests: its services started on free ports, HTTP
//! posts, and the windows read back from its topics.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use model::WindowSize;
use model::report::WindowMessage;

use super::expected_csv_of;
use super::kafka::*;
use super::service::Service;

/// How long a test waits for what the pipeline should produce.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` to `url` as JSON; returns the status, the body and the Retry-After header.
pub fn post(
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

pub fn event_json(user: &str, emoji: &str, ts: i64) -> String {
    serde_json::json!({"user_id": user, "emoji_type": emoji, "timestamp": model::format_rfc3339_millis(ts)}).to_string()
}

/// The reports the reference aggregator makes of `events`, as the CSV rows the tests compare.
pub fn expected_csv(dir: &Path, events: &[(String, String, i64)], lateness: Duration) -> String {
    expected_csv_of(dir, events, lateness, WindowSize::default())
}

pub fn start_dataflow(pipeline: &Pipeline, extra: &[&str]) -> Service {
    start_dataflow_on(&brokers(), pipeline, extra)
}

/// Starts `emostream dataflow` over the topics of `pipeline` on the brokers `brokers`.
pub fn start_dataflow_on(brokers: &str, pipeline: &Pipeline, extra: &[&str]) -> Service {
    Service::start_on(brokers, &dataflow_command(pipeline, extra))
}

/// Starts `emostream dataflow` over the topics of `pipeline` with the variables `env` set.
pub fn start_dataflow_with_env(
    pipeline: &Pipeline,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Service {
    Service::start_with_env(&dataflow_command(pipeline, extra), env)
}

/// Starts `emostream dataflow` over the topics of `pipeline`, logging at info into `log`.
pub fn start_dataflow_logged(pipeline: &Pipeline, extra: &[&str], log: &Path) -> Service {
    Service::start_logged(&dataflow_command(pipeline, extra), "info", log)
}

fn dataflow_command(pipeline: &Pipeline, extra: &[&str]) -> Vec<String> {
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
    args
}

pub fn start_ingest(pipeline: &Pipeline, extra: &[&str]) -> Service {
    start_ingest_on(&brokers(), pipeline, extra)
}

/// Starts `emostream ingest` into the events topic of `pipeline` on the brokers `brokers`.
pub fn start_ingest_on(brokers: &str, pipeline: &Pipeline, extra: &[&str]) -> Service {
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
    Service::start_on(brokers, &args)
}

/// Starts `emostream broadcast` for cluster 1 of `pipeline`, with a registry of its own.
pub fn start_broadcaster(pipeline: &Pipeline, name: &str) -> Service {
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
pub fn windows_through(topic: &str, last_ts: i64) -> BTreeMap<i64, WindowMessage> {
    windows_of_size_through(topic, last_ts, WindowSize::default(), WAIT)
}

/// Like [`windows_through`], for windows of `size`, waiting at most `wait`.
pub fn windows_of_size_through(
    topic: &str,
    last_ts: i64,
    size: WindowSize,
    wait: Duration,
) -> BTreeMap<i64, WindowMessage> {
    let last_start = size.start_of(last_ts);
    let payloads = read_until(topic, wait, |p| {
        windows_by_start(p).contains_key(&last_start)
    });
    let windows = windows_by_start(&payloads);
    assert!(
        windows.contains_key(&last_start),
        "{topic}: the last window was published"
    );
    windows
}

/// The messages about the window starting at `start` among `payloads`, in their order.
pub fn messages_of_window(start: i64, payloads: &[Vec<u8>]) -> Vec<WindowMessage> {
    payloads
        .iter()
        .map(|p| serde_json::from_slice::<WindowMessage>(p).unwrap())
        .filter(|m| m.report.window_start == start)
        .collect()
}
