//! One WebSocket client: `hello`, the snapshot (the latest message of each window in the
//! ring) and the held windows of the longer size (`summary` frames), then every window
//! message of either as it comes; a `resume` message brings back the windows missed that are
//! still in the ring. A client that falls `max_lag` messages behind (its network, or a burst
//! of ours) is not dropped: it catches up from the ring, which holds the newest message of
//! each window, so it skips superseded revisions and never gets an older one after a newer.
//!
//! Close codes: 4002 a write took longer than the write timeout (the client stopped
//! reading); 1008 a message that is not
//! `{"type":"resume","last_seq":K}`; 1003 a binary message; 1009 a message over the size
//! limit; 1001 the broadcaster is shutting down.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use model::client::ClientMessage;
use service::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::frame::{WindowFrame, hello, resumed};
use crate::hub::Hub;
use crate::metrics::{BroadcastMetrics, Disconnect};

/// What a session needs.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The cluster served.
    pub cluster: u32,
    /// When this broadcaster started (UTC ms): a new epoch tells clients the ring is new.
    pub epoch: i64,
    /// A write longer than this disconnects.
    pub write_timeout: Duration,
    /// Interval of pings.
    pub ping_interval: Duration,
    /// The hub.
    pub hub: Arc<Hub>,
    /// The metrics.
    pub metrics: Arc<BroadcastMetrics>,
    /// The broadcaster's shutdown.
    pub shutdown: Shutdown,
}

enum End {
    Quietly(Disconnect),
    Close(Disconnect, u16, String),
}

