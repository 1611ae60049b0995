//! HTTP abuse against a real ingest service: malformed and oversized bodies, slow clients,
//! floods of headers and of idle connections. Each is refused or closed, and a well-behaved
//! client is served all along.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::service::Service;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An ingest service with short timeouts and a small connection limit.
fn start() -> (Service, String) {
    start_with_header_timeout("1s")
}

fn start_with_header_timeout(header_timeout: &str) -> (Service, String) {
    let pipeline = Pipeline::new("abuse");
    let service = Service::start(
        &[
            "ingest",
            "--listen",
            "127.0.0.1:0",
            "--linger",
            "5ms",
            "--header-timeout",
            header_timeout,
            "--request-timeout",
            "2s",
            "--max-open-connections",
            "300",
            "--events-topic",
            &pipeline.events,
        ]
        .map(String::from),
    );
    let addr = service.url().trim_start_matches("http://").to_owned();
    (service, addr)
}

/// A well-behaved client: one event, answered 202.
fn served(agent: &ureq::Agent, addr: &str) -> bool {
    let event = format!(
        r#"{{"user_id":"good","emoji_type":"🔥","timestamp":{}}}"#,
        now_ms()
    );
    agent
        .post(&format!("http://{addr}/emoji"))
        .header("content-type", "application/json")
        .send(event.as_str())
        .is_ok_and(|r| r.status().as_u16() == 202)
}

fn post_raw(agent: &ureq::Agent, addr: &str, body: Vec<u8>) -> (u16, String) {
    let mut response = agent
        .post(&format!("http://{addr}/emoji"))
        .header("content-type", "application/json")
        .send(&body[..])
        .expect("a response");
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), text)
}

/// Reads until the server closes the connection (or `limit` passes); the bytes read.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(all),
        }
    }
    None
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn malformed_and_oversized_bodies_are_refused_with_a_reason() {
    let (_service, addr) = start();
    let agent = agent();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = post_raw(&agent, &addr, deep.into_bytes());
    assert_eq!(status, 400, "deep nesting: {body}");
    let event = r#"{"user_id":"u","emoji_type":"🔥"}"#;
    let many = format!("[{}]", vec![event; 10_001].join(","));
    let (status, body) = post_raw(&agent, &addr, many.into_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("10000"), "{body}");
    // Over the 1 MiB limit: refused from the headers, before the body is read.
    let mut huge = TcpStream::connect(&addr).unwrap();
    huge.write_all(
        b"POST /emoji HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 2000000\r\n\r\n[",
    )
    .unwrap();
    let answer = read_until_closed(&mut huge, Duration::from_secs(5)).expect("closed");
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut invalid = br#"{"user_id":"u"#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#"","emoji_type":"x"}"#);
    let (status, body) = post_raw(&agent, &addr, invalid);
    assert_eq!(status, 400, "{body}");
    assert!(served(&agent, &addr));
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let (_service, addr) = start();
    let agent = agent();
    // Headers that trickle in: closed once the header timeout (1 s) passes.
    let mut headers = TcpStream::connect(&addr).unwrap();
    headers
        .write_all(b"POST /emoji HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        for i in 0..40 {
            if headers
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .is_err()
            {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });
    // A body that trickles in: answered 408 once the request timeout (2 s) passes.
    let mut body = TcpStream::connect(&addr).unwrap();
    body.write_all(
        b"POST /emoji HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"user_id\":",
    )
    .unwrap();
    assert!(served(&agent, &addr), "served while two clients trickle");
    let answer = read_until_closed(&mut body, Duration::from_secs(10)).expect("closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let cut = trickle
        .join()
        .unwrap()
        .expect("the trickling headers were cut off");
    assert!(cut < Duration::from_secs(8), "cut off after {cut:?}");
    assert!(served(&agent, &addr));
}

#[test]
fn floods_of_headers_harm_no_one() {
    let (_service, addr) = start();
    let agent = agent();
    // Too many headers, and one enormous header: refused, not buffered without end.
    let mut flood = TcpStream::connect(&addr).unwrap();
    let mut request = b"POST /emoji HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        request.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let _ = flood.write_all(&request);
    let answer = read_until_closed(&mut flood, Duration::from_secs(5)).expect("closed");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let mut long = TcpStream::connect(&addr).unwrap();
    let _ = long.write_all(
        format!(
            "POST /emoji HTTP/1.1\r\nX-Long: {}\r\n\r\n",
            "y".repeat(1 << 20)
        )
        .as_bytes(),
    );
    assert!(read_until_closed(&mut long, Duration::from_secs(5)).is_some());
    assert!(served(&agent, &addr));
}

#[test]
fn idle_connections_past_the_limit_are_told_to_come_back_and_harm_no_one() {
    // The header timeout outlasts the accepting of a thousand connections on a loaded
    // machine, so the first 300 still hold their places when the others arrive.
    let (service, addr) = start_with_header_timeout("4s");
    let agent = agent();
    // Past the limit (300) answered 503 with Retry-After once no place frees within a
    // second, the others closed at the header timeout; memory stays bounded, and a
    // well-behaved client is served once places free.
    let before = resident_kib(service.child.id());
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    assert!(resident_kib(service.child.id()) < before + 64 * 1024);
    // Served once the idle ones are closed at the header timeout, if not before.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempts = 1;
    while !served(&agent, &addr) {
        assert!(Instant::now() < deadline, "not served during the flood");
        std::thread::sleep(Duration::from_millis(50));
        attempts += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut closed, mut answered) = (0, 0);
    for stream in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(said) = read_until_closed(stream, left) {
            closed += 1;
            let said = String::from_utf8_lossy(&said);
            if said.starts_with("HTTP/1.1 503") {
                assert!(said.contains("retry-after: 1\r\n"), "{said}");
                answered += 1;
            }
        }
    }
    assert_eq!(closed, 1000, "every idle connection was closed");
    // Every connection refused (past the limit while the first ones held their places) was
    // told so: the refusals counted are the idle connections answered 503, and at most the
    // well-behaved client's attempts besides.
    let refused = common::metric(&service.url(), "ingest_connections_refused_total") as usize;
    assert!(
        answered > 0,
        "none of the connections past the limit was answered"
    );
    assert!(
        (answered..=answered + attempts).contains(&refused),
        "{refused} refused, {answered} idle ones answered 503, {attempts} attempts to be served"
    );
    assert!(served(&agent, &addr));
}
