//! Broadcasters against a real broker and real WebSocket clients.

use crate::common;

use std::time::Duration;

use common::kafka::*;
use common::service::Service;
use futures_util::{SinkExt, StreamExt};
use model::report::{EmojiTotals, WindowMessage};
use model::{ReportConfig, WindowReport};
use rdkafka::producer::{BaseRecord, Producer};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "test-secret";

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A window message whose report lists `emojis` emojis (to make frames larger).
fn window(seq: i64, emojis: usize) -> WindowMessage {
    let totals = (0..emojis).map(|i| EmojiTotals {
        emoji: format!("emoji-{i:05}-{}", "x".repeat(60)),
        count: 1 + i as u64,
        unique_users: 1,
    });
    let report = WindowReport::build(
        seq * 2000,
        seq * 2000 + 2000,
        100,
        10,
        totals,
        &ReportConfig::default(),
    );
    WindowMessage::final_of(report, seq)
}

fn publish(topic: &str, windows: &[WindowMessage]) {
    let producer = producer();
    for w in windows {
        let payload = serde_json::to_vec(w).unwrap();
        let key = w.seq.to_string();
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&payload))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Starts `emostream broadcast` for cluster 1 of `prefix`, with the test registry and secret.
/// A free port unless `extra` names one with `--listen`.
fn start_broadcaster(prefix: &str, extra: &[&str]) -> Service {
    let registry = format!("{prefix}-registry");
    let mut args: Vec<String> = ["broadcast", "--cluster-prefix", prefix]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--listen") {
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    args.extend([
        "--registry-topic".to_owned(),
        registry,
        "--token-secret".to_owned(),
        SECRET.to_owned(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Service::start(&args)
}

struct Cluster {
    prefix: String,
    topic: String,
    service: Service,
}

impl Cluster {
    /// A fresh cluster topic (one partition), with `before` windows already in it.
    fn start(name: &str, before: &[WindowMessage], extra: &[&str]) -> Self {
        let prefix = format!("{}-cluster", unique(name));
        let topic = format!("{prefix}1");
        create_topic(&topic, 1);
        publish(&topic, before);
        let service = start_broadcaster(&prefix, extra);
        Cluster {
            prefix,
            topic,
            service,
        }
    }

    fn ws_url(&self) -> String {
        self.service.ws_url()
    }

    /// Registers `client` and returns the reply.
    fn register(&self, client: &str) -> serde_json::Value {
        register(&self.service, client)
    }

    /// A registered client's URL, token included.
    fn client_url(&self, client: &str) -> String {
        self.register(client)["ws_url"].as_str().unwrap().to_owned()
    }

    fn http(&self, path: &str) -> String {
        let url = format!(
            "{}{path}",
            self.ws_url().replace("ws://", "http://").replace("/ws", "")
        );
        tokio::task::block_in_place(|| {
            ureq::get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        })
    }
}

/// Registers `client` with the broadcaster `service` and returns the reply.
fn register(service: &Service, client: &str) -> serde_json::Value {
    let url = format!("{}/register", service.url());
    let body = serde_json::json!({ "client_id": client }).to_string();
    tokio::task::block_in_place(|| {
        let text = ureq::post(&url)
            .header("content-type", "application/json")
            .send(body.as_str())
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

/// A free local address, to start a broadcaster again where it was.
fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The next text frame as JSON.
async fn next_json(client: &mut Client) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a frame in time");
        match message.expect("open").expect("a message") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The close frame's code, after any other frames.
async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return Some(frame.code.into()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_a_snapshot_then_every_window_in_order_with_identical_content() {
    let cluster = Cluster::start("fanout", &[window(1, 3)], &[]);
    let url = cluster.client_url("viewer");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = connect(&url).await;
        let hello = next_json(&mut client).await;
        assert_eq!(
            (
                hello["type"].as_str(),
                hello["cluster"].as_u64(),
                hello["snapshot"].as_u64()
            ),
            (Some("hello"), Some(1), Some(1)),
            "hello names the snapshot's windows"
        );
        let snapshot = next_json(&mut client).await;
        assert_eq!(
            (snapshot["type"].as_str(), snapshot["seq"].as_i64()),
            (Some("window"), Some(1))
        );
        assert_eq!(snapshot["window_start"], "1970-01-01T00:00:02.000Z");
        clients.push(client);
    }
    let windows: Vec<WindowMessage> = (2..=6).map(|s| window(s, 3)).collect();
    let topic = cluster.topic.clone();
    tokio::task::spawn_blocking(move || publish(&topic, &windows))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for client in &mut clients {
        let mut frames = Vec::new();
        for _ in 2..=6 {
            frames.push(next_json(client).await);
        }
        let seqs: Vec<i64> = frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [2, 3, 4, 5, 6], "in order");
        seen.push(frames);
    }
    assert!(
        seen.windows(2).all(|p| p[0] == p[1]),
        "every client got the same content"
    );
    assert!(cluster.http("/metrics").contains("broadcast_connections 3"));
    // 3 snapshots of 1 window and 15 live frames were sent; the fan-out and delivery
    // histograms time the live ones only (a snapshot's age is the ring's, not the fan-out's).
    common::wait_for(WAIT, "every frame counted", || {
        cluster
            .http("/metrics")
            .contains("broadcast_frames_sent_total 18")
    });
    let metrics = cluster.http("/metrics");
    assert!(
        metrics.contains("broadcast_fan_out_seconds_count 15"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_disconnect_delivers_the_missed_windows() {
    let cluster = Cluster::start("resume", &[window(1, 1)], &[]);
    let url = cluster.client_url("viewer");
    let mut client = connect(&url).await;
    assert_eq!(next_json(&mut client).await["type"], "hello");
    assert_eq!(next_json(&mut client).await["seq"], 1);
    client.close(None).await.unwrap();
    let topic = cluster.topic.clone();
    tokio::task::spawn_blocking(move || {
        publish(&topic, &[window(2, 1), window(3, 1), window(4, 1)])
    })
    .await
    .unwrap();
    // Wait until the broadcaster has the newest window: a new client's snapshot shows it.
    let mut probe = connect(&url).await;
    next_json(&mut probe).await;
    let mut latest = next_json(&mut probe).await;
    while latest["seq"] != 4 {
        latest = next_json(&mut probe).await;
    }
    let mut back = connect(&url).await;
    let hello = next_json(&mut back).await;
    assert_eq!(
        (hello["type"].as_str(), hello["snapshot"].as_u64()),
        (Some("hello"), Some(4))
    );
    let mut snapshot = Vec::new();
    for _ in 0..4 {
        snapshot.push(next_json(&mut back).await["seq"].as_i64().unwrap());
    }
    assert_eq!(
        snapshot,
        [1, 2, 3, 4],
        "the snapshot is every window in the ring"
    );
    back.send(Message::text(r#"{"type":"resume","last_seq":1}"#))
        .await
        .unwrap();
    let announced = next_json(&mut back).await;
    assert_eq!(
        (announced["type"].as_str(), announced["windows"].as_u64()),
        (Some("resumed"), Some(3))
    );
    let resumed: Vec<i64> = [
        next_json(&mut back).await,
        next_json(&mut back).await,
        next_json(&mut back).await,
    ]
    .iter()
    .map(|f| f["seq"].as_i64().unwrap())
    .collect();
    assert_eq!(
        resumed,
        [2, 3, 4],
        "the windows after the last one seen, from the ring"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_while_another_keeps_receiving() {
    let cluster = Cluster::start("slow", &[], &["--write-timeout", "1s"]);
    let url = cluster.client_url("viewer");
    let mut good = connect(&url).await;
    assert_eq!(next_json(&mut good).await["type"], "hello");
    // The slow client reads its hello and then nothing more.
    let mut slow = connect(&url).await;
    assert_eq!(next_json(&mut slow).await["type"], "hello");
    // Large windows (about 40 KB each), one every 20 ms: the slow client's socket fills up.
    let topic = cluster.topic.clone();
    let feeder = tokio::task::spawn_blocking(move || {
        for seq in 1..=200 {
            publish(&topic, &[window(seq, 400)]);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    for seq in 1..=200 {
        assert_eq!(
            next_json(&mut good).await["seq"],
            seq,
            "the reading client gets every window in order"
        );
    }
    feeder.await.unwrap();
    let metrics = cluster.http("/metrics");
    let dropped = |reason: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "broadcast_disconnects_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        dropped("not_reading") + dropped("too_far_behind"),
        1,
        "{metrics}"
    );
    assert!(metrics.contains("broadcast_connections 1"), "{metrics}");
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_closed_with_a_reason_and_harms_no_one() {
    let cluster = Cluster::start("bad", &[window(1, 1)], &[]);
    let url = cluster.client_url("viewer");
    let mut bystander = connect(&url).await;
    next_json(&mut bystander).await;
    next_json(&mut bystander).await;
    // A page's own liveness check is answered (its browser cannot see WebSocket pings).
    bystander
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut bystander).await["type"], "pong");
    let cases: Vec<(Message, u16)> = vec![
        (Message::text("hello there"), 1008),
        (Message::text(r#"{"type":"resume"}"#), 1008),
        (Message::binary(vec![1, 2, 3]), 1003),
        (Message::text("x".repeat(10_000)), 1009),
    ];
    for (message, code) in cases {
        let mut client = connect(&url).await;
        next_json(&mut client).await;
        next_json(&mut client).await;
        let _ = client.send(message).await;
        assert_eq!(close_code(&mut client).await, Some(code));
    }
    // A handshake without the WebSocket headers is refused.
    let http_url = url.replace("ws://", "http://");
    let plain = tokio::task::block_in_place(|| {
        ureq::get(&http_url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
    });
    assert_eq!(plain.status(), 400);
    let topic = cluster.topic.clone();
    tokio::task::spawn_blocking(move || publish(&topic, &[window(2, 1)]))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut bystander).await["seq"],
        2,
        "others keep receiving"
    );
    let _ = cluster.prefix;
}

/// A viewer's id is the broadcaster's: a new one for each registration without a token,
/// the same for one with an earlier token (expired, within a day); a forged token is refused;
/// new viewers per address are limited, renewals are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_ids_are_the_broadcasters_and_kept_by_their_token() {
    let cluster = Cluster::start(
        "viewer-ids",
        &[window(1, 1)],
        &["--new-viewer-rate-limit", "2"],
    );
    let url = format!("{}/register", cluster.service.url());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let register = |body: &str, token: Option<&str>| {
        let mut request = agent.post(&url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let mut response = tokio::task::block_in_place(|| request.send(body).unwrap());
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), text, retry)
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let (status, first, _) = register(r#"{"client_id":"victim"}"#, None);
    assert_eq!(status, 200, "{first}");
    let first = json(&first);
    let id = first["client_id"].as_str().unwrap().to_owned();
    assert_ne!(id, "victim", "the id asked for is not the one given");
    let (status, second, _) = register("{}", None);
    assert_eq!(status, 200, "{second}");
    assert_ne!(
        json(&second)["client_id"],
        id.as_str(),
        "a new viewer each time"
    );
    // The earlier token keeps the viewer, and is not a new viewer for the limit.
    for _ in 0..3 {
        let (status, again, _) = register("{}", first["token"].as_str());
        assert_eq!(status, 200, "{again}");
        assert_eq!(json(&again)["client_id"], id.as_str());
    }
    let signer = service::token::TokenSigner::new(SECRET);
    let lately = signer.sign("old-viewer", 1, model::now_ms() - 3_600_000);
    let (status, again, _) = register("{}", Some(&lately));
    assert_eq!(
        (status, json(&again)["client_id"].clone()),
        (200, "old-viewer".into())
    );
    let long_ago = signer.sign("old-viewer", 1, model::now_ms() - 25 * 3_600_000);
    let (status, said, _) = register("{}", Some(&long_ago));
    assert_eq!(status, 401, "{said}");
    assert!(said.contains("more than a day ago"), "{said}");
    let forged =
        service::token::TokenSigner::new("another key").sign("victim", 1, model::now_ms() + 60_000);
    let (status, said, _) = register("{}", Some(&forged));
    assert_eq!(status, 401, "{said}");
    assert!(said.contains("invalid token signature"), "{said}");
    // A third new viewer from this address within the second: told when to come back.
    let (status, said, retry) = register("{}", None);
    assert_eq!(status, 429, "{said}");
    assert!(said.contains("too many new viewers"), "{said}");
    assert_eq!(retry.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_forged_token_is_refused() {
    let cluster = Cluster::start("token", &[window(1, 1)], &[]);
    let bare = cluster.ws_url();
    let good = cluster.client_url("viewer");
    let token = good.split("token=").nth(1).unwrap().to_owned();
    let forged = format!("{bare}?token={}", token.replacen('.', "9.", 1));
    for url in [bare.clone(), forged, format!("{bare}?token=nonsense")] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{url}")
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    let mut client = connect(&good).await;
    assert_eq!(next_json(&mut client).await["type"], "hello");
    assert!(
        cluster
            .http("/metrics")
            .contains("broadcast_refused_total 3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_balances_two_broadcasters_and_drops_a_dead_one() {
    let first = Cluster::start("balance", &[], &[]);
    // A second broadcaster for the same cluster needs nothing but starting it.
    let second = start_broadcaster(&first.prefix, &[]);
    let second_url = second.ws_url();
    // Wait until the first broadcaster has heard the second.
    let deadline = std::time::Instant::now() + WAIT;
    while !first.client_url(&unique("probe")).starts_with(&second_url) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second broadcaster was never assigned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rendezvous hashing: each viewer goes to either with even odds (400 of them: outside
    // 160..=240 once in 20,000 runs).
    let mut on_second = 0;
    for i in 0..400 {
        let reply = first.register(&format!("viewer-{i}"));
        assert_eq!(reply["cluster"], 1);
        if reply["ws_url"].as_str().unwrap().starts_with(&second_url) {
            on_second += 1;
        }
    }
    assert!(
        (160..=240).contains(&on_second),
        "{on_second} of 400 on the second broadcaster"
    );
    // The second one dies: within 10 s it gets no more clients.
    second.kill();
    let late: Vec<String> = (0..20).map(|i| format!("late-{i}")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while late
        .iter()
        .any(|id| first.client_url(id).starts_with(&second_url))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a dead broadcaster was still assigned after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two broadcasters of one cluster with different `--token-secret`s: neither is sent the
/// other's viewers (who would be refused with 401), and both say so in their logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcaster_of_another_token_key_is_sent_no_viewers_and_both_say_so() {
    let prefix = format!("{}-cluster", unique("keys"));
    create_topic(&format!("{prefix}1"), 1);
    let dir = tempfile::tempdir().unwrap();
    let start = |secret: &str, log: &std::path::Path| {
        let args: Vec<String> = [
            "broadcast",
            "--cluster-prefix",
            &prefix,
            "--listen",
            "127.0.0.1:0",
            "--registry-topic",
            &format!("{prefix}-registry"),
            "--token-secret",
            secret,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        Service::start_logged(&args, "warn", log)
    };
    let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let first = start(SECRET, &first_log);
    let second = start("another-secret", &second_log);
    let said = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("A broadcaster with another token key is on the registry")
    };
    // Each hears the other's announcements (every 500 ms) and says so.
    common::wait_for(WAIT, "both broadcasters saying the keys differ", || {
        said(&first_log) && said(&second_log)
    });
    let ws_url = |service: &Service, client: &str| -> String {
        register(service, client)["ws_url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for i in 0..100 {
        let viewer = format!("viewer-{i}");
        assert!(
            ws_url(&first, &viewer).starts_with(&first.ws_url()),
            "{viewer}"
        );
        assert!(
            ws_url(&second, &viewer).starts_with(&second.ws_url()),
            "{viewer}"
        );
    }
}

/// A broadcaster behind a TLS proxy hands out the address viewers use (`--public-url`), and
/// one listening on every interface without it refuses to start, saying what to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_hands_out_the_public_url_and_every_interface_needs_one() {
    let prefix = format!("{}-cluster", unique("public"));
    create_topic(&format!("{prefix}1"), 1);
    let args = |listen: &str, public: &[&str]| -> Vec<String> {
        [
            "broadcast",
            "--cluster-prefix",
            &prefix,
            "--listen",
            listen,
            "--registry-topic",
            &format!("{prefix}-registry"),
            "--token-secret",
            SECRET,
        ]
        .iter()
        .chain(public)
        .map(|s| (*s).to_owned())
        .collect()
    };
    let behind = Service::start(&args(
        "127.0.0.1:0",
        &["--public-url", "https://live.example.com/c1/"],
    ));
    let url = register(&behind, "viewer")["ws_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("wss://live.example.com/c1/ws?"),
        "handed out {url}"
    );
    let refused = tokio::task::block_in_place(|| {
        common::emostream(
            &args("0.0.0.0:0", &[])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    });
    assert!(!refused.status.success());
    let said = common::stderr(&refused);
    assert!(
        said.contains("every interface") && said.contains("--public-url"),
        "{said}"
    );
    let bad = tokio::task::block_in_place(|| {
        common::emostream(
            &args("127.0.0.1:0", &["--public-url", "live.example.com/c1"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(bad.status.code(), Some(2), "{}", common::stderr(&bad));
    assert!(common::stderr(&bad).contains("--public-url"));
}

/// A signed connection URL for `client` at the broadcaster of `cluster`, made here (no
/// registration: its HTTP connection would take a place of its own).
fn signed_url(cluster: &Cluster, client: &str) -> String {
    let token = service::token::TokenSigner::new(SECRET).sign(client, 1, model::now_ms() + 600_000);
    format!("{}?token={token}", cluster.ws_url())
}

/// A handshake past the limit of those in progress waits its turn, and is answered 503 with
/// Retry-After (which a client can tell from a server that is gone) when none comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_past_the_limit_waits_its_turn_or_is_told_when_to_come_back() {
    use tokio_tungstenite::tungstenite::Error;
    let cluster = Cluster::start("handshakes", &[window(1, 1)], &["--max-handshakes", "1"]);
    let url = signed_url(&cluster, "viewer");
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // A connection that sends nothing holds the one place (until the header timeout); the
    // handshake after it (accepted in order) waits for its turn, and when none comes within
    // a second, it is answered 503 with Retry-After.
    let holder = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let refused = match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(Error::Http(response)) => response,
        Err(other) => panic!("not an HTTP answer: {other}"),
        Ok(_) => panic!("taken past the limit"),
    };
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = String::from_utf8_lossy(refused.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("connection limit"), "{body}");
    // A handshake whose turn comes while it waits is taken, not refused.
    let waiting = tokio::spawn({
        let url = url.clone();
        async move { tokio_tungstenite::connect_async(url.as_str()).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(holder);
    let (mut client, _) = waiting.await.unwrap().expect("taken in its turn");
    assert_eq!(next_json(&mut client).await["type"], "hello");
    let metrics = cluster.http("/metrics");
    assert!(metrics.contains("broadcast_refused_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("broadcast_handshakes_waiting 0\n"),
        "{metrics}"
    );
}

/// A reconnect storm at a small scale: far more viewers than handshakes in progress come at
/// once; each is taken in its turn or told when to come back (never a connection closed
/// without an answer), and all are connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_viewers_past_the_handshake_limit_all_connect_and_none_is_hung_up_on() {
    use tokio_tungstenite::tungstenite::Error;
    const VIEWERS: usize = 2000;
    let cluster = Cluster::start(
        "burst",
        &[window(1, 1)],
        &["--max-handshakes", "20", "--max-connections-per-ip", "0"],
    );
    let url = signed_url(&cluster, "viewer");
    let started = std::time::Instant::now();
    let viewers = (0..VIEWERS).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let (mut answered_503, mut hung_up) = (0, 0);
            loop {
                match tokio_tungstenite::connect_async(url.as_str()).await {
                    Ok((client, _)) => return (client, answered_503, hung_up),
                    Err(Error::Http(response)) if response.status() == 503 => {
                        answered_503 += 1;
                        let seconds: u64 = response.headers()["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(seconds)).await;
                    }
                    Err(other) => {
                        hung_up += 1;
                        assert!(hung_up < 50, "hung up on again and again: {other}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    });
    let mut clients = Vec::new();
    let (mut answered_503, mut hung_up) = (0, 0);
    for viewer in futures_util::future::join_all(viewers).await {
        let (client, answered, hung) = viewer.unwrap();
        clients.push(client);
        answered_503 += answered;
        hung_up += hung;
    }
    eprintln!(
        "{VIEWERS} viewers at once, 20 handshakes at a time: all connected after {:?}, {answered_503} answered 503, {hung_up} hung up on",
        started.elapsed()
    );
    assert_eq!(hung_up, 0, "a handshake closed without an answer");
    for client in clients.iter_mut().take(10) {
        assert_eq!(next_json(client).await["type"], "hello");
    }
    let metrics = cluster.http("/metrics");
    assert!(
        metrics.contains(&format!("broadcast_connections {VIEWERS}\n")),
        "{metrics}"
    );
}

/// Behind a trusted proxy each viewer is its own address for the per-address limit (the one
/// the proxy forwards); a header from anyone else is not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_behind_a_trusted_proxy_are_counted_by_the_address_it_forwards() {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let refused_with = |result: Result<_, Error>| match result {
        Err(Error::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("not refused"),
        Err(other) => panic!("not an HTTP refusal: {other}"),
    };
    for (trusted, name) in [(true, "proxied"), (false, "unproxied")] {
        let mut extra = vec!["--max-connections-per-ip", "1"];
        if trusted {
            extra.extend(["--trusted-proxies", "127.0.0.0/8"]);
        }
        let cluster = Cluster::start(name, &[window(1, 1)], &extra);
        let url = cluster.client_url("viewer");
        let request = |forwarded: &str| {
            let mut request = url.as_str().into_client_request().unwrap();
            request
                .headers_mut()
                .insert("x-forwarded-for", forwarded.parse().unwrap());
            request
        };
        let mut first = tokio_tungstenite::connect_async(request("203.0.113.1"))
            .await
            .unwrap()
            .0;
        assert_eq!(next_json(&mut first).await["type"], "hello");
        let second = tokio_tungstenite::connect_async(request("203.0.113.2")).await;
        if trusted {
            // Another viewer behind the proxy has a place of its own; the same one does not.
            let mut second = second.unwrap().0;
            assert_eq!(next_json(&mut second).await["type"], "hello");
            let again = tokio_tungstenite::connect_async(request("6.6.6.6, 203.0.113.1")).await;
            assert_eq!(refused_with(again.map(|_| ())), 429);
        } else {
            // Not a trusted proxy: both come from 127.0.0.1, whatever the header says.
            assert_eq!(refused_with(second.map(|_| ())), 429);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long: one scenario: each refusal in turn.
async fn other_origins_and_too_many_connections_from_one_address_are_refused() {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let cluster = Cluster::start(
        "limits",
        &[window(1, 1)],
        &[
            "--ws-origins",
            "https://match.example",
            "--max-connections-per-ip",
            "2",
        ],
    );
    let url = cluster.client_url("viewer");
    let request = |origin: Option<&str>| {
        let mut request = url.as_str().into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        request
    };
    let refused_with = |result: Result<_, Error>| match result {
        Err(Error::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("not refused"),
        Err(other) => panic!("not an HTTP refusal: {other}"),
    };
    // A page of another site is refused; the allowed site's page and tools are not.
    let other = tokio_tungstenite::connect_async(request(Some("https://elsewhere.example"))).await;
    assert_eq!(refused_with(other.map(|_| ())), 403);
    let mut page = tokio_tungstenite::connect_async(request(Some("https://match.example")))
        .await
        .unwrap()
        .0;
    let mut tool = connect(&url).await;
    for client in [&mut page, &mut tool] {
        assert_eq!(next_json(client).await["type"], "hello");
        assert_eq!(next_json(client).await["seq"], 1);
    }
    // The embed module: the listed site's pages may load it, others' may not.
    let module = |origin: &str| {
        let url = url.split("/ws").next().unwrap().replace("ws://", "http://");
        tokio::task::block_in_place(|| {
            ureq::get(&format!("{url}/emostream.js"))
                .header("origin", origin)
                .call()
                .unwrap()
        })
    };
    let allowed = module("https://match.example");
    assert_eq!(
        allowed.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://match.example"
    );
    assert!(
        module("https://elsewhere.example")
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // A third connection from the address is refused, and the two keep receiving.
    let third = tokio_tungstenite::connect_async(request(None)).await;
    assert_eq!(refused_with(third.map(|_| ())), 429);
    let topic = cluster.topic.clone();
    tokio::task::spawn_blocking(move || publish(&topic, &[window(2, 1)]))
        .await
        .unwrap();
    for client in [&mut page, &mut tool] {
        assert_eq!(next_json(client).await["seq"], 2);
    }
    assert!(
        cluster
            .http("/metrics")
            .contains("broadcast_refused_total 2")
    );
    // Once one leaves, its place is free again.
    tool.close(None).await.unwrap();
    let _ = close_code(&mut tool).await;
    let mut again = connect_once_free(|| request(None)).await;
    assert_eq!(next_json(&mut again).await["type"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broadcaster_lets_its_clients_resume_what_they_missed() {
    // A fixed port, so the client finds the restarted broadcaster where it was.
    let listen = free_address();
    let cluster = Cluster::start("restart", &[window(1, 1)], &["--listen", &listen]);
    let url = cluster.client_url("viewer");
    let mut client = connect(&url).await;
    assert_eq!(next_json(&mut client).await["type"], "hello");
    assert_eq!(next_json(&mut client).await["seq"], 1);
    let topic = cluster.topic.clone();
    tokio::task::spawn_blocking(move || publish(&topic, &[window(2, 1), window(3, 1)]))
        .await
        .unwrap();
    let mut last_seq = 1;
    while last_seq < 3 {
        last_seq = next_json(&mut client).await["seq"].as_i64().unwrap();
    }
    // Killed; windows go on while it is down; started again with the same flags.
    let Cluster {
        prefix,
        topic,
        service,
    } = cluster;
    service.kill();
    let missed = topic.clone();
    tokio::task::spawn_blocking(move || {
        publish(&missed, &[window(4, 1), window(5, 1), window(6, 1)])
    })
    .await
    .unwrap();
    let _restarted = start_broadcaster(&prefix, &["--listen", &listen]);
    // The client reconnects (its token is still good: the same secret signs it) and resumes.
    let deadline = std::time::Instant::now() + WAIT;
    let mut back = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((client, _)) => break client,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("no broadcaster to reconnect to: {error}"),
        }
    };
    // It read its ring back before taking connections: the snapshot holds every window.
    let hello = next_json(&mut back).await;
    assert_eq!(hello["type"], "hello");
    let mut snapshot = Vec::new();
    for _ in 0..hello["snapshot"].as_u64().unwrap() {
        snapshot.push(next_json(&mut back).await["seq"].as_i64().unwrap());
    }
    assert_eq!(snapshot, [1, 2, 3, 4, 5, 6]);
    back.send(Message::text(format!(
        r#"{{"type":"resume","last_seq":{last_seq}}}"#
    )))
    .await
    .unwrap();
    assert_eq!(next_json(&mut back).await["type"], "resumed");
    let mut resumed = Vec::new();
    for _ in 4..=6 {
        resumed.push(next_json(&mut back).await["seq"].as_i64().unwrap());
    }
    assert_eq!(resumed, [4, 5, 6], "what it missed, after its last window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long: one fault scenario: clients, a kill, a restart, and every window counted.
async fn the_load_tool_reconnects_to_a_restarted_broadcaster_and_misses_no_window() {
    let listen = free_address();
    let cluster = Cluster::start("wsload-restart", &[], &["--listen", &listen]);
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("wsload.json");
    // 20 clients in `make test`, 1000 in `make chaos`.
    let clients = if common::chaos_long() { 1000 } else { 20 };
    // Feeds a window every 2 s into the cluster topic while its clients listen.
    let mut load = std::process::Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(["wsload", "--register", &format!("http://{listen}")])
        .args(["--clients", &clients.to_string(), "--duration", "14s"])
        .args(["--feed-topic", &cluster.topic, "--brokers", &brokers()])
        .arg("--summary-json")
        .arg(&summary)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !cluster
        .http("/metrics")
        .contains(&format!("broadcast_connections {clients}"))
    {
        assert!(std::time::Instant::now() < deadline, "the clients connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let windows_received = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("broadcast_windows_received_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    while windows_received(&cluster.http("/metrics")) < 2 {
        assert!(std::time::Instant::now() < deadline, "fed windows arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Killed while windows go on, started again a few seconds later with the same flags.
    let Cluster {
        prefix, service, ..
    } = cluster;
    service.kill();
    // Two or three windows while it is down: a snapshot alone would miss some.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart = std::time::Instant::now();
    let restarted = start_broadcaster(&prefix, &["--listen", &listen]);
    let up_seconds = restart.elapsed().as_secs_f64();
    let status = tokio::task::spawn_blocking(move || load.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(report["connected"], clients, "{report}");
    assert_eq!(
        report["reconnects"], clients,
        "every client came back: {report}"
    );
    let windows = report["windows"].as_u64().unwrap();
    assert!(
        windows >= 4,
        "windows before, during and after the restart: {report}"
    );
    assert_eq!(
        report["complete_windows"].as_u64().unwrap(),
        windows,
        "every client got every window: {report}"
    );
    common::record_figures(
        "broadcaster-killed",
        &serde_json::json!({
            "fault": "broadcaster SIGKILL, started again after 5 s",
            "clients": clients,
            "reconnects": report["reconnects"],
            "longest_reconnect_ms": report["reconnect_max_ms"],
            "restarted_broadcaster_up_seconds": up_seconds,
            "windows": windows,
            "windows_every_client_got": report["complete_windows"],
        }),
    );
    drop(restarted);
}

/// CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state, then 10 fields, then utime and stime.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A broadcaster out of file descriptors waits between accepts instead of spinning on the
/// listener (which stays readable), and serves again once connections end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_the_broadcaster_waits_instead_of_spinning() {
    let cluster = Cluster::start("fdlimit", &[], &[]);
    let pid = cluster.service.child.id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = (open + 10).to_string();
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit failed");
    let addr = cluster.service.ready.broadcast[0].clone();
    // More connections than descriptors left: the rest wait in the listen backlog.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Until every descriptor is taken.
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
        < open + 10
    {
        assert!(
            std::time::Instant::now() < deadline,
            "descriptors never ran out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - before;
    // A loop retrying the accept at once takes a whole core: about 200 ticks in 2 s.
    assert!(
        spent < 60,
        "{spent} ticks of CPU in 2 s at the open-file limit"
    );
    drop(idle);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let health = tokio::task::block_in_place(|| {
            ureq::get(&format!("http://{addr}/health"))
                .config()
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .call()
                .map(|r| r.status().as_u16())
        });
        if health.as_ref().is_ok_and(|&s| s == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not serving again: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A broadcaster at `--max-clients` refuses the next handshake with 503, and its place is
/// free again once a client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_broadcaster_refuses_with_503_until_a_client_leaves() {
    use tokio_tungstenite::tungstenite::Error;
    let cluster = Cluster::start("full", &[window(1, 1)], &["--max-clients", "2"]);
    let url = cluster.client_url("viewer");
    let mut first = connect(&url).await;
    let mut second = connect(&url).await;
    for client in [&mut first, &mut second] {
        assert_eq!(next_json(client).await["type"], "hello");
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("--max-clients"), "{body}");
        }
        Ok(_) => panic!("a third client was let in"),
        Err(other) => panic!("not an HTTP refusal: {other}"),
    }
    second.close(None).await.unwrap();
    let _ = close_code(&mut second).await;
    let mut third = connect_once_free(|| url.as_str()).await;
    assert_eq!(next_json(&mut third).await["type"], "hello");
}

/// Connects with the handshake `request` makes once a place is free (a client that left has
/// given its place back), within [`WAIT`].
async fn connect_once_free<R>(
    request: impl Fn() -> R,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
where
    R: tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(request()).await {
            Ok((client, _)) => return client,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("the place was not freed: {error}"),
        }
    }
}
