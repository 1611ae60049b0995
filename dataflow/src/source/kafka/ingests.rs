//! `Ingests`: what the ingests say they took and the broker has not stored yet (the ingests
//! topic, `model::progress`), read on one thread per process; and `IngestClock`, each
//! reader's clock that windows close on, which stays behind whatever an ingest may still hold.
//!
//! An event an ingest took but could not hand to the broker (a broker outage, a cut link) is
//! not in the events topic, so nothing the dataflow reads tells of it: closing its window on
//! the clock meanwhile would make it late once it arrives. Each ingest says every quarter
//! second that every event it took before a time (`stored_before`) is in the topic. The
//! clock of a reader never passes that time plus half the lateness, for any ingest heard
//! from: a tap taken after it has a window ending after it, which the watermark (the clock
//! minus the lateness) cannot reach. A healthy ingest's word is fresher than half the lateness,
//! so it holds nothing back; an ingest that holds taps, or has gone quiet (its link may be the
//! one cut), holds the clock where its taps are, continuously, with nothing to detect.
//!
//! And a word's time counts only once the reader has read what the word says is stored: each
//! word names, per partition, where the taps the ingest had stored end, and a reader goes by
//! the newest word whose ends it has read in its own partitions (held taps stored at last
//! come before the clock moves past them). An ingest not heard from for the ingest timeout is
//! taken as gone (what a crashed ingest held is lost with it), and a tap pending that long is
//! no longer waited for: both said once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use model::progress::IngestProgress;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSourceConfig;
use super::context::Quiet;

/// How many of the topic's last messages a start reads, for the ingests running already
/// (40 s of 60 ingests).
const HISTORY: i64 = 10_000;

/// What an ingest said last, and when it was heard.
#[derive(Debug)]
struct Heard {
    said: Arc<IngestProgress>,
    /// The earliest time any of its words heard said it had stored up to.
    low: i64,
    at: Instant,
    /// Whether it holds the clock back, as last said in the log.
    holding: bool,
    /// Whether its stuck tap was said in the log.
    stuck: bool,
}

/// What a process heard from the ingests, shared by its readers.
#[derive(Debug)]
pub(crate) struct Ingests {
    heard: Mutex<HashMap<String, Heard>>,
    /// Half the lateness, ms: how far a reader's clock may run ahead of an ingest's word.
    margin_ms: i64,
    lateness_ms: i64,
    timeout: Duration,
    /// When the thread started, and whether it has read what was said before.
    started: (Instant, i64),
    caught_up: std::sync::atomic::AtomicBool,
}

/// How the ingests hold a reader's clock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// The clock windows may close on, ms since the epoch.
    pub(crate) ms: i64,
    /// The ingests heard from (not stopped).
    pub(crate) known: usize,
    /// The ingests that hold windows back.
    pub(crate) holding: usize,
}

