//! The ingest API in front of a real broker: refusals and their statuses, rate limits, the bearer token, CORS, the load-test endpoint.

use crate::common;

use std::time::Duration;

use common::kafka::*;
use common::metrics_text;
use common::pipeline::*;
use common::service::Service;

#[test]
// Long: one table of bad requests, each with its expected status.
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
            "takes at most",
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
    let metrics = metrics_text(&ingest.url());
    assert!(
        metrics.contains("ingest_requests_total{status=\"429\"} 2"),
        "{metrics}"
    );
}

/// Behind a trusted load balancer each tapper's address is the one it forwards, so one
/// address at its limit does not refuse the others behind the same proxy.
#[test]
fn the_address_limit_counts_the_clients_a_trusted_proxy_forwards() {
    let pipeline = Pipeline::new("proxied");
    let ingest = start_ingest(
        &pipeline,
        &[
            "--user-rate-limit",
            "0",
            "--ip-rate-limit",
            "2",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    );
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let tap = |forwarded: &str, user: &str| {
        agent
            .post(&url)
            .header("content-type", "application/json")
            .header("x-forwarded-for", forwarded)
            .send(event_json(user, "🔥", now_ms()).as_str())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        [tap("203.0.113.1", "a"), tap("203.0.113.1", "b")],
        [202, 202]
    );
    assert_eq!(tap("203.0.113.1", "c"), 429, "that address is at its limit");
    assert_eq!(
        tap("203.0.113.2", "d"),
        202,
        "another address behind the proxy is not"
    );
}

#[test]
// Long: one scenario: every route with and without the token, then the log and the metrics.
fn a_bearer_token_guards_the_api_and_never_shows_in_logs_or_metrics() {
    const TOKEN: &str = "s3cret-ingest-token";
    let pipeline = Pipeline::new("token");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log_path = dir.path().join("ingest.log");
    let ingest = Service::start_logged(
        &[
            "ingest",
            "--listen",
            "127.0.0.1:0",
            "--linger",
            "5ms",
            "--enable-load-test",
            "--events-topic",
            &pipeline.events,
            "--ingest-token-file",
            &token_file.display().to_string(),
        ]
        .map(String::from),
        "trace",
        &log_path,
    );
    let base = ingest.url();
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
    let metrics = metrics_text(&base);
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
    let stopped = ingest.terminate(Duration::from_secs(10));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "a graceful stop on SIGTERM: {stopped:?}"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("Ingest stopped"), "{log}");
    assert!(
        !log.contains(TOKEN) && !metrics.contains(TOKEN),
        "the token leaked"
    );
}

