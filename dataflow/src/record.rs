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
    /// one replaces it); `None` for the shard's final totals.
    pub snapshot_of: Option<u32>,
}

/// A message about a window, as the merge emits it: its report, its state and revision.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUpdate {
    /// The totals.
    pub report: WindowReport,
    /// Open (events read so far) or final.
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
    /// Late events.
    pub late: u64,
    /// Rejected rows.
    pub rejected: u64,
}

impl std::ops::AddAssign for SourceStats {
    fn add_assign(&mut self, other: Self) {
        self.rows += other.rows;
        self.on_time += other.on_time;
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
