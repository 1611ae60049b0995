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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use model::client::ClientMessage;
use service::Shutdown;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{WindowFrame, hello, resumed};
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
    Join(u64, Joined),
    Window(Arc<WindowFrame>),
    Summary(Arc<WindowFrame>),
    Client(u64, FromClient),
}

/// The fan-out of one broadcaster: its hub and its shards.
pub struct Fanout {
    hub: Arc<Hub>,
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
    id: u64,
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
                let shard = Shard {
                    config: config.clone(),
                    hub: Arc::clone(&hub),
                    metrics: Arc::clone(&metrics),
                    conns: HashMap::new(),
                    waiting: FuturesUnordered::new(),
                    ping: wire::ping(),
                };
                tokio::spawn(shard.run(commands, shutdown.clone()));
                to_shard
            })
            .collect();
        Arc::new(Fanout {
            hub,
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shard =
            &self.shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let _ = shard.send(Command::Join(id, joined));
        ClientHandle {
            id,
            shard: shard.clone(),
        }
    }
}

/// Why a frame goes out: as it comes, or from the ring (the snapshot, a resume), which the
/// fan-out and delivery histograms leave out (its delay is the ring's age, not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Live,
    History,
}

/// What a connection still has to get.
enum Out {
    Window(Arc<WindowFrame>, Sending),
    Bytes(Bytes),
}

impl Out {
    fn bytes(&self) -> &[u8] {
        match self {
            Out::Window(frame, _) => &frame.wire,
            Out::Bytes(bytes) => bytes,
        }
    }
}

struct Conn {
    stream: Socket,
    /// Dropped with the connection: the reader ends.
    _gone: oneshot::Sender<()>,
    /// What could not be written yet, in order; the front may be partly written.
    queue: VecDeque<Out>,
    /// Bytes of the front already written.
    written: usize,
    /// Bytes in the queue not written yet.
    pending: usize,
    /// Since when the socket has taken nothing (while it has something to get).
    stalled_since: Option<Instant>,
    /// While a wait for the socket to be writable is on: dropped with the connection, it
    /// ends the wait (and closes the duplicate descriptor the wait holds).
    waiting: Option<oneshot::Sender<()>>,
    sent: Sent,
    /// Closing: why, once the close frame is out.
    closing: Option<Disconnect>,
}

/// Whether a connection can take more, or is to be let go.
enum Flow {
    Open,
    Done(Disconnect),
}

struct Shard {
    config: FanoutConfig,
    hub: Arc<Hub>,
    metrics: Arc<BroadcastMetrics>,
    conns: HashMap<u64, Conn>,
    /// The parked connections' waits for their sockets to be writable.
    waiting: FuturesUnordered<Writable>,
    ping: Bytes,
}

type Writable = Pin<Box<dyn Future<Output = u64> + Send>>;