/// Serves one client until it leaves or is disconnected.
// Long: the session's state machine (hello, snapshot, windows, resume, pings, close codes) in one select loop: its arms share the socket and the queue.
pub async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    ctx: SessionContext,
) {
    ctx.metrics.connections.add(1);
    // Subscribe before the snapshot, so no window falls between them.
    let mut windows = ctx.hub.subscribe();
    let mut summaries = ctx.hub.subscribe_summaries();
    let (mut sink, mut incoming) = ws.split();
    let mut sent = Sent::default();
    let mut shutdown = ctx.shutdown.clone();
    let mut ping = tokio::time::interval(ctx.ping_interval);
    ping.tick().await;
    let end = 'session: {
        // The snapshot: the latest message of each window still in the ring.
        let snapshot = ctx.hub.since(i64::MIN);
        if write(
            &mut sink,
            Message::Text(hello(ctx.cluster, ctx.epoch, snapshot.len())),
            &ctx,
        )
        .await
        .is_err()
        {
            break 'session End::Quietly(Disconnect::ClientGone);
        }
        for frame in &snapshot {
            if let Err(end) = send_window(&mut sink, frame, Sending::History, &ctx).await {
                break 'session end;
            }
            sent.record(frame);
        }
        for summary in ctx.hub.summaries() {
            if write(&mut sink, Message::Text(summary.text.clone()), &ctx)
                .await
                .is_err()
            {
                break 'session End::Close(Disconnect::NotReading, 4002, "not reading".into());
            }
        }
        loop {
            tokio::select! {
                // Every summary as it comes: they come from the partitions of the longer
                // size's windows topic, not in `seq` order, so an older one may follow a newer
                // one (and one published while the held ones were sent comes twice; clients
                // keep one per `seq`). A summary missed by a slow client is not worth a
                // disconnection: the next one comes a minute later.
                summary = summaries.recv() => if let Ok(summary) = summary
                    && write(&mut sink, Message::Text(summary.text.clone()), &ctx).await.is_err()
                {
                    break 'session End::Close(Disconnect::NotReading, 4002, "not reading".into());
                },
                received = windows.recv() => match received {
                    Ok(frame) if !sent.is_new(&frame) => {}
                    Ok(frame) => {
                        if let Err(end) = send_window(&mut sink, &frame, Sending::Live, &ctx).await {
                            break 'session end;
                        }
                        sent.record(&frame);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        // Catch up from the ring: the newest message of each window not sent.
                        ctx.metrics.frames_skipped.add(missed);
                        for frame in ctx.hub.since(i64::MIN) {
                            if !sent.is_new(&frame) {
                                continue;
                            }
                            if let Err(end) = send_window(&mut sink, &frame, Sending::Live, &ctx).await {
                                break 'session end;
                            }
                            sent.record(&frame);
                        }
                    }
                    Err(RecvError::Closed) => break 'session End::Close(Disconnect::Shutdown, 1001, "broadcaster stopping".into()),
                },
                message = incoming.next() => match message {
                    None | Some(Ok(Message::Close(_))) => break 'session End::Quietly(Disconnect::ClientGone),
                    Some(Ok(Message::Text(text))) => match ClientMessage::parse(&text) {
                        Ok(ClientMessage::Resume { last_seq }) => {
                            // What the client asks for, whatever it was sent before.
                            let frames = ctx.hub.since(last_seq);
                            if write(&mut sink, Message::Text(resumed(frames.len())), &ctx).await.is_err() {
                                break 'session End::Close(Disconnect::NotReading, 4002, "not reading".into());
                            }
                            for frame in &frames {
                                if let Err(end) = send_window(&mut sink, frame, Sending::History, &ctx).await {
                                    break 'session end;
                                }
                                sent.record(frame);
                            }
                        }
                        Err(_) => break 'session End::Close(
                            Disconnect::InvalidMessage,
                            1008,
                            "invalid message: expected {\"type\":\"resume\",\"last_seq\":K}".into(),
                        ),
                    },
                    Some(Ok(Message::Binary(_))) => {
                        break 'session End::Close(Disconnect::InvalidMessage, 1003, "binary messages are not accepted".into())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(_))) => {
                        break 'session End::Close(Disconnect::TooBig, 1009, "message too large".into())
                    }
                    Some(Err(_)) => break 'session End::Quietly(Disconnect::ClientGone),
                },
                _ = ping.tick() => {
                    if write(&mut sink, Message::Ping(Default::default()), &ctx).await.is_err() {
                        break 'session End::Close(Disconnect::NotReading, 4002, "not reading".into());
                    }
                }
                () = shutdown.wait() => break 'session End::Close(Disconnect::Shutdown, 1001, "broadcaster stopping".into()),
            }
        }
    };
    let why = match end {
        End::Quietly(why) => why,
        End::Close(why, code, reason) => {
            let close = Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }));
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
            why
        }
    };
    ctx.metrics.disconnected(why);
    ctx.metrics.connections.add(-1);
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;

/// Why a window frame is sent: as it comes, or from the ring (the snapshot, a resume), which
/// the fan-out and delivery histograms leave out (its delay is the ring's age, not ours).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    Live,
    History,
}

