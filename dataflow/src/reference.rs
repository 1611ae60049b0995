//! A plain single-threaded aggregator over whole files, written for obviousness rather than
//! speed: the oracle that the dataflow is compared with, record for record.
//!
//! Its semantics are those of a dataflow with one worker: each file is one partition whose
//! watermark is `max timestamp seen - lateness`; an event whose window ended at or before
//! the watermark amends its window if the window's end plus the allowed lateness is still
//! after the watermark, and is late otherwise. It reports each window's last revision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use model::log::LogColumns;
use model::report::EmojiTotals;
use model::{ReportConfig, WindowReport, WindowSize};

use crate::source::blocks::MAX_LINE_BYTES;

/// Everything the reference saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReferenceOutput {
    /// Reports of all windows, in window order.
    pub reports: Vec<WindowReport>,
    /// Late events as `(user_id, emoji_type, timestamp)`.
    pub late: Vec<(String, String, i64)>,
    /// Data rows read.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
}

#[derive(Default)]
struct Window {
    events: u64,
    users: BTreeSet<String>,
    emojis: BTreeMap<String, (u64, BTreeSet<String>)>,
}

/// Aggregates `files` (paths of CSV logs) one after the other.
// Long: the reference aggregator is one plain loop on purpose: it is the oracle.
pub fn aggregate_files(
    files: &[&Path],
    size: WindowSize,
    lateness_ms: i64,
    allowed_lateness_ms: i64,
    config: &ReportConfig,
) -> std::io::Result<ReferenceOutput> {
    let mut out = ReferenceOutput::default();
    let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
    for path in files {
        let content = std::fs::read(path)?;
        let mut lines = content.split(|&b| b == b'\n');
        let Some(header) = lines.next() else { continue };
        let Ok(columns) = LogColumns::from_header(header) else {
            continue;
        };
        let mut max_seen: Option<i64> = None;
        for line in lines {
            if line.is_empty() || line == b"\r" {
                continue;
            }
            out.rows += 1;
            if line.len() > MAX_LINE_BYTES {
                out.rejected += 1;
                continue;
            }
            let decoded = columns.decode(line, |u, e, t| (u.to_owned(), e.to_owned(), t));
            let Ok((user, emoji, ts)) = decoded else {
                out.rejected += 1;
                continue;
            };
            let max = max_seen.map_or(ts, |m| m.max(ts));
            max_seen = Some(max);
            let start = size.start_of(ts);
            if size.end_of(start) + allowed_lateness_ms <= max - lateness_ms {
                out.late.push((user, emoji, ts));
                continue;
            }
            let window = windows.entry(start).or_default();
            window.events += 1;
            window.users.insert(user.clone());
            let (count, users) = window.emojis.entry(emoji).or_default();
            *count += 1;
            users.insert(user);
        }
    }
    out.reports = windows
        .into_iter()
        .map(|(start, w)| {
            let totals = w
                .emojis
                .into_iter()
                .map(|(emoji, (count, users))| EmojiTotals {
                    emoji,
                    count,
                    unique_users: users.len() as u64,
                });
            WindowReport::build(
                start,
                size.end_of(start),
                w.events,
                w.users.len() as u64,
                totals,
                config,
            )
        })
        .collect();
    Ok(out)
}
