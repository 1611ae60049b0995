//! What a partition's committed offset carries as metadata, so that a restart decides every
//! event it reads again exactly as the run before it did.
//!
//! An event is on time, late or already counted depending on more than its offset: on its
//! partition's watermark (rebuilt from the largest timestamp before the committed offset),
//! and on when its worker closed each window, which depends on the other partitions, on
//! idleness and on the wall clock. So before a worker closes windows it commits, for each of
//! its partitions, the windows closed so far (`closed_before`) and, per closed window that
//! still has events at or after the committed offset, the last offset of the partition
//! counted in it. A restart then counts an event of a closed window only if the earlier run
//! had (its offset is at most that last one), and reports it late otherwise: nothing is
//! counted twice and nothing is lost, whatever the moment of the kill.
//!
//! Checkpoints go to a topic of their own, partition `p` for partition `p` of the events
//! topic, one record (`OFFSET;TEXT`) per commit, each waited for: the newest record of a
//! partition is its state. The consumer group's offsets are committed as well, for the
//! tools that watch a group's lag.
//!
//! An event that amended a closed window (within the allowed lateness) counts once the
//! window's revision for the time it went out at is published. The checkpoint written before
//! that time closes names, per window and time, the last offset amending it; a restart counts
//! such an event again only if the windows topic holds a message of its window at that time or
//! later (final and revised messages carry their time in a header), and reports it late
//! otherwise (the window's totals, to amend, are not rebuilt).
//!
//! A late or invalid record is published once: the checkpoint names where the late topic's
//! partitions ended before the event at its offset was read, and a restart reads the late
//! topic from there, so it knows which events read again were reported already (`reported`).
//!
//! The text is `3;SETTINGS;MAX_SEEN;CLOSED_BEFORE;PUBLISHED_BEFORE;P,P,...;W:L,...;W:T:L,...`
//! with `SETTINGS` what the state was made with (`Settings`: `EVENTS/PARTITIONS/WINDOW_MS/
//! WINDOWS,...`, the windows topics newest first), `PUBLISHED_BEFORE` the time
//! before which every window was published, `P` the late topic's positions, `W` a closed window and `T` a time as the number of windows before
//! `CLOSED_BEFORE`, `L` an offset minus the committed offset: first each closed window's last
//! counted offset, then each amended window's last amending offset per time. Version `2;`
//! (before) has no positions; a bare number (older) is the largest timestamp alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use model::WindowSize;
use model::names::{CLAIM_HEADER, RUN_HEADER};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use super::context::read_back_consumer;
use crate::failure::Failure;

/// Per partition of the events topic: the offset to resume from and its checkpoint text.
pub type Checkpoints = HashMap<i32, (i64, String)>;

/// The partitions whose newest checkpoint is a claim (a run's first, written before it read
/// anything).
pub type Claims = std::collections::HashSet<i32>;

