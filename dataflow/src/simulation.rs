//! The deterministic simulation of the live source and its recovery.
//!
//! The broker is an in-memory log and the clock is simulated; the windows and publishers are
//! a model of what the timely operators do (a window closes once every worker's source has
//! passed it; finals and revisions go one message at a time to every cluster topic and then
//! the windows topic; late and invalid records to the late topic). What decides is the
//! product's own code: each worker's source state (`source::kafka::state`: where partitions
//! start, every event's route, every checkpoint, when windows close, the read-ahead bound,
//! partitions added) and the restart's read-back (`recovery::recover`, with the checkpoint
//! codec, the owner of each checkpoint partition and the late records read back).
//!
//! Each seed sends randomized traffic (lulls, backfills, viewers' clocks ahead and behind,
//! invalid messages) through runs of one or two window sizes and one to three workers, each
//! run ended by a kill between any two writes (checkpoint, cluster topic, windows topic, late
//! topic), by a refused checkpoint write or by a stop, and restarted with changed settings:
//! a size added or removed, another worker count, partitions added while stopped or while it
//! runs, and settings the state cannot be carried over to, which must be refused. After the
//! last run, for every window size: the last message of every window counts exactly the
//! events of the log that count in it, every late or invalid event is reported exactly once,
//! and windows + late + invalid = events; on the way, no final goes out before its window's
//! end plus the lateness by the clock, and revisions only grow.
//!
//! `EMOSTREAM_SIM_SEEDS` seeds (default [`DEFAULT_SEEDS`]) from `EMOSTREAM_SIM_FIRST` (default
//! 0); a failure names its seed, which `EMOSTREAM_SIM_SEED=N` replays alone.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::report::{WindowMessage, WindowReport, WindowState};
use model::{ReportConfig, WindowSize, WindowSpec};

use crate::fate::Rules;
use crate::live::{LiveConfig, LiveError};
use crate::metrics::DataflowMetrics;
use crate::recovery::{self, Broker, Published, Tail};
use crate::source::kafka::{
    Checkpoints, Claims, LiveSide, Newest, OWNER_TAIL, Partition, Reading, Reported, SourceState,
};

/// Seeds a plain `cargo test` runs.
const DEFAULT_SEEDS: u64 = 2_000;

/// The simulated clock's start (2023-11-14).
const T0: i64 = 1_700_000_000_000;

/// Partitions of the late topic.
const LATE_PARTITIONS: usize = 2;

/// The most partitions the events topic grows to.
const MAX_PARTITIONS: i32 = 4;

/// The live window size, ms (the per-10-seconds one may run beside it).
const LIVE_MS: i64 = 2_000;

/// How often (per 1,000) the broker refuses a checkpoint write.
const REFUSED_PER_MILLE: u64 = 20;

/// A partition read to its end and without new events this long is idle, ms.
const IDLE_MS: i64 = 3_000;

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `[lo, hi)`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// True `per_mille` times in 1,000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A message of the events topic.
struct Appended {
    payload: Vec<u8>,
    /// Its record timestamp: when it was taken.
    received: i64,
}

/// What an event is, for the checks.
struct Truth {
    partition: i32,
    offset: i64,
    /// The time it counts at, if valid.
    time: Option<i64>,
}

/// A record of a checkpoint topic.
struct CheckpointRecord {
    run: String,
    claim: bool,
    offset: i64,
    text: String,
}

/// A message of a windows or cluster topic.
#[derive(Clone)]
struct WindowRecord {
    key: String,
    /// Its dataflow time (the time header).
    time: i64,
    message: WindowMessage,
    /// The events it counts (their serial numbers).
    counted: Vec<u64>,
    /// When it was written: the log's write count.
    seq: u64,
}

/// The broker: every topic, and the kill switch of the running process.
#[derive(Default)]
struct Log {
    events: Vec<Vec<Appended>>,
    checkpoints: HashMap<String, Vec<Vec<CheckpointRecord>>>,
    /// Windows and cluster topics.
    topics: HashMap<String, Vec<WindowRecord>>,
    late: Vec<Vec<Vec<u8>>>,
    /// Writes so far; the process is killed before write number `kill_at`.
    writes: u64,
    kill_at: u64,
    clock: i64,
    /// Finals written before their window's end plus the lateness by the clock.
    premature: Vec<String>,
}

impl Log {
    /// Whether the running process makes its next write (it is killed before the
    /// `kill_at`th).
    fn write(&mut self) -> bool {
        if self.dead() {
            return false;
        }
        self.writes += 1;
        true
    }

    fn dead(&self) -> bool {
        self.writes >= self.kill_at
    }

    fn late_ends(&self) -> Vec<i64> {
        self.late.iter().map(|p| p.len() as i64).collect()
    }

    fn partitions(&self) -> i32 {
        self.events.len() as i32
    }

    /// Appends a window message to `topic`, if the process is alive.
    fn publish(&mut self, topic: &str, mut record: WindowRecord, lateness_ms: i64) {
        if !self.write() {
            return;
        }
        record.seq = self.writes;
        let end = record.message.report.window_end;
        if record.message.state == WindowState::Final && self.clock < end + lateness_ms {
            self.premature.push(format!(
                "the final of {} went to {topic} at {} (before its end plus the lateness)",
                record.key, self.clock
            ));
        }
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .push(record);
    }

    fn by_seq(&self, seq: u64) -> Option<WindowRecord> {
        self.topics
            .values()
            .flatten()
            .find(|r| r.seq == seq)
            .cloned()
    }
}

