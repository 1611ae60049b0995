//! EmoStream's tools: everything that makes traffic or watches it, and never runs in
//! production. The services do not import this crate; the command line hands its simulator
//! to the ingest's `/load-test` endpoint.
//!
//! # Layout
//! - [`generator`]: a deterministic generator of realistic reaction traffic (skewed emoji
//!   mix, a broad audience plus heavy clickers, bursts, network disorder and a few late
//!   arrivals), used for sample logs, tests, benchmarks and load.
//! - [`random`]: the seeded generator behind it.
//! - [`simulate`]: the open-loop traffic simulator, over HTTP or straight into Kafka, and
//!   its tap-to-swarm latency: from each accepted tap to the first frame counting it.
//! - [`load_test`]: the simulator behind the ingest's `POST /load-test`.
//! - [`ws_load`]: a WebSocket fan-out load tool for benchmarks.
//! - [`viewers`]: simulated viewers measuring each window's delay from its end, and crediting
//!   the simulator's taps as their frames count them.
//! - [`register`]: client registration at a broadcaster.
//! - [`recording`]: recorded matches: a topic to a CSV log, and logs back into Kafka at pace.

pub mod generator;
pub mod load_test;
pub mod random;
pub mod recording;
pub mod register;
pub mod simulate;
pub mod viewers;
pub mod ws_load;

pub use load_test::SimulatorDriver;
