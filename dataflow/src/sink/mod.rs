//! Where the dataflow's results go.
//!
//! - [`csv_files`]: window rows, late events and rejected rows as CSV files (or stdout).
//! - [`kafka_publish`]: window reports and late records to Kafka topics.

pub mod csv_files;
pub mod kafka_publish;

pub use csv_files::{RejectCsvWriter, WindowCsvWriter};
