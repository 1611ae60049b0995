//! Kafka client settings and topic creation through the Admin API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
pub use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, IntoOpaque};

use crate::metrics::Counter;

/// Why the topics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The broker list is malformed.
    #[error("invalid broker list \"{0}\": expected HOST:PORT[,HOST:PORT...]")]
    Brokers(String),
    /// The admin client failed.
    #[error("cannot reach the brokers {brokers}")]
    Admin {
        /// The brokers.
        brokers: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// A topic could not be created.
    #[error("cannot create topic \"{topic}\": {code}")]
    Create {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// A topic could not be given more partitions.
    #[error("cannot grow topic \"{topic}\" to {partitions} partitions: {code}")]
    Grow {
        /// The topic.
        topic: String,
        /// The partitions it should have.
        partitions: i32,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
}

impl TopicError {
    /// Whether trying again may help: the brokers may be starting, or away for a while.
    pub fn is_retryable(&self) -> bool {
        match self {
            TopicError::Brokers(_) => false,
            TopicError::Admin { source, .. } => is_retryable(source),
            TopicError::Create { code, .. } | TopicError::Grow { code, .. } => {
                is_retryable_code(*code)
            }
        }
    }
}

/// Whether an operation that failed with `error` may succeed when tried again: the broker
/// was away, slow or busy, or a partition was moving, rather than the request being wrong.
pub fn is_retryable(error: &KafkaError) -> bool {
    use rdkafka::error::KafkaError;
    match error {
        KafkaError::Canceled | KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            false
        }
        KafkaError::NoMessageReceived => true,
        other => other.rdkafka_error_code().is_some_and(is_retryable_code),
    }
}

/// Whether a broker's or the client's error code names a passing condition.
pub fn is_retryable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::MessageTimedOut
            | C::QueueFull
            | C::RequestTimedOut
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::KafkaStorageError
            | C::UnknownTopicOrPartition
    )
}

/// A topic a service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions to create it with.
    pub partitions: i32,
}

/// Checks a broker list: `HOST:PORT[,HOST:PORT...]`.
pub fn parse_brokers(text: &str) -> Result<String, TopicError> {
    let ok = !text.trim().is_empty()
        && text.split(',').all(|b| {
            let b = b.trim();
            b.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
    if ok {
        Ok(text.split(',').map(str::trim).collect::<Vec<_>>().join(","))
    } else {
        Err(TopicError::Brokers(text.to_owned()))
    }
}

/// Settings of every producer of EmoStream: idempotent, acknowledged by all replicas.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config.set("enable.idempotence", "true").set("acks", "all");
    config
}

/// This process's run: what the records it writes are told apart by (the process id and
/// when it started), the same for every call.
pub fn run_id() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos:x}", std::process::id())
    })
}

/// Client settings common to every EmoStream Kafka client: the brokers, and the settings the
/// deployment gives every client (`--kafka-config`, `--kafka-option`: TLS, SASL, ...).
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "emostream")
        .set("socket.keepalive.enable", "true");
    crate::kafka_settings::settings().apply(&mut config);
    config
}

/// Creates the topics that do not exist yet (never relying on broker auto-creation).
pub async fn ensure_topics(
    brokers: &str,
    topics: &[TopicSpec],
    replication: i32,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers)
            .create()
            .map_err(|source| TopicError::Admin {
                brokers: brokers.to_owned(),
                source,
            })?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|source| TopicError::Admin {
            brokers: brokers.to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}

/// Gives `topic` `partitions` partitions in all (it has fewer).
pub async fn grow_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), TopicError> {
    let admin_error = |source| TopicError::Admin {
        brokers: brokers.to_owned(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers).create().map_err(admin_error)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let grow = NewPartitions::new(topic, partitions as usize);
    let results = admin
        .create_partitions([&grow], &options)
        .await
        .map_err(admin_error)?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(TopicError::Grow {
                topic,
                partitions,
                code,
            });
        }
    }
    tracing::info!(%topic, partitions, "Grew topic.");
    Ok(())
}