/// A restart's read-back from the log.
struct ReadBack<'a> {
    log: &'a mut Log,
    lateness_ms: i64,
}

impl Broker for ReadBack<'_> {
    fn checkpoints(&mut self, topic: &str) -> Result<(Checkpoints, Claims), LiveError> {
        let mut newest = Newest::default();
        for (p, records) in self
            .log
            .checkpoints
            .get(topic)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let from = records.len().saturating_sub(OWNER_TAIL as usize);
            for r in &records[from..] {
                newest.see(p as i32, (&r.run, r.claim), (r.offset, r.text.clone()));
            }
        }
        Ok(newest.checkpoints())
    }

    fn has_topic(&mut self, topic: &str) -> Result<bool, LiveError> {
        Ok(self.log.topics.contains_key(topic))
    }

    fn tail(&mut self, topics: &[String], clusters: &[String]) -> Result<Tail, LiveError> {
        let mut tail = Tail::default();
        for topic in topics {
            for r in self.log.topics.get(topic).into_iter().flatten() {
                if r.message.state != WindowState::Open {
                    tail.see(r.time, &r.message);
                }
            }
        }
        tail.lasts = clusters
            .iter()
            .map(|c| {
                // An open update is not a publication to complete.
                let r = self.log.topics.get(c)?.last()?;
                if r.message.state == WindowState::Open {
                    return None;
                }
                Some(Published {
                    key: r.key.clone(),
                    payload: r.seq.to_string().into_bytes(),
                    time: r.time,
                    message: r.message.clone(),
                })
            })
            .collect();
        Ok(tail)
    }

    fn republish(
        &mut self,
        topics: &[String],
        (_, payload, _): (&str, &[u8], i64),
    ) -> Result<(), LiveError> {
        let seq: u64 = std::str::from_utf8(payload).unwrap().parse().unwrap();
        let record = self.log.by_seq(seq).expect("a message read back");
        for topic in topics {
            self.log.publish(topic, record.clone(), self.lateness_ms);
        }
        Ok(())
    }

    fn reported(
        &mut self,
        _late_topic: &str,
        checkpoints: &Checkpoints,
        size: WindowSize,
        invalid_too: bool,
    ) -> Result<Reported, LiveError> {
        let (mut reported, reading) =
            Reading::plan(checkpoints, size, invalid_too, self.log.late_ends());
        for (i, partition) in self.log.late.iter().enumerate() {
            for payload in &partition[reported.from()[i] as usize..reported.ends()[i] as usize] {
                reading.see(&mut reported, payload);
            }
        }
        Ok(reported)
    }
}

/// A worker's source of one dataflow.
struct Worker {
    state: SourceState,
    committed_frontier: i64,
    /// Drained after a stop.
    drained: bool,
}

/// A message on its way to the topics.
struct Outgoing {
    time: i64,
    record: WindowRecord,
    /// The topics it goes to, in the order written (the cluster topics in any order, as the
    /// real publisher's are in flight together; the windows topic last), and how many have it.
    order: Vec<usize>,
    done: usize,
}

/// A window still open: the events counted so far, the revision of its last update and
/// whether it changed since.
#[derive(Default)]
struct Open {
    counted: Vec<u64>,
    revision: u64,
    changed: bool,
}

/// The dataflow of one window size: its workers' sources, and a model of its window operators
/// and publishers.
struct Dataflow {
    size: WindowSize,
    label: String,
    lateness_ms: i64,
    workers: Vec<Worker>,
    checkpoint_topic: String,
    /// The cluster topics (the live size's) and then the windows topic.
    topics: Vec<String>,
    /// Open windows.
    open: BTreeMap<i64, Open>,
    /// Whether open windows get updates (the live size: revisions then follow the clock).
    updates: bool,
    /// Closed windows, for amendments: their revision and events.
    kept: BTreeMap<i64, (u64, Vec<u64>)>,
    /// Amendments by the time they went out at: their window and event.
    growing: BTreeMap<i64, Vec<(i64, u64)>>,
    outbox: VecDeque<Outgoing>,
    /// Per worker, its late and invalid records not written yet (each worker publishes its
    /// own).
    side: Vec<VecDeque<(i64, Vec<u8>)>>,
    /// Per worker and partition, the clock when it last read a message of it.
    last_read: HashMap<(usize, i32), i64>,
    /// The clock when the run started.
    started: i64,
    run: String,
    /// Tells every decision (replaying a failed seed).
    verbose: bool,
}

