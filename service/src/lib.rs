//! Plumbing shared by EmoStream's long-running services (ingest, dataflow, broadcast):
//! Kafka client settings and topic creation, Prometheus text metrics, health and metrics
//! routes, and the shutdown signal. It holds no service logic.
//!
//! # Layout
//! - [`kafka`]: broker lists, client configuration, creating missing topics.
//! - [`metrics`]: counters, gauges and histograms rendered in the Prometheus text format.
//! - [`admin`]: `GET /health`, `GET /ready` and `GET /metrics`, as routes or a server of their own.
//! - [`ready`]: whether a service can do its work now, and why not (the brokers asked each second).
//! - [`http`]: a service's warp routes on its own HTTP/1 loop (client address, timeouts,
//!   connection limit, upgrades, graceful shutdown).
//! - [`shutdown`]: one signal (Ctrl-C, SIGTERM or a test) that every task watches.
//! - [`secret`]: secrets that never print and compare in constant time.
//! - [`limits`]: token-bucket rate limits per key, bounded in memory.
//! - [`token`]: the viewer tokens broadcasters sign and broadcasters and ingests check.

pub mod admin;
pub mod http;
pub mod kafka;
pub mod kafka_settings;
pub mod limits;
pub mod metrics;
pub mod ready;
pub mod secret;
pub mod shutdown;
pub mod token;

pub use shutdown::{Shutdown, ShutdownTrigger};
