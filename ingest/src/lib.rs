//! The ingest side of EmoStream: everything that brings events in.
//!
//! # Layout
//! - [`generator`]: a deterministic generator of realistic reaction traffic (skewed emoji
//!   mix, a broad audience plus heavy clickers, bursts, network disorder and a few late
//!   arrivals), used for sample logs, tests, benchmarks and load.

pub mod generator;
pub mod random;