impl Dataflow {
    /// Where every worker's source is: windows before it are closed.
    fn frontier(&self) -> i64 {
        self.workers
            .iter()
            .map(|w| w.state.time)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Every window and record before this is published: what the operators still hold
    /// (open windows at their start, amendments at their time) and what is not written yet
    /// hold it back.
    fn published_frontier(&self) -> i64 {
        let held = self.open.keys().chain(self.growing.keys()).copied();
        let waiting = self.outbox.iter().map(|o| o.time);
        let side = self.side.iter().flatten().map(|(t, _)| *t);
        held.chain(waiting)
            .chain(side)
            .fold(self.frontier(), i64::min)
    }

    /// Takes what worker `w`'s source routed: on-time events into their open windows,
    /// amendments and side records at its time.
    fn emit(&mut self, w: usize) {
        let state = &mut self.workers[w].state;
        let time = state.time;
        for (start, taps) in state.by_window.drain(..) {
            assert!(
                start >= time,
                "an event routed to window {start}, before the time {time} of its source"
            );
            let window = self.open.entry(start).or_default();
            window
                .counted
                .extend(taps.iter().map(|t| serial(t.user.as_str())));
            window.changed = true;
        }
        for amend in state.amends.drain(..) {
            self.growing
                .entry(time)
                .or_default()
                .push((amend.window_start, serial(amend.tap.user.as_str())));
        }
        for side in state.side.drain(..) {
            let record = match side {
                LiveSide::Late {
                    event,
                    partition,
                    offset,
                    ..
                } => {
                    let window = self.size.start_of(event.timestamp);
                    assert!(
                        window < time,
                        "the event at {partition}/{offset} reported late, its {} window {window} open at {time}",
                        self.label
                    );
                    serde_json::json!({"window": self.label, "partition": partition, "offset": offset})
                }
                LiveSide::Invalid {
                    partition, offset, ..
                } => serde_json::json!({"partition": partition, "offset": offset}),
            };
            self.side[w].push_back((time, record.to_string().into_bytes()));
        }
    }

    /// The window operators: finals of the windows every source has passed, then the
    /// revisions of the times passed.
    fn merge(&mut self, clock: i64, update: bool) {
        let frontier = self.frontier();
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let start = *entry.key();
            let window = entry.remove();
            let revision = self.next_revision(window.revision, clock);
            self.send(
                start,
                start,
                WindowState::Final,
                revision,
                window.counted.clone(),
            );
            self.kept.insert(start, (revision, window.counted));
        }
        while let Some(entry) = self.growing.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let time = *entry.key();
            let mut touched = Vec::new();
            for (start, event) in entry.remove() {
                // A window without a final (no event on time) had an empty one.
                let first = self.next_revision(0, clock);
                self.kept
                    .entry(start)
                    .or_insert((first, Vec::new()))
                    .1
                    .push(event);
                touched.push(start);
            }
            touched.sort_unstable();
            touched.dedup();
            for start in touched {
                let last = self.kept[&start].0;
                let revision = self.next_revision(last, clock);
                let (kept, counted) = self.kept.get_mut(&start).expect("kept");
                *kept = revision;
                let counted = counted.clone();
                self.send(time, start, WindowState::Revised, revision, counted);
            }
        }
        // The open windows that changed, to the clusters, at their start.
        if self.updates && update {
            let starts: Vec<i64> = self
                .open
                .iter()
                .filter(|(_, w)| w.changed)
                .map(|(s, _)| *s)
                .collect();
            for start in starts {
                let last = self.open[&start].revision;
                let revision = self.next_revision(last, clock);
                let window = self.open.get_mut(&start).expect("open");
                window.revision = revision;
                window.changed = false;
                let counted = window.counted.clone();
                self.send(start, start, WindowState::Open, revision, counted);
            }
        }
    }

    /// The revision after `last`: with updates, the clock if it has moved on.
    fn next_revision(&self, last: u64, clock: i64) -> u64 {
        if self.updates {
            (last + 1).max(clock as u64)
        } else {
            last + 1
        }
    }

    fn send(
        &mut self,
        time: i64,
        start: i64,
        state: WindowState,
        revision: u64,
        counted: Vec<u64>,
    ) {
        let report = WindowReport::build(
            start,
            start + self.size.millis(),
            counted.len() as u64,
            0,
            [],
            &ReportConfig::default(),
        );
        let mut message = WindowMessage::final_of(report, start / self.size.millis());
        message.state = state;
        message.revision = revision;
        // An open update goes to the clusters only.
        let clusters = self.topics.len() - 1;
        let mut order: Vec<usize> = (0..clusters).collect();
        if state != WindowState::Open {
            order.push(clusters);
        }
        self.outbox.push_back(Outgoing {
            time,
            record: WindowRecord {
                key: model::format_rfc3339_millis(start),
                time,
                message,
                counted,
                seq: 0,
            },
            order,
            done: 0,
        });
    }

    /// The publishers: up to `steps` writes of window messages and of side records.
    fn publish(&mut self, log: &mut Log, rng: &mut Rng, steps: i64) {
        for _ in 0..steps {
            if rng.chance(500) {
                let Some(out) = self.outbox.front_mut() else {
                    continue;
                };
                if out.done == 0 {
                    // The clusters' in any order.
                    let clusters = self.topics.len() - 1;
                    for i in (1..clusters.min(out.order.len())).rev() {
                        out.order.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                }
                let topic = out.order[out.done];
                if self.verbose {
                    let r = &out.record;
                    eprintln!(
                        "  {} publish {} {:?} rev {} time {} ({} events) to {}",
                        self.label,
                        r.message.report.window_start,
                        r.message.state,
                        r.message.revision,
                        r.time,
                        r.counted.len(),
                        self.topics[topic]
                    );
                }
                log.publish(&self.topics[topic], out.record.clone(), self.lateness_ms);
                if log.dead() {
                    return;
                }
                out.done += 1;
                if out.done == out.order.len() {
                    self.outbox.pop_front();
                }
            } else {
                let waiting: Vec<usize> = (0..self.side.len())
                    .filter(|&w| !self.side[w].is_empty())
                    .collect();
                if waiting.is_empty() {
                    continue;
                }
                let w = waiting[rng.below(waiting.len() as u64) as usize];
                let (time, payload) = self.side[w].front().expect("waiting");
                if !log.write() {
                    return;
                }
                if self.verbose {
                    eprintln!(
                        "  {} publish at {time}: {}",
                        self.label,
                        String::from_utf8_lossy(payload)
                    );
                }
                let p = (serde_json::from_slice::<serde_json::Value>(payload).unwrap()["offset"]
                    .as_i64()
                    .unwrap() as usize)
                    % LATE_PARTITIONS;
                log.late[p].push(payload.clone());
                self.side[w].pop_front();
            }
        }
    }

    /// Checkpoints worker `w`'s partitions `which` as if windows before `closed_before` were
    /// closed; false if a write was refused (now and then, as a broker may) or the process
    /// was killed.
    fn commit(
        &mut self,
        w: usize,
        closed_before: i64,
        which: &dyn Fn(i32) -> bool,
        claim: bool,
        log: &mut Log,
        rng: &mut Rng,
    ) -> bool {
        let refuse = rng.chance(REFUSED_PER_MILLE);
        let state = &mut self.workers[w].state;
        // Sent together and waited for: a kill can leave any of them written.
        let mut order: Vec<usize> = (0..state.partitions.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            let id = state.partitions[i].id;
            if !which(id) {
                continue;
            }
            let ends = log.late_ends();
            let (offset, checkpoint) = state.checkpoint(i, closed_before, &|| ends.clone());
            let (text, _) = checkpoint.record_text(offset, self.size);
            if refuse || !log.write() {
                return false;
            }
            let topic = log
                .checkpoints
                .entry(self.checkpoint_topic.clone())
                .or_default();
            if topic.len() <= id as usize {
                topic.resize_with(id as usize + 1, Vec::new);
            }
            if self.verbose {
                eprintln!(
                    "  {} w{w} checkpoint {id}: {offset};{text} (claim {claim})",
                    self.label
                );
            }
            topic[id as usize].push(CheckpointRecord {
                run: self.run.clone(),
                claim,
                offset,
                text,
            });
        }
        true
    }

    /// Commits worker `w`'s offsets behind what is published, if `due` (as the reader's
    /// `commit_published`).
    fn commit_published(&mut self, w: usize, due: bool, log: &mut Log, rng: &mut Rng) {
        let frontier = self.published_frontier();
        let worker = &mut self.workers[w];
        let Some(closed_before) =
            worker
                .state
                .commit_behind(frontier, worker.committed_frontier, due)
        else {
            return;
        };
        if self.commit(w, closed_before, &|_| true, false, log, rng) {
            self.workers[w].committed_frontier = frontier;
        }
    }

    /// One step of worker `w`'s source: reads up to `budget` messages, routes them, closes
    /// the windows it may, bounds its read-ahead and takes partitions added.
    fn step(&mut self, w: usize, log: &mut Log, rng: &mut Rng, idle_ms: i64, budget: i64) {
        let clock = log.clock;
        let slowest = Some(self.frontier());
        let state = &mut self.workers[w].state;
        let mut read = Vec::new();
        for _ in 0..budget {
            let readable: Vec<usize> = (0..state.partitions.len())
                .filter(|&i| {
                    let p = &state.partitions[i];
                    !p.paused && (p.next_offset as usize) < log.events[p.id as usize].len()
                })
                .collect();
            if readable.is_empty() {
                break;
            }
            let i = readable[rng.below(readable.len() as u64) as usize];
            let p = &state.partitions[i];
            let offset = p.next_offset;
            let message = &log.events[p.id as usize][offset as usize];
            let outcome = state.outcome(&message.payload, message.received.min(clock));
            let ends = log.late_ends();
            let counts = |s: &SourceState| {
                let taps: usize = s.by_window.iter().map(|(_, t)| t.len()).sum();
                (taps, s.amends.len(), s.side.len())
            };
            let before = counts(state);
            let id = p.id;
            read.push(id);
            state.route(i, offset, outcome, Instant::now(), &|| ends.clone());
            if self.verbose {
                let after = counts(state);
                let route = match (after.0 > before.0, after.1 > before.1, after.2 > before.2) {
                    (true, _, _) => "window",
                    (_, true, _) => "amend",
                    (_, _, true) => "late or invalid",
                    _ => "nothing",
                };
                let p = &state.partitions[i];
                eprintln!(
                    "  {} w{w} read {id}/{offset}: {route} (time {}, watermark {}, closed before {}, resume {}, published before {})",
                    self.label,
                    state.time,
                    state.watermark,
                    p.closed_before,
                    p.resume_offset,
                    state.config.published_before
                );
            }
        }
        for id in read {
            self.last_read.insert((w, id), clock);
        }
        self.emit(w);
        let state = &self.workers[w].state;
        // Idle: read to where the partition ended at the last answer about its end (up to a
        // second old), and nothing read from it for the idle timeout.
        let asked = clock - rng.range(0, 1000);
        let idle = |p: &Partition| {
            let events = &log.events[p.id as usize];
            let end_then = events.partition_point(|e| e.received <= asked);
            let last_read = self
                .last_read
                .get(&(w, p.id))
                .copied()
                .unwrap_or(self.started);
            !p.paused && p.next_offset as usize >= end_then && clock - last_read >= idle_ms
        };
        let (watermark, hold) = state.closing(idle, clock);
        if hold > state.time && self.commit(w, hold, &|_| true, false, log, rng) {
            self.workers[w].state.closed(hold);
            if self.verbose {
                eprintln!("  {} w{w} closed before {hold}", self.label);
            }
        }
        let state = &mut self.workers[w].state;
        state.follow(watermark, hold);
        state.read_ahead(slowest);
        // Partitions added to the events topic while it runs.
        if log.partitions() > state.settings.partitions {
            let (before, now) = (state.settings.partitions, log.partitions());
            let peers = self.workers.len();
            let new: Vec<i32> = (before..now).filter(|p| *p as usize % peers == w).collect();
            self.workers[w].state.grow(now, &new);
            if !self.commit(w, i64::MIN, &|p| new.contains(&p), false, log, rng) {
                self.workers[w].state.shrink(before, &new);
            } else {
                for p in self.workers[w].state.partitions.iter_mut() {
                    p.paused = false;
                }
            }
        }
    }
}

