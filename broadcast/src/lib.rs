//! The broadcast side of EmoStream: WebSocket broadcasters that consume a `clusterN`
//! topic and push every closed window to the clients of their cluster.
//!
//! # Layout
//! - [`server`]: `start`, the broadcaster (HTTP with WebSocket upgrades on one port).
//! - [`hub`]: the latest window, the ring of recent windows, and the fan-out channel.
//! - [`frame`]: frames encoded once per window and shared by every connection.
//! - [`session`]: one WebSocket client: hello, snapshot, windows, resume, close codes.
//! - [`consumer`]: the cluster topic into the hub.
//! - [`token`]: signed connection tokens.
//! - [`registry`]: heartbeats and the assignment of registering clients.
//! - [`config`]: the broadcaster configuration, `BroadcastConfig`.
//! - [`metrics`]: the broadcaster's Prometheus metrics.

pub mod config;
pub mod consumer;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod session;
pub mod token;

pub use config::BroadcastConfig;
pub use server::{BroadcastError, RunningBroadcaster, start};
