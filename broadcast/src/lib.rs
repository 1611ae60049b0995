//! The broadcast side of EmoStream: WebSocket broadcasters that consume a `clusterN`
//! topic and push every closed window to the clients of their cluster.
//!
//! # Layout
//! - [`server`]: `start`, the broadcaster: topics, consumers, registry, the HTTP loop.
//! - [`routes`]: the page, `/register`, `/ws`, `/health` and `/metrics` on one port.
//! - [`registration`]: `POST /register`, a cluster and a broadcaster for a client.
//! - [`upgrade`]: `GET /ws`: checks and the WebSocket handshake.
//! - [`hub`]: the latest window, the ring of recent windows, and the fan-out channel.
//! - [`frame`]: frames encoded once per window and shared by every connection.
//! - [`session`]: one WebSocket client: hello, snapshot, windows, resume, close codes.
//! - [`consumer`]: the cluster topic into the hub.
//! - [`token`]: signed connection tokens.
//! - [`registry`]: heartbeats and the assignment of registering clients.
//! - [`error`]: `BroadcastError`, why a broadcaster could not start.
//! - [`config`]: the broadcaster configuration, `BroadcastConfig`.
//! - [`metrics`]: the broadcaster's Prometheus metrics.

pub mod config;
pub mod consumer;
pub mod error;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod registration;
pub mod registry;
pub mod routes;
pub mod server;
pub mod session;
pub mod token;
pub mod upgrade;

pub use config::BroadcastConfig;
pub use error::BroadcastError;
pub use server::{RunningBroadcaster, start};
