//! Where the dataflow's results go.
//!
//! - [`csv_files`]: window rows, late events and rejected rows as CSV files (or stdout).

pub mod csv_files;

pub use csv_files::{LateCsvWriter, RejectCsvWriter, WindowCsvWriter};