/// The partitions of `topic` (none when it does not exist).
pub fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Counts what the broker acknowledged and refused.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Records acknowledged.
    pub acked: AtomicU64,
    /// Records refused or timed out.
    pub failed: AtomicU64,
}

/// The producer context that counts deliveries.
pub struct CountDeliveries(pub Arc<Deliveries>);

impl ClientContext for CountDeliveries {}

impl ProducerContext for CountDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.0.acked,
            Err(_) => &self.0.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A record the producer did not take, with the reason.
pub type Refused<'a, K, P, O> = (KafkaError, BaseRecord<'a, K, P, O>);

/// Queues `record` with `try_send` (a producer's `send`), waiting while the client's local
/// queue is full: `serve` (its `poll`, for a `BaseProducer`) delivers reports meanwhile, so
/// the queue drains. Any other refusal (a producer in a fatal state, a record too large)
/// comes back with the record.
///
/// ```no_run
/// use rdkafka::producer::{BaseProducer, BaseRecord};
/// use std::time::Duration;
///
/// let producer: BaseProducer = service::kafka::client_config("127.0.0.1:9092").create().unwrap();
/// let record = BaseRecord::to("emoji-events").key("u1").payload("{}");
/// service::kafka::send_waiting(|r| producer.send(r), || producer.poll(Duration::from_millis(1)), record)
///     .map_err(|(error, _)| error)
///     .unwrap();
/// ```
pub fn send_waiting<'a, K, P, O>(
    mut try_send: impl FnMut(BaseRecord<'a, K, P, O>) -> Result<(), Refused<'a, K, P, O>>,
    serve: impl Fn(),
    mut record: BaseRecord<'a, K, P, O>,
) -> Result<(), Refused<'a, K, P, O>>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    O: IntoOpaque,
{
    loop {
        match try_send(record) {
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                serve();
                record = back;
            }
            done => return done,
        }
    }
}

/// Why the brokers could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// The broker refused the SASL login.
    #[error(
        "the broker at {brokers} refused the login ({security}): {detail}; check sasl.username and sasl.password, and that the broker has that user for that mechanism (--kafka-config, --kafka-option)"
    )]
    Login {
        /// The brokers.
        brokers: String,
        /// The security protocol and mechanism used.
        security: String,
        /// What librdkafka said.
        detail: String,
    },
    /// The TLS handshake failed.
    #[error(
        "the TLS handshake with the broker at {brokers} failed ({security}): {detail}; check ssl.ca.location (the CA that signed the broker's certificate) and that the broker speaks TLS at that address"
    )]
    Tls {
        /// The brokers.
        brokers: String,
        /// The security protocol and mechanism used.
        security: String,
        /// What librdkafka said.
        detail: String,
    },
    /// A broker's host name does not resolve.
    #[error(
        "cannot resolve the broker address {brokers}: {detail}; check the host names in --brokers (EMOSTREAM_BROKERS)"
    )]
    Resolve {
        /// The brokers.
        brokers: String,
        /// What librdkafka said.
        detail: String,
    },
    /// The client could not be made with the settings given.
    #[error("cannot make a Kafka client of {brokers} ({security}) with the settings given")]
    Client {
        /// The brokers.
        brokers: String,
        /// The security protocol and mechanism used.
        security: String,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// No broker answered.
    #[error("no Kafka broker answered at {brokers} ({security}) within {} s", .timeout.as_secs())]
    Unanswered {
        /// The brokers.
        brokers: String,
        /// The security protocol and mechanism used.
        security: String,
        /// How long it waited.
        timeout: Duration,
        /// The last error.
        #[source]
        source: KafkaError,
    },
}

impl ReachError {
    /// Whether trying again may help: a broker away, not a refused login or certificate.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReachError::Unanswered { .. })
    }
}

