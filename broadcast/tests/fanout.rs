//! The fan-out over real loopback sockets: shards writing shared frames without blocking,
//! slow clients, resumes, pings and closes, read by tungstenite clients.

use std::sync::Arc;
use std::time::Duration;

use broadcast::fanout::{Fanout, FanoutConfig, Joined};
use broadcast::frame::WindowFrame;
use broadcast::hub::Hub;
use broadcast::metrics::{BroadcastMetrics, Disconnect};
use broadcast::reader::read_client;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use model::report::{EmojiTotals, WindowMessage, WindowState};
use model::{ReportConfig, WindowReport};
use service::{Shutdown, ShutdownTrigger};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    fanout: Arc<Fanout>,
    metrics: Arc<BroadcastMetrics>,
    listener: TcpListener,
    _trigger: ShutdownTrigger,
}

fn config() -> FanoutConfig {
    FanoutConfig {
        cluster: 1,
        epoch: 7,
        write_timeout: Duration::from_secs(5),
        max_pending: 1 << 20,
        ping_interval: Duration::from_secs(60),
        shards: 2,
    }
}

async fn setup(config: FanoutConfig) -> Setup {
    let metrics = Arc::new(BroadcastMetrics::default());
    let (trigger, shutdown) = Shutdown::new();
    let fanout = Fanout::start(
        config,
        Arc::new(Hub::new(60_000)),
        Arc::clone(&metrics),
        shutdown,
    );
    Setup {
        fanout,
        metrics,
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        _trigger: trigger,
    }
}

type Client = WebSocketStream<TcpStream>;

/// A client joined to the fan-out, as the upgrade joins one; `receive_buffer` shrinks its
/// socket's buffer (a client on a slow network).
async fn join(setup: &Setup, receive_buffer: Option<u32>) -> Client {
    let addr = setup.listener.local_addr().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let (client, accepted) = tokio::join!(socket.connect(addr), setup.listener.accept());
    let server = accepted.unwrap().0;
    if receive_buffer.is_some() {
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
    }
    let stream = Arc::new(
        broadcast::fanout::register(server.into_std().unwrap(), tokio::io::Interest::READABLE)
            .unwrap(),
    );
    let (gone, stopped) = tokio::sync::oneshot::channel();
    let handle = setup.fanout.join(Joined {
        stream: Arc::clone(&stream),
        gone,
    });
    tokio::spawn(read_client(stream, Bytes::new(), handle, stopped, 4096));
    WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await
}

/// A window message of `seq` at `revision`, about `size` bytes of JSON.
fn window(seq: i64, revision: u64, state: WindowState, size: usize) -> WindowFrame {
    let emojis = (0..size / 100).map(|i| EmojiTotals {
        emoji: format!("emoji-{i:04}-{}", "x".repeat(40)),
        count: revision,
        unique_users: 1,
    });
    let report = WindowReport::build(
        seq * 2000,
        seq * 2000 + 2000,
        revision,
        1,
        emojis,
        &ReportConfig::default(),
    );
    let mut message = WindowMessage::final_of(report, seq);
    message.revision = revision;
    message.state = state;
    WindowFrame::new(&message, None)
}

/// The next text message, as JSON, skipping pings.
async fn next_json(client: &mut Client) -> serde_json::Value {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("no text message: {other:?}"),
        }
    }
}

/// The next window message: its seq, revision and text.
async fn next_window(client: &mut Client) -> (i64, u64, String) {
    loop {
        let text = match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the connection ended: {other:?}"),
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        if json["type"] == "window" {
            return (
                json["seq"].as_i64().unwrap(),
                json["revision"].as_u64().unwrap(),
                text,
            );
        }
    }
}

