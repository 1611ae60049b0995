//! Serving a service's warp routes on its own HTTP/1 loop: each request carries its
//! client's address ([`Peer`]; behind a trusted proxy, the one it forwards, see
//! [`TrustedProxies`]), a request not answered in time gets an answer that says so,
//! connections past a limit wait their turn or are told to come back, WebSocket upgrades are handed on, and a shutdown
//! lets the requests in flight finish (10 s at most).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Shutdown;
use crate::metrics::{Counter, Gauge};

/// The address of a request's client, in its extensions (`warp::ext::get::<Peer>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The proxies (networks `ip/prefix`, or single addresses) whose `X-Forwarded-For` header is
/// believed: a request from one of them is taken to come from the address it forwards, the
/// rightmost one in the header that is not itself a trusted proxy. Per-address limits then
/// count viewers and tappers, not the proxy in front of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list like `10.0.0.0/8,192.0.2.7,::1`; an error names the entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (entry, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or network"))?;
            let most = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= most)
                    .ok_or_else(|| format!("{entry:?}: the prefix length is 0 to {most}"))?,
                None => most,
            };
            networks.push((ip, prefix));
        }
        Ok(TrustedProxies(networks))
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(network, prefix)| match (network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The client of a request that came from `peer` with the `X-Forwarded-For` value
    /// `forwarded`: `peer` itself unless it is a trusted proxy; else the rightmost forwarded
    /// address that is not a trusted proxy (port 0), or the leftmost when all are. An entry
    /// that is not an address ends the walk at the hop that added it.
    pub fn client(&self, peer: SocketAddr, forwarded: Option<&str>) -> SocketAddr {
        let Some(forwarded) = forwarded.filter(|_| self.contains(peer.ip())) else {
            return peer;
        };
        let mut client = peer;
        for entry in forwarded.rsplit(',').map(str::trim) {
            let Ok(ip) = entry.parse::<IpAddr>() else {
                return client;
            };
            client = SocketAddr::new(ip, 0);
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// Every `X-Forwarded-For` line of `headers` as one list, in order (a proxy may add a line
/// of its own rather than append to the client's; the walk from the right must see both).
fn forwarded_for(headers: &hyper::HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

/// The limits of [`serve`].
#[derive(Clone)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a request may take to be read and answered.
    pub request_timeout: Duration,
    /// The answer to a request past `request_timeout`.
    pub timed_out: fn(Duration) -> warp::reply::Response,
    /// Connections served at once (a WebSocket leaves the count once upgraded); more wait
    /// their turn (up to [`TURN_WAIT`], then answered 503 with Retry-After, see
    /// [`answer_full`]).
    pub max_connections: usize,
    /// What the loop counts, for the service's metrics.
    pub counts: Arc<ServeCounts>,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// What [`serve`] counts.
#[derive(Debug, Default)]
pub struct ServeCounts {
    /// Connections served now (a WebSocket leaves at its upgrade).
    pub open: Gauge,
    /// Connections waiting for their turn.
    pub waiting: Gauge,
    /// Connections answered 503: their turn did not come within [`TURN_WAIT`].
    pub refused: Counter,
}

/// How long a connection past the limit waits for its turn before it is answered 503. A
/// burst (viewers coming back at once to a broadcaster) is taken in turn, not refused, while
/// a server whose places are held (idle or trickling clients) says so within it.
pub const TURN_WAIT: Duration = Duration::from_secs(1);
/// Connections waiting for their turn, at most; past it none is taken from the kernel's
/// queue until one is served or answered (the memory and descriptors stay bounded).
pub const MAX_WAITING: usize = 10_000;
/// Seconds a client past the connection limit is asked to wait.
pub const FULL_RETRY_AFTER_SECONDS: u64 = 1;

/// Answers a connection past the limit `503` with `Retry-After` before its request is read
/// (HTTP/1.1 lets a server answer early), then waits up to a second for the client to close
/// (closing first, with its request unread, could reset the connection before the client
/// read the answer).
async fn answer_full(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(
        r#"{{"error":"the server is at its connection limit: try again after {FULL_RETRY_AFTER_SECONDS} s","retry_after_seconds":{FULL_RETRY_AFTER_SECONDS}}}"#
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {FULL_RETRY_AFTER_SECONDS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let said = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), said).await;
}

/// How long the accept loop waits after a failed accept (no descriptor left, say).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Whether a failed accept ran out of something the process or the system has to give back
/// first: descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM), Linux's numbers.
fn out_of_resources(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
        || error.kind() == std::io::ErrorKind::OutOfMemory
}

/// Logs a failed accept, at most once every 10 s.
fn refusing(error: &std::io::Error, last_warned: &mut Option<std::time::Instant>) {
    if last_warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
        tracing::warn!(
            %error,
            "Cannot accept connections (at the open-file limit?); trying again every 50 ms."
        );
        *last_warned = Some(std::time::Instant::now());
    }
}

/// A connection's place among those served: counted in `open` while it is held.
struct Place {
    _slot: OwnedSemaphorePermit,
    counts: Arc<ServeCounts>,
}

impl Place {
    fn new(slot: OwnedSemaphorePermit, counts: &Arc<ServeCounts>) -> Self {
        counts.open.add(1);
        Place {
            _slot: slot,
            counts: Arc::clone(counts),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.counts.open.add(-1);
    }
}

/// Serves `routes` (`warp::service(filter)`) on `listener` until `signal`, then waits up to
/// 10 s for the connections still open. Past `limits.max_connections` a connection waits its
/// turn (first come, first served) for up to [`TURN_WAIT`], then is answered 503 with
/// Retry-After; past [`MAX_WAITING`] waiting, the kernel's queue holds the rest.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    routes: S,
    limits: ServeLimits,
    signal: &mut Shutdown,
) where
    S: Service<hyper::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        // Room to serve the next connection or to let it wait for its turn, first.
        let room = tokio::select! {
            room = Arc::clone(&waiting).acquire_owned() => room.expect("never closed"),
            () = signal.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that went before it was taken: the next one, at once.
                Err(error) if !out_of_resources(&error) => continue,
                Err(error) => {
                    // Out of descriptors (or memory): the listener stays readable, and trying
                    // again at once would spin a core until a connection ends. Wait a little.
                    refusing(&error, &mut last_warned);
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                        () = signal.wait() => break,
                    }
                }
            },
            () = signal.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            routes: routes.clone(),
            limits: limits.clone(),
            stop: signal.clone(),
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                drop(room);
                let place = Place::new(slot, &limits.counts);
                tokio::spawn(connection.serve(stream, peer, place));
            }
            Err(_) => {
                let slots = Arc::clone(&slots);
                let counts = Arc::clone(&limits.counts);
                counts.waiting.add(1);
                tokio::spawn(async move {
                    let turn = tokio::time::timeout(TURN_WAIT, slots.acquire_owned()).await;
                    counts.waiting.add(-1);
                    if let Ok(Ok(slot)) = turn {
                        drop(room);
                        let place = Place::new(slot, &counts);
                        connection.serve(stream, peer, place).await;
                    } else {
                        // An answer a client can tell from a server that is gone.
                        counts.refused.add(1);
                        answer_full(stream).await;
                        drop(room);
                    }
                });
            }
        }
    }
    drop(listener);
    // Every connection holds a slot until it ends: all of them back means all ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("Connections still open 10 s after shutdown; closing them.");
    }
}

