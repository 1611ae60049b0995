//! The admin part of every long-running service: `GET /health` (alive), `GET /ready` (can do
//! its work now: 200, or 503 with the reasons) and `GET /metrics`, as routes a service mounts
//! beside its own ([`routes`]) or as a server of their own ([`serve`], for the dataflow, which
//! has no other HTTP surface).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::Shutdown;
use crate::ready::Readiness;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::CONTENT_TYPE;

/// Something that renders its metrics in the Prometheus text format.
pub trait RenderMetrics: Send + Sync + 'static {
    /// The exposition text.
    fn render(&self) -> String;
}

/// The content type of `/metrics`: the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// The body of `/health`.
pub const HEALTH_BODY: &str = r#"{"status":"ok"}"#;

/// The address the admin server could not listen on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Serves [`routes`] on `listen` until `shutdown`; returns the address bound.
pub async fn serve<M: RenderMetrics>(
    listen: SocketAddr,
    metrics: Arc<M>,
    ready: Arc<Readiness>,
    shutdown: Shutdown,
) -> Result<SocketAddr, ListenError> {
    let listen_error = |source| ListenError {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let mut signal = shutdown;
    tokio::spawn(
        warp::serve(routes(metrics, ready))
            .incoming(listener)
            .graceful(async move { signal.wait().await })
            .run(),
    );
    Ok(addr)
}

/// The health, readiness and metrics routes of a service.
pub fn routes<M: RenderMetrics>(
    metrics: Arc<M>,
    ready: Arc<Readiness>,
) -> BoxedFilter<(warp::reply::Response,)> {
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(HEALTH_BODY, CONTENT_TYPE, "application/json")
                .into_response_boxed()
        });
    let readiness = warp::path("ready")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let body = ready.body();
            let status = if body["ready"] == true {
                warp::http::StatusCode::OK
            } else {
                warp::http::StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&body), status).into_response_boxed()
        });
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::reply::with_header(metrics.render(), CONTENT_TYPE, METRICS_CONTENT_TYPE)
                .into_response_boxed()
        });
    health.or(readiness).unify().or(metrics).unify().boxed()
}

/// Boxing a reply into a response.
trait IntoResponseBoxed {
    fn into_response_boxed(self) -> warp::reply::Response;
}

impl<R: warp::Reply> IntoResponseBoxed for R {
    fn into_response_boxed(self) -> warp::reply::Response {
        self.into_response()
    }
}
