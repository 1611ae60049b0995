//! `POST /register`: a viewer's id (the broadcaster's: a new one, or the one an earlier
//! token names), its cluster and that cluster's least-loaded live broadcaster, with a
//! signed token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use model::now_ms;
use service::http::Peer;
use service::limits::{Limited, RateLimiter};
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::registry::Registry;
use crate::reply::{cors, json_error, text};
use service::token::TokenSigner;

/// What registration needs: the live broadcasters, the key and lifetime of tokens, and the
/// limit on new viewers.
pub(crate) struct Registrar {
    pub(crate) registry: Arc<Registry>,
    pub(crate) signer: TokenSigner,
    pub(crate) token_ttl: std::time::Duration,
    /// New viewers one address may register per second; `None`: no limit.
    pub(crate) new_viewers: Option<RateLimiter<IpAddr>>,
}

/// The largest registration body.
const MAX_BODY: usize = 4096;
/// How long after it expired a token still names its viewer at registration.
const RENEWAL_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Seconds a client is asked to wait when no broadcaster is live.
const NONE_LIVE_RETRY_AFTER_SECONDS: u64 = 1;

/// A registration's body: `{}`, or the `client_id` older clients send (not the viewer's id:
/// that is the broadcaster's to give).
#[derive(serde::Deserialize)]
struct Body {
    #[serde(default, rename = "client_id")]
    _client_id: Option<String>,
}

/// Registers a viewer.
// Long: the checks in the order a registration meets them, each answered with its own status.
pub(crate) async fn register<B: Buf>(
    method: Method,
    authorization: Option<String>,
    peer: Option<Peer>,
    body: impl Stream<Item = Result<B, warp::Error>>,
    registrar: Arc<Registrar>,
) -> Response {
    if method == Method::OPTIONS {
        return cors(text(StatusCode::NO_CONTENT, "text/plain", String::new()));
    }
    if method != Method::POST {
        return cors(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST /register",
        ));
    }
    let body = match read_limited(body, MAX_BODY).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return cors(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("registration body over {MAX_BODY} bytes"),
            ));
        }
        Err(BodyError::BrokeOff) => {
            return cors(json_error(
                StatusCode::BAD_REQUEST,
                "the registration body broke off",
            ));
        }
    };
    if !body.iter().all(u8::is_ascii_whitespace)
        && let Err(e) = serde_json::from_slice::<Body>(&body)
    {
        return cors(json_error(
            StatusCode::BAD_REQUEST,
            &format!("malformed registration: {e}"),
        ));
    }
    let earlier = authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let viewer = match earlier {
        // The viewer an earlier token names (a renewal, a reconnection, a reload).
        Some(token) => match registrar.signer.signed(Some(token)) {
            Ok(claims) if claims.expires_ms + RENEWAL_GRACE_MS >= now_ms() => claims.client,
            Ok(_) => {
                return cors(json_error(
                    StatusCode::UNAUTHORIZED,
                    "the token expired more than a day ago: register without it for a new viewer id",
                ));
            }
            Err(error) => {
                return cors(json_error(
                    StatusCode::UNAUTHORIZED,
                    &format!("{error}: register without a token for a new viewer id"),
                ));
            }
        },
        None => {
            let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
            if let Some(limits) = &registrar.new_viewers
                && let Err(Limited { retry_after, .. }) =
                    limits.take_all(&[(ip, 1)], Instant::now())
            {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "too many new viewers from {ip}: register again with your token, or wait"
                    ),
                    seconds,
                );
            }
            match new_viewer_id() {
                Some(id) => id,
                None => {
                    return cors(json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no random source for a viewer id",
                    ));
                }
            }
        }
    };
    let Some((cluster, ws_url)) = registrar.registry.choose(&viewer) else {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "no live broadcaster",
            NONE_LIVE_RETRY_AFTER_SECONDS,
        );
    };
    let expires = now_ms() + registrar.token_ttl.as_millis() as i64;
    let token = registrar.signer.sign(&viewer, cluster, expires);
    let body = serde_json::json!({
        "cluster": cluster,
        "ws_url": format!("{ws_url}?token={token}"),
        "client_id": viewer,
        "token": token,
        "expires": model::format_rfc3339_millis(expires),
    });
    cors(text(StatusCode::OK, "application/json", body.to_string()))
}

/// A refusal with `Retry-After: seconds`, readable by a page of any origin.
fn retry_later(status: StatusCode, message: &str, seconds: u64) -> Response {
    let mut response = cors(json_error(status, message));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A new viewer's id: 16 random bytes, in hex.
fn new_viewer_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!(
        "v-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
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
