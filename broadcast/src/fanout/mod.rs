//! The fan-out: every window message goes to every client of a broadcaster without a task
//! woken per client. Connections are spread over shards, one per core; a new frame wakes
//! each shard once, and the shard writes the frame's bytes (a complete WebSocket frame,
//! encoded once and shared) to each of its sockets without blocking. A socket that would
//! block is parked with what it still has to get and finished, in order, once the kernel
//! says it is writable; while it waits, a newer message of a window replaces the older one
//! queued for it, so a slow client gets the newest message of each window and never an older
//! revision after a newer one. Past the limits it is disconnected: 4002 when it has not taken
//! a byte for the write timeout (it stopped reading), 4001 when what it has still to get
//! passes the pending limit.
//!
//! Each connection also has a reader task ([`crate::reader`]), woken only by what its client
//! sends; what it reads (a `resume`, a ping, a close) comes to the shard, which owns every
//! write to the socket. A socket is registered with the event loop for reading only: a
//! registration for writing too would wake the loop for every acknowledgement of every
//! frame to every client. Only while a socket is parked does a duplicate of its descriptor
//! wait for it to be writable.
//!
//! By role: this module is the dispatch (a message to every shard, a new connection to one);
//! `shard` the shard's loop over its connections; `conn` a connection's write queue and
//! the client protocol; `socket` the registration of sockets with the event loop;
//! `tally` the shard's counts for the metrics.

mod conn;
mod shard;
mod socket;
mod tally;

pub use conn::ConnId;
use shard::Shard;
pub use socket::register;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use model::client::ClientMessage;
use service::Shutdown;
use service::metrics::LocalHistogram;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{WindowFrame, hello, pong, resumed};
use crate::hub::Hub;
use crate::metrics::{BroadcastMetrics, Disconnect};
use crate::wire::{self, Incoming, WireError};

/// What every shard of a broadcaster shares.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// The cluster served.
    pub cluster: u32,
    /// When this broadcaster started (UTC ms): a new epoch tells clients the ring is new.
    pub epoch: i64,
    /// A client that takes no byte for this long is disconnected (4002).
    pub write_timeout: Duration,
    /// A client with more than this many bytes still to get is disconnected (4001).
    pub max_pending: usize,
    /// Interval of pings.
    pub ping_interval: Duration,
    /// Shards (0: one per core).
    pub shards: usize,
}

/// A client's socket: non-blocking, registered with the event loop for reading only.
pub type Socket = Arc<AsyncFd<std::net::TcpStream>>;

/// A client's connection, once the handshake is done.
pub struct Joined {
    /// The socket.
    pub stream: Socket,
    /// Stopped when the shard lets the connection go: its reader ends, and the socket closes.
    pub gone: oneshot::Sender<()>,
}

/// What a connection's reader hands to its shard.
#[derive(Debug)]
pub enum FromClient {
    /// A whole message.
    Message(Incoming),
    /// Bytes that break the protocol or the limits.
    Broken(WireError),
    /// The client closed the socket or it failed.
    Gone,
}

enum Command {
    Join(ConnId, Joined),
    Window(Arc<WindowFrame>),
    Summary(Arc<WindowFrame>),
    Client(ConnId, FromClient),
}

/// The fan-out of one broadcaster: its hub and its shards.
pub struct Fanout {
    hub: Arc<Hub>,
    /// Held from the hub's numbering of a message to its hand-over to every shard: each shard
    /// gets the messages in the hub's order.
    publishing: std::sync::Mutex<()>,
    shards: Vec<mpsc::UnboundedSender<Command>>,
    next_id: AtomicU64,
    next_shard: AtomicUsize,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// A connection as its reader knows it: where to hand what it reads.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    id: ConnId,
    shard: mpsc::UnboundedSender<Command>,
}

impl ClientHandle {
    /// Hands `event` to the connection's shard; false once the shard is gone.
    pub fn send(&self, event: FromClient) -> bool {
        self.shard.send(Command::Client(self.id, event)).is_ok()
    }
}

impl Fanout {
    /// Starts the shards (tasks of the current runtime), serving until `shutdown`.
    pub fn start(
        config: FanoutConfig,
        hub: Arc<Hub>,
        metrics: Arc<BroadcastMetrics>,
        shutdown: Shutdown,
    ) -> Arc<Fanout> {
        let count = if config.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.shards
        };
        let shards = (0..count)
            .map(|_| {
                let (to_shard, commands) = mpsc::unbounded_channel();
                let shard = Shard::new(config.clone(), Arc::clone(&hub), Arc::clone(&metrics));
                tokio::spawn(shard.run(commands, shutdown.clone()));
                to_shard
            })
            .collect();
        Arc::new(Fanout {
            hub,
            publishing: std::sync::Mutex::new(()),
            shards,
            next_id: AtomicU64::new(0),
            next_shard: AtomicUsize::new(0),
        })
    }

    /// The hub: the ring and the summaries.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Takes in a window message: kept in the ring, and sent to every client if newer than
    /// the one held. False for one dropped (see [`Hub::publish`]).
    pub fn publish(&self, frame: WindowFrame) -> bool {
        let _order = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        self.to_every_shard(self.hub.publish(frame), Command::Window)
    }

    /// Takes in a window of the longer size (see [`Hub::publish_summary`]).
    pub fn publish_summary(&self, frame: WindowFrame) -> bool {
        self.to_every_shard(self.hub.publish_summary(frame), Command::Summary)
    }

    /// Sends `frame`, if the hub took it, to every shard as `command`; whether it did.
    fn to_every_shard(
        &self,
        frame: Option<Arc<WindowFrame>>,
        command: fn(Arc<WindowFrame>) -> Command,
    ) -> bool {
        let Some(frame) = frame else {
            return false;
        };
        for shard in &self.shards {
            let _ = shard.send(command(Arc::clone(&frame)));
        }
        true
    }

    /// Hands a new connection to a shard (in turn): it gets `hello`, the snapshot and the
    /// summaries, then every message. The handle is for its reader.
    pub fn join(&self, joined: Joined) -> ClientHandle {
        let id = ConnId {
            fd: joined.stream.as_raw_fd(),
            serial: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let shard =
            &self.shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let _ = shard.send(Command::Join(id, joined));
        ClientHandle {
            id,
            shard: shard.clone(),
        }
    }
}
