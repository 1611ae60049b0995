//! The WebSocket wire format (RFC 6455) as the fan-out needs it: server frames encoded once,
//! complete, to be written as they are to every socket; client frames decoded as they come,
//! within a size limit.

use bytes::{BufMut, Bytes, BytesMut};

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A complete, unfragmented server frame of `opcode` carrying `payload` (servers do not mask).
fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(FIN | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// A text frame.
pub fn text(payload: &[u8]) -> Bytes {
    frame(TEXT, payload)
}

/// A ping frame (empty).
pub fn ping() -> Bytes {
    frame(PING, &[])
}

/// A pong frame answering a ping's `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    frame(PONG, &payload[..payload.len().min(125)])
}

/// A close frame with `code` and `reason` (cut to fit a control frame's 125 bytes).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, whole.
    Text(String),
    /// A binary message (not accepted here).
    Binary,
    /// A ping, to answer with its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close, with its code if it had one.
    Close(Option<u16>),
}

/// Why a client's bytes are not a WebSocket conversation this server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A message over the size limit (close code 1009).
    #[error("message too large")]
    TooBig,
    /// A frame breaking the protocol (close code 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message that is not UTF-8 (close code 1007).
    #[error("text that is not UTF-8")]
    NotUtf8,
}

impl WireError {
    /// The close code that tells the client.
    pub fn close_code(self) -> u16 {
        match self {
            WireError::TooBig => 1009,
            WireError::Protocol(_) => 1002,
            WireError::NotUtf8 => 1007,
        }
    }
}

/// Decodes client frames from the bytes read so far, a message at most `max` bytes long.
/// Holds only what is not decoded yet (nothing, between the small messages clients send).
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    buf: Vec<u8>,
    /// A fragmented message: its opcode and the payload so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    /// A decoder of messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Decoder {
            max,
            buf: Vec::new(),
            partial: None,
        }
    }

    /// Takes bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, `None` until more bytes come.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, WireError> {
        loop {
            let Some((header, fin, opcode, len)) = self.header()? else {
                return Ok(None);
            };
            if self.buf.len() < header + len {
                return Ok(None);
            }
            let mask = [
                self.buf[header - 4],
                self.buf[header - 3],
                self.buf[header - 2],
                self.buf[header - 1],
            ];
            let mut payload: Vec<u8> = self.buf.drain(..header + len).skip(header).collect();
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            if self.buf.is_empty() {
                // Idle connections hold no buffer.
                self.buf = Vec::new();
            }
            match opcode {
                PING => return Ok(Some(Incoming::Ping(payload))),
                PONG => return Ok(Some(Incoming::Pong)),
                CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                TEXT | BINARY if self.partial.is_some() => {
                    return Err(WireError::Protocol("a new message inside a fragmented one"));
                }
                TEXT | BINARY if !fin => self.partial = Some((opcode, payload)),
                TEXT | BINARY => return message(opcode, payload).map(Some),
                CONTINUATION => {
                    let Some((first, mut so_far)) = self.partial.take() else {
                        return Err(WireError::Protocol("a continuation without a message"));
                    };
                    so_far.extend_from_slice(&payload);
                    if so_far.len() > self.max {
                        return Err(WireError::TooBig);
                    }
                    if fin {
                        return message(first, so_far).map(Some);
                    }
                    self.partial = Some((first, so_far));
                }
                _ => return Err(WireError::Protocol("an unknown opcode")),
            }
        }
    }

    /// The next frame's header length, FIN bit, opcode and payload length, once its header
    /// is all there.
    fn header(&self) -> Result<Option<(usize, bool, u8, usize)>, WireError> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(WireError::Protocol("reserved bits set"));
        }
        let (fin, opcode) = (b[0] & FIN != 0, b[0] & 0x0F);
        if b[1] & 0x80 == 0 {
            return Err(WireError::Protocol("a client frame must be masked"));
        }
        let (extra, len) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (2, u64::from(u16::from_be_bytes([b[2], b[3]]))),
            127 if b.len() >= 10 => (
                8,
                u64::from_be_bytes(b[2..10].try_into().unwrap_or_default()),
            ),
            126 | 127 => return Ok(None),
            n => (0, u64::from(n)),
        };
        if opcode >= CLOSE && (!fin || len > 125) {
            return Err(WireError::Protocol(
                "a control frame must be whole and short",
            ));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len() as u64);
        if len + so_far > self.max as u64 {
            return Err(WireError::TooBig);
        }
        Ok(Some((2 + extra + 4, fin, opcode, len as usize)))
    }
}

