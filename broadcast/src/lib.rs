//! The broadcast side of EmoStream: WebSocket broadcasters that consume a `clusterN`
//! topic and push every closed window to the clients of their cluster.
//!
//! # Layout
//! - [`server`]: `start`, the broadcaster: topics, consumers, registry, the HTTP loop.
//! - [`routes`]: the page, `/register`, `/ws`, `/health` and `/metrics` as warp filters.
//! - [`registration`]: `POST /register`, a cluster and a broadcaster for a client.
//! - [`upgrade`]: `GET /ws`: checks and the WebSocket handshake.
//! - [`reply`]: the responses the routes share (content types, JSON errors, CORS).
//! - [`hub`]: the ring of recent windows (the snapshot, resumes) and the longer windows.
//! - [`fanout`]: the shards that write every frame to their sockets without blocking:
//!   hello, snapshot, windows, resume, pings, slow clients, close codes.
//! - [`reader`]: a connection's reader, woken only by what its client sends.
//! - [`wire`]: WebSocket frames, encoded once for every socket, and decoded from clients.
//! - [`frame`]: window frames encoded once per message and shared by every connection.
//! - [`consumer`]: the cluster topic into the hub.
//! - [`registry`]: heartbeats and the assignment of registering clients.
//! - [`error`]: `BroadcastError`, why a broadcaster could not start.
//! - [`config`]: the broadcaster configuration, `BroadcastConfig`.
//! - [`metrics`]: the broadcaster's Prometheus metrics.

pub mod config;
pub mod consumer;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod reader;
pub mod registration;
pub mod registry;
pub mod reply;
pub mod routes;
pub mod server;
pub mod upgrade;
pub mod wire;

pub use config::{BroadcastConfig, check_public_url, ws_url};
pub use error::BroadcastError;
pub use server::{RunningBroadcaster, start};