/// With `--viewer-tokens` a tap is a viewer's only by the token its broadcaster signed: the
/// user is the token's, another `user_id` or no token is refused, and the per-user limit is
/// per viewer; a holder of the ingest token still names its users.
#[test]
// Long: one table of tokens and bodies, each with its expected status.
fn viewer_tokens_make_the_user_the_tokens_and_refuse_others() {
    use service::token::TokenSigner;
    const SECRET: &str = "viewer-token-secret";
    const TRUSTED: &str = "trusted-sender-token";
    let pipeline = Pipeline::new("viewers");
    let ingest = start_ingest(
        &pipeline,
        &[
            "--viewer-tokens",
            "--token-secret",
            SECRET,
            "--ingest-token",
            TRUSTED,
            "--user-rate-limit",
            "3",
        ],
    );
    let url = format!("{}/emoji", ingest.url());
    let agent = agent();
    let send = |authorization: Option<String>, body: &str| {
        let mut request = agent.post(&url).header("content-type", "application/json");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let mut response = request.send(body).unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), text)
    };
    let signer = TokenSigner::new(SECRET);
    let later = now_ms() + 600_000;
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let alice = bearer(signer.sign("alice", 1, later));
    let bob = bearer(signer.sign("bob", 2, later));
    let fire = r#"{"emoji_type":"🔥"}"#;
    let refused: [(Option<String>, &str, u16, &str); 6] = [
        (
            None,
            fire,
            401,
            "missing viewer token: register at a broadcaster",
        ),
        (
            bearer("nonsense".into()),
            fire,
            401,
            "viewer token refused: malformed token",
        ),
        (
            bearer(TokenSigner::new("another key").sign("alice", 1, later)),
            fire,
            401,
            "viewer token refused: invalid token signature",
        ),
        (
            bearer(signer.sign("alice", 1, now_ms() - 1)),
            fire,
            401,
            "viewer token refused: token expired",
        ),
        (
            alice.clone(),
            r#"{"user_id":"mallory","emoji_type":"🔥"}"#,
            403,
            r#"user_id \"mallory\" is not the viewer token's user \"alice\""#,
        ),
        (
            alice.clone(),
            r#"[{"emoji_type":"🔥"},{"user_id":"mallory","emoji_type":"😂"}]"#,
            403,
            r#""index":1"#,
        ),
    ];
    for (authorization, body, status, said) in refused {
        let (got, text) = send(authorization.clone(), body);
        assert_eq!(got, status, "{authorization:?} {body}: {text}");
        assert!(text.contains(said), "{authorization:?} {body}: {text}");
    }
    // Taken as the token's user, with or without the user_id; the limit is per viewer.
    assert_eq!(send(alice.clone(), fire).0, 202);
    assert_eq!(
        send(
            alice.clone(),
            r#"[{"user_id":"alice","emoji_type":"😂"},{"emoji_type":"🔥"}]"#
        )
        .0,
        202
    );
    let (status, text) = send(alice.clone(), fire);
    assert_eq!(status, 429, "{text}");
    assert!(text.contains(r#"user_id \"alice\""#), "{text}");
    assert_eq!(
        send(bob.clone(), fire).0,
        202,
        "another viewer is not limited"
    );
    // The ingest token's holder names its users.
    let server = event_json("server-side", "👏", now_ms());
    assert_eq!(send(bearer(TRUSTED.into()), &server).0, 202);
    let payloads = read_until(&pipeline.events, Duration::from_secs(5), |p| p.len() >= 5);
    let mut taken: Vec<(String, String)> = payloads
        .iter()
        .map(|p| {
            let event = serde_json::from_slice::<model::EmojiEvent>(p).unwrap();
            (event.user_id, event.emoji_type)
        })
        .collect();
    taken.sort();
    let want = [
        ("alice", "🔥"),
        ("alice", "🔥"),
        ("alice", "😂"),
        ("bob", "🔥"),
        ("server-side", "👏"),
    ]
    .map(|(u, e)| (u.to_owned(), e.to_owned()));
    assert_eq!(
        taken, want,
        "exactly the accepted taps, each as its viewer's"
    );
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
// Long: one scenario: disabled, enabled, running, done.
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
fn the_ingest_says_what_it_holds_and_that_it_stopped() {
    let pipeline = Pipeline::new("progress");
    let ingest = start_ingest(&pipeline, &[]);
    let agent = agent();
    let (status, body, _) = post(
        &agent,
        &format!("{}/emoji?ack=true", ingest.url()),
        "application/json",
        &event_json("u1", "🔥", now_ms()),
    );
    assert_eq!(status, 201, "{body}");
    let topic = model::names::ingests_topic(&pipeline.events);
    let said = |payloads: &[Vec<u8>]| -> Vec<model::progress::IngestProgress> {
        payloads
            .iter()
            .map(|p| serde_json::from_slice(p).expect("progress JSON"))
            .collect()
    };
    // Its tap acknowledged, it says it holds nothing and where the tap it stored ends (the
    // one tap, at offset 0 of its partition), naming itself by host and address.
    let stored =
        |s: &model::progress::IngestProgress| s.pending_since.is_none() && s.ends.values().eq([&1]);
    let running = said(&read_until(&topic, WAIT, |p| said(p).iter().any(stored)));
    assert!(running.iter().any(stored), "{running:?}");
    let name = running[0].ingest.clone();
    let port = ingest.url().rsplit(':').next().unwrap().to_owned();
    assert!(name.ends_with(&format!("127.0.0.1:{port}")), "{name}");
    assert!(running.iter().all(|s| s.ingest == name && !s.stopped));
    // Stopped, it says so last.
    let stopped = ingest.terminate(Duration::from_secs(15));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let all = said(&read_until(&topic, WAIT, |p| {
        said(p).iter().any(|s| s.stopped)
    }));
    let last = all.last().unwrap();
    assert!(last.stopped && last.pending_since.is_none(), "{last:?}");
}
