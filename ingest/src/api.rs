//! The HTTP API: `POST /emoji`, `GET /health`, `GET /metrics`, `POST|GET /load-test`, with
//! CORS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::{StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::IngestConfig;
use crate::load_test::{LoadTestRequest, LoadTests, Refusal};
use crate::metrics::IngestMetrics;
use crate::producer::{EventProducer, ProduceError};
use crate::request::{BodyError, BodyRules, decode_body};

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: u64 = 1;

/// What the handlers share.
pub struct AppState {
    /// The configuration.
    pub config: IngestConfig,
    /// The producer.
    pub producer: EventProducer,
    /// The metrics.
    pub metrics: Arc<IngestMetrics>,
    /// The load tests (refused unless enabled).
    pub load_tests: LoadTests,
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

#[derive(Serialize)]
struct Unavailable {
    error: String,
    retry_after_seconds: u64,
}

#[derive(Serialize)]
struct Plain {
    error: String,
}

/// All routes of the ingest service.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let cors = if state.config.cors_origins.is_empty() {
        warp::cors().allow_any_origin()
    } else {
        warp::cors().allow_origins(state.config.cors_origins.iter().map(String::as_str))
    }
    .allow_methods(["GET", "POST", "OPTIONS"])
    .allow_headers(["content-type"]);
    let emoji = warp::path("emoji")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::body::content_length_limit(state.config.max_body))
        .and(warp::body::bytes())
        .and(with_state(Arc::clone(&state)))
        .then(post_emoji);
    let start_load_test = warp::path("load-test")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .and(with_state(Arc::clone(&state)))
        .map(|body: Bytes, state: Arc<AppState>| {
            let started = state
                .load_tests
                .check_enabled()
                .and_then(|()| LoadTestRequest::parse(&body, state.config.max_batch))
                .and_then(|request| state.load_tests.start(request));
            match started {
                Ok(status) => json_reply(StatusCode::ACCEPTED, &status),
                Err(refusal) => refused(&refusal),
            }
        });
    let load_test_status = warp::path("load-test")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(Arc::clone(&state)))
        .map(|state: Arc<AppState>| match state.load_tests.status() {
            Ok(status) => json_reply(StatusCode::OK, &status),
            Err(refusal) => refused(&refusal),
        });
    let observe = service::http::health_and_metrics(Arc::clone(&state.metrics));
    let metrics = Arc::clone(&state.metrics);
    emoji
        .or(start_load_test)
        .unify()
        .or(load_test_status)
        .unify()
        .or(observe)
        .unify()
        .recover(move |rejection| refuse(rejection, Arc::clone(&metrics)))
        .unify()
        .with(cors)
        .map(Reply::into_response)
        .boxed()
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

async fn post_emoji(
    content_type: Option<String>,
    query: HashMap<String, String>,
    body: Bytes,
    state: Arc<AppState>,
) -> Response {
    let started = Instant::now();
    let response = accept(content_type, &query, &body, &state).await;
    state.metrics.count_status(response.status().as_u16());
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn accept(
    content_type: Option<String>,
    query: &HashMap<String, String>,
    body: &[u8],
    state: &AppState,
) -> Response {
    let json = content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        let error = format!(
            "unsupported content type {:?}: send application/json",
            content_type.unwrap_or_default()
        );
        return json_reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, &Plain { error });
    }
    let wait_for_ack = match query.get("ack").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let error = format!("invalid query parameter ack={other:?}: use true or false");
            return json_reply(StatusCode::BAD_REQUEST, &Plain { error });
        }
    };
    let rules = BodyRules {
        max_batch: state.config.max_batch,
        max_skew_ms: state.config.max_skew.as_millis() as i64,
        now_ms: now_ms(),
    };
    let events = match decode_body(body, &rules) {
        Ok(events) => events,
        Err(error) => return json_reply(StatusCode::BAD_REQUEST, &error),
    };
    let delivery = match state.producer.send(&events, &state.metrics) {
        Ok(delivery) => delivery,
        Err(error) => return unavailable(error),
    };
    if !wait_for_ack {
        return json_reply(
            StatusCode::ACCEPTED,
            &Accepted {
                accepted: events.len(),
            },
        );
    }
    match delivery.wait(state.config.ack_timeout).await {
        Ok(()) => json_reply(
            StatusCode::CREATED,
            &Accepted {
                accepted: events.len(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

fn unavailable(error: ProduceError) -> Response {
    let body = Unavailable {
        error: error.to_string(),
        retry_after_seconds: RETRY_AFTER_SECONDS,
    };
    let reply = warp::reply::with_header(
        warp::reply::with_status(warp::reply::json(&body), StatusCode::SERVICE_UNAVAILABLE),
        header::RETRY_AFTER,
        RETRY_AFTER_SECONDS.to_string(),
    );
    reply.into_response()
}

fn refused(refusal: &Refusal) -> Response {
    json_reply(
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
        refusal,
    )
}

fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Answers requests no route took, with a JSON error naming why.
async fn refuse(rejection: Rejection, metrics: Arc<IngestMetrics>) -> Result<Response, Infallible> {
    let (status, error) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such path: use POST /emoji, GET /health, GET /metrics or POST|GET /load-test"
                .to_owned(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::PayloadTooLarge>() {
        (StatusCode::PAYLOAD_TOO_LARGE, format!("{e}"))
    } else if let Some(e) = rejection.find::<warp::reject::LengthRequired>() {
        (StatusCode::LENGTH_REQUIRED, format!("{e}"))
    } else if let Some(e) = rejection.find::<warp::reject::MethodNotAllowed>() {
        (StatusCode::METHOD_NOT_ALLOWED, format!("{e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, format!("{e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, format!("{e}"))
    } else {
        (StatusCode::BAD_REQUEST, format!("{rejection:?}"))
    };
    metrics.count_status(status.as_u16());
    Ok(json_reply(status, &Plain { error }))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Reply for BodyError {
    fn into_response(self) -> Response {
        json_reply(StatusCode::BAD_REQUEST, &self)
    }
}
