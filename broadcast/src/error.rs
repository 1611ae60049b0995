//! `BroadcastError`: why a broadcaster could not start.

use std::net::SocketAddr;

use rdkafka::error::KafkaError;

/// Why a broadcaster could not run.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The cluster and registry topics could not be set up.
    #[error(transparent)]
    Topics(#[from] service::kafka::TopicError),
    /// A Kafka client failed.
    #[error("cannot {action}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// The cluster topic has no partitions.
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
    /// A thread could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// Which.
        name: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Setting up panicked.
    #[error("a start-up task failed: {0}")]
    Panicked(String),
    /// Bound to every interface with no address for clients to use.
    #[error(
        "listening on every interface ({0}) with no --public-url: give the address viewers reach this broadcaster at, like wss://live.example.com/c1"
    )]
    NoPublicUrl(SocketAddr),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl BroadcastError {
    /// A Kafka client that failed while doing `action`.
    pub fn kafka(action: impl Into<String>, source: KafkaError) -> Self {
        BroadcastError::Kafka {
            action: action.into(),
            source,
        }
    }

    /// Whether starting again may help: the broker was away or busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            BroadcastError::Topics(e) => e.is_retryable(),
            BroadcastError::Kafka { source, .. } => service::kafka::is_retryable(source),
            BroadcastError::NoPartitions(_)
            | BroadcastError::Thread { .. }
            | BroadcastError::Panicked(_)
            | BroadcastError::NoPublicUrl(_)
            | BroadcastError::Listen { .. } => false,
        }
    }
}