/// Reads window messages until one of `seq` at `revision` (or higher), returning the text of
/// each and its (seq, revision).
async fn windows_until(client: &mut Client, seq: i64, revision: u64) -> Vec<(i64, u64, String)> {
    let mut got = Vec::new();
    loop {
        let window = next_window(client).await;
        let done = window.0 == seq && window.1 >= revision;
        got.push(window);
        if done {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_every_message_in_order_with_identical_bytes() {
    let setup = setup(config()).await;
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut client = join(&setup, None).await;
        let hello = next_json(&mut client).await;
        assert_eq!(
            (hello["type"].as_str(), hello["snapshot"].as_u64()),
            (Some("hello"), Some(0))
        );
        clients.push(client);
    }
    let mut sent = Vec::new();
    for seq in 1..=10 {
        for (revision, state) in [
            (1, WindowState::Open),
            (2, WindowState::Open),
            (3, WindowState::Final),
        ] {
            let frame = window(seq, revision, state, 600);
            sent.push((
                seq,
                revision,
                String::from_utf8(frame.json().to_vec()).unwrap(),
            ));
            assert!(setup.fanout.publish(frame));
        }
    }
    for client in &mut clients {
        let got = windows_until(client, 10, 3).await;
        assert_eq!(got, sent, "every message, in order, the same bytes");
    }
    assert_eq!(setup.metrics.frames_sent.get(), 40 * 30);
    assert_eq!(setup.metrics.connections.get(), 40);
}

/// A dataflow catching up: 30 windows of 20 KB within a second reach every healthy client,
/// in order, and none is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_every_healthy_client_in_order() {
    let setup = setup(config()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = join(&setup, None).await;
        next_json(&mut client).await;
        clients.push(client);
    }
    for seq in 1..=30 {
        setup
            .fanout
            .publish(window(seq, 1, WindowState::Final, 20_000));
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let got = windows_until(&mut client, 30, 1).await;
                (client, got.iter().map(|(seq, ..)| *seq).collect::<Vec<_>>())
            })
        })
        .collect();
    let mut clients = Vec::new();
    for reader in readers {
        let (client, seqs) = reader.await.unwrap();
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
        clients.push(client);
    }
    assert_eq!(setup.metrics.disconnects(Disconnect::NotReading), 0);
    assert_eq!(
        setup.metrics.connections.get(),
        50,
        "every client still connected"
    );
}

/// A client whose socket is full gets, once it reads again, the newest message of each
/// window, never an older revision after a newer; one that stops reading is disconnected
/// with 4002 while the others get every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_gets_the_newest_of_each_window_and_a_silent_one_is_let_go() {
    let setup = setup(FanoutConfig {
        write_timeout: Duration::from_secs(2),
        ..config()
    })
    .await;
    let mut healthy = join(&setup, None).await;
    let mut slow = join(&setup, Some(4096)).await;
    let mut silent = join(&setup, Some(4096)).await;
    for client in [&mut healthy, &mut slow, &mut silent] {
        next_json(client).await;
    }
    // Ten revisions of each of five windows while the slow client reads nothing.
    for revision in 1..=10 {
        for seq in 1..=5 {
            setup
                .fanout
                .publish(window(seq, revision, WindowState::Open, 5_000));
        }
    }
    let all = windows_until(&mut healthy, 5, 10).await;
    assert_eq!(all.len(), 50, "the healthy client gets every message");
    // Each window's newest message was queued where its first waiting one was: read until
    // every window is at its last revision.
    let mut got = Vec::new();
    let mut newest = std::collections::BTreeMap::new();
    while newest.len() < 5 || newest.values().any(|&r| r < 10) {
        let (seq, revision, text) = next_window(&mut slow).await;
        let before = newest.insert(seq, revision);
        assert!(
            before < Some(revision),
            "an older revision after a newer: {got:?}"
        );
        got.push((seq, revision, text));
    }
    assert!(
        got.len() < 50,
        "superseded messages were skipped: {}",
        got.len()
    );
    assert!(setup.metrics.frames_skipped.get() > 0);
    assert_eq!(newest.values().copied().collect::<Vec<_>>(), [10; 5]);
    // The silent client never reads: past the write timeout it is let go with 4002.
    tokio::time::timeout(WAIT, async {
        while setup.metrics.disconnects(Disconnect::NotReading) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the silent client is let go");
    // Its socket was full, so the close frame may not fit: the connection ends either way,
    // with 4002 if the frame got through.
    loop {
        match silent.next().await {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(4002));
                break;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break,
        }
    }
    setup.fanout.publish(window(6, 1, WindowState::Final, 100));
    assert_eq!(windows_until(&mut healthy, 6, 1).await.len(), 1);
    assert_eq!(windows_until(&mut slow, 6, 1).await.len(), 1);
}

