//! Plumbing shared by EmoStream's long-running services (ingest, dataflow, broadcast):
//! Kafka client settings and topic creation, Prometheus text metrics, health and metrics
//! routes, and the shutdown signal. It holds no service logic.
//!
//! # Layout
//! - [`kafka`]: broker lists, client configuration, creating missing topics.
//! - [`metrics`]: counters, gauges and histograms rendered in the Prometheus text format.
//! - [`http`]: `GET /health` and `GET /metrics` routes.
//! - [`shutdown`]: one signal (Ctrl-C, SIGTERM or a test) that every task watches.
//! - [`secret`]: secrets that never print and compare in constant time.

pub mod http;
pub mod kafka;
pub mod metrics;
pub mod secret;
pub mod shutdown;

pub use shutdown::{Shutdown, ShutdownTrigger};