async fn send_window<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut Sink<S>,
    frame: &WindowFrame,
    sending: Sending,
    ctx: &SessionContext,
) -> Result<(), End> {
    write(sink, Message::Text(frame.text.clone()), ctx)
        .await
        .map_err(|()| End::Close(Disconnect::NotReading, 4002, "not reading".into()))?;
    ctx.metrics.frames_sent.add(1);
    if sending == Sending::History {
        return Ok(());
    }
    ctx.metrics
        .fan_out_seconds
        .observe(frame.arrived.elapsed().as_secs_f64());
    if let Some(written_ms) = frame.kafka_timestamp {
        let now_ms = model::now_ms();
        ctx.metrics
            .record_to_client_seconds
            .observe((now_ms - written_ms).max(0) as f64 / 1e3);
    }
    Ok(())
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut Sink<S>,
    message: Message,
    ctx: &SessionContext,
) -> Result<(), ()> {
    match tokio::time::timeout(ctx.write_timeout, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The windows a connection was sent, by `seq` and revision, so it gets each message once and
/// never an older revision after a newer one. The oldest are forgotten past [`Sent::KEPT`]
/// windows, and count as sent.
#[derive(Debug, Default)]
struct Sent {
    revisions: std::collections::BTreeMap<i64, u64>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use model::report::WindowMessage;
    use model::{ReportConfig, WindowReport};
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A connection whose writes block (a 4 KiB pipe, a client not reading) while 30 windows
    /// of about 20 KB come: its queue of 2 overflows, and once the client reads it gets the
    /// newest message of every window from the ring, in order, and stays connected.
    #[tokio::test]
    async fn a_connection_overrun_by_a_burst_catches_up_from_the_ring() {
        let hub = Arc::new(Hub::new(60_000, 2));
        let metrics = Arc::new(BroadcastMetrics::default());
        let (_trigger, shutdown) = Shutdown::new();
        let ctx = SessionContext {
            cluster: 1,
            epoch: 0,
            write_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(60),
            hub: Arc::clone(&hub),
            metrics: Arc::clone(&metrics),
            shutdown,
        };
        let (server_io, client_io) = tokio::io::duplex(4096);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let session = tokio::spawn(run_session(server, ctx));
        let mut next = async || loop {
            match client.next().await {
                Some(Ok(Message::Text(text))) => {
                    break serde_json::from_str::<serde_json::Value>(&text).unwrap();
                }
                Some(Ok(_)) => continue,
                other => panic!("the connection ended: {other:?}"),
            }
        };
        assert_eq!(next().await["type"], "hello");
        for seq in 1..=30 {
            let emojis = (0..200).map(|i| model::report::EmojiTotals {
                emoji: format!("emoji-{i:04}-{}", "x".repeat(60)),
                count: 1,
                unique_users: 1,
            });
            let report = WindowReport::build(
                seq * 2000,
                seq * 2000 + 2000,
                200,
                1,
                emojis,
                &ReportConfig::default(),
            );
            hub.publish(WindowFrame::new(
                &WindowMessage::final_of(report, seq),
                None,
            ));
        }
        let mut seqs = Vec::new();
        while seqs.last() != Some(&30) {
            seqs.push(next().await["seq"].as_i64().unwrap());
        }
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "every window, in order");
        assert!(metrics.frames_skipped.get() > 0, "the queue overflowed");
        assert!(!session.is_finished(), "still connected");
    }

    proptest! {
        /// Whatever a client sends, reading it never panics (model::checks says what an
        /// accepted message must be).
        #[test]
        fn client_messages_never_panic(text in "\\PC{0,80}") {
            model::checks::client_message(text.as_bytes());
        }

        #[test]
        fn resume_like_messages_never_panic(
            text in "\\{(\"(type|last_seq|x)\":(\"resume\"|-?[0-9]{1,20}|null|\\[\\]|\\{\\}|\"\\PC{0,5}\"),?){0,3}\\}"
        ) {
            let _ = ClientMessage::parse(&text);
        }
    }

    #[test]
    fn a_connection_gets_each_revision_once_and_never_an_older_one() {
        let frame = |seq: i64, revision: u64| {
            let report = model::WindowReport::build(
                seq * 2000,
                seq * 2000 + 2000,
                0,
                0,
                [],
                &model::ReportConfig::default(),
            );
            let mut message = model::report::WindowMessage::final_of(report, seq);
            message.revision = revision;
            WindowFrame::new(&message, None)
        };
        let mut sent = Sent::default();
        sent.record(&frame(6, 1));
        assert!(
            sent.is_new(&frame(5, 2)),
            "an older window's final after a newer update"
        );
        assert!(sent.is_new(&frame(6, 2)));
        assert!(!sent.is_new(&frame(6, 1)), "the same revision again");
        sent.record(&frame(6, 3));
        assert!(
            !sent.is_new(&frame(6, 2)),
            "an older revision after a newer one"
        );
        for seq in 100..100 + Sent::KEPT as i64 + 1 {
            sent.record(&frame(seq, 1));
        }
        assert!(
            !sent.is_new(&frame(7, 9)),
            "forgotten windows count as sent"
        );
    }
}