fn message(opcode: u8, payload: Vec<u8>) -> Result<Incoming, WireError> {
    if opcode == BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| WireError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client frame as a browser sends it: masked.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { FIN } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn server_frames_have_the_length_forms_of_the_rfc() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let medium = text(&[b'x'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = text(&vec![b'x'; 70_000]);
        assert_eq!(&large[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
        assert_eq!(&ping()[..], &[0x89, 0]);
        assert_eq!(&close(4002, "not reading")[..4], &[0x88, 13, 0x0F, 0xA2]);
    }

    #[test]
    fn server_frames_read_back_with_tungstenite() {
        use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocket};
        let mut bytes = text("{\"type\":\"hello\"}".as_bytes()).to_vec();
        bytes.extend_from_slice(&close(4001, "too far behind"));
        let mut client =
            WebSocket::from_raw_socket(std::io::Cursor::new(bytes), Role::Client, None);
        assert_eq!(
            client.read().unwrap(),
            Message::Text("{\"type\":\"hello\"}".into())
        );
        match client.read().unwrap() {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4001);
                assert_eq!(frame.reason.as_str(), "too far behind");
            }
            other => panic!("not a close: {other:?}"),
        }
    }

    #[test]
    fn client_messages_decode_whole_split_and_fragmented() {
        let mask = [1, 2, 3, 4];
        let mut d = Decoder::new(4096);
        let resume = br#"{"type":"resume","last_seq":7}"#;
        let bytes = client_frame(true, TEXT, resume, mask);
        // Byte by byte: nothing until the frame is whole.
        for b in &bytes[..bytes.len() - 1] {
            d.feed(&[*b]);
            assert_eq!(d.next_message(), Ok(None));
        }
        d.feed(&bytes[bytes.len() - 1..]);
        let want = Incoming::Text(String::from_utf8(resume.to_vec()).unwrap());
        assert_eq!(d.next_message(), Ok(Some(want.clone())));
        // Two fragments with a ping between them, then a close.
        d.feed(&client_frame(false, TEXT, &resume[..10], mask));
        d.feed(&client_frame(true, PING, b"p", mask));
        d.feed(&client_frame(true, CONTINUATION, &resume[10..], mask));
        d.feed(&client_frame(true, CLOSE, &1000u16.to_be_bytes(), mask));
        assert_eq!(d.next_message(), Ok(Some(Incoming::Ping(b"p".to_vec()))));
        assert_eq!(d.next_message(), Ok(Some(want)));
        assert_eq!(d.next_message(), Ok(Some(Incoming::Close(Some(1000)))));
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.buf.capacity(), 0, "an idle decoder holds no buffer");
    }

    #[test]
    fn what_breaks_the_rules_is_named() {
        let mut d = Decoder::new(100);
        d.feed(&client_frame(true, TEXT, &[b'x'; 101], [0; 4]));
        assert_eq!(d.next_message(), Err(WireError::TooBig));
        let mut d = Decoder::new(100);
        d.feed(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(
            d.next_message(),
            Err(WireError::Protocol("a client frame must be masked"))
        );
        let mut d = Decoder::new(100);
        d.feed(&client_frame(true, TEXT, &[0xFF, 0xFE], [9; 4]));
        assert_eq!(d.next_message(), Err(WireError::NotUtf8));
        let mut d = Decoder::new(100);
        d.feed(&client_frame(true, BINARY, b"b", [9; 4]));
        assert_eq!(d.next_message(), Ok(Some(Incoming::Binary)));
        let mut d = Decoder::new(1000);
        d.feed(&client_frame(true, PING, &[0; 126], [9; 4]));
        assert_eq!(
            d.next_message(),
            Err(WireError::Protocol(
                "a control frame must be whole and short"
            ))
        );
    }

    proptest! {
        /// Whatever a client sends, decoding never panics and holds at most the limit plus
        /// one frame's header.
        #[test]
        fn any_bytes_decode_without_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut d = Decoder::new(256);
            for chunk in chunks {
                d.feed(&chunk);
                while let Ok(Some(_)) = d.next_message() {}
            }
        }

        /// A text message cut at any point decodes to itself.
        #[test]
        fn text_split_anywhere_decodes(text in "\\PC{0,200}", cut in 0usize..300, mask in any::<[u8; 4]>()) {
            let bytes = client_frame(true, TEXT, text.as_bytes(), mask);
            let cut = cut.min(bytes.len());
            let mut d = Decoder::new(4096);
            d.feed(&bytes[..cut]);
            let first = d.next_message().unwrap();
            d.feed(&bytes[cut..]);
            let got = first.or_else(|| d.next_message().unwrap());
            prop_assert_eq!(got, Some(Incoming::Text(text)));
        }
    }
}
