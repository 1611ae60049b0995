//! The routes of a broadcaster, as warp filters on one port: the live page and the embed
//! module, `POST /register`, `GET /ws`, and the shared `/health` and `/metrics`.

use std::sync::Arc;

use model::emojis::EmojiSet;
use service::admin;
use service::ready::Readiness;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::metrics::BroadcastMetrics;
use crate::registration::{Registrar, register};
use crate::reply::{json_error, text};
use crate::upgrade::{Gate, upgrade};

/// The live page and its modules, served from the binary (no build step, no CDN).
const INDEX_HTML: &str = include_str!("../web/index.html");
const PAGE_MODULES: [(&str, &str); 4] = [
    ("main.js", include_str!("../web/page/main.js")),
    ("chart.js", include_str!("../web/page/chart.js")),
    ("timeline.js", include_str!("../web/page/timeline.js")),
    ("sender.js", include_str!("../web/page/sender.js")),
];
/// The client library and `<emostream-swarm>`, built from `clients/js` (`make clients-build`).
const EMOSTREAM_JS: &str = include_str!("../web/emostream.js");
/// The timeline's charting library, vendored unchanged (web/vendor/README).
const UPLOT_JS: &str = include_str!("../web/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../web/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../web/vendor/uPlot.LICENSE");

/// What the routes serve from: the handshake's checks, registration, the page's settings.
pub(crate) struct Site {
    pub(crate) gate: Arc<Gate>,
    pub(crate) registrar: Arc<Registrar>,
    pub(crate) metrics: Arc<BroadcastMetrics>,
    pub(crate) ready: Arc<Readiness>,
    /// Where the page sends taps.
    pub(crate) ingest_url: Option<String>,
    /// The emojis accepted, the page's buttons.
    pub(crate) emojis: Arc<EmojiSet>,
    /// Whether the page shows its automated sender.
    pub(crate) demo_sender: bool,
}

/// Every route of a broadcaster; anything else is a 404 naming the routes.
pub(crate) fn routes(site: Site) -> BoxedFilter<(Response,)> {
    let page_config = Arc::new(
        serde_json::json!({
            "ingestUrl": site.ingest_url,
            "emojis": site.emojis.as_slice(),
            "demoSender": site.demo_sender,
        })
        .to_string(),
    );
    let page = warp::get()
        .and(warp::path::end().or(warp::path!("index.html")).unify())
        .map(|| text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML));
    let app = warp::get()
        .and(warp::path!("page" / String))
        .and_then(|file: String| async move {
            match PAGE_MODULES.iter().find(|(name, _)| *name == file) {
                Some(&(_, body)) => {
                    Ok(text(StatusCode::OK, "text/javascript; charset=utf-8", body))
                }
                None => Err(warp::reject::not_found()),
            }
        });
    // Pages of the sites in --ws-origins (any, when none) may load the module.
    let gate = Arc::clone(&site.gate);
    let module = warp::get()
        .and(warp::path!("emostream.js"))
        .and(warp::header::optional::<String>("origin"))
        .map(move |origin: Option<String>| {
            let mut response = text(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                EMOSTREAM_JS,
            );
            allow_origin(&mut response, origin.as_deref(), &gate.ws_origins);
            response
        });
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
    let config = warp::get().and(warp::path!("config.js")).map(move || {
        text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            format!("window.EMOSTREAM = {page_config};\n"),
        )
    });
    let registrar = Arc::clone(&site.registrar);
    let registration = warp::path!("register")
        .and(warp::method())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::ext::optional::<service::http::Peer>())
        .and(warp::body::stream())
        .and(warp::any().map(move || Arc::clone(&registrar)))
        .then(register);
    let gate = Arc::clone(&site.gate);
    let ws = warp::path!("ws")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(warp::ext::optional::<service::http::Peer>())
        .and(warp::any().map(move || Arc::clone(&gate)))
        .map(upgrade);
    let not_found = warp::any().map(|| {
        json_error(
            StatusCode::NOT_FOUND,
            "no such path: use GET /, /emostream.js, /ws, /health, /metrics or POST /register",
        )
    });
    page.or(app)
        .unify()
        .or(module)
        .unify()
        .or(vendor)
        .unify()
        .or(config)
        .unify()
        .or(registration)
        .unify()
        .or(ws)
        .unify()
        .or(admin::routes(site.metrics, site.ready))
        .unify()
        .or(not_found)
        .unify()
        .boxed()
}

/// Lets a page of `origin` read the response when `origins` lists it, or any page when
/// `origins` is empty; a page of another site gets no permission (its browser refuses).
fn allow_origin(response: &mut Response, origin: Option<&str>, origins: &[String]) {
    let headers = response.headers_mut();
    if origins.is_empty() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return;
    }
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin
        && origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}
