//! The CSV log format of recorded events: a header naming `user_id`, `emoji_type` and
//! `timestamp` in any column order (extra named columns are ignored), then one event per
//! line, UTF-8. Fields may be quoted with `"` (a quote inside is written `""`). A record
//! never spans lines: a valid event holds no line break, so logs can be split at newlines.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::event::{EventError, Field, validate_fields};
use crate::timestamp::write_rfc3339_millis;

/// The header written by EmoStream for event logs.
pub const LOG_HEADER: &str = "user_id,emoji_type,timestamp";

/// The optional column of a recording: when the event was taken (its Kafka record's
/// timestamp), which replay uses as the live dataflow does (a stamp further ahead of it than
/// the lateness counts at it).
pub const RECEIVED_COLUMN: &str = "received";

/// Why a log header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The log has no header line.
    #[error("missing header line (expected {LOG_HEADER})")]
    Missing,
    /// The header is not UTF-8 or not CSV.
    #[error("unreadable header: {0}")]
    Unreadable(String),
    /// A required column is absent.
    #[error("header has no column \"{0}\"")]
    MissingColumn(Field),
    /// A column name appears twice.
    #[error("header names column \"{0}\" twice")]
    DuplicateColumn(String),
}

/// Why a row of a log was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The line is not UTF-8 from this byte on (1-based).
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// The line is longer than the limit.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// The line has a different number of fields than the header.
    #[error("wrong number of fields: expected {expected}, found {found}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in this line.
        found: usize,
    },
    /// A quoted field is not closed, or is followed by something other than a comma.
    #[error("malformed quoted field {0}")]
    Quote(usize),
    /// A field is invalid.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The event breaks a rule of the run (judged outside the codec).
    #[error("{0}")]
    Refused(String),
}

/// Where the event fields are in a log's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogColumns {
    user_id: usize,
    emoji_type: usize,
    timestamp: usize,
    /// The `received` column, if the log has one.
    received: Option<usize>,
    fields: usize,
}

impl LogColumns {
    /// Reads a header line (without its line break; a UTF-8 byte order mark is skipped).
    pub fn from_header(line: &[u8]) -> Result<Self, HeaderError> {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(HeaderError::Missing);
        }
        let text = std::str::from_utf8(line).map_err(|e| HeaderError::Unreadable(e.to_string()))?;
        let names = split_fields(text).map_err(|e| HeaderError::Unreadable(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            if !seen.insert(name.trim()) {
                return Err(HeaderError::DuplicateColumn(name.trim().to_owned()));
            }
        }
        let find = |field: Field| {
            names
                .iter()
                .position(|n| n.trim() == field.name())
                .ok_or(HeaderError::MissingColumn(field))
        };
        Ok(LogColumns {
            user_id: find(Field::UserId)?,
            emoji_type: find(Field::EmojiType)?,
            timestamp: find(Field::Timestamp)?,
            received: names.iter().position(|n| n.trim() == RECEIVED_COLUMN),
            fields: names.len(),
        })
    }

    /// Decodes and validates one row (without its line break) and hands the trimmed
    /// `user_id`, `emoji_type` and the timestamp in UTC milliseconds to `accept`.
    #[inline]
    pub fn decode<R>(
        &self,
        line: &[u8],
        accept: impl FnOnce(&str, &str, i64) -> R,
    ) -> Result<R, RowError> {
        self.decode_received(line, |user, emoji, ts, _| accept(user, emoji, ts))
    }

    /// Like [`decode`](Self::decode), with the time the event was received too, where the
    /// log has a `received` column (UTC milliseconds; an empty field is none).
    #[inline]
    pub fn decode_received<R>(
        &self,
        line: &[u8],
        accept: impl FnOnce(&str, &str, i64, Option<i64>) -> R,
    ) -> Result<R, RowError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text =
            std::str::from_utf8(line).map_err(|e| RowError::InvalidUtf8(e.valid_up_to() + 1))?;
        if !text.contains('"') {
            return self.decode_plain(text, accept);
        }
        let fields = split_fields(text)?;
        if fields.len() != self.fields {
            return Err(RowError::FieldCount {
                expected: self.fields,
                found: fields.len(),
            });
        }
        let (user, emoji, ts) = validate_fields(
            &fields[self.user_id],
            &fields[self.emoji_type],
            &fields[self.timestamp],
        )?;
        let received = parse_received(self.received.map(|i| fields[i].as_ref()))?;
        Ok(accept(user, emoji, ts, received))
    }

    /// The common case: no quotes, so fields are the text between commas.
    #[inline]
    fn decode_plain<R>(
        &self,
        text: &str,
        accept: impl FnOnce(&str, &str, i64, Option<i64>) -> R,
    ) -> Result<R, RowError> {
        let (mut user, mut emoji, mut ts, mut received) = ("", "", "", None);
        let mut found = 0;
        for (i, field) in text.split(',').enumerate() {
            if i == self.user_id {
                user = field;
            } else if i == self.emoji_type {
                emoji = field;
            } else if i == self.timestamp {
                ts = field;
            } else if Some(i) == self.received {
                received = Some(field);
            }
            found = i + 1;
        }
        if found != self.fields {
            return Err(RowError::FieldCount {
                expected: self.fields,
                found,
            });
        }
        let (user, emoji, ts) = validate_fields(user, emoji, ts)?;
        Ok(accept(user, emoji, ts, parse_received(received)?))
    }
}