/// The newest checkpoint of every partition in `topic`: each partition's last record that
/// counts (see [`Owners`]), among its last [`OWNER_TAIL`]; and which of them are claims.
pub fn read_checkpoints(brokers: &str, topic: &str) -> Result<(Checkpoints, Claims), Failure> {
    let kafka = |action: &str| {
        let action = format!("{action} the checkpoints in {topic}");
        move |e| Failure::kafka(action, e)
    };
    let consumer = read_back_consumer(brokers, topic).map_err(kafka("create a consumer for"))?;
    let partitions = service::kafka::partitions_of(&consumer, topic).map_err(kafka("find"))?;
    let mut assignment = TopicPartitionList::new();
    let mut at_end = std::collections::HashSet::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(kafka("find the end of"))?;
        if high <= low {
            at_end.insert(p);
            continue;
        }
        // The last records tell which run owns the partition, and its last one is the
        // partition's state: the ones before them are not read.
        assignment
            .add_partition_offset(topic, p, Offset::Offset((high - OWNER_TAIL).max(low)))
            .map_err(kafka("assign"))?;
    }
    consumer.assign(&assignment).map_err(kafka("assign"))?;
    let mut newest = Newest::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions.len() {
        if Instant::now() > deadline {
            return Err(Failure::kafka(
                format!("read to the end of {topic} within 30 s"),
                KafkaError::NoMessageReceived,
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let text = std::str::from_utf8(message.payload().unwrap_or_default()).ok();
                let parsed = text.and_then(|t| {
                    let (offset, state) = t.split_once(';')?;
                    Some((offset.parse::<i64>().ok()?, state.to_owned()))
                });
                match parsed {
                    Some(checkpoint) => {
                        newest.see(message.partition(), run_of(&message), checkpoint);
                    }
                    None => tracing::warn!(
                        %topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        "Not a checkpoint; skipped."
                    ),
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(error)) => tracing::warn!(%error, %topic, "Reading the checkpoints."),
            None => {}
        }
    }
    Ok(newest.checkpoints())
}

/// Per partition, read in order: the newest checkpoint of the run that owns it, the run of
/// the last claim read (a run claims its partitions with its first checkpoints), or, with no
/// claim among the records read, of the last record. What a run taken over from wrote after
/// the claim (a dataflow that had not yet seen it and stopped) is not the partition's state.
#[derive(Debug, Default)]
pub(crate) struct Newest {
    partitions: HashMap<i32, Read>,
}

/// What was read of one partition.
#[derive(Debug, Default)]
struct Read {
    /// The run of the last claim.
    last_claim: Option<String>,
    /// The run of the last record.
    last_run: String,
    /// Each run's last checkpoint, and whether it is a claim.
    by_run: HashMap<String, ((i64, String), bool)>,
}

impl Newest {
    pub(crate) fn see(
        &mut self,
        partition: i32,
        (run, claim): (&str, bool),
        checkpoint: (i64, String),
    ) {
        let read = self.partitions.entry(partition).or_default();
        if claim {
            read.last_claim = Some(run.to_owned());
        }
        run.clone_into(&mut read.last_run);
        read.by_run.insert(run.to_owned(), (checkpoint, claim));
    }

    pub(crate) fn checkpoints(self) -> (Checkpoints, Claims) {
        let mut claims = Claims::new();
        let newest = self
            .partitions
            .into_iter()
            .filter_map(|(p, mut read)| {
                let owner = read.last_claim.take().unwrap_or(read.last_run);
                let (checkpoint, claim) = read.by_run.remove(&owner)?;
                if claim {
                    claims.insert(p);
                }
                Some((p, checkpoint))
            })
            .collect();
        (newest, claims)
    }
}

/// How many of the last records of each checkpoint partition a restart reads to tell which
/// run owns it: far more than a dataflow taken over from writes before it stops.
pub const OWNER_TAIL: i64 = 1000;

/// The headers of a checkpoint of this run: the run, and whether the checkpoint claims its
/// partition.
pub(super) fn run_headers(claim: bool) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: RUN_HEADER,
        value: Some(service::kafka::run_id()),
    });
    if claim {
        headers.insert(Header {
            key: CLAIM_HEADER,
            value: Some("claim"),
        })
    } else {
        headers
    }
}

/// The run that wrote a checkpoint record (empty for a version that did not name it), and
/// whether the record claims its partition.
pub(super) fn run_of(message: &impl Message) -> (&str, bool) {
    let Some(headers) = message.headers() else {
        return ("", false);
    };
    let run = headers
        .iter()
        .find(|h| h.key == RUN_HEADER)
        .and_then(|h| h.value)
        .and_then(|value| std::str::from_utf8(value).ok())
        .unwrap_or_default();
    (run, headers.iter().any(|h| h.key == CLAIM_HEADER))
}

/// Which run owns each partition of the checkpoint topic, read in order from before this
/// run's claims (the watch of a running dataflow): each run claims its partitions with its
/// first checkpoints, and a later claim takes a partition over: a dataflow started with the
/// group of one still running becomes the partitions' owner, and the one taken over from
/// stops once it sees that.
#[derive(Debug, Default)]
pub(super) struct Owners {
    owner: HashMap<i32, String>,
    taken_from: std::collections::HashSet<(i32, String)>,
}

impl Owners {
    /// Whether a record of `run` in `partition` (a claim, or not), read after the ones
    /// before, counts. The first one read makes its run the owner.
    pub(super) fn counts(&mut self, partition: i32, (run, claim): (&str, bool)) -> bool {
        if self.taken_from.contains(&(partition, run.to_owned())) {
            return false;
        }
        match self.owner.get(&partition) {
            Some(owner) if owner == run => true,
            Some(owner) if claim => {
                self.taken_from.insert((partition, owner.clone()));
                self.owner.insert(partition, run.to_owned());
                true
            }
            Some(_) => false,
            None => {
                self.owner.insert(partition, run.to_owned());
                true
            }
        }
    }

