//! A connection's reader: a task woken only by what its client sends. It decodes the
//! client's frames within the size limit and hands each message to the connection's shard,
//! which owns every write; it ends when the client goes, breaks the protocol, or the shard
//! lets the connection go.

use std::io::Read;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::fanout::{ClientHandle, FromClient, Socket};
use crate::wire::{Decoder, Incoming};

/// Reads the client of `stream` (whose first bytes, read with the handshake, are `first`)
/// until it goes or `gone` fires.
pub async fn read_client(
    stream: Socket,
    first: Bytes,
    client: ClientHandle,
    mut gone: oneshot::Receiver<()>,
    max_message: usize,
) {
    let mut decoder = Decoder::new(max_message);
    decoder.feed(&first);
    // It may be a slice of the handshake's read buffer, which it would keep alive.
    drop(first);
    loop {
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let closing = matches!(message, Incoming::Close(_));
                    if !client.send(FromClient::Message(message)) || closing {
                        // The shard answers the close and lets the connection go.
                        let _ = (&mut gone).await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    client.send(FromClient::Broken(error));
                    let _ = (&mut gone).await;
                    return;
                }
            }
        }
        tokio::select! {
            _ = &mut gone => return,
            ready = stream.readable() => {
                let Ok(mut guard) = ready else {
                    client.send(FromClient::Gone);
                    return;
                };
                let mut buf = [0u8; 512];
                match guard.try_io(|socket| socket.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) => {
                        client.send(FromClient::Gone);
                        return;
                    }
                    Ok(Ok(n)) => decoder.feed(&buf[..n]),
                    // Not readable after all: the guard cleared the readiness, wait again.
                    Err(_would_block) => {}
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => {
                        client.send(FromClient::Gone);
                        return;
                    }
                }
            }
        }
    }
}