/// The `received` field: none where the log has no such column or the field is empty.
fn parse_received(field: Option<&str>) -> Result<Option<i64>, RowError> {
    match field.map(str::trim).filter(|f| !f.is_empty()) {
        Some(text) => Ok(Some(
            crate::parse_timestamp(text).map_err(|e| RowError::Event(e.into()))?,
        )),
        None => Ok(None),
    }
}

/// Splits a CSV line into fields, removing quotes.
fn split_fields(text: &str) -> Result<Vec<Cow<'_, str>>, RowError> {
    let mut fields = Vec::new();
    let mut rest = text;
    loop {
        let field_index = fields.len() + 1;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut body = quoted;
            loop {
                let close = body.find('"').ok_or(RowError::Quote(field_index))?;
                value.push_str(&body[..close]);
                body = &body[close + 1..];
                match body.strip_prefix('"') {
                    Some(after_escaped) => {
                        value.push('"');
                        body = after_escaped;
                    }
                    None => break,
                }
            }
            fields.push(Cow::Owned(value));
            match body.strip_prefix(',') {
                Some(next) => rest = next,
                None if body.is_empty() => return Ok(fields),
                None => return Err(RowError::Quote(field_index)),
            }
        } else {
            match rest.find(',') {
                Some(comma) => {
                    fields.push(Cow::Borrowed(&rest[..comma]));
                    rest = &rest[comma + 1..];
                }
                None => {
                    fields.push(Cow::Borrowed(rest));
                    return Ok(fields);
                }
            }
        }
    }
}

/// Writes events as a log in this format: the header, then one line per event, fields
/// quoted only where they hold a comma, a quote or a line break. What it writes reads back
/// through [`LogColumns::decode`] as the same events.
///
/// # Examples
///
/// ```
/// use model::log::LogWriter;
///
/// let mut log = LogWriter::new(Vec::new()).unwrap();
/// log.write_event("u1", "🔥", 0).unwrap();
/// log.write_event("a,b", "😂", 1_500).unwrap();
/// let text = String::from_utf8(log.into_inner().unwrap()).unwrap();
/// assert_eq!(
///     text,
///     "user_id,emoji_type,timestamp\n\
///      u1,🔥,1970-01-01T00:00:00.000Z\n\
///      \"a,b\",😂,1970-01-01T00:00:01.500Z\n"
/// );
/// ```
pub struct LogWriter<W: Write> {
    out: W,
    line: String,
    /// Whether rows have the `received` column.
    received: bool,
}

