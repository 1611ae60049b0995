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

/// A connection's key in its shard: its descriptor first, so that a pass over every
/// connection goes through the kernel's descriptor table and socket memory in order (in hash
/// order, each write missed the caches and the TLB more), then a serial number, unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnId {
    fd: RawFd,
    serial: u64,
}

struct Conn {
    id: ConnId,
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
    /// The `order` of the last live message offered to it, or of the last message the hub
    /// had when the snapshot was taken: anything up to it was sent or covered.
    seen: u64,
    /// After each `resume` still in effect: the hub's last `order` then, and the `last_seq`
    /// asked for. Live messages up to that order of windows after that `seq` were covered by
    /// that resume.
    resumed: Vec<(u64, i64)>,
    /// Closing: why, once the close frame is out.
    closing: Option<Disconnect>,
}

/// Whether a connection can take more, or is to be let go.
enum Flow {
    Open,
    Done(Disconnect),
}

/// What a shard's work on one connection needs besides the connection.
struct Ctx<'a> {
    config: &'a FanoutConfig,
    waiting: &'a mut FuturesUnordered<Writable>,
    tally: &'a mut Tally,
}

struct Shard {
    config: FanoutConfig,
    hub: Arc<Hub>,
    metrics: Arc<BroadcastMetrics>,
    conns: BTreeMap<ConnId, Conn>,
    /// The parked connections' waits for their sockets to be writable.
    waiting: FuturesUnordered<Writable>,
    tally: Tally,
    ping: Bytes,
}

type Writable = Pin<Box<dyn Future<Output = ConnId> + Send>>;

