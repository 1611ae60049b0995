//! `POST /register`: a client's cluster and that cluster's least-loaded live broadcaster,
//! with a signed token.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use model::now_ms;

use crate::routes::{cors, json_error, text};
use crate::server::State;

#[derive(serde::Deserialize)]
struct Registration {
    client_id: String,
}

/// Registers a client.
pub(crate) async fn register(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    if req.method() == hyper::Method::OPTIONS {
        return cors(text(StatusCode::NO_CONTENT, "text/plain", String::new()));
    }
    if req.method() != hyper::Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST /register");
    }
    let body = match http_body_util::Limited::new(req.into_body(), 4096)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "registration body over 4096 bytes",
            );
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
    let Some((cluster, ws_url)) = state.registry.choose(&client_id) else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "no live broadcaster");
    };
    let expires = now_ms() + state.token_ttl.as_millis() as i64;
    let token = state.signer.sign(&client_id, cluster, expires);
    let body = serde_json::json!({
        "cluster": cluster,
        "ws_url": format!("{ws_url}?token={token}"),
        "client_id": client_id,
        "expires": model::format_rfc3339_millis(expires),
    });
    cors(text(StatusCode::OK, "application/json", body.to_string()))
}
