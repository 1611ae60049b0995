//! The records that flow between the dataflow's operators.

use compact_str::CompactString;
use model::WindowReport;
use model::report::WindowState;
use serde::{Deserialize, Serialize};

/// One on-time event inside the dataflow. Its window is the timely timestamp it travels
/// at, so only the user and the emoji are carried. Short strings are stored inline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tap {
    /// Who reacted.
    pub user: CompactString,
    /// The emoji.
    pub emoji: CompactString,
}

/// An event whose window had closed for its partition, within the allowed lateness: it
/// travels at the source's current time and amends the window it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Amend {
    /// Start of the event's window, UTC milliseconds.
    pub window_start: i64,
    /// The event.
    pub tap: Tap,
}

/// Exact totals of one emoji in one window over the users of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmojiPartial {
    /// The emoji.
    pub emoji: CompactString,
    /// Events of this emoji.
    pub count: u64,
    /// Distinct users of this emoji.
    pub unique_users: u64,
}

/// Exact totals of one window over a shard of the users. Users are partitioned among
/// workers, so the totals of all shards add up to the exact totals of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialWindow {
    /// Start of the window, UTC milliseconds.
    pub window_start: i64,
    /// Events in the window.
    pub events: u64,
    /// Distinct users in the window.
    pub unique_users: u64,
    /// Per emoji.
    pub emojis: Vec<EmojiPartial>,
    /// `Some(worker)` for an open window's snapshot of that worker's shard so far (a later
    /// one replaces it); `None` for what the shard adds to the window's totals: its final
    /// totals, then what each amendment adds (shards of one window add up, whenever they come).
    pub snapshot_of: Option<u32>,
}

impl PartialWindow {
    /// A shard of the window starting at `window_start` without events.
    pub fn empty(window_start: i64) -> Self {
        PartialWindow {
            window_start,
            events: 0,
            unique_users: 0,
            emojis: Vec::new(),
            snapshot_of: None,
        }
    }

    /// What these totals add to `before`, earlier totals of the same shard and window
    /// (totals only grow): the emojis that grew, by how much.
    pub fn minus(&self, before: &PartialWindow) -> PartialWindow {
        let earlier = |emoji: &CompactString| {
            before
                .emojis
                .iter()
                .find(|e| e.emoji == *emoji)
                .map_or((0, 0), |e| (e.count, e.unique_users))
        };
        let emojis = self
            .emojis
            .iter()
            .filter_map(|now| {
                let (count, unique_users) = earlier(&now.emoji);
                (now.count > count).then(|| EmojiPartial {
                    emoji: now.emoji.clone(),
                    count: now.count - count,
                    unique_users: now.unique_users - unique_users,
                })
            })
            .collect();
        PartialWindow {
            window_start: self.window_start,
            events: self.events - before.events,
            unique_users: self.unique_users - before.unique_users,
            emojis,
            snapshot_of: self.snapshot_of,
        }
    }
}

/// A message about a window, as the merge emits it: its report, its state and revision.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUpdate {
    /// The totals.
    pub report: WindowReport,
    /// Open (events read so far), final, or revised (amended after it was final).
    pub state: WindowState,
    /// Increases with every update of the window.
    pub revision: u64,
}

/// An event that arrived after its window had closed for its partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LateEvent {
    /// Who reacted.
    pub user: CompactString,
    /// The emoji.
    pub emoji: CompactString,
    /// Event time, UTC milliseconds.
    pub timestamp: i64,
}

/// A row of an input log that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// The file.
    pub file: String,
    /// 1-based line number in the file.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
    /// The row as read (invalid UTF-8 replaced, cut to 1 KiB).
    pub raw: String,
}

/// Counters of one source worker, sent once when it has read all its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Data rows read (header and blank lines excluded).
    pub rows: u64,
    /// Rows that became on-time events.
    pub on_time: u64,
    /// Rows past their partition's watermark, within the allowed lateness: counted in their
    /// windows (in the final while the source still held the window, else as amendments).
    pub amends: u64,
    /// Late events.
    pub late: u64,
    /// Rejected rows.
    pub rejected: u64,
}

impl std::ops::AddAssign for SourceStats {
    fn add_assign(&mut self, other: Self) {
        self.rows += other.rows;
        self.on_time += other.on_time;
        self.amends += other.amends;
        self.late += other.late;
        self.rejected += other.rejected;
    }
}

/// What a source reports besides on-time events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SideRecord {
    /// A late event (sent only when late events are written out).
    Late(LateEvent),
    /// A rejected row (sent only when rejects are written out or the run is strict).
    Rejected(RejectedRow),
    /// Final counters of a source worker.
    Stats(SourceStats),
}
