//! CSV writers for window reports, late events and rejected rows.

use std::io::Write;

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

/// Header of the rejected-rows output.
pub const REJECT_CSV_HEADER: [&str; 3] = ["line", "reason", "raw"];

/// Writes window reports, one row per (window, emoji) in the order given.
pub struct WindowCsvWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> WindowCsvWriter<W> {
    /// Writes the header to `out`.
    pub fn new(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(WINDOW_CSV_HEADER)?;
        Ok(WindowCsvWriter { csv })
    }

    /// Writes the rows of one window.
    pub fn write(&mut self, report: &WindowReport) -> csv::Result<()> {
        let start = format_rfc3339_millis(report.window_start);
        let end = format_rfc3339_millis(report.window_end);
        for emoji in &report.emojis {
            self.csv.write_record([
                start.as_str(),
                end.as_str(),
                emoji.emoji.as_str(),
                &emoji.count.to_string(),
                &emoji.unique_users.to_string(),
                &emoji.scaled_count.to_string(),
                &format!("{:.6}", emoji.share),
            ])?;
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
