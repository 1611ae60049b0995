//! `Failure`: what a worker meets that it cannot go on past (an input or output that cannot
//! be used, a Kafka client that cannot be made or that refuses for good). The first one
//! stops the run and is what the run returns.

use std::sync::Arc;

use rdkafka::error::KafkaError;

/// Why a run stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A file or output cannot be used.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done: `open`, `read`, `write`.
        action: &'static str,
        /// The file, or `stdout`.
        path: String,
        /// The cause (shared: failures are reported from any worker).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A Kafka client failed.
    #[error("cannot {action}")]
    Kafka {
        /// What was being done, like `create the Kafka producer`.
        action: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// A stop could not publish every closed window in time (the broker away or slow).
    #[error(
        "the stop did not publish every closed window within {0:?}: the offsets committed are behind what was published, so a restart reads the rest again"
    )]
    StopTimeout(std::time::Duration),
    /// Another dataflow of the group started and took partitions over.
    #[error(
        "another dataflow of this group (run {by}) took over partition {partition} of {topic}: a group is run by one dataflow at a time, the one started last, so this one (run {run}) stops; stop one of them, or give the other its own --group and --windows-topic"
    )]
    TakenOver {
        /// The checkpoint topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The run that took it over.
        by: String,
        /// This run.
        run: String,
    },
}

impl Failure {
    /// A file that cannot be opened, read or written.
    pub fn io(action: &'static str, path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Failure::Io {
            action,
            path: path.to_string(),
            source: Arc::new(source),
        }
    }

    /// A Kafka client that failed while doing `action`.
    pub fn kafka(action: impl Into<String>, source: KafkaError) -> Self {
        Failure::Kafka {
            action: action.into(),
            source,
        }
    }

    /// Whether running again may help: a broker that was away or busy, not a bad file or
    /// a refused configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Io { .. } | Failure::TakenOver { .. } => false,
            Failure::StopTimeout(_) => true,
            Failure::Kafka { source, .. } => service::kafka::is_retryable(source),
        }
    }
}
