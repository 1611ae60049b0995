//! CSV writers for window reports, late events and rejected rows.

use std::io::Write;

use model::report::WindowState;
use model::{WindowReport, format_rfc3339_millis};

use crate::record::RejectedRow;

/// Header of the window output: one row per (window, emoji).
pub const WINDOW_CSV_HEADER: [&str; 7] = [
    "window_start",
    "window_end",
    "emoji",
    "count",
    "unique_users",
    "scaled_count",
    "share",
];

/// Header of the revisions output: each final and revised message, one row per emoji.
pub const REVISION_CSV_HEADER: [&str; 9] = [
    "window_start",
    "window_end",
    "state",
    "revision",
    "emoji",
    "count",
    "unique_users",
    "scaled_count",
    "share",
];

/// Header of the rejected-rows output.
pub const REJECT_CSV_HEADER: [&str; 3] = ["line", "reason", "raw"];

/// Writes window reports, one row per (window, emoji) in the order given.
pub struct WindowCsvWriter<W: Write> {
    csv: csv::Writer<W>,
    revisions: bool,
}

impl<W: Write> WindowCsvWriter<W> {
    /// Writes the header to `out`.
    pub fn new(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(WINDOW_CSV_HEADER)?;
        Ok(WindowCsvWriter {
            csv,
            revisions: false,
        })
    }

    /// Writes the header of the revisions output (with each row's state and revision) to
    /// `out`.
    pub fn with_revisions(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(REVISION_CSV_HEADER)?;
        Ok(WindowCsvWriter {
            csv,
            revisions: true,
        })
    }

    /// Writes the rows of one window.
    pub fn write(&mut self, report: &WindowReport) -> csv::Result<()> {
        self.write_revision(report, WindowState::Final, 1)
    }

    /// Writes the rows of one message about a window (its state and revision only in the
    /// revisions output).
    pub fn write_revision(
        &mut self,
        report: &WindowReport,
        state: WindowState,
        revision: u64,
    ) -> csv::Result<()> {
        let start = format_rfc3339_millis(report.window_start);
        let end = format_rfc3339_millis(report.window_end);
        let state = match state {
            WindowState::Open => "open",
            WindowState::Final => "final",
            WindowState::Revised => "revised",
        };
        let revision = revision.to_string();
        for emoji in &report.emojis {
            let count = emoji.count.to_string();
            let users = emoji.unique_users.to_string();
            let scaled = emoji.scaled_count.to_string();
            let share = format!("{:.6}", emoji.share);
            let mut record: Vec<&str> = vec![&start, &end];
            if self.revisions {
                record.extend([state, &revision]);
            }
            record.extend([emoji.emoji.as_str(), &count, &users, &scaled, &share]);
            self.csv.write_record(&record)?;
        }
        Ok(())
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }

    /// Flushes and returns the output.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

/// Writes rejected rows: `line,reason,raw`; when the input has several files, the reason
/// ends with the file's name: `... (in data/b.csv)`.
pub struct RejectCsvWriter<W: Write> {
    csv: csv::Writer<W>,
    name_files: bool,
}

impl<W: Write> RejectCsvWriter<W> {
    /// Writes the header to `out`; `name_files` when the rows come from several files.
    pub fn new(out: W, name_files: bool) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(REJECT_CSV_HEADER)?;
        Ok(RejectCsvWriter { csv, name_files })
    }

    /// Writes one rejected row.
    pub fn write(&mut self, row: &RejectedRow) -> csv::Result<()> {
        let reason = if self.name_files {
            format!("{} (in {})", row.reason, row.file)
        } else {
            row.reason.clone()
        };
        self.csv
            .write_record([&row.line.to_string(), &reason, &row.raw])
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ReportConfig;
    use model::report::EmojiTotals;

    #[test]
    fn window_rows() {
        let totals = |emoji: &str, count| EmojiTotals {
            emoji: emoji.into(),
            count,
            unique_users: 1,
        };
        let report = WindowReport::build(
            -2000,
            0,
            3,
            2,
            [totals("🔥", 2), totals("a,b", 1)],
            &ReportConfig::default(),
        );
        let mut w = WindowCsvWriter::new(Vec::new()).unwrap();
        w.write(&report).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "window_start,window_end,emoji,count,unique_users,scaled_count,share\n\
             1969-12-31T23:59:58.000Z,1970-01-01T00:00:00.000Z,\"a,b\",1,1,1,0.333333\n\
             1969-12-31T23:59:58.000Z,1970-01-01T00:00:00.000Z,🔥,2,1,1,0.666667\n"
        );
    }
}