    /// Whether `run` was taken over from in `partition`, and by which run.
    pub(super) fn taken_over(&self, partition: i32, run: &str) -> Option<&str> {
        self.taken_from
            .contains(&(partition, run.to_owned()))
            .then(|| self.owner.get(&partition).map(String::as_str))
            .flatten()
    }
}

/// Appends `;` and the `entries` (newest window first), comma-separated, as long as the text
/// stays under `limit` bytes; the first window left out, if any.
fn push_entries(
    text: &mut String,
    entries: impl Iterator<Item = (i64, String)>,
    limit: usize,
) -> Option<i64> {
    text.push(';');
    let mut first = true;
    for (window, entry) in entries {
        if text.len() + entry.len() + 1 > limit {
            return Some(window);
        }
        if !first {
            text.push(',');
        }
        first = false;
        text.push_str(&entry);
    }
    None
}

/// The longest checkpoint record: well under the 1,000,000 bytes a Kafka record may have by
/// default, and room for tens of thousands of windows (a few bytes each).
const RECORD_MAX_LEN: usize = 500_000;

/// The longest metadata committed with the group's offsets (Kafka brokers keep at most 4,096
/// bytes by default): a fallback only, for groups without a checkpoint record.
const METADATA_MAX_LEN: usize = 4_000;

/// The state committed with a partition's offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The largest event time before the committed offset.
    pub max_seen: Option<i64>,
    /// Windows starting before this were closed by the worker (`None`: not known).
    pub closed_before: Option<i64>,
    /// Per closed window: the last offset of the partition counted in it.
    pub last_counted: BTreeMap<i64, i64>,
    /// Per amended window and the time its amendments went out at: the last offset amending it.
    pub amended: BTreeMap<(i64, i64), i64>,
    /// Per partition of the late topic, where it ended before the event at the offset was
    /// read: the late and invalid records of that event and later ones are at or after it
    /// (empty: not known).
    pub late_from: Vec<i64>,
    /// The settings the state was made with (`None`: a checkpoint of a version before).
    pub settings: Option<Settings>,
    /// Every window starting before this was published when the checkpoint was written.
    pub published_before: Option<i64>,
}

/// The settings a checkpoint's state was made with: a restart with other settings carries
/// the state over where it can, and otherwise refuses to start (see `recovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The events topic the offsets are of.
    pub events_topic: String,
    /// Its partitions.
    pub partitions: i32,
    /// The window size, ms (closed windows are written relative to it).
    pub window_ms: i64,
    /// Where the windows were published: the topic the run publishes to, then those earlier
    /// runs published to, if they were others (a size added renames the live size's), at
    /// most [`WINDOWS_TOPICS_KEPT`].
    pub windows_topics: Vec<String>,
}

impl Settings {
    /// `EVENTS/PARTITIONS/WINDOW_MS/WINDOWS,...` (a topic name has no `/`, `;` or `,`).
    fn encode(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.events_topic,
            self.partitions,
            self.window_ms,
            self.windows_topics.join(",")
        )
    }

    fn decode(text: &str) -> Option<Settings> {
        let mut fields = text.split('/');
        let settings = Settings {
            events_topic: fields.next()?.to_owned(),
            partitions: fields.next()?.parse().ok()?,
            window_ms: fields.next()?.parse().ok()?,
            windows_topics: fields.next()?.split(',').map(str::to_owned).collect(),
        };
        fields.next().is_none().then_some(settings)
    }
}

/// How many windows topics a checkpoint names at most: the one its run publishes to and the
/// ones earlier runs published to, newest first (renames are rare: a size added or removed
/// renames the live size's topic, and back).
pub const WINDOWS_TOPICS_KEPT: usize = 4;

/// The latest time before which the newest checkpoints of `checkpoints` say every window was
/// published, if any says.
pub fn recorded_published_before(checkpoints: &Checkpoints, size: WindowSize) -> Option<i64> {
    checkpoints
        .values()
        .filter_map(|(offset, text)| Checkpoint::decode(text, *offset, size).published_before)
        .max()
}

/// The settings each of `checkpoints` names, if it names them, in the order of their
/// partitions.
fn settings_of(checkpoints: &Checkpoints, size: WindowSize) -> impl Iterator<Item = Settings> {
    let mut ordered: Vec<_> = checkpoints.iter().collect();
    ordered.sort_by_key(|(p, _)| **p);
    ordered
        .into_iter()
        .filter_map(move |(_, (offset, text))| Checkpoint::decode(text, *offset, size).settings)
}

