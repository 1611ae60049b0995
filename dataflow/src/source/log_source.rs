//! `read_logs`: a timely source that reads CSV logs in blocks shared among all workers.
//!
//! Each worker reads every `peers`-th block of every file; its blocks of one file form one
//! partition with its own watermark. A worker advances its partition with the lowest
//! watermark first, and pauses while it is more than the read-ahead (`Rules::read_ahead_ms`) ahead of
//! the slowest worker, so open windows stay few however long the log is.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;
use model::EventError;
use model::log::{LogColumns, RowError};
use timely::dataflow::{ProbeHandle, Scope};

use super::blocks::{Line, LineCounter, read_block};
use super::log_file::LogFile;
use super::outputs::{Sessions, SourceCaps, SourceStreams, source_outputs};
use super::watermark::Watermark;
use crate::control::RunControl;
use crate::failure::Failure;
use crate::fate::{Fate, InvalidEvent, Rules};
use crate::record::{Amend, LateEvent, RejectedRow, SideRecord, SourceStats, Tap};

/// Longest part of a rejected row kept in its report.
const MAX_RAW_BYTES: usize = 1024;

/// How the logs are read.
#[derive(Debug, Clone)]
pub struct LogSourceConfig {
    /// The files, with their headers read.
    pub files: Arc<Vec<LogFile>>,
    /// Block size in bytes.
    pub block_bytes: u64,
    /// This dataflow's window size, the run's sizes and lateness, and the allowed emojis:
    /// what decides each row's fate (a log says nothing of when events arrived, so its own
    /// times are the clock).
    pub rules: Rules,
    /// Send late events on the side output (they are always counted).
    pub send_late: bool,
    /// Send rejected rows on the side output (they are always counted).
    pub send_rejects: bool,
    /// This source reports progress and rejected rows to the run's control. A run over
    /// several window sizes reads the logs once per size; only the first size's source does.
    pub primary: bool,
}

/// Reads logs into a dataflow.
pub trait ReadLogs<'scope> {
    /// On-time events at their window start, amendments (events within the allowed
    /// lateness), and the side output of late events, rejected rows and final counters.
    /// `frontier` must probe the returned event stream.
    fn read_logs(
        self,
        config: LogSourceConfig,
        control: Arc<RunControl>,
        frontier: ProbeHandle<i64>,
    ) -> SourceStreams<'scope, SideRecord>;
}

impl<'scope> ReadLogs<'scope> for Scope<'scope, i64> {
    fn read_logs(
        self,
        config: LogSourceConfig,
        control: Arc<RunControl>,
        frontier: ProbeHandle<i64>,
    ) -> SourceStreams<'scope, SideRecord> {
        let (index, peers) = (self.index(), self.peers());
        source_outputs(self, "ReadLogs", move |caps, activator| {
            let mut reader = Some(Reader::new(config, control, index, peers, caps));
            move |sessions| {
                let Some(active) = reader.as_mut() else {
                    return;
                };
                let ahead = frontier.with_frontier(|f| f.first().copied());
                match active.step(ahead, sessions) {
                    Step::More => activator.activate(),
                    Step::Wait => activator.activate_after(Duration::from_millis(1)),
                    Step::Done => reader = None,
                }
            }
        })
    }
}

enum Step {
    More,
    Wait,
    Done,
}

/// The blocks of one file read by this worker.
struct Partition {
    file_index: usize,
    file: File,
    len: u64,
    columns: LogColumns,
    next_block: u64,
    blocks: u64,
    watermark: Watermark,
    lines: LineCounter,
}

/// The state of one worker's source.
struct Reader {
    config: LogSourceConfig,
    control: Arc<RunControl>,
    stride: u64,
    partitions: Vec<Partition>,
    stats: SourceStats,
    caps: SourceCaps,
    buf: Vec<u8>,
    by_window: Vec<(i64, Vec<Tap>)>,
    amends: Vec<Amend>,
    side: Vec<SideRecord>,
}

impl Reader {
    fn new(
        config: LogSourceConfig,
        control: Arc<RunControl>,
        index: usize,
        peers: usize,
        caps: SourceCaps,
    ) -> Self {
        let peers = peers as u64;
        let mut partitions = Vec::new();
        for (file_index, log) in config.files.iter().enumerate() {
            let Some(columns) = log.columns else { continue };
            let blocks = log.len.div_ceil(config.block_bytes);
            // Block k of file f goes to worker (k + f) % peers, so small files spread out.
            let first = (index as u64 + peers - file_index as u64 % peers) % peers;
            if first >= blocks {
                continue;
            }
            match File::open(&log.path) {
                Ok(file) => partitions.push(Partition {
                    file_index,
                    file,
                    len: log.len,
                    columns,
                    next_block: first,
                    blocks,
                    watermark: Watermark::new(config.rules.windows.lateness_ms()),
                    lines: LineCounter::default(),
                }),
                Err(e) => control.fail(Failure::io("open", log.path.display(), e)),
            }
        }
        Reader {
            config,
            control,
            stride: peers,
            partitions,
            stats: SourceStats::default(),
            caps,
            buf: Vec::new(),
            by_window: Vec::new(),
            amends: Vec::new(),
            side: Vec::new(),
        }
    }