impl Shard {
    fn new(config: FanoutConfig, hub: Arc<Hub>, metrics: Arc<BroadcastMetrics>) -> Self {
        Shard {
            tally: Tally::new(&metrics),
            config,
            hub,
            metrics,
            conns: BTreeMap::new(),
            waiting: FuturesUnordered::new(),
            ping: wire::ping(),
        }
    }

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
                    self.on(id, |conn, cx| {
                        conn.waiting = None;
                        conn.flush(cx)
                    });
                }
                _ = ping.tick() => {
                    let ping = self.ping.clone();
                    self.on_every(|conn, cx| conn.push(Out::Bytes(ping.clone()), cx));
                }
                _ = check.tick() => self.drop_stalled(),
                () = shutdown.wait() => break,
            }
            self.tally.add_to(&self.metrics);
        }
        self.stop().await;
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join(id, joined) => self.join(id, joined),
            Command::Window(frame) => {
                self.on_every(|conn, cx| conn.offer(&frame, Sending::Live, cx));
            }
            Command::Summary(frame) => {
                // A summary missed by a slow client is not worth queueing: the next comes a
                // minute later.
                self.on_every(|conn, cx| {
                    if conn.queue.is_empty() && conn.closing.is_none() {
                        conn.push(Out::Bytes(frame.wire.clone()), cx)
                    } else {
                        Ok(())
                    }
                });
            }
            Command::Client(id, event) => self.client_event(id, event),
        }
    }

    /// Runs `work` on connection `id`, if it is still there; lets it go if that says so.
    fn on(&mut self, id: ConnId, work: impl FnOnce(&mut Conn, &mut Ctx) -> Result<(), Disconnect>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut cx = Ctx {
            config: &self.config,
            waiting: &mut self.waiting,
            tally: &mut self.tally,
        };
        if let Err(why) = work(conn, &mut cx) {
            self.remove(id, why);
        }
    }

    /// Runs `work` on every connection, in one pass; lets go of those it says to.
    fn on_every(&mut self, mut work: impl FnMut(&mut Conn, &mut Ctx) -> Result<(), Disconnect>) {
        let mut cx = Ctx {
            config: &self.config,
            waiting: &mut self.waiting,
            tally: &mut self.tally,
        };
        let mut gone = Vec::new();
        for conn in self.conns.values_mut() {
            if let Err(why) = work(conn, &mut cx) {
                gone.push((conn.id, why));
            }
        }
        for (id, why) in gone {
            self.remove(id, why);
        }
    }

    fn join(&mut self, id: ConnId, joined: Joined) {
        self.metrics.connections.add(1);
        // The snapshot: the latest message of each window still in the ring.
        let snapshot = self.hub.since(i64::MIN);
        let summaries = self.hub.summaries();
        let hello = hello(
            self.config.cluster,
            self.config.epoch,
            snapshot.frames.len(),
        );
        self.conns.insert(
            id,
            Conn {
                id,
                stream: joined.stream,
                _gone: joined.gone,
                queue: VecDeque::new(),
                written: 0,
                pending: 0,
                stalled_since: None,
                waiting: None,
                seen: snapshot.upto,
                resumed: Vec::new(),
                closing: None,
            },
        );
        // Queued first and written together: one system call for the whole greeting.
        self.on(id, |conn, cx| {
            conn.enqueue(Out::Bytes(hello), cx)?;
            for frame in snapshot.frames {
                conn.enqueue(Out::Window(frame, Sending::History), cx)?;
            }
            for summary in summaries {
                conn.enqueue(Out::Bytes(summary.wire.clone()), cx)?;
            }
            conn.flush(cx)
        });
    }

    fn client_event(&mut self, id: ConnId, event: FromClient) {
        match event {
            FromClient::Message(Incoming::Text(text)) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Resume { last_seq }) => {
                    // What the client asks for, whatever it was sent before.
                    let held = self.hub.since(last_seq);
                    self.on(id, |conn, cx| {
                        conn.resumed.push((held.upto, last_seq));
                        let waiting = !conn.queue.is_empty();
                        conn.enqueue(Out::Bytes(resumed(held.frames.len())), cx)?;
                        for frame in held.frames {
                            // A window still queued is replaced in its place, not sent twice.
                            match conn.replace_queued(&frame, Sending::History, cx) {
                                Some(done) => done?,
                                None => conn.enqueue(Out::Window(frame, Sending::History), cx)?,
                            }
                        }
                        if waiting { Ok(()) } else { conn.flush(cx) }
                    });
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
                self.on(id, |conn, cx| {
                    conn.push(Out::Bytes(wire::pong(&payload)), cx)
                });
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

    /// Starts closing a connection with `code`: nothing more is queued after the close frame,
    /// and it is let go once that is out.
    fn close(&mut self, id: ConnId, code: u16, reason: &str, why: Disconnect) {
        self.on(id, |conn, cx| {
            if conn.closing.is_some() {
                return Ok(());
            }
            conn.push(Out::Bytes(wire::close(code, reason)), cx)?;
            conn.closing = Some(why);
            // Let go once the close frame is out: now, or when the queue is written.
            if conn.queue.is_empty() {
                Err(why)
            } else {
                Ok(())
            }
        });
    }

    fn remove(&mut self, id: ConnId, why: Disconnect) {
        if self.conns.remove(&id).is_some() {
            self.metrics.disconnected(why);
            self.metrics.connections.add(-1);
        }
    }

    /// Lets go of the connections that took nothing for the write timeout (4002), and of the
    /// closing ones that did not take their close frame within a second.
    fn drop_stalled(&mut self) {
        let now = Instant::now();
        let stalled: Vec<(ConnId, Option<Disconnect>)> = self
            .conns
            .values()
            .filter_map(|c| {
                let since = c.stalled_since?;
                let limit = if c.closing.is_some() {
                    Duration::from_secs(1)
                } else {
                    self.config.write_timeout
                };
                (now.duration_since(since) >= limit).then_some((c.id, c.closing))
            })
            .collect();
        for (id, closing) in stalled {
            if let Some(why) = closing {
                self.remove(id, why);
            } else {
                if let Some(conn) = self.conns.get(&id) {
                    conn.last_word(4002, "not reading");
                }
                self.remove(id, Disconnect::NotReading);
            }
        }
    }

    /// On shutdown: every client gets 1001, within a second, and is let go.
    async fn stop(mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, 1001, "broadcaster stopping", Disconnect::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !self.conns.is_empty() && !self.waiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.waiting.next()).await {
                Ok(Some(id)) => self.on(id, |conn, cx| {
                    conn.waiting = None;
                    conn.flush(cx)
                }),
                _ => break,
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.remove(id, Disconnect::Shutdown);
        }
        self.tally.add_to(&self.metrics);
    }
}