/// The serial number of an event from its user (`u<serial>`).
fn serial(user: &str) -> u64 {
    user[1..].parse().expect("a simulated user")
}

/// The settings of one run.
#[derive(Debug, Clone)]
struct RunSettings {
    workers: usize,
    /// The window sizes after the live one, ms.
    more: Vec<i64>,
    /// Settings the state cannot be carried over to: (what, the config change).
    refused: Option<&'static str>,
    rewind: i64,
}

impl RunSettings {
    fn config(&self) -> LiveConfig {
        let mut config = LiveConfig::new("simulated".into());
        let size = |ms| WindowSize::from_millis(ms).unwrap();
        let mut sizes = vec![size(LIVE_MS)];
        sizes.extend(self.more.iter().map(|&ms| size(ms)));
        config.windows = WindowSpec::new(sizes, Duration::from_secs(1))
            .and_then(|s| s.with_allowed_lateness(Duration::from_secs(10)))
            .unwrap();
        config.clusters = 2;
        config.idle_timeout = Duration::from_secs(3);
        config.restart_rewind = self.rewind;
        match self.refused {
            Some("--window") => {
                config.windows = WindowSpec::new(vec![size(4_000)], Duration::from_secs(1))
                    .and_then(|s| s.with_allowed_lateness(Duration::from_secs(10)))
                    .unwrap();
            }
            Some("--events-topic") => config.events_topic = "other-events".into(),
            _ => {}
        }
        config
    }
}

