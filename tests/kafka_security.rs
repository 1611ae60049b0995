//! EmoStream against a broker that requires a login: tansu with SASL SCRAM-SHA-512. The whole
//! live path (ingest, dataflow, broadcaster and a viewer, in `up`) runs with the client
//! settings of a properties file as managed services hand it out (Java's `sasl.jaas.config`
//! line); a wrong password and an untrusted certificate are each told within 10 s, naming the
//! broker and what to check; and the password is in no log line and not in `/metrics`.
//!
//! tansu 0.6 cannot serve TLS (its `--cert` and `--key` flags exclude each other), so the
//! certificate check runs against a TLS server of the test's own (`openssl s_server`).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::now_ms;
use common::pipeline::{agent, event_json, post};
use common::service::Service;
use common::{metrics_text, path, stderr};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "Pa55-w0rd-of-the-test";

/// Runs `scripts/broker.sh ARGS` (tansu on sqlite storage, with `env`); what it printed.
fn broker(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut env = env.to_vec();
    env.extend([
        ("EMOSTREAM_BROKER_KIND", "tansu"),
        ("EMOSTREAM_BROKER_STORAGE", "sqlite://tansu.db"),
    ]);
    common::script("broker.sh", args, &env)
}

/// A tansu of the test's own that requires a login, stopped when dropped.
struct LoginBroker {
    dir: String,
    address: String,
}

impl LoginBroker {
    /// Starts one with the user `app`, whose password is [`PASSWORD`].
    fn start(dir: &Path) -> Self {
        let dir = path(dir).to_owned();
        let address = broker(&["start", &dir], &[]);
        broker(&["user", &dir, "app", PASSWORD], &[]);
        broker(&["stop", &dir], &[]);
        let again = broker(&["restart", &dir], &[("EMOSTREAM_BROKER_AUTH", "1")]);
        assert_eq!(again, address);
        LoginBroker { dir, address }
    }
}

impl Drop for LoginBroker {
    fn drop(&mut self) {
        broker(&["stop", &self.dir], &[]);
    }
}

/// Runs `emostream ARGS` until it exits (at most 20 s); its exit code, stderr and how long it
/// took.
fn run_timed(args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run emostream");
    let deadline = started + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("emostream {args:?} still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.code(), stderr(&output), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long: one deployment from start to end: the broker with its user, the live path, the viewer, then the wrong settings.
async fn the_live_path_runs_over_sasl_and_a_wrong_login_or_certificate_is_told_within_10_s() {
    let dir = tempfile::tempdir().unwrap();
    let broker = LoginBroker::start(&dir.path().join("broker"));
    let brokers = broker.address.clone();
    let settings = dir.path().join("client.properties");
    std::fs::write(
        &settings,
        format!(
            "# Required connection configs for Kafka producer, consumer, and admin\n\
             security.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"app\" password=\"{PASSWORD}\";\n\
             client.dns.lookup=use_all_dns_ips\n"
        ),
    )
    .unwrap();

    // Without the settings the broker lets nobody in.
    let (code, err, _) = run_timed(&["ingest", "--brokers", &brokers, "--listen", "127.0.0.1:0"]);
    assert_ne!(code, Some(0), "{err}");

    // The live path, every client with the settings.
    let log = dir.path().join("up.log");
    let args: Vec<String> = [
        "up",
        "--kafka-config",
        path(&settings),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--broadcast-listen",
        "127.0.0.1:0",
        "--clusters",
        "1",
        "--partitions",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let up = Service::start_logged_on(&brokers, &args, "info", &log);
    let ingest = format!("http://{}", up.ready.ingest.as_ref().unwrap());
    let broadcaster = format!("http://{}", up.ready.broadcast[0]);
    let registered: serde_json::Value = tokio::task::block_in_place(|| {
        let text = ureq::post(&format!("{broadcaster}/register"))
            .header("content-type", "application/json")
            .send(
                serde_json::json!({ "client_id": "viewer" })
                    .to_string()
                    .as_str(),
            )
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    });
    let ws_url = registered["ws_url"].as_str().unwrap().to_owned();
    let (mut viewer, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("the viewer connects");
    // Taps of the last 2.4 s (stamps ahead of the clock would count when they arrive), each
    // posted once.
    let start = now_ms() - 2_400;
    let mut sent: BTreeMap<i64, u64> = BTreeMap::new();
    let taps: Vec<String> = (0..60)
        .map(|i| {
            let ts = start + i * 40;
            *sent.entry(ts - ts.rem_euclid(2_000)).or_default() += 1;
            event_json(&format!("user-{i}"), "🔥", ts)
        })
        .collect();
    tokio::task::block_in_place(|| {
        let url = format!("{ingest}/emoji");
        let body = format!("[{}]", taps.join(","));
        let (status, body, _) = post(&agent(), &url, "application/json", &body);
        assert_eq!(status, 202, "{body}");
    });
    // The viewer sees every window's final (or its revision: a window may have closed before
    // the taps came) with what was sent in it.
    let mut finals: BTreeMap<i64, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while finals != sent {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, viewer.next())
            .await
            .unwrap_or_else(|_| panic!("finals {finals:?} of sent {sent:?} within 30 s"))
            .expect("the connection open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "window" && (frame["state"] == "final" || frame["state"] == "revised") {
            let start =
                model::timestamp::parse_timestamp(frame["window_start"].as_str().unwrap()).unwrap();
            finals.insert(start, frame["events"].as_u64().unwrap());
        }
    }
    let metrics = tokio::task::block_in_place(|| {
        metrics_text(&format!("http://{}", up.ready.dataflow.as_ref().unwrap()))
    });
    drop(up);
    let logged = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [("the log", &logged), ("/metrics", &metrics)] {
        assert!(!text.contains(PASSWORD), "the password in {what}");
    }
    assert!(
        logged.contains("sasl.password=<redacted>"),
        "the settings logged, the password redacted: {logged}"
    );

    // A wrong password: told within 10 s, naming the broker, the mechanism and what to check.
    let (code, err, took) = run_timed(&[
        "dataflow",
        "--brokers",
        &brokers,
        "--kafka-config",
        path(&settings),
        "--kafka-option",
        "sasl.password=not-the-password",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    for named in [
        brokers.as_str(),
        "SCRAM-SHA-512",
        "sasl.username and sasl.password",
    ] {
        assert!(err.contains(named), "{named} not in {err}");
    }
    assert!(
        !err.contains("not-the-password") && !err.contains(PASSWORD),
        "{err}"
    );

    // An untrusted certificate: a TLS server whose certificate another CA signed.
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    common::tls::TestCa::new(&tls, "trusted");
    let other = common::tls::TestCa::new(&tls, "other");
    let (server_cert, server_key) = other.issue("server", "127.0.0.1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &port.to_string(),
            "-cert",
            path(&server_cert),
            "-key",
            path(&server_key),
        ])
        .current_dir(&tls)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    common::wait_for(Duration::from_secs(10), "the TLS server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let address = format!("127.0.0.1:{port}");
    let ca = format!("ssl.ca.location={}", path(&tls.join("trusted.pem")));
    let (code, err, took) = run_timed(&[
        "ingest",
        "--brokers",
        &address,
        "--listen",
        "127.0.0.1:0",
        "--kafka-option",
        "security.protocol=SSL",
        "--kafka-option",
        &ca,
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    for named in [address.as_str(), "TLS handshake", "ssl.ca.location"] {
        assert!(err.contains(named), "{named} not in {err}");
    }
}
