//! The state and the decisions of one worker's source, apart from the broker and the dataflow
//! that carry them out: where each partition starts, each event's route, the state each
//! checkpoint holds, when windows close and which partitions read ahead too far. The reader
//! (`reader`, `commit`, `progress`, `growth`) moves messages, checkpoints and capabilities
//! around it; the simulation test (`crate::simulation`) drives the same state over an
//! in-memory log, killed and restarted anywhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use compact_str::CompactString;

use super::checkpoint::{Checkpoint, Settings};
use super::decode::decode;
use super::{KafkaSourceConfig, LiveSide, Reported, StartFrom};
use crate::fate::Fate;
use crate::metrics::DataflowMetrics;
use crate::record::{Amend, LateEvent, Tap};
use crate::source::watermark::Watermark;

/// A message read: the event (user, emoji, the time it counts at), or why it is invalid and
/// its raw text.
pub(crate) type Outcome = Result<(CompactString, CompactString, i64), (String, String)>;

/// One partition read by this worker.
pub(crate) struct Partition {
    pub(crate) id: i32,
    pub(crate) watermark: Watermark,
    /// Messages before this offset were handled by an earlier run: they only feed the watermark.
    pub(crate) resume_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) last_message: Instant,
    /// When the client last said it was at the partition's end (after the last message).
    pub(crate) at_end: Option<Instant>,
    /// Per guard time (a window start, or the time late records went out at): the first
    /// offset that needs it published, with the state before it.
    pub(crate) pending: BTreeMap<i64, Guard>,
    /// Per open window: the last offset counted in it.
    pub(crate) open_last: BTreeMap<i64, i64>,
    /// Per closed window: the last offset counted in it (restored on a restart).
    pub(crate) last_counted: BTreeMap<i64, i64>,
    /// Per amended window and the time the amendments went out at: the last offset amending
    /// it (restored on a restart: such an event counted if its window's message of that time
    /// was published).
    pub(crate) amended: BTreeMap<(i64, i64), i64>,
    /// Windows before this were closed by an earlier run (`i64::MIN`: none known): an event
    /// read again counts in one only if that run counted it.
    pub(crate) closed_before: i64,
    /// No run that published windows read this partition (the events topic grew since): its
    /// events of published windows are late, not counted already.
    pub(crate) unread_by_publishers: bool,
    /// Paused: its windows are too far ahead of the slowest source's.
    pub(crate) paused: bool,
}

impl Partition {
    /// Partition `id`, read from `next_offset`, handled by an earlier run before
    /// `resume_offset`, with the state `checkpoint` (the default for a partition read from its
    /// start); `unread`: no run that published windows read it.
    pub(crate) fn new(
        id: i32,
        (next_offset, resume_offset): (i64, i64),
        checkpoint: Checkpoint,
        unread: bool,
        config: &KafkaSourceConfig,
    ) -> Self {
        // Every run closes windows only after checkpointing each of its partitions with them
        // closed, so a checkpoint that names no closed window is of a partition no run read
        // while it published windows (one added while it ran, say): its events of published
        // windows are late (below, `closed_before`), and say why.
        let unread = unread || checkpoint.closed_before.is_none();
        Partition {
            id,
            resume_offset,
            watermark: Watermark::restored(config.rules.windows.lateness_ms(), checkpoint.max_seen),
            next_offset,
            last_message: Instant::now(),
            at_end: None,
            pending: BTreeMap::new(),
            open_last: BTreeMap::new(),
            // A published window was closed, whatever the checkpoint says; with nothing
            // counted in it for a checkpoint that names no closed window (none counts a
            // partition's events unless it closed windows with it): its events of those
            // windows are late.
            closed_before: checkpoint
                .closed_before
                .map_or(config.published_before, |c| c.max(config.published_before)),
            last_counted: checkpoint.last_counted,
            // Only the amendments whose revision was published counted: this run reports the
            // others late (and so must the next, if this one is killed before it does).
            amended: checkpoint
                .amended
                .into_iter()
                .filter(|((window, time), _)| {
                    config
                        .published_times
                        .get(window)
                        .is_some_and(|published| published >= time)
                })
                .collect(),
            unread_by_publishers: unread,
            paused: false,
        }
    }

