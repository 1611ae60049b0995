//! `Ingests`: what the ingests say they took and the broker has not stored yet (the ingests
//! topic, `model::progress`), read on a thread of its own; the clock windows close on, which
//! stays behind whatever an ingest may still hold.
//!
//! An event an ingest took but could not hand to the broker (a broker outage, a slow link)
//! is not in the events topic, so nothing the dataflow reads tells of it: closing its window
//! on the clock meanwhile would make it late once it arrives. Each ingest says every
//! quarter second since when it holds events; a window waits while an ingest holds events
//! for longer than [`HELD_AFTER_MS`], or has not been heard from for [`QUIET_AFTER`] (its
//! link may be the one cut), until the ingest has not been heard from for the ingest
//! timeout: then it is taken as gone (what it held is lost with it), and said so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::progress::IngestProgress;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSourceConfig;
use super::context::Quiet;

/// An ingest holds events once its oldest is pending this long: the broker takes a healthy
/// ingest's events well within it, and it leaves room for the news to arrive before the
/// lateness has passed.
pub(crate) const HELD_AFTER_MS: i64 = 250;

/// An ingest not heard from this long may hold events it cannot say it holds.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(1);

/// How many of the topic's last messages a start reads, for the ingests running already.
const HISTORY: i64 = 1_000;

/// What an ingest said last, and when it was heard.
#[derive(Debug)]
struct Heard {
    said: IngestProgress,
    at: Instant,
    /// Whether windows wait for it now (to say so once when that changes).
    holding: bool,
}

/// The ingests heard from, by name.
#[derive(Debug, Default)]
pub(crate) struct Ingests {
    heard: Mutex<HashMap<String, Heard>>,
}

/// How the ingests hold the clock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// The clock windows may close on, ms since the epoch.
    pub(crate) ms: i64,
    /// The ingests heard from.
    pub(crate) known: usize,
    /// The ingests windows wait for.
    pub(crate) holding: usize,
}

impl Ingests {
    /// Reads `config.ingests_topic` on a thread that stops once the reader is gone.
    pub(super) fn start(config: &KafkaSourceConfig) -> Arc<Self> {
        let ingests = Arc::new(Ingests::default());
        let weak = Arc::downgrade(&ingests);
        let (brokers, topic) = (config.brokers.clone(), config.ingests_topic.clone());
        let spawned = std::thread::Builder::new()
            .name("ingests".into())
            .spawn(move || {
                let Some(consumer) = assigned(&brokers, &topic, &weak) else {
                    return;
                };
                let history = |m: &rdkafka::message::BorrowedMessage<'_>| {
                    consumer
                        .1
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() < *end)
                };
                while let Some(ingests) = weak.upgrade() {
                    if let Some(Ok(message)) = consumer.0.poll(Duration::from_millis(100)) {
                        let said = message
                            .payload()
                            .and_then(|p| serde_json::from_slice::<IngestProgress>(p).ok());
                        if let Some(said) = said {
                            // What was said before this start was heard when it was said.
                            let at = if history(&message) {
                                let ago = model::now_ms().saturating_sub(said.at).max(0);
                                Instant::now()
                                    .checked_sub(Duration::from_millis(ago as u64))
                                    .unwrap_or_else(Instant::now)
                            } else {
                                Instant::now()
                            };
                            ingests.heard(said, at);
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "Cannot start the thread that reads the ingests' progress: windows do not wait for taps an ingest holds.");
        }
        ingests
    }

    /// Notes what an ingest said (heard `at`); an older message than the last one heard
    /// from it says nothing new.
    pub(crate) fn heard(&self, said: IngestProgress, at: Instant) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        match heard.get_mut(&said.ingest) {
            Some(last) if last.said.at > said.at => {}
            Some(last) => {
                last.said = said;
                last.at = last.at.max(at);
            }
            None => {
                heard.insert(
                    said.ingest.clone(),
                    Heard {
                        said,
                        at,
                        holding: false,
                    },
                );
            }
        }
    }

    /// The clock windows may close on at `now` (`wall_ms` by the wall clock): no later than
    /// the time an ingest that holds events, or has gone quiet, last said it held none older.
    /// An ingest not heard from for `timeout` is forgotten.
    pub(crate) fn clock(&self, now: Instant, wall_ms: i64, timeout: Duration) -> Clock {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.retain(|ingest, h| {
            let gone = now.saturating_duration_since(h.at) >= timeout;
            if gone && h.holding {
                tracing::warn!(
                    %ingest,
                    stored_before = %model::format_rfc3339_millis(h.said.stored_before()),
                    "An ingest has not been heard from for {timeout:?} (--ingest-timeout): windows no longer wait for the taps it held; those that arrive after all may be late."
                );
            }
            !gone
        });
        let mut clock = Clock {
            ms: wall_ms,
            known: 0,
            holding: 0,
        };
        for (ingest, h) in heard.iter_mut() {
            if h.said.stopped {
                continue;
            }
            clock.known += 1;
            let held = h
                .said
                .pending_since
                .is_some_and(|since| h.said.at - since >= HELD_AFTER_MS);
            let quiet = now.saturating_duration_since(h.at) >= QUIET_AFTER;
            let holding = held || quiet;
            if holding {
                clock.holding += 1;
                clock.ms = clock.ms.min(h.said.stored_before());
            }
            if holding != h.holding {
                let since = model::format_rfc3339_millis(h.said.stored_before());
                match (holding, quiet) {
                    (true, true) => {
                        tracing::info!(%ingest, %since, "An ingest has gone quiet: windows after its last word wait for it.")
                    }
                    (true, false) => {
                        tracing::info!(%ingest, %since, "An ingest holds taps the broker has not taken: their windows wait for them.")
                    }
                    (false, _) => {
                        tracing::info!(%ingest, "An ingest holds nothing old any more: windows close on the clock again.")
                    }
                }
                h.holding = holding;
            }
        }
        clock
    }
}

