//! The ingest side of EmoStream: everything that brings events in.
//!
//! # Layout
//! - [`server`]: `start`, the HTTP ingest service (warp) in front of the Kafka producer.
//! - [`api`]: the routes: `POST /emoji`, `GET /health`, `GET /metrics`, CORS.
//! - [`request`]: decoding and validating request bodies.
//! - [`producer`]: the idempotent Kafka producer with a bounded number of events in flight.
//! - [`config`]: the service configuration, `IngestConfig`.
//! - [`metrics`]: the service's Prometheus metrics.
//! - [`generator`]: a deterministic generator of realistic reaction traffic (skewed emoji
//!   mix, a broad audience plus heavy clickers, bursts, network disorder and a few late
//!   arrivals), used for sample logs, tests, benchmarks and load.
//! - [`random`]: the seeded generator behind it.
//! - [`simulate`]: the open-loop traffic simulator, over HTTP or straight into Kafka.
//! - [`limits`]: token-bucket rate limits per user and per source IP.
//! - [`load_test`]: `POST /load-test`, the simulator inside the service (off by default).

pub mod api;
pub mod config;
pub mod generator;
pub mod limits;
pub mod load_test;
pub mod metrics;
pub mod producer;
pub mod random;
pub mod request;
pub mod server;
pub mod simulate;

pub use config::IngestConfig;
pub use server::{IngestError, RunningIngest, start};