impl Ingests {
    fn new(lateness_ms: i64, timeout: Duration) -> Self {
        Ingests {
            heard: Mutex::default(),
            margin_ms: lateness_ms / 2,
            lateness_ms,
            timeout,
            started: (Instant::now(), model::now_ms()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The process's reader of `config.ingests_topic` (one thread, shared by the workers and
    /// window sizes; it stops once no reader holds it).
    pub(super) fn shared(config: &KafkaSourceConfig) -> Arc<Self> {
        type Key = (String, String, i64, Duration);
        static SHARED: OnceLock<Mutex<HashMap<Key, Weak<Ingests>>>> = OnceLock::new();
        let key = (
            config.brokers.clone(),
            config.ingests_topic.clone(),
            config.rules.windows.lateness_ms(),
            config.ingest_timeout,
        );
        let mut shared = SHARED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(ingests) = shared.get(&key).and_then(Weak::upgrade) {
            return ingests;
        }
        let ingests = Arc::new(Ingests::new(
            config.rules.windows.lateness_ms(),
            config.ingest_timeout,
        ));
        shared.retain(|_, w| w.strong_count() > 0);
        shared.insert(key, Arc::downgrade(&ingests));
        let (weak, brokers, topic) = (
            Arc::downgrade(&ingests),
            config.brokers.clone(),
            config.ingests_topic.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("ingests".into())
            .spawn(move || read(&brokers, &topic, &weak));
        if let Err(error) = spawned {
            tracing::error!(%error, "Cannot start the thread that reads the ingests' progress: finals wait for --ingest-timeout, then no longer for held taps.");
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
                last.low = last.low.min(said.stored_before());
                last.said = Arc::new(said);
                last.at = last.at.max(at);
            }
            None => {
                let name = said.ingest.clone();
                let h = Heard {
                    low: said.stored_before(),
                    said: Arc::new(said),
                    at,
                    holding: false,
                    stuck: false,
                };
                heard.insert(name, h);
            }
        }
    }

    /// The time an ingest's word lets a reader's clock run to: what it stored plus the
    /// margin (a tap pending longer than the timeout is no longer waited for); none for a
    /// stopped ingest.
    fn cap(&self, said: &IngestProgress) -> Option<i64> {
        if said.stopped {
            return None;
        }
        let stuck = said
            .pending_since
            .is_some_and(|since| said.at - since >= self.timeout.as_millis() as i64);
        let stored = if stuck { said.at } else { said.stored_before() };
        Some(stored.saturating_add(self.margin_ms))
    }

    /// Forgets the ingests not heard from for the timeout, and says in the log which ones
    /// start or stop holding windows back at `now` (`wall_ms` by the wall clock).
    fn look(&self, now: Instant, wall_ms: i64) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.timeout;
        heard.retain(|ingest, h| {
            let gone = now.saturating_duration_since(h.at) >= timeout;
            if gone && h.holding {
                tracing::warn!(%ingest, ?timeout, "An ingest has not been heard from for --ingest-timeout: finals no longer wait for the taps it held (those that arrive after all may be late).");
            }
            !gone
        });
        for (ingest, h) in heard.iter_mut() {
            let stuck = h
                .said
                .pending_since
                .is_some_and(|since| h.said.at - since >= timeout.as_millis() as i64);
            if stuck && !h.stuck {
                tracing::warn!(%ingest, ?timeout, "An ingest has held a tap the broker does not take for --ingest-timeout: finals no longer wait for it.");
            }
            h.stuck = stuck;
            // Said once it holds the clock back by more than the margin, and until it no
            // longer holds it back at all (no word for every passing moment).
            let threshold = if h.holding {
                wall_ms - self.lateness_ms + self.margin_ms
            } else {
                wall_ms - self.lateness_ms
            };
            let holding = self.cap(&h.said).is_some_and(|cap| cap < threshold);
            if holding != h.holding {
                let quiet = now.saturating_duration_since(h.at) >= Duration::from_secs(1);
                let since = model::format_rfc3339_millis(h.said.stored_before());
                match (holding, quiet) {
                    (true, true) => {
                        tracing::info!(%ingest, %since, "An ingest has gone quiet: finals after its last word wait for it.")
                    }
                    (true, false) => {
                        tracing::info!(%ingest, %since, "An ingest holds taps the broker has not stored: their finals wait for them.")
                    }
                    (false, _) => tracing::info!(%ingest, "An ingest holds nothing back any more."),
                }
                h.holding = holding;
            }
        }
    }
}

/// A reader's clock: per ingest, the newest word it may go by.
#[derive(Debug, Default)]
pub(crate) struct IngestClock {
    ingests: HashMap<String, Track>,
}

/// What a reader goes by for one ingest.
#[derive(Debug)]
struct Track {
    /// The time the clock may run to, from the newest word whose ends were read.
    applied: i64,
    /// Newer words, oldest first, not yet read through, each with when the reader saw it.
    waiting: VecDeque<(Arc<IngestProgress>, Instant)>,
    /// Whether a word not read through in time was said in the log.
    overdue: bool,
}

/// Words a reader keeps waiting per ingest (a minute of them); past it, the oldest but one go.
const WAITING: usize = 240;

impl IngestClock {
    /// The clock windows may close on at `now` (`wall_ms` by the wall clock), for a reader
    /// whose partitions are read from the offsets `own` gives (partition, next offset;
    /// paused ones left out: what they hold is ahead of the windows that wait).
    pub(crate) fn clock(
        &mut self,
        ingests: &Ingests,
        now: Instant,
        wall_ms: i64,
        own: impl Iterator<Item = (i32, i64)> + Clone,
    ) -> Clock {
        let mut clock = Clock {
            ms: wall_ms,
            known: 0,
            holding: 0,
        };
        // Until what was said before the start is read: no later than the start (for at
        // most the timeout, should the topic not be readable).
        let (started_at, started_ms) = ingests.started;
        if !ingests.caught_up.load(std::sync::atomic::Ordering::Acquire)
            && now.saturating_duration_since(started_at) < ingests.timeout
        {
            clock.ms = clock.ms.min(started_ms);
        }
        // A time below this holds back the windows of taps taken after it.
        let binding = wall_ms - ingests.lateness_ms + ingests.margin_ms;
        let read_through = |word: &IngestProgress| {
            own.clone()
                .all(|(p, next)| word.ends.get(&p).is_none_or(|&end| next >= end))
        };
        let heard = ingests.heard.lock().unwrap_or_else(|e| e.into_inner());
        for (ingest, h) in heard.iter() {
            let word = &h.said;
            let track = match self.ingests.get_mut(ingest) {
                Some(track) => track,
                // Heard first (at a start, say): from the earliest it said it had stored up
                // to (what it held may still be unread), until a word is read through.
                None => self.ingests.entry(ingest.clone()).or_insert(Track {
                    applied: match ingests.cap(word) {
                        Some(_) => h
                            .low
                            .max(word.at - ingests.timeout.as_millis() as i64)
                            .saturating_add(ingests.margin_ms),
                        None => i64::MAX,
                    },
                    waiting: VecDeque::new(),
                    overdue: false,
                }),
            };
            if track.waiting.back().is_none_or(|(w, _)| w.at < word.at) {
                if track.waiting.len() >= WAITING {
                    track.waiting.remove(1);
                }
                track.waiting.push_back((Arc::clone(word), now));
            }
            // The newest word read through (the ends only grow: the ones before it are too).
            let newest_read = if track.waiting.back().is_some_and(|(w, _)| read_through(w)) {
                Some(track.waiting.len())
            } else if track.waiting.front().is_some_and(|(w, _)| read_through(w)) {
                Some(track.waiting.partition_point(|(w, _)| read_through(w)))
            } else if track
                .waiting
                .front()
                .is_some_and(|(_, seen)| now.saturating_duration_since(*seen) >= ingests.timeout)
            {
                // Its ends not reached for the timeout (a topic made anew, say): gone by anyway.
                if !track.overdue {
                    tracing::warn!(%ingest, timeout = ?ingests.timeout, "A word of an ingest names ends of the events topic not reached for --ingest-timeout: the clock goes by it anyway.");
                    track.overdue = true;
                }
                Some(1)
            } else {
                None
            };
            if let Some(n) = newest_read {
                if n == track.waiting.len() {
                    track.overdue = false;
                }
                let word = track.waiting.drain(..n).next_back();
                if let Some((word, _)) = word {
                    track.applied = ingests.cap(&word).unwrap_or(i64::MAX);
                }
            }
            // A stopped ingest holds nothing once its last word is read through.
            clock.ms = clock.ms.min(track.applied);
            if !word.stopped {
                clock.known += 1;
                clock.holding += usize::from(track.applied < binding);
            }
        }
        if self.ingests.len() > heard.len() {
            self.ingests.retain(|ingest, _| heard.contains_key(ingest));
        }
        clock
    }
}

/// Reads `topic` into `ingests` from its last [`HISTORY`] messages until `ingests` is gone.
fn read(brokers: &str, topic: &str, ingests: &Weak<Ingests>) {
    let Some((consumer, ends)) = assigned(brokers, topic, ingests) else {
        return;
    };
    let mut behind: HashMap<i32, i64> = ends
        .iter()
        .filter(|(_, (from, end))| end > from)
        .map(|(&p, &(_, end))| (p, end))
        .collect();
    let mut problems = 0u64;
    while let Some(ingests) = ingests.upgrade() {
        if !behind.is_empty()
            && let Ok(position) = consumer.position()
        {
            behind.retain(|&p, end| {
                position
                    .find_partition(topic, p)
                    .is_none_or(|e| !matches!(e.offset(), Offset::Offset(o) if o >= *end))
            });
        }
        if behind.is_empty() {
            ingests
                .caught_up
                .store(true, std::sync::atomic::Ordering::Release);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let (p, offset) = (message.partition(), message.offset());
                match message
                    .payload()
                    .map(serde_json::from_slice::<IngestProgress>)
                {
                    Some(Ok(said)) => {
                        // What was said before this start was heard when it was said.
                        let history = ends.get(&p).is_some_and(|(_, end)| offset < *end);
                        let at = if history {
                            let ago = model::now_ms().saturating_sub(said.at).max(0);
                            Instant::now()
                                .checked_sub(Duration::from_millis(ago as u64))
                                .unwrap_or_else(Instant::now)
                        } else {
                            Instant::now()
                        };
                        ingests.heard(said, at);
                    }
                    Some(Err(error)) => {
                        problems += 1;
                        if problems.is_power_of_two() {
                            tracing::warn!(%topic, partition = p, offset, %error, problems, "A message on the ingests topic is not an ingest's progress; left out.");
                        }
                    }
                    None => {}
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%error, %topic, "Cannot read the ingests' progress.")
            }
            None => {}
        }
        ingests.look(Instant::now(), model::now_ms());
    }
}

/// Per partition: where reading starts and where it ended at the start.
type Positions = HashMap<i32, (i64, i64)>;

/// A consumer of every partition of `topic` from its last [`HISTORY`] messages, and where
/// it reads each partition from and where each ended then; `None` once `ingests` is gone. Tries again every second while
/// the broker does not answer.
fn assigned(
    brokers: &str,
    topic: &str,
    ingests: &Weak<Ingests>,
) -> Option<(BaseConsumer<Quiet>, Positions)> {
    let consumer: BaseConsumer<Quiet> = match service::kafka::client_config(brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Quiet)
    {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(%error, %topic, "Cannot read the ingests' progress: finals wait for --ingest-timeout, then no longer for held taps.");
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
                let start = (high - HISTORY).max(low);
                from.add_partition_offset(topic, p, Offset::Offset(start))?;
                ends.insert(p, (start, high));
            }
            consumer.assign(&from)?;
            Ok(ends)
        })();
        match positioned {
            Ok(ends) if !ends.is_empty() => return Some((consumer, ends)),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, %topic, "Cannot read the ingests' progress yet.")
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn said(ingest: &str, at: i64, pending_since: Option<i64>) -> IngestProgress {
        IngestProgress {
            ingest: ingest.into(),
            at,
            pending_since,
            ends: BTreeMap::new(),
            stopped: false,
        }
    }

    /// Ingests of a 1 s lateness whose history was read.
    fn ingests() -> Ingests {
        let ingests = Ingests::new(1_000, TIMEOUT);
        ingests
            .caught_up
            .store(true, std::sync::atomic::Ordering::Release);
        ingests
    }

    /// A reader whose partitions are read up to these offsets.
    fn read_to(offsets: &[(i32, i64)]) -> impl Iterator<Item = (i32, i64)> + Clone + '_ {
        offsets.iter().copied()
    }

    /// A reader with no partitions: every word is read through.
    fn read_all() -> impl Iterator<Item = (i32, i64)> + Clone {
        std::iter::empty()
    }

    #[test]
    fn the_clock_stays_half_the_lateness_past_what_each_ingest_stored() {
        let (ingests, mut reader) = (ingests(), IngestClock::default());
        let now = Instant::now();
        let wall = 100_000;
        // Nobody heard from: the wall clock.
        assert_eq!(reader.clock(&ingests, now, wall, read_all()).ms, wall);
        // A healthy ingest's fresh word (taps in flight a moment) holds nothing back.
        ingests.heard(said("a", wall - 200, Some(wall - 220)), now);
        let clock = reader.clock(&ingests, now, wall, read_all());
        assert_eq!((clock.ms, clock.known, clock.holding), (wall, 1, 0));
        // A tap held 2 s: the clock stays 500 ms past it (its window cannot close).
        ingests.heard(said("a", wall, Some(wall - 2_000)), now);
        let clock = reader.clock(&ingests, now, wall, read_all());
        assert_eq!((clock.ms, clock.holding), (wall - 1_500, 1));
        // Another, healthy ingest does not move it; the older word of the first neither.
        ingests.heard(said("b", wall, None), now);
        ingests.heard(said("a", wall - 100, None), now);
        assert_eq!(
            reader.clock(&ingests, now, wall, read_all()).ms,
            wall - 1_500
        );
        // Quiet: the clock stays 500 ms past its last word, whatever the wall clock says.
        let clock = reader.clock(&ingests, now, wall + 60_000, read_all());
        assert_eq!(clock.ms, wall - 1_500);
    }

    #[test]
    fn a_word_counts_once_the_reader_has_read_what_it_says_is_stored() {
        let (ingests, mut reader) = (ingests(), IngestClock::default());
        let now = Instant::now();
        let wall = 100_000;
        ingests.heard(said("a", wall, Some(wall - 5_000)), now);
        assert_eq!(
            reader.clock(&ingests, now, wall, read_all()).ms,
            wall - 4_500
        );
        // Its taps stored at last: up to offset 40 of partition 1, 7 of partition 2.
        let stored = |at| IngestProgress {
            ends: [(1, 40), (2, 7)].into(),
            ..said("a", at, None)
        };
        ingests.heard(stored(wall + 1_000), now);
        let clock = reader.clock(&ingests, now, wall + 1_000, read_to(&[(1, 35), (2, 7)]));
        assert_eq!(clock.ms, wall - 4_500, "partition 1 is not read to 40");
        // Words keep coming while the reader reads: it goes by the newest it has read.
        ingests.heard(
            IngestProgress {
                ends: [(1, 90), (2, 7)].into(),
                ..said("a", wall + 1_250, None)
            },
            now,
        );
        let clock = reader.clock(&ingests, now, wall + 1_250, read_to(&[(1, 40), (2, 7)]));
        assert_eq!(
            clock.ms,
            wall + 1_250,
            "the word of 40 read: its time plus 500 ms"
        );
        assert_eq!(
            reader
                .clock(&ingests, now, wall + 2_000, read_to(&[(1, 40), (2, 7)]))
                .ms,
            wall + 1_500
        );
        // Partitions not its own, or paused, do not hold it.
        assert_eq!(
            reader
                .clock(&ingests, now, wall + 2_000, read_to(&[(2, 7)]))
                .ms,
            wall + 1_750
        );
    }

    #[test]
    fn a_reader_that_starts_after_a_hold_waits_until_the_held_taps_are_read() {
        let (ingests, mut reader) = (ingests(), IngestClock::default());
        let now = Instant::now();
        let wall = 100_000;
        // Heard before the reader's first step (the history, at a start): a hold, then its
        // release with where the taps stored end.
        ingests.heard(said("a", wall - 3_000, Some(wall - 9_000)), now);
        ingests.heard(
            IngestProgress {
                ends: [(1, 40)].into(),
                ..said("a", wall, None)
            },
            now,
        );
        let held = reader.clock(&ingests, now, wall, read_to(&[(1, 35)]));
        assert_eq!(held.ms, wall - 8_500);
        let read = reader.clock(&ingests, now, wall, read_to(&[(1, 40)]));
        assert_eq!(read.ms, wall);
    }

    #[test]
    fn a_word_whose_ends_are_not_reached_for_the_timeout_is_gone_by_anyway() {
        let (ingests, mut reader) = (ingests(), IngestClock::default());
        let now = Instant::now();
        ingests.heard(said("a", 10_000, Some(5_000)), now);
        assert_eq!(reader.clock(&ingests, now, 20_000, read_all()).ms, 5_500);
        // The topic made anew: its ends are never reached.
        ingests.heard(
            IngestProgress {
                ends: [(0, 1_000)].into(),
                ..said("a", 11_000, None)
            },
            now,
        );
        let waiting = reader.clock(&ingests, now, 20_000, read_to(&[(0, 3)]));
        assert_eq!(waiting.ms, 5_500);
        let later = now + TIMEOUT;
        let gone_by = reader.clock(&ingests, later, 20_000, read_to(&[(0, 3)]));
        assert_eq!(gone_by.ms, 11_500);
    }

    #[test]
    fn stopped_stuck_and_silent_ingests_stop_holding_the_clock() {
        let (ingests, mut reader) = (ingests(), IngestClock::default());
        let start = Instant::now();
        ingests.heard(said("stopped", 10_000, Some(5_000)), start);
        assert_eq!(reader.clock(&ingests, start, 20_000, read_all()).ms, 5_500);
        // Its last word: held until read through.
        let last = IngestProgress {
            stopped: true,
            ends: [(0, 10)].into(),
            ..said("stopped", 11_000, None)
        };
        ingests.heard(last, start);
        let clock = reader.clock(&ingests, start, 20_000, read_to(&[(0, 9)]));
        assert_eq!((clock.ms, clock.known), (5_500, 0));
        let clock = reader.clock(&ingests, start, 20_000, read_to(&[(0, 10)]));
        assert_eq!((clock.ms, clock.known), (20_000, 0));
        // A stopped ingest's earlier word, arriving late, does not bring it back.
        ingests.heard(said("stopped", 10_999, Some(5_000)), start);
        assert_eq!(reader.clock(&ingests, start, 20_000, read_all()).ms, 20_000);
        // A tap pending for the timeout is no longer waited for.
        ingests.heard(said("stuck", 40_000, Some(10_000)), start);
        let clock = reader.clock(&ingests, start, 40_000, read_all());
        assert_eq!((clock.ms, clock.known, clock.holding), (40_000, 1, 0));
        // Not heard from for the timeout: forgotten.
        ingests.heard(said("silent", 39_000, None), start);
        assert_eq!(reader.clock(&ingests, start, 60_000, read_all()).ms, 39_500);
        ingests.look(start + TIMEOUT, 70_000);
        let clock = reader.clock(&ingests, start + TIMEOUT, 70_000, read_all());
        assert_eq!((clock.ms, clock.known), (70_000, 0));
    }

    #[test]
    fn until_the_history_is_read_the_clock_stays_at_the_start() {
        let ingests = Ingests::new(1_000, TIMEOUT);
        let mut reader = IngestClock::default();
        let (at, ms) = ingests.started;
        assert_eq!(reader.clock(&ingests, at, ms + 5_000, read_all()).ms, ms);
        assert_eq!(
            reader
                .clock(&ingests, at + TIMEOUT, ms + 40_000, read_all())
                .ms,
            ms + 40_000,
            "for the timeout at most"
        );
    }
}