/// What serving one connection takes.
struct Connection<S> {
    routes: S,
    limits: ServeLimits,
    stop: Shutdown,
}

impl<S> Connection<S>
where
    S: Service<hyper::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Serves the connection's requests, holding `place` until it ends or hands its socket on
    /// at an upgrade.
    async fn serve(mut self, stream: tokio::net::TcpStream, peer: SocketAddr, place: Place) {
        let _place = place;
        let (request_timeout, timed_out) = (self.limits.request_timeout, self.limits.timed_out);
        let trusted = Arc::clone(&self.limits.trusted_proxies);
        let routes = self.routes;
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            let forwarded = forwarded_for(request.headers());
            let client = trusted.client(peer, forwarded.as_deref());
            request.extensions_mut().insert(Peer(client));
            let mut routes = routes.clone();
            async move {
                match tokio::time::timeout(request_timeout, routes.call(request)).await {
                    Ok(response) => response,
                    Err(_) => Ok(timed_out(request_timeout)),
                }
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = self.stop.wait() => connection.as_mut().graceful_shutdown(),
        }
        let _ = connection.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forwarded_line_counts_the_proxys_own_last() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let joined = forwarded_for(&headers).unwrap();
        assert_eq!(joined, "6.6.6.6,203.0.113.9");
        let trusted = TrustedProxies::parse("10.0.0.1").unwrap();
        let proxy: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(
            trusted.client(proxy, Some(&joined)).ip().to_string(),
            "203.0.113.9"
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_others_are_not_believed() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7,::1").unwrap();
        let proxy: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let client = |peer: SocketAddr, header| trusted.client(peer, header).ip().to_string();
        assert_eq!(client(proxy, Some("203.0.113.9")), "203.0.113.9");
        // The rightmost address not a trusted proxy: what the client itself wrote is skipped.
        assert_eq!(
            client(proxy, Some("6.6.6.6, 203.0.113.9, 192.0.2.7")),
            "203.0.113.9"
        );
        assert_eq!(client(proxy, Some("10.9.9.9")), "10.9.9.9");
        assert_eq!(client(proxy, None), "10.1.2.3");
        assert_eq!(client(proxy, Some("nonsense, 203.0.113.9")), "203.0.113.9");
        assert_eq!(client(proxy, Some("203.0.113.9, nonsense")), "10.1.2.3");
        // Not from a trusted proxy: the header is the client's own word, not believed.
        let other: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(client(other, Some("203.0.113.9")), "198.51.100.1");
        assert!(trusted.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(trusted.contains("::1".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/33").unwrap_err(),
            "\"10.0.0.0/33\": the prefix length is 0 to 32"
        );
        assert_eq!(
            TrustedProxies::parse("proxy.example").unwrap_err(),
            "\"proxy.example\" is not an IP address or network"
        );
    }
}
