//! Sources of events for the dataflow.
//!
//! A source splits its input into partitions, keeps a [`watermark::Watermark`] per
//! partition, and holds its output capability at the earliest window any partition may
//! still add to. Late events and unreadable rows go to a side output; nothing is dropped.

pub mod blocks;
pub mod kafka;
pub mod log_file;
pub mod log_source;
pub mod outputs;
pub mod watermark;

pub use log_file::{LogFile, SourceError};
pub use log_source::{LogSourceConfig, ReadLogs};
