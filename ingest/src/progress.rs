//! `Progress`: says on the ingests topic, every [`EVERY`], since when this ingest holds events
//! the broker has not acknowledged (`model::progress`), and that it stopped when it stops. The
//! dataflow closes no window such an event may belong to, so a tap held up by a broker
//! outage or a slow link counts in its window when it arrives, not late.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::progress::IngestProgress;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::producer::{EventProducer, ProduceError};

/// How often an ingest says what it holds.
pub const EVERY: Duration = Duration::from_millis(250);

/// An ingest's voice on the ingests topic.
pub(crate) struct Progress {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    /// This ingest: its host and address (see [`Progress::new`]).
    ingest: String,
    /// Set once it said it stopped (under the lock it says things under): nothing more.
    stopped: Mutex<bool>,
}

impl Progress {
    /// Speaks for the ingest listening on `addr` of this host: an ingest started again there
    /// (after a crash) speaks for the one before, whose held taps are gone with it, so the
    /// dataflow does not wait for them.
    pub(crate) fn new(brokers: &str, topic: &str, addr: SocketAddr) -> Result<Self, ProduceError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| service::kafka::run_id().to_owned());
        let producer = service::kafka::client_config(brokers)
            .set("linger.ms", "0")
            // Only the newest says anything: one the broker did not take soon is dropped.
            .set("message.timeout.ms", "5000")
            .create()
            .map_err(ProduceError::Create)?;
        Ok(Progress {
            producer,
            topic: topic.to_owned(),
            ingest: format!("{host}/{addr}"),
            stopped: Mutex::new(false),
        })
    }

    /// Says since when `events` holds events the broker has not acknowledged; `stopped`: that
    /// this ingest takes no more. Returns false once it said it stopped (it says nothing more).
    pub(crate) fn say(&self, events: &EventProducer, stopped: bool) -> bool {
        let mut said_stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *said_stopped {
            return false;
        }
        *said_stopped = stopped;
        let (at, pending_since, ends) = events.progress();
        let said = IngestProgress {
            ingest: self.ingest.clone(),
            at,
            pending_since,
            ends,
            stopped,
        };
        let payload = serde_json::to_vec(&said).expect("progress serializes to JSON");
        let record = BaseRecord::<str, [u8]>::to(&self.topic)
            .key(self.ingest.as_str())
            .payload(payload.as_slice());
        if let Err((error, _)) = self.producer.send(record) {
            tracing::debug!(%error, "Cannot say the ingest's progress.");
        }
        true
    }

    /// Says that this ingest stopped, and waits up to `timeout` for the broker to take it.
    pub(crate) fn stop(&self, events: &EventProducer, timeout: Duration) {
        self.say(events, true);
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "Cannot say that the ingest stopped: the dataflow waits for it until --ingest-timeout.");
        }
    }
}

/// Says what `state`'s producer holds every [`EVERY`] until it says it stopped (through
/// the stop's flush: the dataflow goes on hearing from it while it drains).
pub(crate) fn spawn(progress: Arc<Progress>, state: Arc<crate::api::AppState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        loop {
            every.tick().await;
            if !progress.say(&state.producer, false) {
                return;
            }
        }
    });
}
