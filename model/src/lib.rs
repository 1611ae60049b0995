//! The shared vocabulary of EmoStream: the emoji event and its validation, timestamp
//! parsing and formatting, event-time window arithmetic, the per-window report, the CSV
//! log codec, and the names every service agrees on.
//!
//! This crate is a leaf: it depends on serde and thiserror only, so every service (ingest,
//! dataflow, broadcast) can use it without pulling in a runtime.
//!
//! # Layout
//! - [`event`]: `EmojiEvent` and the validation of its fields.
//! - [`timestamp`]: the accepted timestamp forms, normalised to UTC milliseconds.
//! - [`window`]: tumbling windows aligned to the Unix epoch.
//! - [`window_spec`]: `WindowSpec`, the sizes of a run and their lateness.
//! - [`report`]: `WindowReport`, the statistics of one closed window.
//! - [`log`]: the CSV log format (header mapping, row decoding, and the writer).
//! - [`duration`]: durations written like `2s` or `500ms` in configuration.
//! - [`names`]: topic names, default ports and other shared constants.
//! - [`progress`]: `IngestProgress`, what an ingest says it has taken and not yet stored.

pub mod checks;
pub mod client;
pub mod duration;
pub mod emojis;
pub mod event;
pub mod log;
pub mod names;
pub mod progress;
pub mod report;
pub mod timestamp;
pub mod window;
pub mod window_spec;

pub use event::{EmojiEvent, EventError, Field};
pub use report::{EmojiStat, ReportConfig, WindowReport};
pub use timestamp::{TimestampError, format_rfc3339_millis, now_ms, parse_timestamp};
pub use window::WindowSize;
pub use window_spec::WindowSpec;
