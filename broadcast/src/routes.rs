//! The routes of a broadcaster: the live page, `POST /register`, `GET /ws`, `/health` and
//! `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use service::admin::{HEALTH_BODY, METRICS_CONTENT_TYPE, RenderMetrics};

use crate::registration::register;
use crate::server::State;
use crate::upgrade::upgrade;

/// The live page and its script, served from the binary (no build step, no CDN).
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
/// Answers one request.
pub(crate) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: std::net::SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match req.uri().path() {
        "/ws" => upgrade(req, state, peer),
        "/register" => register(req, &state).await,
        "/" | "/index.html" => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            INDEX_HTML.into(),
        ),
        "/app.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            APP_JS.into(),
        ),
        "/config.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            format!(
                "window.EMOSTREAM = {};\n",
                serde_json::json!({
                    "ingestUrl": state.ingest_url,
                    "emojis": state.emojis.as_slice(),
                })
            ),
        ),
        "/health" => text(StatusCode::OK, "application/json", HEALTH_BODY.into()),
        "/metrics" => text(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            state.ctx.metrics.render(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"no such path: use GET /, /ws, /health, /metrics or POST /register"}"#
                .into(),
        ),
    };
    Ok(response)
}

/// Lets pages of any origin register.
pub(crate) fn cors(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        "access-control-allow-origin",
        hyper::header::HeaderValue::from_static("*"),
    );
    headers.insert(
        "access-control-allow-methods",
        hyper::header::HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        "access-control-allow-headers",
        hyper::header::HeaderValue::from_static("content-type"),
    );
    response
}

/// A JSON error naming what was wrong.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    text(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// A response with `body`.
pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
