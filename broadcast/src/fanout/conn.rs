//! A connection in its shard: what it still has to get (its write queue, newer messages of
//! a window replacing older ones), writing without blocking, and the client protocol
//! (`resume`, pings, closing).

use super::shard::Ctx;
use super::socket::{RETRY_WITHOUT_DUPLICATE, writer_of};
use super::tally::Tally;
use super::*;

/// Why a frame goes out: as it comes, or from the ring (the snapshot, a resume), which the
/// fan-out and delivery histograms leave out (its delay is the ring's age, not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    Live,
    History,
}

/// What a connection still has to get.
pub(super) enum Out {
    Window(Arc<WindowFrame>, Sending),
    Bytes(Bytes),
}

impl Out {
    pub(super) fn bytes(&self) -> &[u8] {
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
    pub(super) fd: RawFd,
    pub(super) serial: u64,
}

pub(super) struct Conn {
    pub(super) id: ConnId,
    pub(super) stream: Socket,
    /// Dropped with the connection: the reader ends.
    pub(super) _gone: oneshot::Sender<()>,
    /// What could not be written yet, in order; the front may be partly written.
    pub(super) queue: VecDeque<Out>,
    /// Bytes of the front already written.
    pub(super) written: usize,
    /// Bytes in the queue not written yet.
    pub(super) pending: usize,
    /// Since when the socket has taken nothing (while it has something to get).
    pub(super) stalled_since: Option<Instant>,
    /// While a wait for the socket to be writable is on: dropped with the connection, it
    /// ends the wait (and closes the duplicate descriptor the wait holds).
    pub(super) waiting: Option<oneshot::Sender<()>>,
    /// The `order` of the last live message offered to it, or of the last message the hub
    /// had when the snapshot was taken: anything up to it was sent or covered.
    pub(super) seen: u64,
    /// After each `resume` still in effect: the hub's last `order` then, and the `last_seq`
    /// asked for. Live messages up to that order of windows after that `seq` were covered by
    /// that resume.
    pub(super) resumed: Vec<(u64, i64)>,
    /// Closing: why, once the close frame is out.
    pub(super) closing: Option<Disconnect>,
}

/// Whether a connection can take more, or is to be let go.
pub(super) enum Flow {
    Open,
    Done(Disconnect),
}

impl Conn {
    /// Offers a window frame: sent unless the connection had it (or a newer message of its
    /// window) already; while the connection waits, it replaces an older message of the
    /// same window still queued, in its place.
    pub(super) fn offer(
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
    pub(super) fn replace_queued(
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
    pub(super) fn wants(&mut self, frame: &WindowFrame) -> bool {
        if frame.order <= self.seen {
            return false;
        }
        self.resumed.retain(|&(upto, _)| frame.order <= upto);
        !self.resumed.iter().any(|&(_, after)| frame.seq > after)
    }

    /// Queues `out` and writes what the socket takes; most sockets take it at once, and it is
    /// written without being queued.
    pub(super) fn push(&mut self, out: Out, cx: &mut Ctx) -> Result<(), Disconnect> {
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
    pub(super) fn enqueue(&mut self, out: Out, cx: &mut Ctx) -> Result<(), Disconnect> {
        if self.closing.is_some() {
            // Nothing goes after the close frame.
            return Ok(());
        }
        self.pending += out.bytes().len();
        self.queue.push_back(out);
        self.within_limit(cx)
    }

    /// Lets the connection go (4001) when what it has still to get passes the pending limit.
    pub(super) fn within_limit(&mut self, cx: &mut Ctx) -> Result<(), Disconnect> {
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
    pub(super) fn flush(&mut self, cx: &mut Ctx) -> Result<(), Disconnect> {
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
    pub(super) fn write_queue(&mut self, tally: &mut Tally) -> Result<Flow, ()> {
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
    pub(super) fn last_word(&self, code: u16, reason: &str) {
        if self.written == 0 {
            let _ = self.stream.get_ref().write(&wire::close(code, reason));
        }
    }
}
