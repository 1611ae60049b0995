//! A shard: its connections, woken once per message for all of them, and the loop that
//! takes in commands, pings and writable sockets.

use super::conn::{Conn, ConnId, Out, Sending};
use super::tally::Tally;
use super::*;

/// What a shard's work on one connection needs besides the connection.
pub(super) struct Ctx<'a> {
    pub(super) config: &'a FanoutConfig,
    pub(super) waiting: &'a mut FuturesUnordered<Writable>,
    pub(super) tally: &'a mut Tally,
}

pub(super) struct Shard {
    pub(super) config: FanoutConfig,
    pub(super) hub: Arc<Hub>,
    pub(super) metrics: Arc<BroadcastMetrics>,
    pub(super) conns: BTreeMap<ConnId, Conn>,
    /// The parked connections' waits for their sockets to be writable.
    pub(super) waiting: FuturesUnordered<Writable>,
    pub(super) tally: Tally,
    pub(super) ping: Bytes,
}

pub(super) type Writable = Pin<Box<dyn Future<Output = ConnId> + Send>>;

impl Shard {
    pub(super) fn new(config: FanoutConfig, hub: Arc<Hub>, metrics: Arc<BroadcastMetrics>) -> Self {
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

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut shutdown: Shutdown,
    ) {
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

    pub(super) fn handle(&mut self, command: Command) {
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
    pub(super) fn on(
        &mut self,
        id: ConnId,
        work: impl FnOnce(&mut Conn, &mut Ctx) -> Result<(), Disconnect>,
    ) {
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
    pub(super) fn on_every(
        &mut self,
        mut work: impl FnMut(&mut Conn, &mut Ctx) -> Result<(), Disconnect>,
    ) {
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

    pub(super) fn join(&mut self, id: ConnId, joined: Joined) {
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

    pub(super) fn client_event(&mut self, id: ConnId, event: FromClient) {
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
                Ok(ClientMessage::Ping) => {
                    self.on(id, |conn, cx| conn.push(Out::Bytes(pong()), cx));
                }
                Err(_) => self.close(
                    id,
                    1008,
                    "invalid message: expected {\"type\":\"resume\",\"last_seq\":K} or {\"type\":\"ping\"}",
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
    pub(super) fn close(&mut self, id: ConnId, code: u16, reason: &str, why: Disconnect) {
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

    pub(super) fn remove(&mut self, id: ConnId, why: Disconnect) {
        if self.conns.remove(&id).is_some() {
            self.metrics.disconnected(why);
            self.metrics.connections.add(-1);
        }
    }

    /// Lets go of the connections that took nothing for the write timeout (4002), and of the
    /// closing ones that did not take their close frame within a second.
    pub(super) fn drop_stalled(&mut self) {
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
    pub(super) async fn stop(mut self) {
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
