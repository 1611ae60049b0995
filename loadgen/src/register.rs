//! Client registration: `POST /register` at a broadcaster, as the page does, for the load
//! tool and the viewers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// What a broadcaster answers to a registration.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// The client's cluster.
    pub cluster: u32,
    /// Where to connect, with the signed token.
    pub ws_url: String,
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The broadcaster's address is not `http://host:port`.
    #[error("invalid broadcaster address \"{0}\": expected http://HOST:PORT or HOST:PORT")]
    Address(String),
    /// Nothing answered.
    #[error("cannot reach {addr}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("registration at {addr} failed")]
    Http {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// The broadcaster refused.
    #[error("registration at {addr} refused: {status} {body}")]
    Refused {
        /// `host:port`.
        addr: String,
        /// The HTTP status.
        status: u16,
        /// The answer.
        body: String,
    },
    /// The answer is not a registration.
    #[error("unexpected registration reply from {addr}")]
    Reply {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl RegisterError {
    /// Whether trying again may help (the broadcaster may be starting or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RegisterError::Connect { .. } | RegisterError::Http { .. }
        ) || matches!(self, RegisterError::Refused { status, .. } if *status >= 500)
    }
}

/// Registers `client_id` at the broadcaster at `base` (`http://host:port`, or `host:port`).
pub async fn register(base: &str, client_id: &str) -> Result<Registration, RegisterError> {
    let rest = base.strip_prefix("http://").unwrap_or(base);
    let addr = Some(rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .ok_or_else(|| RegisterError::Address(base.to_owned()))?
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|source| RegisterError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let http = |source| RegisterError::Http {
        addr: addr.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let body = serde_json::json!({ "client_id": client_id }).to_string();
    let request = Request::post("/register")
        .header("host", addr.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a request built from a valid path and headers");
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    if status != 200 {
        return Err(RegisterError::Refused {
            addr,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|source| RegisterError::Reply { addr, source })
}
