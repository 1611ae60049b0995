//! A WebSocket fan-out load tool: many clients of one broadcaster, bound to several local
//! source addresses (one address reaches at most ~28K connections to one port), each
//! measuring, per window, the delay from the broadcaster taking it from Kafka to its
//! arrival. Optionally feeds synthetic windows into the cluster topic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use model::now_ms;
use model::report::{EmojiTotals, WindowMessage, WindowState};
use model::{ReportConfig, WindowReport};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What to run.
#[derive(Debug, Clone)]
pub struct WsLoadConfig {
    /// `ws://host:port/ws?token=...` as registration gave it: every client connects there.
    pub ws_url: String,
    /// Instead, each client registers on its own (`http://host:port` of broadcasters, tried
    /// in turn from the client's own) and connects where it is sent; after a drop it
    /// registers again, as the page does, and resumes.
    pub register_each: Vec<String>,
    /// Clients to connect.
    pub clients: usize,
    /// Local addresses to bind, round robin.
    pub sources: Vec<IpAddr>,
    /// How long to stay connected after all are connected.
    pub duration: Duration,
    /// Feed a synthetic window every `feed_every` into this topic (brokers, topic).
    pub feed: Option<(String, String)>,
    /// Interval of fed windows.
    pub feed_every: Duration,
    /// With this, the feed is shaped like a live dataflow's: an open update of the current
    /// window at this interval, and each window's final once the next begins.
    pub feed_updates: Option<Duration>,
}

/// What the clients saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WsLoadReport {
    /// Clients connected.
    pub connected: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds to connect all.
    pub connect_seconds: f64,
    /// Window frames received over all clients.
    pub frames: u64,
    /// Windows seen by at least one client.
    pub windows: u64,
    /// Per window, the delay until the last client had it (fan-out completion), ms.
    pub completion_p50_ms: f64,
    /// 99th percentile of the same.
    pub completion_p99_ms: f64,
    /// Largest.
    pub completion_max_ms: f64,
    /// Per delivery, ms.
    pub delivery_p50_ms: f64,
    /// 99th percentile of the same.
    pub delivery_p99_ms: f64,
    /// Windows every connected client got.
    pub complete_windows: u64,
    /// Connections made again after a drop (a broadcaster restarted).
    pub reconnects: u64,
    /// Longest time from a drop to the connection made again, ms.
    pub reconnect_max_ms: u64,
    /// Final windows seen by at least one client.
    pub finals: u64,
    /// Final windows every connected client got (after a drop, from the ring on resume).
    pub complete_finals: u64,
    /// Clients by the broadcaster (`host:port`) they first connected to.
    pub first_targets: std::collections::BTreeMap<String, u64>,
}

#[derive(Default)]
struct Seen {
    /// (seq, revision) -> (clients that got it, slowest delay ms)
    windows: HashMap<(i64, i64), (u64, u64)>,
    /// seq of a final window -> clients that got it.
    finals: HashMap<i64, u64>,
    /// Clients by the broadcaster they first connected to.
    first_targets: std::collections::BTreeMap<String, u64>,
    deliveries: Option<Histogram<u64>>,
    reconnects: u64,
    reconnect_max_ms: u64,
}

impl Seen {
    fn new() -> Self {
        Seen {
            deliveries: Histogram::new(3).ok(),
            ..Seen::default()
        }
    }

    /// Adds what another part saw.
    fn merge(&mut self, other: &Seen) {
        for (&key, &(clients, slowest)) in &other.windows {
            let entry = self.windows.entry(key).or_default();
            entry.0 += clients;
            entry.1 = entry.1.max(slowest);
        }
        for (&seq, &clients) in &other.finals {
            *self.finals.entry(seq).or_default() += clients;
        }
        for (target, &clients) in &other.first_targets {
            *self.first_targets.entry(target.clone()).or_default() += clients;
        }
        if let (Some(mine), Some(theirs)) = (self.deliveries.as_mut(), &other.deliveries) {
            let _ = mine.add(theirs);
        }
        self.reconnects += other.reconnects;
        self.reconnect_max_ms = self.reconnect_max_ms.max(other.reconnect_max_ms);
    }
}

/// How long the clients go on reading after the run's duration, for the windows taken in
/// before its end to reach every one of them.
const DRAIN: Duration = Duration::from_secs(5);

/// What the clients saw is kept in this many parts, each client writing to one: one lock
/// taken by 19,000 clients for every window would make the tool, not the broadcaster, the
/// slowest part of the fan-out it measures.
const SEEN_PARTS: usize = 64;