impl Conn {
    /// Offers a window frame: sent unless the connection had it (or a newer message of its
    /// window) already; while the connection waits, it replaces an older message of the
    /// same window still queued, in its place.
    fn offer(
        &mut self,
        frame: &Arc<WindowFrame>,
        sending: Sending,
        cx: &mut Ctx,
    ) -> Result<(), Disconnect> {
        if self.closing.is_some() || !self.wants(frame) {
            return Ok(());
        }
        self.seen = frame.order;
        match self.replace_queued(frame, sending, cx) {
            Some(done) => done,
            None => self.push(Out::Window(Arc::clone(frame), sending), cx),
        }
    }

    /// When a message of `frame`'s window waits in the queue (not the partly written front):
    /// `frame` takes its place if it is as new or newer, else it is dropped; `None` when none
    /// waits.
    fn replace_queued(
        &mut self,
        frame: &Arc<WindowFrame>,
        sending: Sending,
        cx: &mut Ctx,
    ) -> Option<Result<(), Disconnect>> {
        let written = self.written;
        let (_, out) = self.queue.iter_mut().enumerate().find(|(i, out)| {
            matches!(out, Out::Window(f, _) if f.seq == frame.seq) && !(*i == 0 && written > 0)
        })?;
        cx.tally.skipped += 1;
        if matches!(out, Out::Window(f, _) if f.revision > frame.revision) {
            return Some(Ok(()));
        }
        self.pending = self.pending - out.bytes().len() + frame.wire.len();
        *out = Out::Window(Arc::clone(frame), sending);
        Some(self.within_limit(cx))
    }

    /// Whether a live message is new to this connection: the hub numbers them in the order
    /// every shard gets them, and each is newer than any before it of its window.
    fn wants(&mut self, frame: &WindowFrame) -> bool {
        if frame.order <= self.seen {
            return false;
        }
        self.resumed.retain(|&(upto, _)| frame.order <= upto);
        !self.resumed.iter().any(|&(_, after)| frame.seq > after)
    }

    /// Queues `out` and writes what the socket takes; most sockets take it at once, and it is
    /// written without being queued.
    fn push(&mut self, out: Out, cx: &mut Ctx) -> Result<(), Disconnect> {
        if !self.queue.is_empty() || self.closing.is_some() {
            return self.enqueue(out, cx);
        }
        let bytes = out.bytes();
        match self.stream.get_ref().write(bytes) {
            Ok(n) if n == bytes.len() => {
                cx.tally.delivered(&out);
                Ok(())
            }
            Ok(n) if n > 0 => {
                // Its first n bytes are out: counted as written before the limit is checked,
                // so no close frame goes in the middle of it.
                self.pending += bytes.len() - n;
                self.written = n;
                self.queue.push_back(out);
                self.within_limit(cx)?;
                self.flush(cx)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.enqueue(out, cx)?;
                self.flush(cx)
            }
            _ => Err(Disconnect::ClientGone),
        }
    }

    /// Queues `out` behind what the connection waits for (written once the socket takes
    /// more, see [`Conn::flush`]); past the pending limit the connection is let go (4001).
    fn enqueue(&mut self, out: Out, cx: &mut Ctx) -> Result<(), Disconnect> {
        if self.closing.is_some() {
            // Nothing goes after the close frame.
            return Ok(());
        }
        self.pending += out.bytes().len();
        self.queue.push_back(out);
        self.within_limit(cx)
    }

    /// Lets the connection go (4001) when what it has still to get passes the pending limit.
    fn within_limit(&mut self, cx: &mut Ctx) -> Result<(), Disconnect> {
        if self.pending > cx.config.max_pending {
            cx.tally.skipped += self.queue.len() as u64;
            self.last_word(4001, "too far behind");
            return Err(Disconnect::TooFarBehind);
        }
        Ok(())
    }