/// The windows topics any of `checkpoints` names, each once, the newest checkpoints' first.
pub fn recorded_windows_topics(checkpoints: &Checkpoints, size: WindowSize) -> Vec<String> {
    let mut settings: Vec<Settings> = settings_of(checkpoints, size).collect();
    settings.sort_by_key(|s| std::cmp::Reverse(s.partitions));
    let mut topics: Vec<String> = Vec::new();
    for topic in settings.into_iter().flat_map(|s| s.windows_topics) {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    topics
}

/// The settings the newest checkpoints of `checkpoints` were made with (the most partitions
/// any names), if any names them.
pub fn recorded_settings(checkpoints: &Checkpoints, size: WindowSize) -> Option<Settings> {
    settings_of(checkpoints, size).max_by_key(|s| s.partitions)
}

impl Checkpoint {
    /// The text for a commit at `offset`, for windows of `size`, at most `limit` bytes, and
    /// the newest window left out for want of room, if any. Windows whose last counted offset
    /// is before `offset` are left out (those events are not read again); past `limit`, the
    /// oldest windows are left out too: a restart reports their events late.
    fn encode(&self, offset: i64, size: WindowSize, limit: usize) -> (String, Option<i64>) {
        let late_from: Vec<String> = self.late_from.iter().map(i64::to_string).collect();
        let number = |n: Option<i64>| n.map_or(String::new(), |n| n.to_string());
        let mut text = format!(
            "3;{};{};{};{};{}",
            self.settings
                .as_ref()
                .map_or(String::new(), Settings::encode),
            number(self.max_seen),
            number(self.closed_before),
            number(self.published_before),
            late_from.join(",")
        );
        let Some(closed_before) = self.closed_before else {
            return (text, None);
        };
        let windows_before = |t: i64| (closed_before - t) / size.millis();
        let counted = self
            .last_counted
            .iter()
            .rev()
            .filter(|&(&window, &last)| last >= offset && window < closed_before)
            .map(|(&window, &last)| {
                let entry = format!("{}:{}", windows_before(window), last - offset);
                (window, entry)
            });
        let counted_left_out = push_entries(&mut text, counted, limit);
        let amended = self
            .amended
            .iter()
            .rev()
            .filter(|&(&(_, time), &last)| last >= offset && time <= closed_before)
            .map(|(&(window, time), &last)| {
                let (w, t) = (windows_before(window), windows_before(time));
                (window, format!("{w}:{t}:{}", last - offset))
            });
        let amended_left_out = push_entries(&mut text, amended, limit);
        (text, counted_left_out.max(amended_left_out))
    }

    /// The checkpoint record's text for a commit at `offset`: up to [`RECORD_MAX_LEN`] bytes,
    /// and the newest window left out for want of room, if any.
    pub fn record_text(&self, offset: i64, size: WindowSize) -> (String, Option<i64>) {
        self.encode(offset, size, RECORD_MAX_LEN)
    }

    /// The metadata committed with the group's offset (a fallback for tools and for groups
    /// without checkpoint records): up to [`METADATA_MAX_LEN`] bytes, the newest windows kept.
    pub fn metadata_text(&self, offset: i64, size: WindowSize) -> String {
        self.encode(offset, size, METADATA_MAX_LEN).0
    }

    /// The state committed with `offset`, from its metadata `text` (empty when unreadable).
    pub fn decode(text: &str, offset: i64, size: WindowSize) -> Checkpoint {
        let number = |s: &str| s.parse::<i64>().ok();
        let (rest, version) = match (text.strip_prefix("3;"), text.strip_prefix("2;")) {
            (Some(rest), _) => (rest, 3),
            (None, Some(rest)) => (rest, 2),
            (None, None) => {
                return Checkpoint {
                    max_seen: number(text),
                    ..Checkpoint::default()
                };
            }
        };
        let mut fields = rest.splitn(if version == 3 { 7 } else { 4 }, ';');
        let settings = if version == 3 {
            fields.next().and_then(Settings::decode)
        } else {
            None
        };
        let max_seen = fields.next().and_then(number);
        let closed_before = fields.next().and_then(number);
        let published_before = if version == 3 {
            fields.next().and_then(number)
        } else {
            None
        };
        let late_from = if version == 3 {
            let positions = fields.next().unwrap_or_default();
            let parsed: Option<Vec<i64>> = positions
                .split(',')
                .filter(|p| !p.is_empty())
                .map(number)
                .collect();
            parsed.unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut last_counted = BTreeMap::new();
        if let (Some(closed_before), Some(entries)) = (closed_before, fields.next()) {
            for entry in entries.split(',').filter(|e| !e.is_empty()) {
                let parsed = entry
                    .split_once(':')
                    .and_then(|(w, l)| Some((number(w)?, number(l)?)));
                if let Some((windows_before, last)) = parsed {
                    last_counted.insert(
                        closed_before - windows_before * size.millis(),
                        offset + last,
                    );
                }
            }
        }
        let mut amended = BTreeMap::new();
        if let (Some(closed_before), Some(entries)) = (closed_before, fields.next()) {
            let at = |windows_before: i64| closed_before - windows_before * size.millis();
            for entry in entries.split(',').filter(|e| !e.is_empty()) {
                let mut parts = entry.splitn(3, ':').map(number);
                if let (Some(Some(w)), Some(Some(t)), Some(Some(l))) =
                    (parts.next(), parts.next(), parts.next())
                {
                    amended.insert((at(w), at(t)), offset + l);
                }
            }
        }
        Checkpoint {
            max_seen,
            closed_before,
            last_counted,
            amended,
            late_from,
            settings,
            published_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_that_claimed_last_owns_a_partition_and_the_one_taken_over_from_never_again() {
        let mut owners = Owners::default();
        let (claim, write) = (true, false);
        // An older version's records (no run), then run a claims and writes.
        assert!(owners.counts(0, ("", write)));
        assert!(owners.counts(0, ("a", claim)));
        assert!(owners.counts(0, ("a", write)));
        assert_eq!(owners.taken_over(0, "a"), None);
        // b claims beside it; a writes on before it sees it was taken over from.
        assert!(owners.counts(0, ("b", claim)));
        assert!(!owners.counts(0, ("a", write)));
        assert!(owners.counts(0, ("b", write)));
        assert_eq!(owners.taken_over(0, "a"), Some("b"));
        assert_eq!(owners.taken_over(0, "b"), None);
        // Partitions are apart: a still owns partition 1.
        assert!(owners.counts(1, ("a", write)));
        assert_eq!(owners.taken_over(1, "a"), None);
        // A reader that starts between a's writes and b's claim: a owns until b claims.
        let mut late_reader = Owners::default();
        assert!(late_reader.counts(0, ("a", write)));
        assert!(late_reader.counts(0, ("b", claim)));
        assert!(!late_reader.counts(0, ("a", write)));
        assert_eq!(late_reader.taken_over(0, "a"), Some("b"));
        // A run that writes without having claimed since the owner did never counts.
        assert!(!late_reader.counts(0, ("c", write)));
        assert_eq!(late_reader.taken_over(0, "b"), None);
        // And c after b, claiming.
        assert!(owners.counts(0, ("c", claim)));
        assert!(!owners.counts(0, ("b", write)));
        assert_eq!(owners.taken_over(0, "b"), Some("c"));
    }

    #[test]
    fn a_restart_takes_the_newest_checkpoint_of_the_run_that_claimed_last() {
        let ck = |n: i64| (n, format!("state {n}"));
        // b claims while a runs; a writes twice more before it stops; b writes on.
        let mut newest = Newest::default();
        newest.see(0, ("a", false), ck(1));
        newest.see(0, ("b", true), ck(2));
        newest.see(0, ("a", false), ck(3));
        newest.see(0, ("b", false), ck(4));
        newest.see(0, ("a", false), ck(5));
        // The records read start after a's claim, and b claimed nothing there: its last.
        newest.see(1, ("a", false), ck(6));
        newest.see(1, ("a", false), ck(7));
        // Read from among a's last records after b's claim, which is before them: the last
        // record's run (b wrote after a stopped).
        newest.see(2, ("a", false), ck(8));
        newest.see(2, ("b", false), ck(9));
        let (got, claims) = newest.checkpoints();
        assert_eq!(got[&0], ck(4));
        assert_eq!(got[&1], ck(7));
        assert_eq!(got[&2], ck(9));
        assert!(claims.is_empty());
        // A run that stopped right after its claims: its claim is the partition's newest.
        let mut newest = Newest::default();
        newest.see(0, ("a", false), ck(1));
        newest.see(0, ("b", true), ck(2));
        assert_eq!(newest.checkpoints().1, Claims::from([0]));
    }

    #[test]
    fn a_checkpoint_reads_back_what_was_written() {
        let size = WindowSize::default();
        let checkpoint = Checkpoint {
            max_seen: Some(1_700_000_003_000),
            closed_before: Some(1_700_000_002_000),
            last_counted: BTreeMap::from([
                (1_699_999_998_000, 90), // before the offset: not read again, left out
                (1_700_000_000_000, 130),
            ]),
            amended: BTreeMap::default(),
            late_from: vec![7, 0, 12],
            settings: Some(Settings {
                events_topic: "emoji-events".into(),
                partitions: 4,
                window_ms: 2000,
                windows_topics: vec!["emoji-windows-2s".into(), "emoji-windows".into()],
            }),
            published_before: Some(1_699_999_998_000),
        };
        let text = checkpoint.encode(100, size, RECORD_MAX_LEN).0;
        assert_eq!(
            text,
            "3;emoji-events/4/2000/emoji-windows-2s,emoji-windows;1700000003000;1700000002000;1699999998000;7,0,12;1:30;"
        );
        let read = Checkpoint::decode(&text, 100, size);
        assert_eq!(read.max_seen, checkpoint.max_seen);
        assert_eq!(read.closed_before, checkpoint.closed_before);
        assert_eq!(
            read.last_counted,
            BTreeMap::from([(1_700_000_000_000, 130)])
        );
        assert_eq!(read.late_from, [7, 0, 12]);
        assert_eq!(read.settings, checkpoint.settings);
        assert_eq!(read.published_before, checkpoint.published_before);
        // The format before had no late-topic positions.
        let before = Checkpoint::decode("2;1700000003000;1700000002000;1:30;", 100, size);
        assert_eq!(before.last_counted, read.last_counted);
        assert!(before.late_from.is_empty());
    }

    #[test]
    fn amended_windows_read_back_with_their_times() {
        let size = WindowSize::default();
        let checkpoint = Checkpoint {
            max_seen: Some(1_700_000_013_000),
            closed_before: Some(1_700_000_010_000),
            last_counted: BTreeMap::new(),
            amended: BTreeMap::from([
                ((1_700_000_000_000, 1_700_000_008_000), 140),
                ((1_700_000_000_000, 1_700_000_010_000), 150),
                ((1_699_999_990_000, 1_700_000_004_000), 99), // before the offset: left out
            ]),
            late_from: Vec::new(),
            settings: None,
            published_before: None,
        };
        let text = checkpoint.encode(100, size, RECORD_MAX_LEN).0;
        assert_eq!(text, "3;;1700000013000;1700000010000;;;;5:0:50,5:1:40");
        let read = Checkpoint::decode(&text, 100, size);
        let kept: BTreeMap<_, _> = checkpoint
            .amended
            .into_iter()
            .filter(|(_, last)| *last >= 100)
            .collect();
        assert_eq!(read.amended, kept);
        assert_eq!(read.closed_before, checkpoint.closed_before);
    }

    #[test]
    fn the_old_format_and_nothing_read_as_what_they_say() {
        let size = WindowSize::default();
        assert_eq!(
            Checkpoint::decode("1700000003000", 5, size),
            Checkpoint {
                max_seen: Some(1_700_000_003_000),
                ..Checkpoint::default()
            }
        );
        assert_eq!(Checkpoint::decode("", 5, size), Checkpoint::default());
        let empty = Checkpoint::default();
        assert_eq!(
            Checkpoint::decode(&empty.encode(5, size, RECORD_MAX_LEN).0, 5, size),
            empty
        );
    }

    #[test]
    fn a_record_holds_thousands_of_windows_and_the_metadata_the_newest_under_the_limit() {
        let size = WindowSize::default();
        let checkpoint = Checkpoint {
            max_seen: Some(0),
            closed_before: Some(10_000_000),
            last_counted: (0..5_000).map(|w| (w * 2_000, 1_000_000 + w)).collect(),
            amended: BTreeMap::default(),
            late_from: Vec::new(),
            settings: None,
            published_before: None,
        };
        let (record, left_out) = checkpoint.record_text(0, size);
        assert_eq!(left_out, None);
        let record = Checkpoint::decode(&record, 0, size);
        assert_eq!(record.last_counted, checkpoint.last_counted);
        let text = checkpoint.metadata_text(0, size);
        assert!(text.len() <= METADATA_MAX_LEN);
        let read = Checkpoint::decode(&text, 0, size);
        assert_eq!(read.last_counted.keys().next_back(), Some(&(4_999 * 2_000)));
        assert!(read.last_counted.len() > 100);
    }
}