/// Connects one client from `source` to `target`.
async fn connect(
    source: IpAddr,
    target: SocketAddr,
    ws_url: &str,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    let stream = socket.connect(target).await.ok()?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    tokio_tungstenite::client_async_with_config(ws_url, stream, Some(config))
        .await
        .ok()
        .map(|(ws, _)| ws)
}

/// What the clients of one run share.
struct Shared {
    ws_url: String,
    target: SocketAddr,
    register_each: Vec<String>,
    /// Names this run's clients apart from another run's.
    run: i64,
    /// Client `i` writes to part `i % SEEN_PARTS`.
    seen: Vec<Mutex<Seen>>,
    connected: AtomicU64,
    failed: AtomicU64,
    /// Frames of windows the broadcaster had before every client was connected (the
    /// snapshot on connect) are not fan-out: only windows taken in after that are measured.
    measure_from: AtomicI64,
    /// Nor are windows taken in after the run's duration: the run ends a drain later, so each
    /// measured one had time to reach every client.
    measure_until: AtomicI64,
    /// Connections being opened at once, at most.
    gate: tokio::sync::Semaphore,
}

/// Connects the clients, listens for `duration`, and reports.
pub async fn run_ws_load(config: WsLoadConfig) -> WsLoadReport {
    let url: tokio_tungstenite::tungstenite::http::Uri =
        config.ws_url.parse().expect("a ws:// URL");
    let target: SocketAddr = format!(
        "{}:{}",
        url.host().unwrap_or("127.0.0.1"),
        url.port_u16().unwrap_or(80)
    )
    .parse()
    .expect("an IP target");
    let shared = Arc::new(Shared {
        ws_url: config.ws_url.clone(),
        target,
        register_each: config.register_each.clone(),
        run: now_ms(),
        seen: (0..SEEN_PARTS).map(|_| Mutex::new(Seen::new())).collect(),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        measure_from: AtomicI64::new(i64::MAX),
        measure_until: AtomicI64::new(i64::MAX),
        gate: tokio::sync::Semaphore::new(256),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.clients)
        .map(|i| {
            let source = config.sources[i % config.sources.len().max(1)];
            tokio::spawn(client(i, source, Arc::clone(&shared)))
        })
        .collect();
    let settled = |s: &Shared| {
        s.connected.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed)
            >= config.clients as u64
    };
    while !settled(&shared) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let from = now_ms();
    shared.measure_from.store(from, Ordering::Relaxed);
    shared
        .measure_until
        .store(from + config.duration.as_millis() as i64, Ordering::Relaxed);
    let feeder = config.feed.clone().map(|(brokers, topic)| {
        let (every, updates) = (config.feed_every, config.feed_updates);
        let until = Instant::now() + config.duration;
        std::thread::spawn(move || feed(&brokers, &topic, (every, updates), until))
    });
    tokio::time::sleep(config.duration).await;
    if let Some(f) = feeder {
        let _ = f.join();
    }
    tokio::time::sleep(DRAIN).await;
    for task in &tasks {
        task.abort();
    }
    report(&shared, connect_seconds)
}

