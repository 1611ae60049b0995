//! The ingest service of EmoStream: the HTTP API in front of the Kafka producer.
//!
//! # Layout
//! - [`server`]: `start`, the HTTP ingest service (warp) in front of the Kafka producer.
//! - [`api`]: the routes: `POST /emoji`, `GET /health`, `GET /metrics`, CORS.
//! - [`request`]: decoding and validating request bodies.
//! - [`producer`]: the idempotent Kafka producer with a bounded number of events in flight.
//! - `progress`: since when the ingest holds events the broker has not acknowledged, said
//!   on the ingests topic for the dataflow.
//! - `lookup`: whether events the broker may have stored are in the topic, before they are
//!   sent again.
//! - [`config`]: the service configuration, `IngestConfig`.
//! - [`metrics`]: the service's Prometheus metrics.
//! - [`load_test`]: `POST /load-test`, a simulator handed in by the command line (off by
//!   default).

pub mod api;
pub mod config;
pub mod load_test;
mod lookup;
pub mod metrics;
pub mod producer;
mod progress;
pub mod request;
pub mod server;

pub use config::IngestConfig;
pub use server::{IngestError, RunningIngest, start};
