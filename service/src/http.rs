//! Serving a service's warp routes on its own HTTP/1 loop: each request carries its
//! client's address ([`Peer`]), a request not answered in time gets an answer that says so,
//! connections past a limit are refused, WebSocket upgrades are handed on, and a shutdown
//! lets the requests in flight finish (10 s at most).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;

use crate::Shutdown;

/// The address of a request's client, in its extensions (`warp::ext::get::<Peer>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The limits of [`serve`].
#[derive(Clone)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a request may take to be read and answered.
    pub request_timeout: Duration,
    /// The answer to a request past `request_timeout`.
    pub timed_out: fn(Duration) -> warp::reply::Response,
    /// Connections served at once (a WebSocket leaves the count once upgraded); more are
    /// closed at once.
    pub max_connections: usize,
    /// Called for each connection refused past `max_connections`.
    pub refused: Arc<dyn Fn() + Send + Sync>,
}

/// How long the accept loop waits after a failed accept (no descriptor left, say).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Whether a failed accept ran out of something the process or the system has to give back
/// first: descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM), Linux's numbers.
fn out_of_resources(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
        || error.kind() == std::io::ErrorKind::OutOfMemory
}

/// Logs a failed accept, at most once every 10 s.
fn refusing(error: &std::io::Error, last_warned: &mut Option<std::time::Instant>) {
    if last_warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
        tracing::warn!(
            %error,
            "Cannot accept connections (at the open-file limit?); trying again every 50 ms."
        );
        *last_warned = Some(std::time::Instant::now());
    }
}

/// Serves `routes` (`warp::service(filter)`) on `listener` until `signal`, then waits up to
/// 10 s for the connections still open.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    routes: S,
    limits: ServeLimits,
    signal: &mut Shutdown,
) where
    S: Service<hyper::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let max = limits
        .max_connections
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that went before it was taken: the next one, at once.
                Err(error) if !out_of_resources(&error) => continue,
                Err(error) => {
                    // Out of descriptors (or memory): the listener stays readable, and trying
                    // again at once would spin a core until a connection ends. Wait a little.
                    refusing(&error, &mut last_warned);
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                        () = signal.wait() => break,
                    }
                }
            },
            () = signal.wait() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            (limits.refused)();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let (request_timeout, timed_out) = (limits.request_timeout, limits.timed_out);
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let mut routes = routes.clone();
            async move {
                match tokio::time::timeout(request_timeout, routes.call(request)).await {
                    Ok(response) => response,
                    Err(_) => Ok(timed_out(request_timeout)),
                }
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let mut stop = signal.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // Ends once the client goes, or hands its socket on at an upgrade.
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stop.wait() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all of them back means all ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("Connections still open 10 s after shutdown; closing them.");
    }
}