/// One client: connects, reads windows, and on a drop (a broadcaster restarted) connects
/// again with backoff and resumes from the last window it got; each window counts once.
// Long: one connection's life (connect, resume, read, back off) in one loop with its state.
async fn client(index: usize, source: IpAddr, shared: Arc<Shared>) {
    let seen_part = &shared.seen[index % SEEN_PARTS];
    let mut got = std::collections::HashSet::new();
    let mut finals = std::collections::HashSet::new();
    let mut last_seq = None;
    let mut dropped_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let permit = shared.gate.acquire().await;
        let (target, ws_url) = match where_to(&shared, index).await {
            Some(target) => target,
            None => (shared.target, shared.ws_url.clone()),
        };
        let ws = connect(source, target, &ws_url).await;
        drop(permit);
        let Some(mut ws) = ws else {
            if dropped_at.is_none() {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        match dropped_at.take() {
            None => {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                let mut seen = seen_part.lock().unwrap_or_else(|e| e.into_inner());
                *seen.first_targets.entry(target.to_string()).or_default() += 1;
            }
            Some(at) => {
                let mut seen = seen_part.lock().unwrap_or_else(|e| e.into_inner());
                seen.reconnects += 1;
                seen.reconnect_max_ms = seen.reconnect_max_ms.max(at.elapsed().as_millis() as u64);
            }
        }
        if let Some(last) = last_seq {
            let resume = format!("{{\"type\":\"resume\",\"last_seq\":{last}}}");
            let _ = ws.send(Message::Text(resume.into())).await;
        }
        // Window frames still to come from the ring (after a hello or a resumed).
        let mut from_ring: i64 = 0;
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            // Two numbers out of the frame without parsing all of it: the load tool shares
            // the machine with the broadcaster and should cost it little.
            if !text.starts_with("{\"type\":\"window\"") {
                // The snapshot and a resume's windows follow these: they come from the ring
                // (their delay is its age), so they count for the finals, not the fan-out.
                if find_key(&text, "\"type\":\"hello\"").is_some() {
                    from_ring = number_after(&text, "\"snapshot\":").unwrap_or(0);
                } else if find_key(&text, "\"type\":\"resumed\"").is_some() {
                    from_ring += number_after(&text, "\"windows\":").unwrap_or(0);
                }
                continue;
            }
            let history = from_ring > 0;
            from_ring = (from_ring - 1).max(0);
            let (Some(seq), Some(at)) = (
                number_after(&text, "\"seq\":"),
                number_after(&text, "\"broadcast_at\":"),
            ) else {
                continue;
            };
            let revision = number_after(&text, "\"revision\":").unwrap_or(0);
            let is_final = find_key(&text, "\"state\":\"final\"").is_some();
            last_seq = Some(last_seq.map_or(seq, |l: i64| l.max(seq)));
            // A window came: the connection works, the next drop starts afresh.
            backoff = Duration::from_millis(100);
            if at < shared.measure_from.load(Ordering::Relaxed)
                || at > shared.measure_until.load(Ordering::Relaxed)
            {
                continue;
            }
            if is_final && finals.insert(seq) {
                let mut seen = seen_part.lock().unwrap_or_else(|e| e.into_inner());
                *seen.finals.entry(seq).or_default() += 1;
            }
            if !got.insert((seq, revision)) || history {
                continue;
            }
            let delay = (now_ms() - at).max(0) as u64;
            let mut seen = seen_part.lock().unwrap_or_else(|e| e.into_inner());
            let entry = seen.windows.entry((seq, revision)).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(delay);
            if let Some(h) = seen.deliveries.as_mut() {
                let _ = h.record(delay.max(1));
            }
        }
        dropped_at = Some(Instant::now());
        // A broadcaster that closes at once (a restart, too slow a client) is not hammered:
        // wait before connecting again, longer each time.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The report of a run: completion per window (the slowest client's delay) and delivery
/// per frame.
fn report(shared: &Shared, connect_seconds: f64) -> WsLoadReport {
    let mut seen = Seen::new();
    for part in &shared.seen {
        seen.merge(&part.lock().unwrap_or_else(|e| e.into_inner()));
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    let mut completion = Histogram::<u64>::new(3).expect("a histogram");
    let mut complete_windows = 0;
    let mut per_window: Vec<((i64, i64), u64, u64)> =
        seen.windows.iter().map(|(&s, &(c, d))| (s, c, d)).collect();
    per_window.sort_unstable();
    tracing::debug!(
        ?per_window,
        "Per message: (seq, revision), clients, slowest delay (ms)."
    );
    for &(clients, slowest) in seen.windows.values() {
        if clients == connected {
            complete_windows += 1;
        }
        let _ = completion.record(slowest.max(1));
    }
    let deliveries = seen
        .deliveries
        .clone()
        .unwrap_or_else(|| Histogram::new(3).expect("a histogram"));
    WsLoadReport {
        connected,
        failed: shared.failed.load(Ordering::Relaxed),
        connect_seconds,
        frames: deliveries.len(),
        windows: seen.windows.len() as u64,
        completion_p50_ms: completion.value_at_quantile(0.5) as f64,
        completion_p99_ms: completion.value_at_quantile(0.99) as f64,
        completion_max_ms: completion.max() as f64,
        delivery_p50_ms: deliveries.value_at_quantile(0.5) as f64,
        delivery_p99_ms: deliveries.value_at_quantile(0.99) as f64,
        complete_windows,
        reconnects: seen.reconnects,
        reconnect_max_ms: seen.reconnect_max_ms,
        finals: seen.finals.len() as u64,
        complete_finals: seen.finals.values().filter(|&&c| c == connected).count() as u64,
        first_targets: seen.first_targets.clone(),
    }
}

/// With per-client registration: where client `index` is sent (its broadcaster and URL),
/// by the first broadcaster that answers, starting from its own; `None` without it or when
/// none answers.
async fn where_to(shared: &Shared, index: usize) -> Option<(SocketAddr, String)> {
    let bases = &shared.register_each;
    let client_id = format!("wsload-{}-{index}", shared.run);
    for k in 0..bases.len() {
        let base = &bases[(index + k) % bases.len()];
        let Ok(registration) = crate::register::register(base, &client_id).await else {
            continue;
        };
        let url: tokio_tungstenite::tungstenite::http::Uri = registration.ws_url.parse().ok()?;
        let target = format!("{}:{}", url.host()?, url.port_u16()?)
            .parse()
            .ok()?;
        return Some((target, registration.ws_url));
    }
    None
}

/// Where `key` is in `text`: the broadcaster writes `seq`, `state`, `revision` and
/// `broadcast_at` last, so the end is searched first (a load tool that scans every frame
/// whole takes the CPU the broadcaster it measures needs).
fn find_key(text: &str, key: &str) -> Option<usize> {
    const TAIL: usize = 160;
    let (bytes, key) = (text.as_bytes(), key.as_bytes());
    let find = |from: usize| {
        bytes[from..]
            .windows(key.len())
            .position(|w| w == key)
            .map(|i| from + i)
    };
    find(bytes.len().saturating_sub(TAIL)).or_else(|| find(0))
}

/// The integer that follows `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<i64> {
    let rest = &text.as_bytes()[find_key(text, key)? + key.len()..];
    let end = rest
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'-'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Writes synthetic windows (about 600 bytes as a frame) until `until`: a final every
/// `every`, or with `updates`, an open update of the current window at that interval and each
/// window's final once the next begins (revisions increasing).
fn feed(
    brokers: &str,
    topic: &str,
    (every, updates): (Duration, Option<Duration>),
    until: Instant,
) {
    let Ok(producer) = service::kafka::client_config(brokers)
        .set("linger.ms", "0")
        .create::<BaseProducer>()
    else {
        return;
    };
    let send = |start: i64, state: WindowState, revision: u64| {
        let mut message = WindowMessage::final_of(synthetic_window(start, revision), start / 2000);
        message.state = state;
        message.revision = revision;
        let payload = serde_json::to_vec(&message).expect("a window serializes");
        let key = start.to_string();
        let _ = producer.send(BaseRecord::to(topic).key(&key).payload(&payload));
        let _ = producer.flush(Duration::from_secs(5));
    };
    let tick = updates.unwrap_or(every);
    let mut next = Instant::now();
    let (mut current, mut revision) = (None, 0);
    while Instant::now() < until {
        let start = now_ms().div_euclid(2000) * 2000;
        if updates.is_none() {
            send(start, WindowState::Final, 0);
        } else {
            if let Some(previous) = current.filter(|&p| p != start) {
                revision += 1;
                send(previous, WindowState::Final, revision);
            }
            current = Some(start);
            revision += 1;
            send(start, WindowState::Open, revision);
        }
        next += tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// A window of 8 emojis and 12,000 events starting at `start`, its counts moved by `revision`.
fn synthetic_window(start: i64, revision: u64) -> WindowReport {
    let emojis = ["🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌"];
    let totals = emojis.iter().enumerate().map(|(i, e)| EmojiTotals {
        emoji: (*e).to_owned(),
        count: 1000 + i as u64 * 137 + revision,
        unique_users: 500 + i as u64 * 31,
    });
    WindowReport::build(
        start,
        start + 2000,
        12_000 + revision,
        4_000,
        totals,
        &ReportConfig::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_wherever_their_key_is() {
        let emojis = r#"{"emoji":"🔥","count":1001,"unique_users":500}"#.repeat(20);
        let text = format!(
            r#"{{"type":"window","events":12,"emojis":[{emojis}],"seq":898053004,"state":"final","revision":7,"broadcast_at":1796106009051}}"#
        );
        assert_eq!(number_after(&text, "\"seq\":"), Some(898_053_004));
        assert_eq!(number_after(&text, "\"revision\":"), Some(7));
        assert_eq!(
            number_after(&text, "\"broadcast_at\":"),
            Some(1_796_106_009_051)
        );
        assert_eq!(
            number_after(&text, "\"events\":"),
            Some(12),
            "far from the end too"
        );
        assert!(find_key(&text, "\"state\":\"final\"").is_some());
        assert_eq!(number_after(&text, "\"nothing\":"), None);
    }
}
