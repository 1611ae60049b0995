//! What a WebSocket client may send a broadcaster: `{"type":"resume","last_seq":K}` and
//! `{"type":"ping"}` (answered `{"type":"pong"}`: a browser's page cannot see the
//! protocol's own pings, and tells a connection gone quiet by these).

use serde::Deserialize;

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Send again the windows after `last_seq` still in the ring.
    Resume {
        /// The last window the client has.
        last_seq: i64,
    },
    /// Answer `{"type":"pong"}`.
    Ping,
}

impl ClientMessage {
    /// Reads a client's text message.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_is_read() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"resume","last_seq":42}"#).ok(),
            Some(ClientMessage::Resume { last_seq: 42 })
        );
        assert!(ClientMessage::parse(r#"{"type":"resume","last_seq":1,"x":2}"#).is_err());
        assert!(ClientMessage::parse(r#"{"type":"Resume","last_seq":1}"#).is_err());
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping"}"#).ok(),
            Some(ClientMessage::Ping)
        );
    }
}