/// Keeps the last error a client reported.
#[derive(Default)]
struct LastError(std::sync::Mutex<Option<(RDKafkaErrorCode, String)>>);

impl LastError {
    fn note(&self, code: RDKafkaErrorCode, reason: &str) {
        // Without the thread's name librdkafka starts its lines with.
        let reason = match reason.split_once("]: ") {
            Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
            _ => reason,
        };
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A login or TLS failure is the news, not the transport failure that follows it.
        if !last.as_ref().is_some_and(|(c, _)| {
            matches!(
                c,
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Resolve
            )
        }) {
            *last = Some((code, reason.to_owned()));
        }
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.note(code, reason);
        }
    }

    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
        // librdkafka tells a refused login and a failed handshake in its log lines.
        if message.contains("Failed to resolve") {
            self.note(RDKafkaErrorCode::Resolve, message);
        } else if message.contains("SASL authentication error") {
            self.note(RDKafkaErrorCode::Authentication, message);
        } else if message.contains("SSL handshake failed")
            || message.contains("certificate verify failed")
        {
            self.note(RDKafkaErrorCode::SSL, message);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// Asks `brokers` for the cluster's metadata, waiting at most `timeout`: an address no broker
/// answers at is an error within it, not a hang; a refused login or a failed TLS handshake
/// is told as such as soon as the client reports it.
pub fn reach(brokers: &str, timeout: Duration) -> Result<(), ReachError> {
    Reacher::new(brokers)?.check(timeout)
}

/// A client kept to ask the brokers again and again whether they answer ([`reach`] once).
pub struct Reacher {
    brokers: String,
    security: String,
    consumer: rdkafka::consumer::BaseConsumer<LastError>,
}

impl Reacher {
    /// A client of `brokers`, with the client settings in use.
    pub fn new(brokers: &str) -> Result<Self, ReachError> {
        let security = crate::kafka_settings::settings().describe_security();
        let mut config = client_config(brokers);
        // The log lines that tell a refused login or handshake are errors.
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
        // Asked again and again, it tries a broker that went away again within a second.
        config.set("reconnect.backoff.max.ms", "1000");
        let consumer = config
            .create_with_context(LastError::default())
            .map_err(|source| ReachError::Client {
                brokers: brokers.to_owned(),
                security: security.clone(),
                source,
            })?;
        Ok(Reacher {
            brokers: brokers.to_owned(),
            security,
            consumer,
        })
    }

    /// Asks the brokers for the cluster's metadata, waiting at most `timeout`.
    pub fn check(&self, timeout: Duration) -> Result<(), ReachError> {
        let (brokers, security) = (&self.brokers, &self.security);
        let unanswered = |source| ReachError::Unanswered {
            brokers: brokers.clone(),
            security: security.clone(),
            timeout,
            source,
        };
        let consumer = &self.consumer;
        let deadline = std::time::Instant::now() + timeout;
        let mut unresolved = None;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let step = left.min(Duration::from_millis(250));
            match rdkafka::consumer::Consumer::fetch_metadata(consumer, None, step) {
                Ok(_) => return Ok(()),
                Err(error) => {
                    // The client's errors and log lines come with its events.
                    let _ = consumer.poll(Duration::ZERO);
                    let last = rdkafka::consumer::Consumer::context(consumer)
                        .0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    match last {
                        Some((RDKafkaErrorCode::Authentication, detail)) => {
                            return Err(ReachError::Login {
                                brokers: brokers.clone(),
                                security: security.clone(),
                                detail,
                            });
                        }
                        // One broker named that does not resolve is told at once; of several,
                        // another may answer: told once the wait is up.
                        Some((RDKafkaErrorCode::Resolve, detail))
                            if !brokers.contains(',') || left <= step =>
                        {
                            return Err(ReachError::Resolve {
                                brokers: brokers.clone(),
                                detail,
                            });
                        }
                        Some((RDKafkaErrorCode::Resolve, detail)) => unresolved = Some(detail),
                        Some((RDKafkaErrorCode::SSL, detail)) => {
                            return Err(ReachError::Tls {
                                brokers: brokers.clone(),
                                security: security.clone(),
                                detail,
                            });
                        }
                        _ if left <= step => {
                            return Err(match unresolved {
                                Some(detail) => ReachError::Resolve {
                                    brokers: brokers.clone(),
                                    detail,
                                },
                                None => unanswered(error),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Waits until everything `producer` sent is acknowledged or failed, at most `limit`; true
/// if nothing is left in flight. Checks in short sleeps: the client's own `flush` polls 100 ms
/// at a time (its poll runs to its deadline), which adds up to 100 ms to every wait, and
/// polling in a loop would spin.
pub fn wait_delivered<C: ProducerContext>(producer: &BaseProducer<C>, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Retires a producer that was replaced by a new one because the broker no longer accepts
/// it (a broker that lost track of its producer ids across a restart takes a new id): the
/// log line and the metric of every replacement come from here, and the old producer is
/// dropped on a thread of its own (dropping waits for what it still holds, up to its
/// timeout, and hands back what it could not deliver).
pub fn retire_producer<P: Send + 'static>(old: P, reason: &'static str, replacements: &Counter) {
    tracing::warn!(reason, "The producer is replaced by a new one.");
    replacements.add(1);
    std::thread::spawn(move || drop(old));
}

/// An idempotent producer of records keyed by user, counting the broker's answers: for the
/// tools that put events into the events topic (the simulator, replays of recorded matches;
/// the ingest service has its own, with bounded room and per-request delivery).
pub struct KeyedProducer {
    producer: ThreadedProducer<CountDeliveries>,
    topic: String,
    /// The broker's answers so far.
    pub deliveries: Arc<Deliveries>,
}

impl KeyedProducer {
    /// A producer to `topic`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, rdkafka::error::KafkaError> {
        let deliveries = Arc::new(Deliveries::default());
        let producer = producer_config(brokers)
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create_with_context(CountDeliveries(Arc::clone(&deliveries)))?;
        Ok(KeyedProducer {
            producer,
            topic: topic.to_owned(),
            deliveries,
        })
    }

    /// Queues one event (`payload`, its JSON) keyed by `user`, waiting while the local queue
    /// is full.
    pub fn send(&self, user: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let record = BaseRecord::to(&self.topic).key(user).payload(payload);
        // Its own thread serves the delivery reports: waiting is enough.
        let wait = || std::thread::sleep(Duration::from_millis(1));
        send_waiting(|r| self.producer.send(r), wait, record).map_err(|(error, _)| error)
    }

    /// Waits until every queued record is acknowledged or refused (at most `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.producer.flush(timeout)
    }

    /// Records acknowledged, refused.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.deliveries.acked.load(Ordering::Relaxed),
            self.deliveries.failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn passing_conditions_are_retryable_and_wrong_requests_are_not() {
        assert!(is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
        assert!(is_retryable(&KafkaError::Global(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!TopicError::Brokers("x".into()).is_retryable());
        assert!(
            !TopicError::Create {
                topic: "t".into(),
                code: RDKafkaErrorCode::InvalidReplicationFactor
            }
            .is_retryable()
        );
    }

    #[test]
    fn broker_lists() {
        assert_eq!(parse_brokers("127.0.0.1:9092").unwrap(), "127.0.0.1:9092");
        assert_eq!(parse_brokers("a:1, b:2").unwrap(), "a:1,b:2");
        assert!(parse_brokers("").is_err());
        assert!(parse_brokers("localhost").is_err());
        assert!(parse_brokers("a:1,b:x").is_err());
        assert_eq!(
            parse_brokers("nope").unwrap_err().to_string(),
            "invalid broker list \"nope\": expected HOST:PORT[,HOST:PORT...]"
        );
    }
}
