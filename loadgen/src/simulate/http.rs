//! The HTTP driver: requests due at their scheduled times, each on a task of its own, over a
//! pool of keep-alive connections that grows when every connection is busy.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use model::now_ms;

use super::tally::{SimulateReport, Tally};
use super::tap_to_swarm::Tap;
use super::{SimulateConfig, event_json, traffic};
use crate::generator::GeneratedEvent;

/// Schedules the requests and sends each on a task of its own at its time.
pub(super) async fn offer_http(
    config: &SimulateConfig,
    addr: String,
    ack: bool,
    tally: Arc<Tally>,
) -> SimulateReport {
    let mut report = SimulateReport::default();
    let warm = futures_util::future::join_all(
        (0..config.connections.max(1)).map(|_| connect(&addr, &tally)),
    )
    .await;
    let pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> = Arc::new(Mutex::new(
        warm.into_iter().filter_map(Result::ok).collect(),
    ));
    // A request holds a permit while it uses a connection: connections never outnumber them.
    let permits = Arc::new(tokio::sync::Semaphore::new(
        config.max_connections.max(config.connections).max(1),
    ));
    let path: &'static str = if ack { "/emoji?ack=true" } else { "/emoji" };
    let start = Instant::now() + Duration::from_millis(100);
    let start_ms = now_ms() + 100;
    let mut senders = tokio::task::JoinSet::new();
    let mut send_lag = Duration::ZERO;
    for planned in planned_requests(config, start_ms, tally.follows_taps()) {
        let (events, taps) = (planned.events, planned.taps);
        report.events_offered += events;
        report.last_event_ms = report.last_event_ms.max(planned.last_tap_ms);
        let due = start + planned.after;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        send_lag = send_lag.max(due.elapsed());
        if tally.in_flight.load(Ordering::Relaxed) >= config.max_in_flight as u64 {
            report.overloaded += events;
            continue;
        }
        while senders.try_join_next().is_some() {}
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let request = Request::post(path)
            .header("host", addr.as_str())
            .header("content-type", "application/json")
            .body(Full::new(planned.body))
            .expect("a valid request");
        let (pool, tally, addr, permits) = (
            Arc::clone(&pool),
            Arc::clone(&tally),
            addr.clone(),
            Arc::clone(&permits),
        );
        senders.spawn(async move {
            let _permit = permits.acquire().await;
            let status = send(&pool, &addr, &tally, request).await;
            tally.answered(status, events, &taps, due);
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while senders.join_next().await.is_some() {}
    report.send_lag_max_ms = send_lag.as_secs_f64() * 1e3;
    report
}

/// One request of the schedule.
struct Planned {
    /// When it is due, after the start.
    after: Duration,
    body: Bytes,
    events: u64,
    /// Its events, when the tally follows taps (empty with a body pool: the server stamps
    /// those).
    taps: Vec<Tap>,
    /// Its latest tap time, UTC ms.
    last_tap_ms: i64,
}

/// The requests of the simulation in schedule order: the traffic's events, `batch` to a
/// request, each request due when its last event arrives; or, with a body pool, the pool's
/// bodies over and over at an even pace. With `follow_taps`, each says which taps it carries.
fn planned_requests(
    config: &SimulateConfig,
    start_ms: i64,
    follow_taps: bool,
) -> Box<dyn Iterator<Item = Planned> + Send> {
    let batch = config.batch.max(1);
    let encode = move |events: &[GeneratedEvent], stamped: bool| {
        let mut body = String::with_capacity(96 * events.len() + 2);
        if batch > 1 {
            body.push('[');
        }
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            event_json(&mut body, event, stamped);
        }
        if batch > 1 {
            body.push(']');
        }
        Bytes::from(body)
    };
    if config.body_pool > 0 {
        let events: Vec<GeneratedEvent> = traffic(
            &SimulateConfig {
                duration: Duration::from_secs(3600),
                ..config.clone()
            },
            start_ms,
        )
        .take(config.body_pool * batch)
        .collect();
        let bodies: Vec<Bytes> = events.chunks(batch).map(|c| encode(c, false)).collect();
        let every = batch as f64 / config.rate;
        let total = (config.duration.as_secs_f64() / every).round() as usize;
        return Box::new((0..total).map(move |j| Planned {
            after: Duration::from_secs_f64(j as f64 * every),
            body: bodies[j % bodies.len()].clone(),
            events: batch as u64,
            taps: Vec::new(),
            last_tap_ms: start_ms + (j as f64 * every * 1e3) as i64,
        }));
    }
    let mut events = traffic(config, start_ms);
    let mut chunk = Vec::with_capacity(batch);
    Box::new(std::iter::from_fn(move || {
        chunk.clear();
        chunk.extend(events.by_ref().take(batch));
        let last = chunk.last()?;
        Some(Planned {
            after: Duration::from_millis((last.arrival_ms - start_ms).max(0) as u64),
            body: encode(&chunk, true),
            events: chunk.len() as u64,
            taps: if follow_taps {
                chunk
                    .iter()
                    .map(|e| Tap {
                        timestamp_ms: e.timestamp_ms,
                        emoji: e.emoji,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            last_tap_ms: chunk.iter().map(|e| e.timestamp_ms).max().unwrap_or(0),
        })
    }))
}

/// Sends one request on an idle connection, or a new one; the status, or `None` if no
/// answer came.
async fn send(
    pool: &Mutex<Vec<SendRequest<Full<Bytes>>>>,
    addr: &str,
    tally: &Tally,
    request: Request<Full<Bytes>>,
) -> Option<u16> {
    let idle = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut sender = match idle {
        Some(sender) => sender,
        None => match connect(addr, tally).await {
            Ok(sender) => sender,
            Err(reason) => {
                tally.failed(|| reason);
                return None;
            }
        },
    };
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(error) => {
            tally.failed(|| format!("a request to {addr} failed: {error}"));
            return None;
        }
    };
    let status = response.status().as_u16();
    let complete = response.into_body().collect().await.is_ok();
    if complete && sender.is_ready() {
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
    }
    Some(status)
}

/// A new keep-alive connection.
async fn connect(addr: &str, tally: &Tally) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("cannot talk HTTP/1.1 to {addr}: {error}"))?;
    tokio::spawn(connection);
    tally.connections.fetch_add(1, Ordering::Relaxed);
    Ok(sender)
}