/// A client too far behind (its pending bytes past the limit) is disconnected with 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_far_behind_is_closed_with_4001() {
    let setup = setup(FanoutConfig {
        max_pending: 64 * 1024,
        ..config()
    })
    .await;
    let mut slow = join(&setup, Some(4096)).await;
    next_json(&mut slow).await;
    for seq in 1..=20 {
        setup
            .fanout
            .publish(window(seq, 1, WindowState::Final, 10_000));
    }
    let code = loop {
        match tokio::time::timeout(WAIT, slow.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break None,
            Err(_) => panic!("still connected"),
        }
    };
    assert!(code.is_none_or(|c| c == 4001), "{code:?}");
    assert_eq!(setup.metrics.disconnects(Disconnect::TooFarBehind), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_pings_and_closes_work() {
    let setup = setup(FanoutConfig {
        ping_interval: Duration::from_millis(100),
        ..config()
    })
    .await;
    for seq in 1..=5 {
        setup
            .fanout
            .publish(window(seq, 1, WindowState::Final, 100));
    }
    let mut client = join(&setup, None).await;
    let hello = next_json(&mut client).await;
    assert_eq!(hello["snapshot"], 5, "the ring at once");
    assert_eq!(windows_until(&mut client, 5, 1).await.len(), 5);
    // A resume brings back what the ring holds after `last_seq`.
    client
        .send(Message::Text(r#"{"type":"resume","last_seq":3}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["type"], "resumed");
    let again: Vec<i64> = windows_until(&mut client, 5, 1)
        .await
        .iter()
        .map(|w| w.0)
        .collect();
    assert_eq!(again, [4, 5]);
    // The server pings; the client's ping is answered.
    let pinged = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(Message::Ping(_))) = client.next().await {
                return;
            }
        }
    })
    .await;
    assert!(pinged.is_ok(), "a ping within the interval");
    client
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    let ponged = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&ponged[..], b"hi");
    // An invalid message is closed with 1008; a close handshake is answered.
    let mut invalid = join(&setup, None).await;
    invalid.send(Message::Text("hello?".into())).await.unwrap();
    let code = loop {
        match invalid.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    client.close(None).await.unwrap();
    let answered = loop {
        match client.next().await {
            Some(Ok(Message::Close(_))) | None => break true,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("{e}"),
        }
    };
    assert!(answered);
    tokio::time::timeout(WAIT, async {
        while setup.metrics.connections.get() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both connections let go");
}

/// Clients joining while messages flow get the snapshot, then each later message once, and
/// never an older revision of a window after a newer: the hub's numbering tells a shard which
/// live messages a client's snapshot already covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_joining_while_messages_flow_get_each_once_in_order() {
    let setup = Arc::new(setup(config()).await);
    let publisher = {
        let setup = Arc::clone(&setup);
        tokio::spawn(async move {
            for seq in 1..=40 {
                for revision in 1..=2 {
                    let state = if revision == 2 {
                        WindowState::Final
                    } else {
                        WindowState::Open
                    };
                    assert!(setup.fanout.publish(window(seq, revision, state, 300)));
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(join(&setup, None).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.await.unwrap();
    for client in &mut clients {
        let got: Vec<(i64, u64)> = windows_until(client, 40, 2)
            .await
            .into_iter()
            .map(|(seq, revision, _)| (seq, revision))
            .collect();
        let mut newest = std::collections::HashMap::new();
        for &(seq, revision) in &got {
            let before = newest.insert(seq, revision);
            assert!(
                before.is_none_or(|b| b < revision),
                "{seq} at {revision} after {before:?}: {got:?}"
            );
        }
        let first = got[0].0;
        for seq in first..=40 {
            assert_eq!(newest.get(&seq), Some(&2), "the final of {seq}: {got:?}");
        }
    }
}

/// After a resume, the live messages the resume covered are not sent again; a correction
/// of a window before the one resumed from still comes, and so does every later message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resume_each_later_message_comes_once() {
    let setup = setup(config()).await;
    for seq in 1..=5 {
        setup
            .fanout
            .publish(window(seq, 1, WindowState::Final, 100));
    }
    let mut client = join(&setup, None).await;
    windows_until(&mut client, 5, 1).await;
    client
        .send(Message::Text(r#"{"type":"resume","last_seq":3}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["type"], "resumed");
    assert_eq!(windows_until(&mut client, 5, 1).await.len(), 2);
    setup.fanout.publish(window(2, 2, WindowState::Final, 100));
    setup.fanout.publish(window(6, 1, WindowState::Final, 100));
    setup.fanout.publish(window(5, 2, WindowState::Final, 100));
    let got: Vec<(i64, u64)> = windows_until(&mut client, 5, 2)
        .await
        .into_iter()
        .map(|(seq, revision, _)| (seq, revision))
        .collect();
    assert_eq!(got, [(2, 2), (6, 1), (5, 2)]);
}
