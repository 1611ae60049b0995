//! The broadcaster's configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use model::emojis::EmojiSet;

/// How a broadcaster runs.
#[derive(Debug, Clone)]
pub struct BroadcastConfig {
    /// Kafka brokers.
    pub brokers: String,
    /// The cluster served (1-based).
    pub cluster: u32,
    /// The cluster's topic.
    pub topic: String,
    /// HTTP and WebSocket address.
    pub listen: SocketAddr,
    /// How much of the past a resuming client can get back.
    pub ring: Duration,
    /// A client with more bytes than this still to get is disconnected (4001); while it
    /// waits, it gets the newest message of each window.
    pub max_pending: usize,
    /// A client that takes no byte for this long while it has some to get is disconnected
    /// (4002).
    pub write_timeout: Duration,
    /// Shards of the fan-out, each writing to its share of the connections (0: one per core).
    pub shards: usize,
    /// Largest message a client may send, in bytes.
    pub max_inbound: usize,
    /// Interval of keepalive pings.
    pub ping_interval: Duration,
    /// Topic where broadcasters announce themselves.
    pub registry_topic: String,
    /// Secret that signs connection tokens (shared by every broadcaster).
    pub token_secret: service::secret::Secret,
    /// How long a connection token stays valid.
    pub token_ttl: Duration,
    /// The address clients use for this broadcaster (`https://live.example.com/c1`, or its
    /// `wss://` form), behind a proxy or a name: registration hands out its `/ws`. None: the
    /// address listened on, which then must not be every interface.
    pub public_url: Option<String>,
    /// Where the web page sends taps (`http://host:port` of the ingest API).
    pub ingest_url: Option<String>,
    /// The windows topic of a longer size (like `emoji-windows-60s`), whose last windows
    /// clients get as `summary` frames for the page's per-minute timeline.
    pub summary_topic: Option<String>,
    /// Origins (`https://host[:port]`) whose pages may open WebSockets; empty allows any.
    /// A handshake without an Origin header (not from a browser) is allowed.
    pub ws_origins: Vec<String>,
    /// WebSocket connections one source address may hold at once; 0: no limit.
    pub max_connections_per_ip: usize,
    /// Handshakes in progress at once (an upgraded connection leaves the count); past it a
    /// connection is answered 503 with Retry-After.
    pub max_handshakes: usize,
    /// The proxies whose X-Forwarded-For names the client (for the per-address limit).
    pub trusted_proxies: Arc<service::http::TrustedProxies>,
    /// WebSocket clients served at once: past it a handshake is refused (503) and
    /// registration sends no client here. 0: the open-file limit, less 256 descriptors for
    /// the rest.
    pub max_clients: usize,
    /// The emojis accepted: the page shows a button for each.
    pub emojis: Arc<EmojiSet>,
    /// Whether the page shows its automated sender (a demo tool).
    pub demo_sender: bool,
    /// New viewers one address may register per second (bursts of a second's worth; a
    /// registration with an earlier token is not a new viewer); 0: no limit.
    pub new_viewer_rate_limit: f64,
}

impl BroadcastConfig {
    /// The defaults for cluster `cluster` reading `topic`.
    pub fn new(brokers: String, cluster: u32, topic: String, listen: SocketAddr) -> Self {
        BroadcastConfig {
            brokers,
            cluster,
            topic,
            listen,
            ring: Duration::from_secs(60),
            max_pending: 1 << 20,
            write_timeout: Duration::from_secs(5),
            shards: 0,
            max_inbound: 4096,
            ping_interval: Duration::from_secs(20),
            registry_topic: model::names::REGISTRY_TOPIC.to_owned(),
            token_secret: service::secret::Secret::new(""),
            token_ttl: Duration::from_secs(600),
            public_url: None,
            ingest_url: None,
            summary_topic: None,
            ws_origins: Vec::new(),
            max_connections_per_ip: 1000,
            max_handshakes: 10_000,
            trusted_proxies: Arc::default(),
            max_clients: 0,
            emojis: Arc::new(EmojiSet::default()),
            demo_sender: false,
            new_viewer_rate_limit: 0.0,
        }
    }
}

/// The WebSocket URL registration hands out for a broadcaster listening on `addr` whose
/// clients use `public_url` (`http(s)://` or `ws(s)://`, any path), or `addr` itself.
pub fn ws_url(public_url: Option<&str>, addr: SocketAddr) -> String {
    let Some(url) = public_url else {
        return format!("ws://{addr}/ws");
    };
    let url = url.trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    };
    format!("{url}/ws")
}

/// Checks a `--public-url`: an absolute `http`, `https`, `ws` or `wss` URL with a host, no
/// query or fragment.
pub fn check_public_url(url: &str) -> Result<(), String> {
    let rest = ["https://", "http://", "wss://", "ws://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| format!("{url:?} is not an http://, https://, ws:// or wss:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} names no host"));
    }
    if rest.contains(['?', '#', ' ']) {
        return Err(format!("{url:?} has a query, a fragment or a space"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_gives_the_websocket_url_handed_out() {
        let addr: SocketAddr = "10.0.0.5:8765".parse().unwrap();
        assert_eq!(ws_url(None, addr), "ws://10.0.0.5:8765/ws");
        for (public, ws) in [
            (
                "https://live.example.com/c1",
                "wss://live.example.com/c1/ws",
            ),
            (
                "https://live.example.com/c1/",
                "wss://live.example.com/c1/ws",
            ),
            (
                "http://live.example.com:8080",
                "ws://live.example.com:8080/ws",
            ),
            ("wss://live.example.com/c2", "wss://live.example.com/c2/ws"),
        ] {
            assert_eq!(ws_url(Some(public), addr), ws);
            assert_eq!(check_public_url(public), Ok(()));
        }
        for bad in [
            "live.example.com",
            "ftp://x",
            "https://",
            "https:///c1",
            "https://x/?a=1",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }
}
