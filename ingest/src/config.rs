//! The ingest service's configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use model::emojis::EmojiSet;

use service::secret::Secret;

use crate::load_test::LoadDriver;

/// How the ingest service runs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// HTTP address to listen on.
    pub listen: SocketAddr,
    /// Kafka brokers, `HOST:PORT[,...]`.
    pub brokers: String,
    /// Topic events are produced to.
    pub topic: String,
    /// Topic where the ingest says, several times a second, since when it holds events the
    /// broker has not acknowledged (`model::progress`).
    pub ingests_topic: String,
    /// Partitions of the topic when it has to be created.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication: i32,
    /// How long the producer waits to fill a batch (the original system flushed every 500 ms).
    pub linger: Duration,
    /// Events handed to the producer and not yet acknowledged, at most; past it, 503.
    pub queue_capacity: usize,
    /// Largest request body in bytes; past it, 413.
    pub max_body: u64,
    /// Most events in one request.
    pub max_batch: usize,
    /// The emojis accepted; others are refused (400).
    pub emojis: Arc<EmojiSet>,
    /// Largest distance of a timestamp from the server clock.
    pub max_skew: Duration,
    /// How long `?ack=true` waits for the broker before answering 503.
    pub ack_timeout: Duration,
    /// How long the producer keeps trying to deliver an event before it gives up on it (and
    /// the event is looked for in the topic, then sent again on the newest producer); zero:
    /// it never gives up (it tries again itself, and the broker drops the repeats).
    pub delivery_timeout: Duration,
    /// Allowed CORS origins; empty allows any origin.
    pub cors_origins: Vec<String>,
    /// Runs `POST /load-test` (it lets a caller generate load); without one the endpoint
    /// answers 403. The command line hands in the tools crate's simulator.
    pub load_driver: Option<Arc<dyn LoadDriver>>,
    /// Events per second one `user_id` may send (a burst of one second's worth); 0: no limit.
    pub user_rate_limit: f64,
    /// Events per second one source address may send; 0: no limit.
    pub ip_rate_limit: f64,
    /// When set, `POST /emoji` and `/load-test` need `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// When set, `POST /emoji` needs a viewer token signed with this key (the broadcasters'
    /// `--token-secret`) as `Authorization: Bearer <token>`, and its events are the token's
    /// viewer's (a body `user_id` that differs is refused, 403); a request with `token`
    /// instead (a trusted sender) names its users itself.
    pub viewer_tokens: Option<service::token::TokenSigner>,
    /// A connection must send a request's headers within this (also the keep-alive timeout).
    pub header_timeout: Duration,
    /// A request (its body included) must be read and answered within this; past it, 408.
    pub request_timeout: Duration,
    /// Connections open at once, at most; past it, new ones are closed at once.
    pub max_connections: usize,
    /// The proxies whose X-Forwarded-For names the client (for `--ip-rate-limit`).
    pub trusted_proxies: Arc<service::http::TrustedProxies>,
}

impl IngestConfig {
    /// A configuration with the defaults, listening on `listen` and producing to `brokers`.
    pub fn new(listen: SocketAddr, brokers: String) -> Self {
        IngestConfig {
            listen,
            brokers,
            topic: model::names::EVENTS_TOPIC.to_owned(),
            ingests_topic: model::names::ingests_topic(model::names::EVENTS_TOPIC),
            partitions: 4,
            replication: 1,
            linger: Duration::from_millis(50),
            queue_capacity: 500_000,
            max_body: 1 << 20,
            max_batch: 10_000,
            emojis: Arc::new(EmojiSet::default()),
            max_skew: Duration::from_secs(600),
            ack_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::ZERO,
            cors_origins: Vec::new(),
            load_driver: None,
            user_rate_limit: 50.0,
            ip_rate_limit: 0.0,
            token: None,
            viewer_tokens: None,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            trusted_proxies: Arc::default(),
        }
    }
}