impl<W: Write> LogWriter<W> {
    /// Writes the header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        writeln!(out, "{LOG_HEADER}")?;
        Ok(LogWriter {
            out,
            line: String::with_capacity(64),
            received: false,
        })
    }

    /// Writes the header of a recording, with the `received` column, to `out`.
    pub fn recording(mut out: W) -> io::Result<Self> {
        writeln!(out, "{LOG_HEADER},{RECEIVED_COLUMN}")?;
        Ok(LogWriter {
            out,
            line: String::with_capacity(80),
            received: true,
        })
    }

    /// Writes one event: user, emoji, timestamp (UTC milliseconds, written as RFC 3339).
    pub fn write_event(&mut self, user: &str, emoji: &str, timestamp_ms: i64) -> io::Result<()> {
        self.write_received(user, emoji, timestamp_ms, None)
    }

    /// Writes one event with the time it was received (a recording's rows; written empty
    /// where unknown, left out by a writer without the column).
    pub fn write_received(
        &mut self,
        user: &str,
        emoji: &str,
        timestamp_ms: i64,
        received_ms: Option<i64>,
    ) -> io::Result<()> {
        self.line.clear();
        push_field(&mut self.line, user);
        self.line.push(',');
        push_field(&mut self.line, emoji);
        self.line.push(',');
        write_rfc3339_millis(&mut self.line, timestamp_ms);
        if self.received {
            self.line.push(',');
            if let Some(received) = received_ms {
                write_rfc3339_millis(&mut self.line, received);
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the output.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Appends `field`, quoted if it must be.
fn push_field(line: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        line.push('"');
        for c in field.chars() {
            if c == '"' {
                line.push('"');
            }
            line.push(c);
        }
        line.push('"');
    } else {
        line.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_reads_back_with_the_time_each_event_was_received() {
        let mut log = LogWriter::recording(Vec::new()).unwrap();
        log.write_received("u1", "🔥", 1_000, Some(1_500)).unwrap();
        log.write_received("u2", "😂", 2_000, None).unwrap();
        let text = String::from_utf8(log.into_inner().unwrap()).unwrap();
        let mut lines = text.lines();
        let cols = LogColumns::from_header(lines.next().unwrap().as_bytes()).unwrap();
        let rows: Vec<_> = lines
            .map(|l| {
                cols.decode_received(l.as_bytes(), |u, e, t, r| {
                    (u.to_owned(), e.to_owned(), t, r)
                })
                .unwrap()
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("u1".into(), "🔥".into(), 1_000, Some(1_500)),
                ("u2".into(), "😂".into(), 2_000, None)
            ]
        );
        // A log without the column has no received times.
        let plain = LogColumns::from_header(LOG_HEADER.as_bytes()).unwrap();
        assert_eq!(plain.decode_received(b"u,e,5", |_, _, _, r| r), Ok(None));
    }

    fn decode(cols: &LogColumns, line: &str) -> Result<(String, String, i64), RowError> {
        cols.decode(line.as_bytes(), |u, e, t| (u.to_owned(), e.to_owned(), t))
    }

    #[test]
    fn columns_in_any_order_with_extras() {
        let cols =
            LogColumns::from_header(b"\xEF\xBB\xBFtimestamp,country,emoji_type,user_id\r").unwrap();
        assert_eq!(
            decode(&cols, "5,IN,🔥,u1\r"),
            Ok(("u1".into(), "🔥".into(), 5000))
        );
        assert_eq!(
            decode(&cols, "\"5\",\"I,N\",\"say \"\"hi\"\"\",u1"),
            Ok(("u1".into(), "say \"hi\"".into(), 5000))
        );
        assert_eq!(
            decode(&cols, "5,,\" 🔥 \",u1"),
            Ok(("u1".into(), "🔥".into(), 5000))
        );
    }

    #[test]
    fn bad_headers() {
        assert_eq!(LogColumns::from_header(b""), Err(HeaderError::Missing));
        assert_eq!(
            LogColumns::from_header(b"user_id,emoji"),
            Err(HeaderError::MissingColumn(Field::EmojiType))
        );
        assert_eq!(
            LogColumns::from_header(b"user_id,emoji_type,timestamp,user_id"),
            Err(HeaderError::DuplicateColumn("user_id".into()))
        );
    }

    #[test]
    fn bad_rows_say_why() {
        let cols = LogColumns::from_header(LOG_HEADER.as_bytes()).unwrap();
        let reason = |line: &[u8]| cols.decode(line, |_, _, _| ()).unwrap_err().to_string();
        assert_eq!(reason(b"u1,\xF0\x9F,5"), "invalid UTF-8 at byte 4");
        assert_eq!(
            reason(b"u1,5"),
            "wrong number of fields: expected 3, found 2"
        );
        assert_eq!(
            reason(b"u1,a,5,6"),
            "wrong number of fields: expected 3, found 4"
        );
        assert_eq!(reason(b"u1,\"a,5"), "malformed quoted field 2");
        assert_eq!(reason(b"u1,\"a\"b,5"), "malformed quoted field 2");
        assert_eq!(
            reason(b"u1,a,12:61"),
            "invalid timestamp \"12:61\": not a date-time or an epoch number"
        );
        assert_eq!(reason(b",a,5"), "empty user_id");
        assert_eq!(reason(b"u1,\"\",5"), "empty emoji_type");
        assert_eq!(reason(b"u1,a,"), "invalid timestamp \"\": empty");
    }

    #[test]
    fn written_events_read_back_the_same() {
        let events = [
            ("u1", "🔥", 0i64),
            ("a,b", "😂", -1_500),
            ("say \"hi\"", "👏", 1_764_000_000_123),
        ];
        let mut log = LogWriter::new(Vec::new()).unwrap();
        for (user, emoji, ts) in events {
            log.write_event(user, emoji, ts).unwrap();
        }
        let text = log.into_inner().unwrap();
        let mut lines = text.split(|&b| b == b'\n');
        let columns = LogColumns::from_header(lines.next().unwrap()).unwrap();
        for (line, (user, emoji, ts)) in lines.zip(events) {
            let read = columns
                .decode(line, |u, e, t| (u.to_owned(), e.to_owned(), t))
                .unwrap();
            assert_eq!(read, (user.to_owned(), emoji.to_owned(), ts));
        }
    }
}
