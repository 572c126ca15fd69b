//! The accept loop of `tessera serve`: hyper-util's HTTP/1.1 + HTTP/2
//! server with the limits `axum::serve` does not set.
//!
//! A slow client (slowloris) holds a socket, a task and some memory for as
//! long as the server waits for it, so every wait here is bounded (OWASP
//! Denial of Service Cheat Sheet; ASVS 5.0 V7 assumes the session service
//! stays available):
//!
//! - **the request head**: a connection that sends nothing, or a head that
//!   does not end within [`Limits::header_read_timeout`], is closed. hyper
//!   enforces it on HTTP/1 (`header_read_timeout`, which needs a timer, which
//!   `axum::serve` does not configure) from the moment it starts reading a
//!   head, idle keep-alive time included; before that, the HTTP version
//!   sniffing of hyper-util waits for the first byte without any limit, so
//!   the loop waits for that byte itself, bounded by the same timeout;
//! - **the request body**: read completely within
//!   [`Limits::request_body_timeout`] of the head's arrival, whatever the
//!   trickle rate, else `408 Request Timeout`;
//! - **the body size**: a `Content-Length` over [`Limits::body_limit`] is
//!   answered `413` at once, before any byte of the body is awaited; a
//!   chunked body is cut at the limit;
//! - **connections at once**: at most [`Limits::max_connections`]; further
//!   clients wait in the kernel's accept queue.
//!
//! Every `413` and `408` carries `Connection: close` (RFC 9110 §15.5.14
//! allows closing after a 413): the unread rest of the body is not drained,
//! so the connection cannot be reused, and an honest client must know that
//! before it sends its next request on it.
//!
//! Handlers still get the peer address as `ConnectInfo<SocketAddr>` (the
//! site and the login rate limiter use it). Shutdown is graceful: the
//! listener closes, idle connections are closed, in-flight requests finish
//! (bounded by [`SHUTDOWN_GRACE`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use http_body_util::LengthLimitError;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::config::Config;
use crate::error::ApiError;
use crate::extract::wants_json;
use crate::render;

/// The longest wait for in-flight requests at shutdown; connections still
/// open after it are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The bounds on what one client may hold. See the module docs.
///
/// ```
/// use std::time::Duration;
/// use tessera_server::{config::Config, listen::Limits};
/// let limits = Limits::from_config(&Config::default());
/// assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
/// assert_eq!(limits.body_limit, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a complete request head (and the first byte of a
    /// connection).
    pub header_read_timeout: Duration,
    /// Time to send the complete body once the head has arrived.
    pub request_body_timeout: Duration,
    /// `max-age` of `Strict-Transport-Security` on every response, this
    /// listener's own refusals included; `None` (plain-HTTP development
    /// mode) sends none.
    pub hsts_max_age: Option<Duration>,
    /// Largest body in bytes.
    pub body_limit: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits configured in `config`.
    ///
    /// ```
    /// use tessera_server::{config::Config, listen::Limits};
    /// let config = Config { max_connections: 10, ..Config::default() };
    /// assert_eq!(Limits::from_config(&config).max_connections, 10);
    /// ```
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            request_body_timeout: config.request_body_timeout,
            body_limit: config.body_limit,
            max_connections: config.max_connections,
            // HSTS over plain HTTP would be ignored by browsers at best.
            hsts_max_age: (!config.insecure_http).then_some(config.hsts_max_age),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits (at most [`SHUTDOWN_GRACE`]) for open requests.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use tessera_server::{config::Config, listen};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let limits = listen::Limits::from_config(&Config::default());
/// listen::serve(listener, app, limits, async { /* a shutdown signal */ }).await
/// # }
/// ```
///
/// # Errors
///
/// None today (accept errors are logged and retried); the `Result` leaves
/// room for listener errors that must stop the server.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = with_hsts(with_limits(app, limits), limits.hsts_max_age);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // HTTP/2 (prior knowledge) has no head timeout; its pings drop peers
    // that vanished, and the body deadline above bounds each stream.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A slot first: at the cap, connections wait in the accept queue
        // rather than holding a task each.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let first_byte_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            if !first_byte(&stream, first_byte_timeout).await {
                return;
            }
            let _ = stream.set_nodelay(true);
            let service =
                TowerToHyperService::new(tower::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(req)
                }));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the shutdown grace period were dropped");
    }
    Ok(())
}