impl Shard {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, mut shutdown: Shutdown) {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let mut check = tokio::time::interval(
            (self.config.write_timeout / 4)
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
        );
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                    // Everything that came meanwhile, in one wake-up.
                    while let Ok(command) = commands.try_recv() {
                        self.handle(command);
                    }
                }
                Some(id) = self.waiting.next(), if !self.waiting.is_empty() => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.waiting = None;
                    }
                    self.flush(id);
                }
                _ = ping.tick() => {
                    let ids: Vec<u64> = self.conns.keys().copied().collect();
                    for id in ids {
                        let ping = Out::Bytes(self.ping.clone());
                        self.push(id, ping);
                    }
                }
                _ = check.tick() => self.drop_stalled(),
                () = shutdown.wait() => break,
            }
        }
        self.stop().await;
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join(id, joined) => self.join(id, joined),
            Command::Window(frame) => {
                let ids: Vec<u64> = self.conns.keys().copied().collect();
                for id in ids {
                    self.offer(id, &frame, Sending::Live);
                }
            }
            Command::Summary(frame) => {
                // A summary missed by a slow client is not worth queueing: the next comes a
                // minute later.
                let ids: Vec<u64> = self.conns.keys().copied().collect();
                for id in ids {
                    if self
                        .conns
                        .get(&id)
                        .is_some_and(|c| c.queue.is_empty() && c.closing.is_none())
                    {
                        self.push(id, Out::Bytes(frame.wire.clone()));
                    }
                }
            }
            Command::Client(id, event) => self.client_event(id, event),
        }
    }

    fn join(&mut self, id: u64, joined: Joined) {
        self.metrics.connections.add(1);
        self.conns.insert(
            id,
            Conn {
                stream: joined.stream,
                _gone: joined.gone,
                queue: VecDeque::new(),
                written: 0,
                pending: 0,
                stalled_since: None,
                waiting: None,
                sent: Sent::default(),
                closing: None,
            },
        );
        // The snapshot: the latest message of each window still in the ring.
        let snapshot = self.hub.since(i64::MIN);
        self.push(
            id,
            Out::Bytes(hello(
                self.config.cluster,
                self.config.epoch,
                snapshot.len(),
            )),
        );
        for frame in &snapshot {
            self.offer(id, frame, Sending::History);
        }
        for summary in self.hub.summaries() {
            self.push(id, Out::Bytes(summary.wire.clone()));
        }
    }

    fn client_event(&mut self, id: u64, event: FromClient) {
        match event {
            FromClient::Message(Incoming::Text(text)) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Resume { last_seq }) => {
                    // What the client asks for, whatever it was sent before.
                    let frames = self.hub.since(last_seq);
                    self.push(id, Out::Bytes(resumed(frames.len())));
                    for frame in frames {
                        if let Some(conn) = self.conns.get_mut(&id) {
                            conn.sent.record(&frame);
                        }
                        self.push(id, Out::Window(frame, Sending::History));
                    }
                }
                Err(_) => self.close(
                    id,
                    1008,
                    "invalid message: expected {\"type\":\"resume\",\"last_seq\":K}",
                    Disconnect::InvalidMessage,
                ),
            },
            FromClient::Message(Incoming::Binary) => self.close(
                id,
                1003,
                "binary messages are not accepted",
                Disconnect::InvalidMessage,
            ),
            FromClient::Message(Incoming::Ping(payload)) => {
                self.push(id, Out::Bytes(wire::pong(&payload)));
            }
            FromClient::Message(Incoming::Pong) => {}
            FromClient::Message(Incoming::Close(code)) => {
                // Answered with the client's code (1000 when it gave none), then let go.
                let code = code.filter(|c| (1000..5000).contains(c)).unwrap_or(1000);
                self.close(id, code, "", Disconnect::ClientGone);
            }
            FromClient::Broken(error) => {
                let why = match error {
                    WireError::TooBig => Disconnect::TooBig,
                    _ => Disconnect::InvalidMessage,
                };
                self.close(id, error.close_code(), &error.to_string(), why);
            }
            FromClient::Gone => self.remove(id, Disconnect::ClientGone),
        }
    }

    /// Offers a window frame to a connection: sent unless it had this revision or a newer
    /// one; while the connection waits, it replaces an older message of the same window
    /// still queued, in its place.
    fn offer(&mut self, id: u64, frame: &Arc<WindowFrame>, sending: Sending) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing.is_some() || !conn.sent.is_new(frame) {
            return;
        }
        conn.sent.record(frame);
        let written = conn.written;
        let queued = conn.queue.iter_mut().enumerate().find(|(i, out)| {
            matches!(out, Out::Window(f, _) if f.seq == frame.seq) && !(*i == 0 && written > 0)
        });
        if let Some((_, out)) = queued {
            conn.pending = conn.pending - out.bytes().len() + frame.wire.len();
            *out = Out::Window(Arc::clone(frame), sending);
            self.metrics.frames_skipped.add(1);
            return;
        }
        self.push(id, Out::Window(Arc::clone(frame), sending));
    }

    /// Queues `out` for a connection and writes what the socket takes.
    fn push(&mut self, id: u64, out: Out) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        // Most sockets take a frame at once: written without queueing it.
        let mut already = 0;
        if conn.queue.is_empty() && conn.closing.is_none() {
            match conn.stream.get_ref().write(out.bytes()) {
                Ok(n) if n == out.bytes().len() => {
                    if let Out::Window(frame, sending) = &out {
                        delivered(frame, *sending, &self.metrics);
                    }
                    return;
                }
                Ok(n) if n > 0 => {
                    already = n;
                    conn.written = n;
                    conn.stalled_since = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => return self.remove(id, Disconnect::ClientGone),
            }
        }
        conn.pending += out.bytes().len() - already;
        conn.queue.push_back(out);
        if conn.pending > self.config.max_pending && conn.closing.is_none() {
            self.metrics.frames_skipped.add(conn.queue.len() as u64);
            return self.remove_with_close(id, 4001, "too far behind", Disconnect::TooFarBehind);
        }
        if conn.queue.len() == 1 {
            self.flush(id);
        }
    }

    /// Writes a connection's queue until it is empty or the socket would block; then it is
    /// parked: a duplicate of its descriptor, registered for writing only while it waits,
    /// says when the socket takes more.
    fn flush(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match write_queue(conn, &self.metrics) {
            Ok(Flow::Open) => {
                if conn.queue.is_empty() {
                    conn.stalled_since = None;
                    // An idle connection holds no queue.
                    conn.queue = VecDeque::new();
                } else if conn.waiting.is_none() {
                    conn.stalled_since.get_or_insert_with(Instant::now);
                    let Some(writer) = writer_of(&conn.stream) else {
                        return self.remove(id, Disconnect::ClientGone);
                    };
                    let (cancel, cancelled) = oneshot::channel::<()>();
                    conn.waiting = Some(cancel);
                    self.waiting.push(Box::pin(async move {
                        tokio::select! {
                            _ = writer.writable() => {}
                            _ = cancelled => {}
                        }
                        id
                    }));
                }
            }
            Ok(Flow::Done(why)) => self.remove(id, why),
            Err(()) => self.remove(id, Disconnect::ClientGone),
        }
    }

    /// Starts closing a connection with `code`: nothing more is queued after the close frame,
    /// and it is let go once that is out.
    fn close(&mut self, id: u64, code: u16, reason: &str, why: Disconnect) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        conn.closing = Some(why);
        self.push(id, Out::Bytes(wire::close(code, reason)));
    }

    /// Lets a connection go at once, with a close frame if the socket takes it now.
    fn remove_with_close(&mut self, id: u64, code: u16, reason: &str, why: Disconnect) {
        if let Some(conn) = self.conns.get(&id) {
            let _ = conn.stream.get_ref().write(&wire::close(code, reason));
        }
        self.remove(id, why);
    }

    fn remove(&mut self, id: u64, why: Disconnect) {
        if self.conns.remove(&id).is_some() {
            self.metrics.disconnected(why);
            self.metrics.connections.add(-1);
        }
    }

    /// Lets go of the connections that took nothing for the write timeout (4002), and of the
    /// closing ones that did not take their close frame within a second.
    fn drop_stalled(&mut self) {
        let now = Instant::now();
        let stalled: Vec<(u64, bool)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| {
                let since = c.stalled_since?;
                let limit = if c.closing.is_some() {
                    Duration::from_secs(1)
                } else {
                    self.config.write_timeout
                };
                (now.duration_since(since) >= limit).then_some((id, c.closing.is_some()))
            })
            .collect();
        for (id, closing) in stalled {
            if closing {
                let why = self
                    .conns
                    .get(&id)
                    .and_then(|c| c.closing)
                    .unwrap_or(Disconnect::ClientGone);
                self.remove(id, why);
            } else {
                self.remove_with_close(id, 4002, "not reading", Disconnect::NotReading);
            }
        }
    }

    /// On shutdown: every client gets 1001, within a second, and is let go.
    async fn stop(mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, 1001, "broadcaster stopping", Disconnect::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !self.conns.is_empty() && !self.waiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.waiting.next()).await {
                Ok(Some(id)) => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.waiting = None;
                    }
                    self.flush(id);
                }
                _ => break,
            }
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.remove(id, Disconnect::Shutdown);
        }
    }
}

