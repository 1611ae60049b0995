//! The routes of a broadcaster, as warp filters on one port: the live page, `POST
//! /register`, `GET /ws`, and the shared `/health` and `/metrics`.

use std::sync::Arc;

use service::admin;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::registration::register;
use crate::server::State;
use crate::upgrade::upgrade;

/// The live page and its script, served from the binary (no build step, no CDN).
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
/// The timeline's charting library, vendored unchanged (web/vendor/README).
const UPLOT_JS: &str = include_str!("../web/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../web/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../web/vendor/uPlot.LICENSE");

/// Every route of a broadcaster; anything else is a 404 naming the routes.
pub(crate) fn routes(state: Arc<State>) -> BoxedFilter<(Response,)> {
    let with_state = {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    let page = warp::get()
        .and(warp::path::end().or(warp::path!("index.html")).unify())
        .map(|| text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML));
    let app = warp::get()
        .and(warp::path!("app.js"))
        .map(|| text(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS));
    let vendor = warp::get()
        .and(warp::path!("vendor" / String))
        .and_then(|file: String| async move {
            match file.as_str() {
                "uPlot.iife.min.js" => Ok(("text/javascript; charset=utf-8", UPLOT_JS)),
                "uPlot.min.css" => Ok(("text/css; charset=utf-8", UPLOT_CSS)),
                "uPlot.LICENSE" => Ok(("text/plain; charset=utf-8", UPLOT_LICENSE)),
                _ => Err(warp::reject::not_found()),
            }
        })
        .map(|(content_type, body)| text(StatusCode::OK, content_type, body));
    let config = warp::get()
        .and(warp::path!("config.js"))
        .and(with_state.clone())
        .map(|state: Arc<State>| {
            let config = serde_json::json!({
                "ingestUrl": state.ingest_url,
                "emojis": state.emojis.as_slice(),
            });
            text(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                format!("window.EMOSTREAM = {config};\n"),
            )
        });
    let registration = warp::path!("register")
        .and(warp::method())
        .and(warp::body::stream())
        .and(with_state.clone())
        .then(register);
    let ws = warp::path!("ws")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(warp::ext::optional::<service::http::Peer>())
        .and(with_state)
        .map(upgrade);
    let not_found = warp::any().map(|| {
        json_error(
            StatusCode::NOT_FOUND,
            "no such path: use GET /, /ws, /health, /metrics or POST /register",
        )
    });
    page.or(app)
        .unify()
        .or(vendor)
        .unify()
        .or(config)
        .unify()
        .or(registration)
        .unify()
        .or(ws)
        .unify()
        .or(admin::routes(
            Arc::clone(&state.metrics),
            Arc::clone(&state.ready),
        ))
        .unify()
        .or(not_found)
        .unify()
        .boxed()
}

/// Lets pages of any origin register.
pub(crate) fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    response
}

/// A JSON error naming what was wrong.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    text(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// A response with `body` (a `&'static str`, the page and the library, is sent without a copy).
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: impl Reply) -> Response {
    let reply = warp::reply::with_header(body, header::CONTENT_TYPE, content_type);
    warp::reply::with_status(reply, status).into_response()
}
