//! The HTTP API: `POST /emoji`, `GET /health`, `GET /metrics`, `POST|GET /load-test`, with
//! CORS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use service::ready::Readiness;
use std::time::{Duration, Instant};

use bytes::Bytes;
use model::now_ms;
use serde::Serialize;
use service::http::Peer;
use service::token::TokenError;
use warp::filters::BoxedFilter;
use warp::http::{StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::IngestConfig;
use crate::load_test::{LoadTestRequest, LoadTests, Refusal};
use crate::metrics::IngestMetrics;
use crate::producer::{EventProducer, ProduceError};
use crate::request::{BodyError, BodyRules, decode_body};
use service::limits::{DEFAULT_MAX_KEYS, Limited, RateLimiter};

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The answer to a request not read and answered within `limit`.
pub fn request_timeout(limit: Duration) -> Response {
    let error = format!(
        "request not received and answered within {} s",
        limit.as_secs()
    );
    let mut response = json_reply(StatusCode::REQUEST_TIMEOUT, &Plain { error });
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

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
    /// Per-user rate limits, if on.
    pub user_limits: Option<RateLimiter<String>>,
    /// Per-address rate limits, if on.
    pub ip_limits: Option<RateLimiter<IpAddr>>,
    /// Whether it can take events now (`/ready`): the brokers answer.
    pub ready: Arc<Readiness>,
}

impl AppState {
    /// The state of a service: its rate limiters made from `config`.
    pub fn new(
        config: IngestConfig,
        producer: EventProducer,
        metrics: Arc<IngestMetrics>,
        load_tests: LoadTests,
    ) -> Self {
        fn limiter<K: std::hash::Hash + Eq + Clone>(rate: f64) -> Option<RateLimiter<K>> {
            (rate > 0.0).then(|| RateLimiter::new(rate, DEFAULT_MAX_KEYS))
        }
        AppState {
            user_limits: limiter(config.user_rate_limit),
            ip_limits: limiter(config.ip_rate_limit),
            config,
            producer,
            metrics,
            load_tests,
            ready: Readiness::starting(),
        }
    }
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
// Long: the whole route table in one place.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let cors = if state.config.cors_origins.is_empty() {
        warp::cors().allow_any_origin()
    } else {
        warp::cors().allow_origins(state.config.cors_origins.iter().map(String::as_str))
    }
    .allow_methods(["GET", "POST", "OPTIONS"])
    .allow_headers(["content-type", "authorization"])
    .expose_headers(["retry-after"])
    .max_age(600);
    let emoji = warp::path("emoji")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::ext::optional::<Peer>().map(|peer: Option<Peer>| peer.map(|p| p.0)))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::body::content_length_limit(state.config.max_body))
        .and(warp::body::bytes())
        .and(with_state(Arc::clone(&state)))
        .then(post_emoji);
    let start_load_test = warp::path("load-test")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .and(with_state(Arc::clone(&state)))
        .map(
            |authorization: Option<String>, body: Bytes, state: Arc<AppState>| {
                let response =
                    unauthorized(&state, authorization.as_deref()).unwrap_or_else(|| {
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
                counted(&state, response)
            },
        );
    let load_test_status = warp::path("load-test")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(Arc::clone(&state)))
        .map(|authorization: Option<String>, state: Arc<AppState>| {
            let response = unauthorized(&state, authorization.as_deref()).unwrap_or_else(|| {
                match state.load_tests.status() {
                    Ok(status) => json_reply(StatusCode::OK, &status),
                    Err(refusal) => refused(&refusal),
                }
            });
            counted(&state, response)
        });
    let observe = service::admin::routes(Arc::clone(&state.metrics), Arc::clone(&state.ready));
    let metrics = Arc::clone(&state.metrics);
    let max_body = state.config.max_body;
    emoji
        .or(start_load_test)
        .unify()
        .or(load_test_status)
        .unify()
        .or(observe)
        .unify()
        .recover(move |rejection| refuse(rejection, max_body, Arc::clone(&metrics)))
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
    authorization: Option<String>,
    remote: Option<SocketAddr>,
    query: HashMap<String, String>,
    body: Bytes,
    state: Arc<AppState>,
) -> Response {
    let started = Instant::now();
    let response = match caller(&state, authorization.as_deref()) {
        Ok(caller) => accept(content_type, remote, &query, &body, caller, &state).await,
        Err(refused) => refused,
    };
    state.metrics.count_status(response.status().as_u16());
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Who sends a `POST /emoji`.
enum Caller {
    /// Anyone (no tokens required), or a holder of the ingest token: events name their
    /// users.
    Trusted,
    /// A viewer, by its token: every event is this user's.
    Viewer(String),
}

/// Who sends the request, or the 401 when it has not the token the service requires: the
/// ingest token, or with viewer tokens either.
fn caller(state: &AppState, authorization: Option<&str>) -> Result<Caller, Response> {
    let given = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(viewers) = &state.config.viewer_tokens else {
        return unauthorized(state, authorization).map_or(Ok(Caller::Trusted), Err);
    };
    let trusted = state.config.token.as_ref();
    if let (Some(token), Some(given)) = (trusted, given)
        && token.matches(given)
    {
        return Ok(Caller::Trusted);
    }
    match viewers.claims(given, now_ms()) {
        Ok(claims) => Ok(Caller::Viewer(claims.client)),
        Err(TokenError::Missing) => Err(unauthorized_because(
            "missing viewer token: register at a broadcaster (POST /register) and send its \
             token as Authorization: Bearer <token>"
                .to_owned(),
        )),
        Err(error) => Err(unauthorized_because(format!(
            "viewer token refused: {error}"
        ))),
    }
}

/// The 401 for a request without the bearer token, when the service has one.
fn unauthorized(state: &AppState, authorization: Option<&str>) -> Option<Response> {
    let token = state.config.token.as_ref()?;
    let given = authorization.and_then(|h| h.strip_prefix("Bearer "));
    if given.is_some_and(|g| token.matches(g.trim())) {
        return None;
    }
    let error = if given.is_some() {
        "wrong bearer token"
    } else {
        "missing bearer token: send Authorization: Bearer <token>"
    };
    Some(unauthorized_because(error.to_owned()))
}

/// A 401 saying why.
fn unauthorized_because(error: String) -> Response {
    let reply = warp::reply::with_header(
        json_reply(StatusCode::UNAUTHORIZED, &Plain { error }),
        header::WWW_AUTHENTICATE,
        "Bearer realm=\"emostream\"",
    );
    reply.into_response()
}

/// The 403 for an event of a viewer's request that names another user.
fn not_the_viewers(events: &[model::EmojiEvent], viewer: &str) -> Option<Response> {
    let index = events.iter().position(|e| e.user_id != viewer)?;
    let error = BodyError {
        error: format!(
            "user_id {:?} is not the viewer token's user {viewer:?}: leave user_id out, or send the token's",
            events[index].user_id
        ),
        field: Some("user_id"),
        value: Some(events[index].user_id.clone()),
        index: (events.len() > 1).then_some(index),
    };
    Some(json_reply(StatusCode::FORBIDDEN, &error))
}

#[derive(Serialize)]
struct RateLimited {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    retry_after_seconds: u64,
}

/// 429 with Retry-After for a request over a rate limit.
fn limited(error: String, field: Option<&'static str>, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let body = RateLimited {
        error,
        field,
        retry_after_seconds: seconds,
    };
    warp::reply::with_header(
        json_reply(StatusCode::TOO_MANY_REQUESTS, &body),
        header::RETRY_AFTER,
        seconds.to_string(),
    )
    .into_response()
}

