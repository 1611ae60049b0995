//! `POST /register`: a client's cluster and that cluster's least-loaded live broadcaster,
//! with a signed token.

use std::sync::Arc;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use model::now_ms;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use crate::registry::Registry;
use crate::reply::{cors, json_error, text};
use service::token::TokenSigner;

/// What registration needs: the live broadcasters, and the key and lifetime of tokens.
pub(crate) struct Registrar {
    pub(crate) registry: Arc<Registry>,
    pub(crate) signer: TokenSigner,
    pub(crate) token_ttl: std::time::Duration,
}

/// The largest registration body.
const MAX_BODY: usize = 4096;

#[derive(serde::Deserialize)]
struct Registration {
    client_id: String,
}

/// Registers a client.
pub(crate) async fn register<B: Buf>(
    method: Method,
    body: impl Stream<Item = Result<B, warp::Error>>,
    registrar: Arc<Registrar>,
) -> Response {
    if method == Method::OPTIONS {
        return cors(text(StatusCode::NO_CONTENT, "text/plain", String::new()));
    }
    if method != Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST /register");
    }
    let body = match read_limited(body, MAX_BODY).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("registration body over {MAX_BODY} bytes"),
            );
        }
        Err(BodyError::BrokeOff) => {
            return json_error(StatusCode::BAD_REQUEST, "the registration body broke off");
        }
    };
    let client_id = match serde_json::from_slice::<Registration>(&body) {
        Ok(r) => r.client_id.trim().to_owned(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("malformed registration: {e}"),
            );
        }
    };
    if client_id.is_empty() || client_id.len() > 128 || client_id.chars().any(char::is_control) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "client_id must be 1 to 128 bytes without control characters",
        );
    }
    let Some((cluster, ws_url)) = registrar.registry.choose(&client_id) else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "no live broadcaster");
    };
    let expires = now_ms() + registrar.token_ttl.as_millis() as i64;
    let token = registrar.signer.sign(&client_id, cluster, expires);
    let body = serde_json::json!({
        "cluster": cluster,
        "ws_url": format!("{ws_url}?token={token}"),
        "client_id": client_id,
        "token": token,
        "expires": model::format_rfc3339_millis(expires),
    });
    cors(text(StatusCode::OK, "application/json", body.to_string()))
}

enum BodyError {
    TooLarge,
    BrokeOff,
}

/// The body, read no further than `limit` bytes.
async fn read_limited<B: Buf>(
    body: impl Stream<Item = Result<B, warp::Error>>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::BrokeOff)?;
        if out.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}