    /// Whether the event at `offset` of the window starting at `start`, read again, amended
    /// the window in a run before, and the windows topic holds that window's message of the
    /// time the amendment went out at (or a later one).
    fn published_amendment(
        &self,
        start: i64,
        offset: i64,
        published_times: &BTreeMap<i64, i64>,
    ) -> bool {
        // Offsets grow with the times they went out at: the first time whose last offset is
        // at or past this one is its own.
        let went_out_at = self
            .amended
            .range((start, i64::MIN)..=(start, i64::MAX))
            .find(|(_, last)| **last >= offset)
            .map(|((_, time), _)| *time);
        went_out_at.is_some_and(|time| published_times.get(&start).is_some_and(|t| *t >= time))
    }
}

/// The state of a worker's source.
pub(crate) struct SourceState {
    pub(crate) config: KafkaSourceConfig,
    /// What the checkpoints say the state was made with (the partitions of the events topic
    /// this worker knows of among them).
    pub(crate) settings: Settings,
    pub(crate) partitions: Vec<Partition>,
    /// Where the capabilities are: the windows before it are closed.
    pub(crate) time: i64,
    /// The watermark this worker's windows close on: the least of its active partitions'
    /// watermarks, never past the wall clock less the lateness; `time` is at its window.
    pub(crate) watermark: i64,
    /// Every window before this was published (the published probe's frontier, last seen).
    pub(crate) published_frontier: i64,
    pub(crate) metrics: Arc<DataflowMetrics>,
    /// On-time events by window, amendments and side records routed since the last emit.
    pub(crate) by_window: Vec<(i64, Vec<Tap>)>,
    pub(crate) amends: Vec<Amend>,
    pub(crate) side: Vec<LiveSide>,
}

impl SourceState {
    /// The state of a worker reading `partitions`, before any is read: windows before the
    /// published ones are closed.
    pub(crate) fn new(
        config: KafkaSourceConfig,
        partitions: Vec<Partition>,
        metrics: Arc<DataflowMetrics>,
    ) -> Self {
        let settings = Settings {
            events_topic: config.topic.clone(),
            partitions: config.partitions,
            window_ms: config.rules.window.millis(),
            windows_topics: config.windows_topics.clone(),
        };
        SourceState {
            settings,
            partitions,
            time: config.published_before,
            watermark: config.published_before,
            published_frontier: config.published_before,
            metrics,
            by_window: Vec::new(),
            amends: Vec::new(),
            side: Vec::new(),
            config,
        }
    }

    /// Where partition `p` starts, from the checkpoint the run starts with (`resumed`: the
    /// offset and its state, if any) and `end` (where the partition ends now, asked only
    /// when starting at the end): `(offset, partition)`, the offset `None` for its start.
    /// `fresh`: the partition had no checkpoint.
    pub(crate) fn start_partition<E>(
        config: &KafkaSourceConfig,
        p: i32,
        resumed: Option<(i64, Checkpoint)>,
        fresh: bool,
        end: impl FnOnce() -> Result<i64, E>,
    ) -> Result<(Option<i64>, Partition), E> {
        let (offset, checkpoint, resume_offset) = match (config.start, resumed) {
            (_, Some((o, checkpoint))) => (Some((o - config.rewind).max(0)), checkpoint, o),
            // From the end as it is now, at a known offset (idleness compares offsets).
            (StartFrom::Latest, None) => (Some(end()?), Checkpoint::default(), 0),
            _ => (None, Checkpoint::default(), 0),
        };
        // Without a checkpoint, no run that published read it (each checkpoints a partition
        // before it reads it).
        let unread = p >= config.new_partitions_from || fresh;
        let partition = Partition::new(
            p,
            (offset.unwrap_or(0), resume_offset),
            checkpoint,
            unread,
            config,
        );
        Ok((offset, partition))
    }