/// Takes the events of a request from the rate limits, all or none; the 429 if they are
/// over one.
fn over_limits(
    state: &AppState,
    remote: Option<SocketAddr>,
    events: &[model::EmojiEvent],
) -> Option<Response> {
    let now = Instant::now();
    if let (Some(limits), Some(remote)) = (&state.ip_limits, remote) {
        let ip = remote.ip();
        if let Err(Limited { retry_after, .. }) = limits.take_all(&[(ip, events.len() as u64)], now)
        {
            let error = format!(
                "rate limit: this address sends more than {} events/s",
                state.config.ip_rate_limit
            );
            return Some(limited(error, None, retry_after));
        }
    }
    if let Some(limits) = &state.user_limits {
        let mut per_user: HashMap<&str, u64> = HashMap::new();
        for event in events {
            *per_user.entry(event.user_id.as_str()).or_default() += 1;
        }
        let demand: Vec<(String, u64)> = per_user
            .into_iter()
            .map(|(u, n)| (u.to_owned(), n))
            .collect();
        if let Err(Limited { key, retry_after }) = limits.take_all(&demand, now) {
            let error = format!(
                "rate limit: user_id {key:?} sends more than {} events/s",
                state.config.user_rate_limit
            );
            return Some(limited(error, Some("user_id"), retry_after));
        }
    }
    None
}

async fn accept(
    content_type: Option<String>,
    remote: Option<SocketAddr>,
    query: &HashMap<String, String>,
    body: &[u8],
    caller: Caller,
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
        emojis: &state.config.emojis,
        user: match &caller {
            Caller::Viewer(user) => Some(user),
            Caller::Trusted => None,
        },
    };
    let events = match decode_body(body, &rules) {
        Ok(events) => events,
        Err(error) => return json_reply(StatusCode::BAD_REQUEST, &error),
    };
    if let Caller::Viewer(user) = &caller
        && let Some(refused) = not_the_viewers(&events, user)
    {
        return refused;
    }
    if let Some(refused) = over_limits(state, remote, &events) {
        return refused;
    }
    let delivery = match state.producer.send(&events, !wait_for_ack, &state.metrics) {
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

/// Counts `response` in the metrics and returns it.
fn counted(state: &AppState, response: Response) -> Response {
    state.metrics.count_status(response.status().as_u16());
    response
}

fn refused(refusal: &Refusal) -> Response {
    json_reply(
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
        refusal,
    )
}

/// `bytes` as people write it: `1 MiB`, `64 KiB`, or bytes.
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Answers requests no route took, with a JSON error naming why.
async fn refuse(
    rejection: Rejection,
    max_body: u64,
    metrics: Arc<IngestMetrics>,
) -> Result<Response, Infallible> {
    let (status, error) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such path: use POST /emoji, GET /health, GET /metrics or POST|GET /load-test"
                .to_owned(),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: POST /emoji takes at most {} ({max_body} bytes), POST /load-test 64 KiB",
                size_text(max_body)
            ),
        )
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

impl Reply for BodyError {
    fn into_response(self) -> Response {
        json_reply(StatusCode::BAD_REQUEST, &self)
    }
}
