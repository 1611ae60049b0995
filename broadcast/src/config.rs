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
    /// Messages a client may fall behind before it catches up from the ring.
    pub max_lag: usize,
    /// A write that takes longer than this disconnects the client.
    pub write_timeout: Duration,
    /// Largest message a client may send, in bytes.
    pub max_inbound: usize,
    /// Interval of keepalive pings.
    pub ping_interval: Duration,
    /// Topic where broadcasters announce themselves.
    pub registry_topic: String,
    /// Secret that signs connection tokens (shared by every broadcaster).
    pub token_secret: String,
    /// How long a connection token stays valid.
    pub token_ttl: Duration,
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
    /// The emojis accepted: the page shows a button for each.
    pub emojis: Arc<EmojiSet>,
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
            max_lag: 4,
            write_timeout: Duration::from_secs(5),
            max_inbound: 4096,
            ping_interval: Duration::from_secs(20),
            registry_topic: model::names::REGISTRY_TOPIC.to_owned(),
            token_secret: String::new(),
            token_ttl: Duration::from_secs(600),
            ingest_url: None,
            summary_topic: None,
            ws_origins: Vec::new(),
            max_connections_per_ip: 1000,
            emojis: Arc::new(EmojiSet::default()),
        }
    }
}