/// The events and what they are.
struct Traffic {
    truth: Vec<Truth>,
    /// The next event's serial number.
    serial: u64,
    /// The rules the live size judges events by (what is valid, the time it counts at).
    rules: Rules,
}

impl Traffic {
    /// Appends `n` events (some invalid, some stamped ahead or behind) at the clock.
    fn send(&mut self, log: &mut Log, rng: &mut Rng, n: i64, backfill: bool) {
        let rules = &self.rules;
        for _ in 0..n {
            let clock = log.clock;
            let partition = rng.below(log.events.len() as u64) as usize;
            let serial = self.serial;
            self.serial += 1;
            let skew = match rng.below(100) {
                0..=59 => rng.range(-600, 200),
                60..=74 => rng.range(-3_000, -600),
                75..=82 => rng.range(-20_000, -3_000),
                83..=86 => -300_000,
                87..=89 => 15_000,
                90..=91 => 300_000,
                92 => 700_000,
                _ => rng.range(-100, 100),
            };
            let skew = if backfill { skew - 60_000 } else { skew };
            let stamped = clock + skew;
            let emoji = if rng.chance(30) { "XX" } else { "🔥" };
            let payload = if rng.chance(20) {
                format!("not json {serial}").into_bytes()
            } else {
                serde_json::json!({
                    "user_id": format!("u{serial}"),
                    "emoji_type": emoji,
                    "timestamp": model::format_rfc3339_millis(stamped),
                })
                .to_string()
                .into_bytes()
            };
            let valid = serde_json::from_slice::<serde_json::Value>(&payload).is_ok()
                && rules.check(emoji, stamped, Some(clock)).is_ok();
            let offset = log.events[partition].len() as i64;
            log.events[partition].push(Appended {
                payload,
                received: clock,
            });
            self.truth.push(Truth {
                partition: partition as i32,
                offset,
                time: valid.then(|| rules.event_time(stamped, Some(clock))),
            });
        }
    }
}

/// How a run ended.
enum Ended {
    /// Killed.
    Killed,
    /// Stopped, every worker drained.
    Stopped,
}

/// The simulation of one seed.
struct Simulation {
    rng: Rng,
    log: Log,
    traffic: Traffic,
    runs: u32,
    /// Ticks left of a lull, and of a backfill (events stamped a minute further back).
    lull: i64,
    backfill: i64,
    /// What happened, for a failure's message.
    story: Story,
}

/// What happened in a simulation, printed as it happens when replaying a failed seed.
#[derive(Default)]
struct Story {
    verbose: bool,
}

impl Story {
    fn push(&mut self, line: String) {
        if self.verbose {
            eprintln!("{line}");
        }
    }
}

impl Simulation {
    fn new(seed: u64, verbose: bool) -> Self {
        let mut log = Log {
            kill_at: u64::MAX,
            clock: T0,
            late: vec![Vec::new(); LATE_PARTITIONS],
            ..Log::default()
        };
        let partitions = 1 + (seed % 2) as usize;
        log.events.resize_with(partitions, Vec::new);
        // The settings every run shares (the live size and lateness, the emojis).
        let config = RunSettings {
            workers: 1,
            more: Vec::new(),
            refused: None,
            rewind: 0,
        }
        .config();
        Simulation {
            rng: Rng(seed),
            log,
            traffic: Traffic {
                truth: Vec::new(),
                serial: 0,
                rules: Rules {
                    window: config.windows.live(),
                    windows: config.windows.clone(),
                    emojis: Arc::clone(&config.emojis),
                    max_future_ms: config.max_future.as_millis() as i64,
                },
            },
            runs: 0,
            lull: 0,
            backfill: 0,
            story: Story { verbose },
        }
    }

    fn grow(&mut self) {
        if self.log.partitions() < MAX_PARTITIONS {
            self.log.events.push(Vec::new());
            self.story
                .push(format!("partitions grown to {}", self.log.partitions()));
        }
    }