/// Waits, bounded by `limit`, until the client has sent a byte. hyper-util
/// reads the first bytes to tell HTTP/1 from HTTP/2 with no timeout of its
/// own, so a client that connects and stays silent would otherwise be held
/// for ever. False when it closed or stayed silent.
async fn first_byte(stream: &TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.peek(&mut byte)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// Handles a failed `accept`: a connection that died while queued is not
/// the listener's problem; anything else (out of file descriptors) is
/// logged and retried after a pause instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Adds `Strict-Transport-Security: max-age=…; includeSubDomains` to every
/// response of `app` (outermost, so refusals made by [`with_limits`] carry
/// it too): browsers then refuse plain HTTP to this host and its subdomains
/// for that long, which also closes the HTTP→HTTPS gap of the `Origin`
/// check (ASVS 5.0 V3.4.1; OWASP HTTP Strict Transport Security Cheat
/// Sheet).
pub fn with_hsts(app: Router, max_age: Option<Duration>) -> Router {
    let Some(value) = max_age.and_then(|age| {
        HeaderValue::from_str(&format!("max-age={}; includeSubDomains", age.as_secs())).ok()
    }) else {
        return app;
    };
    app.layer(middleware::map_response(move |mut response: Response| {
        let value = value.clone();
        async move {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, value);
            response
        }
    }))
}

/// `app` with the body limits of [`Limits`] in front of every route: the
/// declared-length check, the body deadline and `Connection: close` on
/// 413 and 408. [`serve`] applies it; exposed for in-process servers.
///
/// ```
/// use tessera_server::{config::Config, listen};
/// let limits = listen::Limits::from_config(&Config::default());
/// let app = listen::with_limits(axum::Router::new(), limits);
/// # drop(app);
/// ```
pub fn with_limits(app: Router, limits: Limits) -> Router {
    app.layer(middleware::from_fn_with_state(limits, body_limits))
}

/// The `Content-Length` a request declares, if any (hyper has already
/// refused malformed and conflicting values with 400).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses an announced over-limit body at once, reads the body within the
/// deadline (so a trickle cannot hold the connection), and marks 413/408
/// answers `Connection: close`.
async fn body_limits(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let json = wants_json(req.headers());
    let limit = u64::try_from(limits.body_limit).unwrap_or(u64::MAX);
    // Before the body is awaited: the answer does not depend on bytes the
    // client may never send (and hyper sends no `100 Continue` for it).
    if declared_length(req.headers()).is_some_and(|n| n > limit) {
        return refuse(json, too_large());
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.body_limit);
    let bytes = match tokio::time::timeout(limits.request_body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_length_limit(&e) => return refuse(json, too_large()),
        Ok(Err(_)) => {
            // The client broke the framing or went away mid-body.
            return refuse(
                json,
                ApiError::bad_request("invalid_body", "the request body could not be read"),
            );
        }
        Err(_) => {
            let e = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout").message(
                "the request body did not arrive within the configured request_body_timeout",
            );
            return refuse(json, e);
        }
    };
    let mut response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if closes_connection(response.status()) {
        mark_close(response.headers_mut());
    }
    response
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        .message("the request body is larger than the configured body_limit")
}

/// Answers made here, outside the router: rendered like the routes' own
/// errors (JSON or an HTML page), with the same security headers.
fn refuse(json: bool, e: ApiError) -> Response {
    let mut response = render::fail(json, e);
    render::set_security_headers(response.headers_mut(), false);
    if closes_connection(response.status()) {
        mark_close(response.headers_mut());
    }
    response
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Statuses after which the unread rest of a request makes the connection
/// unusable.
fn closes_connection(status: StatusCode) -> bool {
    status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT
}

/// `Connection: close`: hyper closes the connection after writing a
/// response that carries it, and the client learns it will.
fn mark_close(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_reads_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), None);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static("1000000000000"),
        );
        assert_eq!(declared_length(&h), Some(1_000_000_000_000));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(declared_length(&h), None);
    }

    #[test]
    fn only_413_and_408_close_the_connection() {
        assert!(closes_connection(StatusCode::PAYLOAD_TOO_LARGE));
        assert!(closes_connection(StatusCode::REQUEST_TIMEOUT));
        assert!(!closes_connection(StatusCode::BAD_REQUEST));
        assert!(!closes_connection(StatusCode::OK));
    }
}
