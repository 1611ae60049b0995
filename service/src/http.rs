//! `GET /health` and `GET /metrics`, served by every long-running service.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::CONTENT_TYPE;

/// Something that renders its metrics in the Prometheus text format.
pub trait RenderMetrics: Send + Sync + 'static {
    /// The exposition text.
    fn render(&self) -> String;
}

/// The health and metrics routes of a service.
pub fn health_and_metrics<M: RenderMetrics>(
    metrics: Arc<M>,
) -> BoxedFilter<(warp::reply::Response,)> {
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::json(&serde_health()).into_response_boxed());
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::reply::with_header(metrics.render(), CONTENT_TYPE, "text/plain; version=0.0.4")
                .into_response_boxed()
        });
    health.or(metrics).unify().boxed()
}

fn serde_health() -> std::collections::BTreeMap<&'static str, &'static str> {
    std::collections::BTreeMap::from([("status", "ok")])
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