    /// Starts a run: reads back, starts every worker of every size and claims its
    /// partitions. `None` if the process was killed (or a claim refused) meanwhile.
    fn start(&mut self, settings: &RunSettings) -> Result<Option<Vec<Dataflow>>, LiveError> {
        self.runs += 1;
        let config = settings.config();
        let partitions = self.log.partitions();
        // What `prepare` creates.
        for &size in config.windows.sizes() {
            self.log
                .topics
                .entry(config.windows_topic_for(size))
                .or_default();
        }
        for topic in config.cluster_topics() {
            self.log.topics.entry(topic).or_default();
        }
        let lateness_ms = config.windows.lateness_ms();
        let prepared = recovery::recover(
            &config,
            partitions,
            &mut ReadBack {
                log: &mut self.log,
                lateness_ms,
            },
        )?;
        if self.log.dead() {
            return Ok(None);
        }
        let metrics = Arc::new(DataflowMetrics::new(MAX_PARTITIONS, &[]));
        let mut dataflows = Vec::new();
        for (i, &size) in config.windows.sizes().iter().enumerate() {
            let source = config.source_config(&prepared, i, Arc::default());
            let mut topics = if i == 0 {
                config.cluster_topics()
            } else {
                Vec::new()
            };
            topics.push(config.windows_topic_for(size));
            let mut workers = Vec::new();
            for w in 0..settings.workers {
                let mut partitions = Vec::new();
                for p in (0..prepared.partitions).filter(|p| *p as usize % settings.workers == w) {
                    let resumed = SourceState::checkpointed(&source, p);
                    let fresh = resumed.is_none();
                    let end = self.log.events[p as usize].len() as i64;
                    let (_, partition) =
                        SourceState::start_partition(&source, p, resumed, fresh, || {
                            Ok::<_, ()>(end)
                        })
                        .unwrap();
                    partitions.push(partition);
                }
                workers.push(Worker {
                    state: SourceState::new(source.clone(), partitions, Arc::clone(&metrics)),
                    committed_frontier: i64::MIN,
                    drained: false,
                });
            }
            let mut dataflow = Dataflow {
                size,
                label: size.label(),
                lateness_ms,
                workers,
                checkpoint_topic: config.checkpoint_topic_for(size),
                topics,
                open: BTreeMap::new(),
                kept: BTreeMap::new(),
                growing: BTreeMap::new(),
                outbox: VecDeque::new(),
                side: (0..settings.workers).map(|_| VecDeque::new()).collect(),
                last_read: HashMap::new(),
                started: self.log.clock,
                updates: i == 0,
                run: format!("run{}", self.runs),
                verbose: self.story.verbose,
            };
            // Every worker claims its partitions with a checkpoint where each starts.
            for w in 0..settings.workers {
                if !dataflow.commit(w, i64::MIN, &|_| true, true, &mut self.log, &mut self.rng) {
                    return Ok(None);
                }
            }
            dataflows.push(dataflow);
        }
        Ok(Some(dataflows))
    }