/// A consumer of every partition of `topic` from its last [`HISTORY`] messages, and where
/// each partition ended then; `None` once `ingests` is gone. Tries again every second while
/// the broker does not answer.
fn assigned(
    brokers: &str,
    topic: &str,
    ingests: &std::sync::Weak<Ingests>,
) -> Option<(BaseConsumer<Quiet>, HashMap<i32, i64>)> {
    let consumer: BaseConsumer<Quiet> = match service::kafka::client_config(brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Quiet)
    {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(%error, %topic, "Cannot read the ingests' progress: windows do not wait for taps an ingest holds.");
            return None;
        }
    };
    loop {
        ingests.upgrade()?;
        let positioned = (|| -> Result<_, rdkafka::error::KafkaError> {
            let mut from = TopicPartitionList::new();
            let mut ends = HashMap::new();
            for p in service::kafka::partitions_of(&consumer, topic)? {
                let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
                from.add_partition_offset(topic, p, Offset::Offset((high - HISTORY).max(low)))?;
                ends.insert(p, high);
            }
            consumer.assign(&from)?;
            Ok(ends)
        })();
        match positioned {
            Ok(ends) if !ends.is_empty() => return Some((consumer, ends)),
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, %topic, "Cannot read the ingests' progress yet."),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(ingest: &str, at: i64, pending_since: Option<i64>) -> IngestProgress {
        IngestProgress {
            ingest: ingest.into(),
            at,
            pending_since,
            stopped: false,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn the_clock_waits_for_an_ingest_that_holds_taps_or_went_quiet() {
        let ingests = Ingests::default();
        let start = Instant::now();
        let wall = 100_000;
        // Nobody heard from: the wall clock.
        assert_eq!(ingests.clock(start, wall, TIMEOUT).ms, wall);
        // Events pending a moment (in flight): not held.
        ingests.heard(said("a", wall, Some(wall - 20)), start);
        let clock = ingests.clock(start, wall, TIMEOUT);
        assert_eq!((clock.ms, clock.known, clock.holding), (wall, 1, 0));
        // Pending past HELD_AFTER_MS: the clock stays where they were taken.
        ingests.heard(said("a", wall + 250, Some(wall - 20)), start);
        assert_eq!(ingests.clock(start, wall + 300, TIMEOUT).ms, wall - 20);
        // Delivered: the clock again.
        ingests.heard(said("a", wall + 500, None), start);
        assert_eq!(ingests.clock(start, wall + 500, TIMEOUT).ms, wall + 500);
        // Not heard from for a second: the clock stays at its last word.
        let later = start + QUIET_AFTER;
        let clock = ingests.clock(later, wall + 1500, TIMEOUT);
        assert_eq!((clock.ms, clock.holding), (wall + 500, 1));
        // Another ingest, healthy, does not move it; the older word of the first neither.
        ingests.heard(said("b", wall + 1500, None), later);
        ingests.heard(said("a", wall + 400, None), later);
        assert_eq!(ingests.clock(later, wall + 1500, TIMEOUT).ms, wall + 500);
        // Heard again: released.
        ingests.heard(said("a", wall + 1600, None), later);
        assert_eq!(ingests.clock(later, wall + 1600, TIMEOUT).ms, wall + 1600);
    }

    #[test]
    fn a_stopped_ingest_holds_nothing_and_a_silent_one_is_forgotten_after_the_timeout() {
        let ingests = Ingests::default();
        let start = Instant::now();
        ingests.heard(said("a", 1_000, Some(700)), start);
        ingests.heard(
            IngestProgress {
                stopped: true,
                ..said("b", 1_000, Some(500))
            },
            start,
        );
        let clock = ingests.clock(start, 2_000, TIMEOUT);
        assert_eq!((clock.ms, clock.known, clock.holding), (700, 1, 1));
        // A stopped ingest's earlier word, arriving late, does not bring it back.
        ingests.heard(said("b", 999, Some(500)), start);
        assert_eq!(ingests.clock(start, 2_000, TIMEOUT).ms, 700);
        let clock = ingests.clock(start + TIMEOUT, 40_000, TIMEOUT);
        assert_eq!((clock.ms, clock.known, clock.holding), (40_000, 0, 0));
    }
}