    /// Reads one block of the partition that is furthest behind.
    fn step(&mut self, slowest: Option<i64>, sessions: &mut Sessions<'_, SideRecord>) -> Step {
        if self.control.stopped() {
            self.partitions.clear();
        }
        let window = self.config.rules.window;
        let Some(p) =
            (0..self.partitions.len()).min_by_key(|&i| self.partitions[i].watermark.hold(window))
        else {
            sessions
                .side
                .session(self.caps.side())
                .give(SideRecord::Stats(self.stats));
            return Step::Done;
        };
        let hold = self.partitions[p].watermark.hold(window);
        if slowest.is_some_and(|s| hold > s.saturating_add(self.config.rules.read_ahead_ms())) {
            return Step::Wait;
        }
        if let Err(e) = self.read_next_block(p) {
            let path = self.config.files[self.partitions[p].file_index]
                .path
                .display();
            self.control.fail(Failure::io("read", path, e));
        }
        sessions.emit(
            &self.caps,
            &mut self.by_window,
            &mut self.amends,
            &mut self.side,
        );
        let partition = &mut self.partitions[p];
        partition.next_block += self.stride;
        if partition.next_block >= partition.blocks {
            self.partitions.swap_remove(p);
        }
        if let Some(hold) = self
            .partitions
            .iter()
            .map(|p| p.watermark.hold(window))
            .min()
        {
            self.caps.downgrade(hold);
        }
        Step::More
    }

    // Long: the hot path of the log source: one block parsed and routed without leaving the loop.
    fn read_next_block(&mut self, p: usize) -> std::io::Result<()> {
        let Reader {
            config,
            control,
            partitions,
            stats,
            caps,
            buf,
            by_window,
            amends,
            side,
            ..
        } = self;
        let now = caps.time();
        // Windows close on the least watermark of the worker's partitions.
        let others = partitions
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != p)
            .map(|(_, other)| other.watermark.value().unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MAX);
        let Partition {
            file_index,
            file,
            len,
            columns,
            next_block,
            watermark,
            lines,
            ..
        } = &mut partitions[p];
        let path = &config.files[*file_index].path;
        let start = *next_block * config.block_bytes;
        let end = start + config.block_bytes;
        let mut failure = None;
        read_block(file, *len, start, end, buf, |line| {
            if line.offset == 0 || line.bytes.is_empty() || line.bytes == b"\r" {
                return; // the header, or a blank line
            }
            stats.rows += 1;
            let decoded = if line.too_long {
                Err(RowError::TooLong(super::blocks::MAX_LINE_BYTES))
            } else {
                columns.decode_received(line.bytes, |user, emoji, timestamp, received| {
                    (
                        CompactString::new(user),
                        CompactString::new(emoji),
                        timestamp,
                        received,
                    )
                })
            };
            // A recording says when each event was received: a stamp further ahead of that
            // than the lateness counts at it, as live. A log that does not say has no clock
            // to be ahead of: its own times are the clock.
            let decoded = decoded.and_then(|(user, emoji, timestamp, received)| {
                match config.rules.check(&emoji, timestamp, received) {
                    Ok(()) => Ok((user, emoji, config.rules.event_time(timestamp, received))),
                    Err(InvalidEvent::NotAllowed(_)) => {
                        Err(RowError::Event(EventError::not_allowed(&emoji)))
                    }
                    Err(refused) => Err(RowError::Refused(refused.to_string())),
                }
            });
            match decoded {
                Ok((user, emoji, timestamp)) => {
                    let start = config.rules.window.start_of(timestamp);
                    watermark.observe(timestamp);
                    let closes_on = others.min(watermark.value().unwrap_or(i64::MIN));
                    match config.rules.fate(timestamp, closes_on) {
                        Fate::Count => {
                            stats.on_time += 1;
                            push_tap(by_window, start, Tap { user, emoji });
                        }
                        Fate::Amend if start >= now => {
                            // Past the watermark, but this source still holds the window:
                            // it counts in the window's final.
                            stats.amends += 1;
                            push_tap(by_window, start, Tap { user, emoji });
                        }
                        Fate::Amend => {
                            stats.amends += 1;
                            amends.push(Amend {
                                window_start: start,
                                tap: Tap { user, emoji },
                            });
                        }
                        Fate::Late => {
                            stats.late += 1;
                            if config.send_late {
                                side.push(SideRecord::Late(LateEvent {
                                    user,
                                    emoji,
                                    timestamp,
                                }));
                            }
                        }
                    }
                }
                Err(reason) => {
                    stats.rejected += 1;
                    if config.primary && (config.send_rejects || control.strict()) {
                        match rejected_row(lines, file, path, &line, &reason) {
                            Ok(row) => {
                                control.reject(&row);
                                side.push(SideRecord::Rejected(row));
                            }
                            Err(e) => failure = Some(e),
                        }
                    }
                }
            }
        })?;
        if config.primary {
            control.add_bytes(end.min(*len) - start);
        }
        failure.map_or(Ok(()), Err)
    }
}

fn push_tap(by_window: &mut Vec<(i64, Vec<Tap>)>, start: i64, tap: Tap) {
    // A block spans few windows: a linear search from the most recent one is cheapest.
    match by_window.iter_mut().rev().find(|(s, _)| *s == start) {
        Some((_, batch)) => batch.push(tap),
        None => by_window.push((start, vec![tap])),
    }
}

fn rejected_row(
    lines: &mut LineCounter,
    file: &File,
    path: &Path,
    line: &Line<'_>,
    reason: &RowError,
) -> std::io::Result<RejectedRow> {
    let number = lines.line_at(file, line.offset)?;
    let raw = &line.bytes[..line.bytes.len().min(MAX_RAW_BYTES)];
    Ok(RejectedRow {
        file: path.display().to_string(),
        line: number,
        reason: reason.to_string(),
        raw: String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned(),
    })
}