    /// One step of the clock: traffic comes (none if `quiet`), every source steps, windows
    /// close and go out.
    fn tick(&mut self, dataflows: &mut [Dataflow], quiet: bool) {
        self.log.clock += self.rng.range(20, 400);
        if !quiet {
            if self.lull > 0 {
                self.lull -= 1;
            } else if self.rng.chance(10) {
                self.lull = self.rng.range(5, 40);
            } else {
                if self.backfill == 0 && self.rng.chance(5) {
                    self.backfill = self.rng.range(5, 30);
                }
                self.backfill = (self.backfill - 1).max(0);
                let n = self.rng.range(0, 6);
                let backfill = self.backfill > 0;
                self.traffic.send(&mut self.log, &mut self.rng, n, backfill);
            }
        }
        for dataflow in dataflows.iter_mut() {
            let mut order: Vec<usize> = (0..dataflow.workers.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            for w in order {
                let budget = self.rng.range(0, 12);
                dataflow.step(w, &mut self.log, &mut self.rng, IDLE_MS, budget);
                let due = self.rng.chance(300);
                dataflow.commit_published(w, due, &mut self.log, &mut self.rng);
                dataflow.merge(self.log.clock, self.rng.chance(300));
            }
            let steps = self.rng.range(0, 8);
            dataflow.publish(&mut self.log, &mut self.rng, steps);
        }
    }

    /// Runs `dataflows` for `ticks` steps of the clock with traffic, partitions added at one
    /// of them maybe, then stops them; the process may be killed on the way.
    fn run(&mut self, dataflows: &mut [Dataflow], ticks: u32) -> Ended {
        let grow_at = self
            .rng
            .chance(150)
            .then(|| self.rng.below(ticks as u64 + 1));
        for tick in 0..ticks {
            if grow_at == Some(tick as u64) {
                self.grow();
            }
            self.tick(dataflows, false);
            if self.log.dead() {
                return Ended::Killed;
            }
        }
        self.stop(dataflows)
    }

    /// Whether every event is read, every window with an event closed and everything
    /// closed published.
    fn settled(&self, dataflows: &[Dataflow]) -> bool {
        dataflows.iter().all(|dataflow| {
            let read: i32 = dataflow
                .workers
                .iter()
                .map(|w| {
                    w.state
                        .partitions
                        .iter()
                        .filter(|p| p.next_offset as usize >= self.log.events[p.id as usize].len())
                        .count() as i32
                })
                .sum();
            let last = self
                .traffic
                .truth
                .iter()
                .filter_map(|t| t.time)
                .map(|t| dataflow.size.start_of(t))
                .max()
                .unwrap_or(i64::MIN);
            read == self.log.partitions()
                && dataflow.frontier() > last
                && dataflow.outbox.is_empty()
                && dataflow.side.iter().all(VecDeque::is_empty)
                && dataflow.growing.is_empty()
        })
    }

    /// A stop: the sources read no more; each drains once everything closed is published.
    fn stop(&mut self, dataflows: &mut [Dataflow]) -> Ended {
        for _ in 0..10_000 {
            let mut all = true;
            for dataflow in dataflows.iter_mut() {
                dataflow.merge(self.log.clock, self.rng.chance(300));
                let steps = self.rng.range(1, 8);
                dataflow.publish(&mut self.log, &mut self.rng, steps);
                for w in 0..dataflow.workers.len() {
                    if dataflow.workers[w].drained {
                        continue;
                    }
                    if dataflow.frontier() == dataflow.published_frontier() {
                        dataflow.workers[w].committed_frontier = i64::MIN;
                        dataflow.commit_published(w, true, &mut self.log, &mut self.rng);
                        dataflow.workers[w].drained = true;
                    } else {
                        all = false;
                    }
                }
            }
            if self.log.dead() {
                return Ended::Killed;
            }
            if all {
                return Ended::Stopped;
            }
        }
        panic!("a stop did not drain");
    }

    /// Runs and restarts until the traffic is done, then a last run that closes every window.
    fn play(&mut self) {
        let restarts = self.rng.range(2, 7);
        let mut settings = RunSettings {
            workers: 1,
            more: Vec::new(),
            refused: None,
            rewind: 0,
        };
        for run in 0..=restarts {
            let last = run == restarts;
            if run > 0 {
                settings = self.change(&settings);
            }
            // A restart the checkpoints cannot be carried over to is refused, by name,
            // before anything is written.
            let live_checkpoints = settings
                .config()
                .checkpoint_topic_for(WindowSize::from_millis(LIVE_MS).unwrap());
            let checkpointed = self
                .log
                .checkpoints
                .get(&live_checkpoints)
                .is_some_and(|t| t.iter().any(|p| !p.is_empty()));
            if self.rng.chance(100) && checkpointed {
                let refused = if self.rng.chance(500) {
                    "--window"
                } else {
                    "--events-topic"
                };
                let bad = RunSettings {
                    refused: Some(refused),
                    ..settings.clone()
                };
                let writes = self.log.writes;
                match self.start(&bad) {
                    Err(LiveError::Settings { setting, .. }) => {
                        assert_eq!(setting, refused, "the setting named");
                    }
                    Err(other) => panic!("settings {refused} refused for another reason: {other}"),
                    Ok(_) => panic!("a restart with another {refused} was not refused"),
                }
                assert_eq!(self.log.writes, writes, "a refused start wrote");
                self.story.push(format!("another {refused}: refused"));
            }
            if self.rng.chance(150) && !last {
                self.grow();
            }
            let ticks = self.rng.range(20, 300) as u32;
            self.log.kill_at = if last {
                u64::MAX
            } else if self.rng.chance(700) {
                // Most kills early in a run (restarts right after restarts), some late.
                let within = if self.rng.chance(500) { 200 } else { 5_000 };
                self.log.writes + self.rng.range(1, within) as u64
            } else {
                u64::MAX
            };
            self.story.push(format!(
                "run {}: {settings:?}, {} partitions, {ticks} ticks, kill before write {}",
                self.runs + 1,
                self.log.partitions(),
                if self.log.kill_at == u64::MAX {
                    0
                } else {
                    self.log.kill_at
                }
            ));
            let started = loop {
                // The last run starts whatever a claim met.
                match self.start(&settings) {
                    Ok(None) if last => continue,
                    started => break started,
                }
            };
            let mut dataflows = match started {
                Ok(Some(dataflows)) => dataflows,
                Ok(None) => {
                    self.story.push("killed while starting".into());
                    self.log.kill_at = u64::MAX;
                    continue;
                }
                Err(error) => panic!("a restart failed: {error}"),
            };
            if last {
                // The traffic is done: on until every window is closed and published.
                for _ in 0..100_000 {
                    if self.settled(&dataflows) {
                        break;
                    }
                    self.tick(&mut dataflows, true);
                }
                assert!(self.settled(&dataflows), "the last run did not settle");
                self.finish(&mut dataflows, &settings);
                return;
            }
            match self.run(&mut dataflows, ticks) {
                Ended::Killed => self.story.push("killed".into()),
                Ended::Stopped => self.story.push("stopped".into()),
            }
            self.log.kill_at = u64::MAX;
        }
    }

    /// The settings of the next run: sizes, workers and rewind changed at random.
    fn change(&mut self, before: &RunSettings) -> RunSettings {
        let mut next = before.clone();
        if self.rng.chance(200) {
            next.workers = self.rng.range(1, 4) as usize;
        }
        if self.rng.chance(150) {
            next.more = if next.more.is_empty() {
                vec![10_000]
            } else {
                Vec::new()
            };
        }
        next.rewind = [0, 1, 5, 10_000][self.rng.below(4) as usize];
        next
    }

    /// Stops the last run and checks the topics against the log.
    fn finish(&mut self, dataflows: &mut [Dataflow], settings: &RunSettings) {
        assert!(matches!(self.stop(dataflows), Ended::Stopped));
        assert!(self.log.premature.is_empty(), "{:?}", self.log.premature);
        let config = settings.config();
        // Invalid events: reported once each, and only those.
        let mut invalid: HashMap<(i32, i64), u32> = HashMap::new();
        let mut late: HashMap<(String, i32, i64), u32> = HashMap::new();
        for payload in self.log.late.iter().flatten() {
            let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
            let at = (
                value["partition"].as_i64().unwrap() as i32,
                value["offset"].as_i64().unwrap(),
            );
            match value["window"].as_str() {
                Some(window) => *late.entry((window.to_owned(), at.0, at.1)).or_default() += 1,
                None => *invalid.entry(at).or_default() += 1,
            }
        }
        for ((p, o), n) in &invalid {
            assert_eq!(*n, 1, "the invalid event at {p}/{o} was reported {n} times");
        }
        for ((w, p, o), n) in &late {
            assert_eq!(
                *n, 1,
                "the late event at {p}/{o} was reported {n} times for {w}"
            );
        }
        for (serial, truth) in self.traffic.truth.iter().enumerate() {
            let at = (truth.partition, truth.offset);
            let reported = invalid.contains_key(&at);
            assert_eq!(
                reported,
                truth.time.is_none(),
                "event {serial} at {}/{} (valid: {}) reported invalid: {reported}",
                at.0,
                at.1,
                truth.time.is_some()
            );
        }
        for dataflow in dataflows.iter() {
            let size = dataflow.size;
            // The last message of each window, on any windows topic of this size, and on each
            // cluster topic.
            let mut topics: Vec<&String> = self
                .log
                .topics
                .keys()
                .filter(|t| {
                    let sized = model::names::sized_topic(&config.windows_topic, &size.label());
                    **t == sized || (size.millis() == LIVE_MS && **t == config.windows_topic)
                })
                .collect();
            topics.sort();
            let mut last: BTreeMap<i64, &WindowRecord> = BTreeMap::new();
            for topic in &topics {
                let mut revisions: HashMap<i64, u64> = HashMap::new();
                for record in &self.log.topics[*topic] {
                    let start = record.message.report.window_start;
                    let before = revisions.insert(start, record.message.revision);
                    assert!(
                        before.is_none_or(|b| b <= record.message.revision),
                        "a revision of {} went down on {topic}",
                        record.key
                    );
                    let entry = last.entry(start).or_insert(record);
                    if record.seq > entry.seq {
                        *entry = record;
                    }
                }
            }
            if size.millis() == LIVE_MS {
                // A viewer keeps each window's highest revision: it must be the last message,
                // and count what the windows topic's does.
                for cluster in config.cluster_topics() {
                    let mut on_cluster: BTreeMap<i64, &WindowRecord> = BTreeMap::new();
                    for record in &self.log.topics[&cluster] {
                        let start = record.message.report.window_start;
                        if let Some(before) = on_cluster.insert(start, record) {
                            assert!(
                                before.message.revision <= record.message.revision,
                                "a revision of {} went down on {cluster}: {:?} {} after {:?} {}",
                                record.key,
                                record.message.state,
                                record.message.revision,
                                before.message.state,
                                before.message.revision
                            );
                        }
                    }
                    for (start, record) in &last {
                        let got = on_cluster.get(start).map(|r| &r.counted);
                        assert_eq!(
                            got,
                            Some(&record.counted),
                            "{cluster} and the windows topic differ on {}",
                            record.key
                        );
                    }
                }
            }
            let mut counted: HashMap<u64, i64> = HashMap::new();
            for (start, record) in &last {
                for &event in &record.counted {
                    let before = counted.insert(event, *start);
                    assert!(
                        before.is_none(),
                        "event {event} counted twice in {} windows (in {} and {before:?})",
                        size.label(),
                        record.key
                    );
                }
            }
            for (serial, truth) in self.traffic.truth.iter().enumerate() {
                let Some(time) = truth.time else {
                    continue;
                };
                let window = size.start_of(time);
                let is_late = late.contains_key(&(size.label(), truth.partition, truth.offset));
                match counted.get(&(serial as u64)) {
                    Some(start) => {
                        assert_eq!(
                            *start,
                            window,
                            "event {serial} counted in the wrong {} window",
                            size.label()
                        );
                        assert!(
                            !is_late,
                            "event {serial} at {}/{} counted in its {} window {} and reported late",
                            truth.partition,
                            truth.offset,
                            size.label(),
                            model::format_rfc3339_millis(window)
                        );
                    }
                    None => assert!(
                        is_late,
                        "event {serial} at {}/{} (window {}) neither counted nor late in {} windows",
                        truth.partition,
                        truth.offset,
                        model::format_rfc3339_millis(window),
                        size.label()
                    ),
                }
            }
        }
    }
}

/// Runs one seed; a failure's message names it.
fn simulate(seed: u64) {
    let play = |verbose| {
        std::panic::catch_unwind(|| {
            let mut simulation = Simulation::new(seed, verbose);
            simulation.play();
        })
    };
    if let Err(panic) = play(false) {
        eprintln!("seed {seed} failed; what it did:");
        let _ = play(true);
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!(
            "seed {seed} failed: {message}\nreplay it: EMOSTREAM_SIM_SEED={seed} cargo test -p emostream-dataflow --lib simulation"
        );
    }
}

#[test]
fn every_event_is_counted_once_or_reported_once_across_kills_and_changed_settings() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("EMOSTREAM_SIM_SEED") {
        return simulate(seed);
    }
    let first = env("EMOSTREAM_SIM_FIRST").unwrap_or(0);
    let seeds = env("EMOSTREAM_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let started = Instant::now();
    for seed in first..first + seeds {
        simulate(seed);
    }
    eprintln!(
        "simulation: {seeds} seeds from {first} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