    /// Writes the queue until it is empty or the socket would block; then the connection is
    /// parked: a duplicate of its descriptor, registered for writing only while it waits,
    /// says when the socket takes more.
    fn flush(&mut self, cx: &mut Ctx) -> Result<(), Disconnect> {
        match self.write_queue(cx.tally) {
            Ok(Flow::Open) => {
                if self.queue.is_empty() {
                    self.stalled_since = None;
                    // An idle connection holds no queue.
                    self.queue = VecDeque::new();
                } else if self.waiting.is_none() {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    let (cancel, cancelled) = oneshot::channel::<()>();
                    self.waiting = Some(cancel);
                    let id = self.id;
                    match writer_of(&self.stream) {
                        Some(writer) => cx.waiting.push(Box::pin(async move {
                            tokio::select! {
                                _ = writer.writable() => {}
                                _ = cancelled => {}
                            }
                            id
                        })),
                        // No descriptor left for the duplicate (at the open-file limit): the
                        // socket is tried again shortly instead.
                        None => cx.waiting.push(Box::pin(async move {
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_WITHOUT_DUPLICATE) => {}
                                _ = cancelled => {}
                            }
                            id
                        })),
                    }
                }
                Ok(())
            }
            Ok(Flow::Done(why)) => Err(why),
            Err(()) => Err(Disconnect::ClientGone),
        }
    }

    /// Writes the queue without blocking, many messages in one call; `Done` once a close
    /// frame is out, `Err` when the socket failed.
    fn write_queue(&mut self, tally: &mut Tally) -> Result<Flow, ()> {
        while !self.queue.is_empty() {
            let result = {
                let mut slices = [std::io::IoSlice::new(&[]); 64];
                let mut count = 0;
                for (slice, out) in slices.iter_mut().zip(&self.queue) {
                    let skip = if count == 0 { self.written } else { 0 };
                    *slice = std::io::IoSlice::new(&out.bytes()[skip..]);
                    count += 1;
                }
                self.stream.get_ref().write_vectored(&slices[..count])
            };
            let mut taken = match result {
                Ok(0) => return Err(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Flow::Open),
                Err(_) => return Err(()),
            };
            self.pending -= taken;
            self.stalled_since = None;
            while let Some(front) = self.queue.front() {
                let rest = front.bytes().len() - self.written;
                if taken < rest {
                    self.written += taken;
                    break;
                }
                taken -= rest;
                self.written = 0;
                if let Some(out) = self.queue.pop_front() {
                    tally.delivered(&out);
                }
            }
        }
        Ok(match self.closing {
            Some(why) => Flow::Done(why),
            None => Flow::Open,
        })
    }

    /// A close frame for a connection let go at once, if the socket takes it now and no
    /// frame is half written (its rest would come first).
    fn last_word(&self, code: u16, reason: &str) {
        if self.written == 0 {
            let _ = self.stream.get_ref().write(&wire::close(code, reason));
        }
    }
}

/// How soon a parked socket is tried again when no duplicate of its descriptor could be made.
const RETRY_WITHOUT_DUPLICATE: Duration = Duration::from_millis(10);

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

/// What a shard delivered since it last added it to the broadcaster's metrics: counted
/// without atomics in the loop over the sockets, added once per wake-up.
struct Tally {
    sent: u64,
    skipped: u64,
    fan_out: LocalHistogram,
    record_to_client: LocalHistogram,
}

impl Tally {
    fn new(metrics: &BroadcastMetrics) -> Self {
        Tally {
            sent: 0,
            skipped: 0,
            fan_out: metrics.fan_out_seconds.local(),
            record_to_client: metrics.record_to_client_seconds.local(),
        }
    }

    /// Counts `out` as written in full.
    fn delivered(&mut self, out: &Out) {
        let Out::Window(frame, sending) = out else {
            return;
        };
        self.sent += 1;
        if *sending == Sending::History {
            return;
        }
        let fan_out = frame.arrived.elapsed().as_secs_f64();
        self.fan_out.observe(fan_out);
        if let Some(written_ms) = frame.kafka_timestamp {
            let before = (frame.arrived_ms - written_ms).max(0) as f64 / 1e3;
            self.record_to_client.observe(before + fan_out);
        }
    }

    fn add_to(&mut self, metrics: &BroadcastMetrics) {
        if self.sent > 0 {
            metrics.frames_sent.add(std::mem::take(&mut self.sent));
        }
        if self.skipped > 0 {
            metrics
                .frames_skipped
                .add(std::mem::take(&mut self.skipped));
        }
        metrics.fan_out_seconds.absorb(&mut self.fan_out);
        metrics
            .record_to_client_seconds
            .absorb(&mut self.record_to_client);
    }
}