/// Writes the queue of `conn` without blocking; `Done` once a close frame is out, `Err` when
/// the socket failed.
fn write_queue(conn: &mut Conn, metrics: &BroadcastMetrics) -> Result<Flow, ()> {
    while let Some(front) = conn.queue.front() {
        let bytes = front.bytes();
        match conn.stream.get_ref().write(&bytes[conn.written..]) {
            Ok(0) => return Err(()),
            Ok(n) => {
                conn.written += n;
                conn.pending -= n;
                conn.stalled_since = None;
                if conn.written < bytes.len() {
                    continue;
                }
                conn.written = 0;
                if let Some(Out::Window(frame, sending)) = conn.queue.pop_front() {
                    delivered(&frame, sending, metrics);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Flow::Open),
            Err(_) => return Err(()),
        }
    }
    Ok(match conn.closing {
        Some(why) => Flow::Done(why),
        None => Flow::Open,
    })
}

/// A duplicate of a parked socket's descriptor, registered for writing only (the socket's
/// own registration is for reading): dropped, with its registration, once the socket is
/// written out or let go.
fn writer_of(socket: &Socket) -> Option<AsyncFd<std::net::TcpStream>> {
    let duplicate = socket.get_ref().try_clone().ok()?;
    register(duplicate, tokio::io::Interest::WRITABLE).ok()
}

/// Registers `socket` with the event loop for `interest` only: a client's socket for
/// reading ([`Socket`]), a parked one's duplicate for writing.
pub fn register(
    socket: std::net::TcpStream,
    interest: tokio::io::Interest,
) -> std::io::Result<AsyncFd<std::net::TcpStream>> {
    // The safe registration is deprecated in favour of an unsafe one (which this workspace
    // forbids); what the unsafe one asks holds here: the TcpStream owns its descriptor for
    // the AsyncFd's whole life.
    #[allow(deprecated)]
    AsyncFd::with_interest(socket, interest)
}

fn delivered(frame: &WindowFrame, sending: Sending, metrics: &BroadcastMetrics) {
    metrics.frames_sent.add(1);
    if sending == Sending::History {
        return;
    }
    metrics
        .fan_out_seconds
        .observe(frame.arrived.elapsed().as_secs_f64());
    if let Some(written_ms) = frame.kafka_timestamp {
        metrics
            .record_to_client_seconds
            .observe((model::now_ms() - written_ms).max(0) as f64 / 1e3);
    }
}

/// The windows a connection was sent, by `seq` and revision, so it gets each message once and
/// never an older revision after a newer one. The oldest are forgotten past [`Sent::KEPT`]
/// windows, and count as sent.
#[derive(Debug, Default)]
struct Sent {
    revisions: BTreeMap<i64, u64>,
    /// Windows at or below this were forgotten.
    floor: Option<i64>,
}

impl Sent {
    /// How many windows are remembered (more than the ring holds at 2 s windows).
    const KEPT: usize = 64;

    fn is_new(&self, frame: &WindowFrame) -> bool {
        self.floor.is_none_or(|floor| frame.seq > floor)
            && self
                .revisions
                .get(&frame.seq)
                .is_none_or(|&revision| frame.revision > revision)
    }

    fn record(&mut self, frame: &WindowFrame) {
        self.revisions.insert(frame.seq, frame.revision);
        while self.revisions.len() > Self::KEPT {
            if let Some((seq, _)) = self.revisions.pop_first() {
                self.floor = Some(seq);
            }
        }
    }
}