    /// The checkpoint partition `p` resumes from, if the run resumes from checkpoints and one
    /// was written: its offset and state.
    pub(crate) fn checkpointed(config: &KafkaSourceConfig, p: i32) -> Option<(i64, Checkpoint)> {
        config
            .checkpoints
            .get(&p)
            .filter(|_| config.start == StartFrom::Committed)
            .map(|(o, text)| (*o, Checkpoint::decode(text, *o, config.rules.window)))
    }

    /// A message's outcome: its payload decoded and judged at `received` (the record's
    /// timestamp, so that reading it again decides alike).
    pub(crate) fn outcome(&self, payload: &[u8], received: i64) -> Outcome {
        let rules = &self.config.rules;
        decode(payload, received, received, rules)
            .map(|(user, emoji, stamped)| (user, emoji, rules.event_time(stamped, Some(received))))
            .map_err(|reason| {
                let raw = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
                (reason.to_string(), raw)
            })
    }

    // Long: the hot path of the source: decode, lateness, routing and the commit guards of one message, kept together for speed.
    /// Routes the event at `offset` of the `i`th partition (`outcome`: the event, or why it
    /// is invalid, with its raw text) to its window, the amendments or the side records,
    /// and guards the commit behind it; `late_ends` tells where the late topic's partitions
    /// end (asked only when a guard is made).
    pub(crate) fn route(
        &mut self,
        i: usize,
        offset: i64,
        outcome: Outcome,
        now: Instant,
        late_ends: &dyn Fn() -> Vec<i64>,
    ) {
        let window = self.config.rules.window;
        let cap_time = self.time;
        let partition = &mut self.partitions[i];
        partition.next_offset = offset + 1;
        partition.last_message = now;
        partition.at_end = None;
        self.metrics.consumed(partition.id);
        let max_before = partition.watermark.max_seen();
        if offset < partition.resume_offset {
            // Read again after a restart: an earlier run counted or reported it.
            if let Ok((_, _, timestamp)) = outcome {
                partition.watermark.observe(timestamp);
            }
            return;
        }
        let (user, emoji, timestamp) = match outcome {
            Ok(event) => event,
            Err(_) if !self.config.report_invalid => return,
            Err((reason, raw)) => {
                self.metrics.invalid.add(1);
                let reported = &self.config.reported;
                if reported.was_reported(partition.id, offset) {
                    return;
                }
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, late_ends, reported)
                });
                self.side.push(LiveSide::Invalid {
                    reason,
                    raw,
                    partition: partition.id,
                    offset,
                });
                return;
            }
        };
        let start = window.start_of(timestamp);
        partition.watermark.observe(timestamp);
        let route = if start < partition.closed_before {
            // An earlier run closed the window: decide as it did, from its checkpoint.
            let counted = partition
                .last_counted
                .get(&start)
                .is_some_and(|&last| offset <= last);
            if start >= cap_time {
                // The window's final was not published (the run that closed it stopped
                // before): it counts in it now, unless an earlier run reported it late.
                if self.config.reported.was_reported(partition.id, offset) {
                    return;
                }
                Route::Window
            } else if counted && start < self.config.published_before {
                // Counted and published by an earlier run: reading it again changes nothing.
                return;
            } else if partition.published_amendment(start, offset, &self.config.published_times) {
                // It amended the window in a revision an earlier run published.
                return;
            } else if partition.unread_by_publishers {
                Route::Late("its window was published before any run read it")
            } else {
                // An earlier run closed the window before reading this event, or amended it
                // without publishing the revision (its totals, to amend, went with it).
                Route::Late("the window had already closed before a restart")
            }
        } else if start < self.config.published_before {
            if !partition.unread_by_publishers {
                // Published by an earlier run.
                return;
            }
            // A partition the runs that published the window did not read (it was added
            // since, or this run started at its end).
            Route::Late("its window was published before any run read it")
        } else {
            match self.config.rules.fate(timestamp, self.watermark) {
                Fate::Count => Route::Window,
                // Past the watermark, but this source still holds the window back.
                Fate::Amend if start >= cap_time => Route::Window,
                Fate::Amend => {
                    self.metrics.amends.add(1);
                    Route::Amend
                }
                Fate::Late => Route::Late("the window had already closed"),
            }
        };
        let reported = &self.config.reported;
        match route {
            Route::Amend => {
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, late_ends, reported)
                });
                let last = partition.amended.entry((start, cap_time)).or_insert(offset);
                *last = (*last).max(offset);
                self.amends.push(Amend {
                    window_start: start,
                    tap: Tap { user, emoji },
                });
            }
            Route::Late(_) if self.config.reported.was_reported(partition.id, offset) => {
                // An earlier run published this very record.
            }
            Route::Late(reason) => {
                self.config.late.add(1);
                partition.pending.entry(cap_time).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, late_ends, reported)
                });
                self.side.push(LiveSide::Late {
                    event: LateEvent {
                        user,
                        emoji,
                        timestamp,
                    },
                    reason: reason.to_owned(),
                    partition: partition.id,
                    offset,
                });
            }
            Route::Window => {
                partition.pending.entry(start).or_insert_with(|| {
                    Guard::new((partition.id, offset), max_before, late_ends, reported)
                });
                partition.open_last.insert(start, offset);
                match self.by_window.iter_mut().rev().find(|(s, _)| *s == start) {
                    Some((_, batch)) => batch.push(Tap { user, emoji }),
                    None => self.by_window.push((start, vec![Tap { user, emoji }])),
                }
            }
        }
    }

    /// The checkpoint of the `i`th partition as if windows before `closed_before` were
    /// closed: the earliest offset still needed and the state there. What is before that
    /// offset is forgotten (it is not read again).
    pub(crate) fn checkpoint(
        &mut self,
        i: usize,
        closed_before: i64,
        late_ends: &dyn Fn() -> Vec<i64>,
    ) -> (i64, Checkpoint) {
        let p = &mut self.partitions[i];
        let (offset, max_seen, late_from) = match p.pending.values().min_by_key(|g| g.offset) {
            Some(guard) => (guard.offset, guard.max_seen, guard.late_from.clone()),
            None => {
                // Not before where it resumed (what it reads again before that, only for
                // the watermark, an earlier run handled).
                let next = p.next_offset.max(p.resume_offset);
                let late_from = self.config.reported.late_from(p.id, next, late_ends());
                (next, p.watermark.max_seen(), late_from)
            }
        };
        p.last_counted.retain(|_, last| *last >= offset);
        p.amended.retain(|_, last| *last >= offset);
        // The windows this run closes, from its time to `closed_before`, hold what it counted
        // in them, whatever an earlier run (killed before it published them) counted.
        let closing = self.time..closed_before;
        let closed_before = closed_before.max(p.closed_before);
        let mut checkpoint = Checkpoint {
            max_seen,
            // None before any window closed (as with no checkpoint at all).
            closed_before: (closed_before > i64::MIN).then_some(closed_before),
            last_counted: p.last_counted.clone(),
            amended: p.amended.clone(),
            late_from,
            settings: Some(self.settings.clone()),
            published_before: Some(self.published_frontier),
        };
        if !closing.is_empty() {
            checkpoint.last_counted.retain(|w, _| !closing.contains(w));
            for (&window, &last) in p.open_last.range(closing) {
                checkpoint.last_counted.insert(window, last);
            }
        }
        (offset, checkpoint)
    }

    /// Everything before `frontier` is published: if a commit is `due` and the frontier has
    /// moved past the last one's (`committed`), the guards before it are released and the
    /// commit checkpoints the windows closed before the time returned.
    pub(crate) fn commit_behind(
        &mut self,
        frontier: i64,
        committed: i64,
        due: bool,
    ) -> Option<i64> {
        if frontier < i64::MAX {
            self.published_frontier = self.published_frontier.max(frontier);
        }
        if frontier <= committed || !due {
            return None;
        }
        for p in &mut self.partitions {
            p.pending = p.pending.split_off(&frontier);
        }
        Some(self.time)
    }

    /// The watermark windows may close on now and the window it holds: `idle` tells which
    /// partitions no longer hold windows back; `wall_ms` is the clock.
    pub(crate) fn closing(&self, idle: impl Fn(&Partition) -> bool, wall_ms: i64) -> (i64, i64) {
        // A window never closes before its end plus the lateness by the wall clock: an idle
        // partition's watermark follows the clock no further than that, and no partition's
        // (even one with events stamped ahead of the clock) goes past it.
        let by_clock = wall_ms - self.config.rules.windows.lateness_ms();
        let watermark = self
            .partitions
            .iter()
            .filter(|p| !idle(p))
            .map(|p| p.watermark.value().unwrap_or(i64::MIN))
            .min()
            .map_or(by_clock, |w| w.min(by_clock));
        let hold = if watermark == i64::MIN {
            i64::MIN
        } else {
            self.config.rules.window.start_of(watermark)
        };
        (watermark, hold)
    }

    /// The windows before `hold` closed (their checkpoint is written): each partition's last
    /// offset counted in each is kept, and the capabilities move to `hold`.
    pub(crate) fn closed(&mut self, hold: i64) {
        let closing = self.time..hold;
        for p in &mut self.partitions {
            // What an earlier run counted in them, killed before it published them, is not
            // what their finals hold: this run's is.
            p.last_counted.retain(|w, _| !closing.contains(w));
            let open = p.open_last.split_off(&hold);
            p.last_counted
                .extend(std::mem::replace(&mut p.open_last, open));
        }
        self.time = self.time.max(hold);
    }

    /// Events are judged against `watermark` once the windows it holds are closed.
    pub(crate) fn follow(&mut self, watermark: i64, hold: i64) {
        if hold == self.time {
            self.watermark = self.watermark.max(watermark);
        }
    }

    /// Pauses the partitions whose windows are further ahead of `slowest` (the earliest
    /// window any source may still add to) than the read-ahead, and resumes those back within
    /// it: the partitions to pause and to resume.
    pub(crate) fn read_ahead(&mut self, slowest: Option<i64>) -> (Vec<i32>, Vec<i32>) {
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        // Until the first progress is known, nothing to be ahead of.
        let Some(slowest) = slowest.filter(|s| *s > i64::MIN) else {
            return (pause, resume);
        };
        let window = self.config.rules.window;
        let limit = slowest.saturating_add(self.config.rules.read_ahead_ms());
        for p in &mut self.partitions {
            let ahead = p.watermark.hold(window) > limit;
            if ahead != p.paused {
                p.paused = ahead;
                // Whether it is at its end is not known again until it is read.
                p.at_end = None;
                if ahead { &mut pause } else { &mut resume }.push(p.id);
            }
        }
        (pause, resume)
    }

    /// Partitions added to the events topic, `partitions` in all now: this worker's `new`
    /// ones, read from their start (no run that published windows read them).
    pub(crate) fn grow(&mut self, partitions: i32, new: &[i32]) {
        self.settings.partitions = partitions;
        for &p in new {
            let mut partition =
                Partition::new(p, (0, 0), Checkpoint::default(), true, &self.config);
            // The windows this worker closed already are closed for it too (its events of
            // them are late), and its checkpoints say so.
            partition.closed_before = partition.closed_before.max(self.time);
            self.partitions.push(partition);
        }
    }

    /// Takes back a [`grow`](Self::grow) that could not be carried out.
    pub(crate) fn shrink(&mut self, partitions: i32, new: &[i32]) {
        self.partitions.retain(|p| !new.contains(&p.id));
        self.settings.partitions = partitions;
    }
}

/// What a commit at an offset needs to know of the state before it.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The offset.
    pub(crate) offset: i64,
    /// The largest timestamp seen before it.
    pub(crate) max_seen: Option<i64>,
    /// Where the late topic's partitions ended before it was read: every late or invalid
    /// record of it or a later offset is at or after these (see `reported`).
    pub(crate) late_from: Vec<i64>,
}

impl Guard {
    fn new(
        (partition, offset): (i32, i64),
        max_seen: Option<i64>,
        late_ends: &dyn Fn() -> Vec<i64>,
        reported: &Reported,
    ) -> Self {
        Guard {
            offset,
            max_seen,
            late_from: reported.late_from(partition, offset, late_ends()),
        }
    }
}

/// Where an event goes.
enum Route {
    /// Into its open window.
    Window,
    /// Amends its closed window.
    Amend,
    /// A late record, for this reason.
    Late(&'static str),
}
