//! The responses the routes share: text with a content type, JSON errors, CORS for
//! registration.

use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

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
        HeaderValue::from_static("content-type, authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
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
