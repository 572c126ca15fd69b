//! [`SessionLayer`] and [`SessionService`]: one lazily loaded
//! [`tessera::Session`] per request, the CSRF guard, and the cookie
//! written back after the handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, SET_COOKIE, USER_AGENT};
use http::{HeaderName, HeaderValue, Request};
use tessera::SessionManager;
use tessera::record::ClientMeta;
use tessera::session::CookieAction;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::SessionConfig;
use crate::credential::{self, Via};
use crate::rejection::{Rendered, SessionRejection, wants_json};
use crate::{dbsc, guard};

/// The client's IP address as the application determined it, for the
/// session's device metadata ([`ClientMeta`]).
///
/// By default the layer records the socket peer
/// ([`ConnectInfo<SocketAddr>`]). Behind a reverse proxy that peer is the
/// proxy; a middleware placed *outside* the [`SessionLayer`] that knows
/// which proxies to trust may insert this extension with the real client
/// address (from `X-Forwarded-For` or `Forwarded`), and the layer records
/// that instead. The address is metadata for the device list and audit,
/// never an authentication factor (OWASP Session Management Cheat Sheet).
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use axum::{Router, routing::get, middleware::{self, Next}, extract::Request};
/// use tessera::{SessionManager, store::MemoryStore};
/// use tessera_axum::{ClientIp, SessionLayer};
///
/// async fn from_trusted_proxy(mut req: Request, next: Next) -> axum::response::Response {
///     // … parse the header set by your own proxy; here a fixed address.
///     req.extensions_mut().insert(ClientIp(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
///     next.run(req).await
/// }
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(SessionLayer::new(manager))
///     .layer(middleware::from_fn(from_trusted_proxy)); // outside the session layer
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");

/// The tower layer that gives every request a [`tessera::Session`].
///
/// Per request it:
///
/// 1. finds the credential (the session cookie, or a bearer token if
///    [accepted](SessionConfig::accept_bearer)) — without any store call;
/// 2. runs the [CSRF guard](crate::guard) on unsafe methods;
/// 3. puts a lazily loaded session in the request extensions (read it with
///    the [`Session`](crate::Session), [`AuthUser`](crate::AuthUser) and
///    [`CsrfToken`](crate::CsrfToken) extractors);
/// 4. after the handler, commits the session and sets, clears or leaves the
///    cookie. A response that installs a token also gets
///    `Cache-Control: no-store`, so no cache keeps a session ID (OWASP
///    Session Management Cheat Sheet).
///
/// Any store failure, in the guard, in an extractor or at commit, turns the
/// response into a 503 (docs/design.md, invariant 9).
///
/// ```
/// use axum::{Router, routing::get};
/// use tessera::{SessionManager, store::MemoryStore};
/// use tessera_axum::{AuthUser, SessionLayer};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// let app: Router = Router::new()
///     .route("/me", get(|user: AuthUser| async move { user.user_id }))
///     .layer(SessionLayer::new(manager));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

struct Shared {
    manager: SessionManager,
    config: SessionConfig,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer with the default (secure) [`SessionConfig`].
    pub fn new(manager: SessionManager) -> Self {
        Self::with_config(manager, SessionConfig::default())
    }

    /// A layer with `config`. Logs a warning here, once, if the cookie is
    /// configured for plain-HTTP development (docs/design.md, invariant 6).
    pub fn with_config(manager: SessionManager, config: SessionConfig) -> Self {
        config.cookie().warn_if_insecure();
        Self {
            shared: Arc::new(Shared { manager, config }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }

    /// The manager.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S, ResBody> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match Shared::prepare(&self.shared, req) {
            Prepared::Refused(response) => ResponseFuture::ready(response),
            // The common case: the inner service, which was polled ready,
            // is called right here, and its future is polled in place (no
            // allocation, and no clone of the inner service, for this
            // layer).
            Prepared::Call(req, finish) => ResponseFuture::inner(self.inner.call(req), finish),
            // An unsafe, cookie-authenticated request: the CSRF token check
            // may read the store and buffer a form body first. The call
            // happens later, so the standard tower dance: the service that
            // was polled ready goes into the future, a fresh clone stays.
            Prepared::CheckToken(req, finish) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::boxed(async move {
                    let limit = finish.shared.config.csrf_form_limit();
                    let mut req = match guard::check_token(limit, &finish.session, req).await {
                        Ok(req) => req,
                        Err(rejection) => return finish.render(&rejection),
                    };
                    req.extensions_mut().insert(finish.session.clone());
                    let response = match inner.call(req).await {
                        Ok(response) => response.map(Body::new),
                        Err(never) => match never {},
                    };
                    match finish.finish(response) {
                        Next::Done(response) => response,
                        Next::Later(future) => future.await,
                    }
                })
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the inner service's
    /// future, polled in place, then the commit of the session.
    ///
    /// A request whose commit needs no store write (any read within the
    /// touch step) finishes without another allocation; a commit that
    /// writes, and the CSRF check of unsafe requests, run as one boxed
    /// future.
    ///
    /// Applications rarely name it; a service wrapping the layer does:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use axum::body::Body;
    /// use axum::http::Request;
    /// use axum::routing::{Route, future::RouteFuture};
    /// use tessera_axum::{ResponseFuture, SessionService};
    /// use tower::Service;
    ///
    /// fn call(
    ///     service: &mut SessionService<Route>,
    ///     req: Request<Body>,
    /// ) -> ResponseFuture<RouteFuture<Infallible>> {
    ///     service.call(req)
    /// }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            future: F,
            finish: Option<Finish>,
        },
        Boxed {
            future: BoxedResponse,
        },
        Ready {
            response: Option<Response>,
        },
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

impl<F> ResponseFuture<F> {
    fn inner(future: F, finish: Finish) -> Self {
        let finish = Some(finish);
        Self {
            state: State::Inner { future, finish },
        }
    }

    fn boxed(future: impl Future<Output = Response> + Send + 'static) -> Self {
        let future = Box::pin(future);
        Self {
            state: State::Boxed { future },
        }
    }

    fn ready(response: Response) -> Self {
        let response = Some(response);
        Self {
            state: State::Ready { response },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner { future, finish } => {
                    let response = match std::task::ready!(future.poll(cx)) {
                        Ok(response) => response.map(Body::new),
                        Err(never) => match never {},
                    };
                    // Taken exactly once: the state changes below.
                    let Some(finish) = finish.take() else {
                        return Poll::Pending;
                    };
                    match finish.finish(response) {
                        Next::Done(response) => return Poll::Ready(Ok(response)),
                        Next::Later(future) => State::Boxed { future },
                    }
                }
                StateProj::Boxed { future } => {
                    return future.as_mut().poll(cx).map(Ok);
                }
                // Polled after completion: the response was handed out.
                StateProj::Ready { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            };
            state.set(next);
        }
    }
}

/// What [`Shared::prepare`] decided before the inner service runs.
enum Prepared {
    /// The guard refused the request: this is the answer.
    Refused(Response),
    /// Call the inner service with this request.
    Call(Request<Body>, Finish),
    /// Run the CSRF token check first.
    CheckToken(Request<Body>, Finish),
}

/// What the layer needs after the handler: the session to commit and how
/// to answer.
struct Finish {
    shared: Arc<Shared>,
    session: tessera::Session,
    json: bool,
    via: Via,
}

/// The answer, or the rest of the work when it needs the store.
enum Next {
    Done(Response),
    Later(BoxedResponse),
}

impl Shared {
    /// Everything before the handler that needs no store call: the
    /// credential, the session, the DBSC gate and the origin check.
    fn prepare(this: &Arc<Self>, req: Request<Body>) -> Prepared {
        let json = wants_json(req.headers());
        let config = &this.config;
        let (presented, via) =
            credential::find(config.cookie(), config.accepts_bearer(), req.headers());
        let credential = via.credential(&presented);
        let mut session = tessera::Session::new(this.manager.clone(), presented, client_meta(&req));
        let engine = config.dbsc();
        // The DBSC endpoints are authenticated by their proofs, and the
        // refresh arrives precisely when the bound cookie is missing: they
        // see the session ungated and need no CSRF token.
        let dbsc_endpoint = engine.is_some_and(|e| dbsc::is_endpoint(e, &req));
        if let Some(engine) = engine {
            if let Some(skipped) = req.headers().get(tessera::dbsc::header::SKIPPED) {
                engine.record_skipped(None, skipped.to_str().unwrap_or_default());
            }
            if !dbsc_endpoint {
                let bound = dbsc::cookie_value(req.headers(), &engine.config().cookie_name);
                session = session.with_dbsc(engine.clone(), bound);
            }
        }
        // A bearer token is not sent by browsers on their own, so a bearer
        // request cannot be forged cross-site: the guard lets it pass.
        let check_token =
            match guard::precheck(config.origin_check(), credential, !dbsc_endpoint, &req) {
                Ok(check_token) => check_token,
                Err(rejection) => return Prepared::Refused(config.render(&rejection, json)),
            };
        let finish = Finish {
            shared: Arc::clone(this),
            session,
            json,
            via,
        };
        if check_token {
            Prepared::CheckToken(req, finish)
        } else {
            let mut req = req;
            req.extensions_mut().insert(finish.session.clone());
            Prepared::Call(req, finish)
        }
    }
}

impl Finish {
    fn render(&self, rejection: &SessionRejection) -> Response {
        self.shared.config.render(rejection, self.json)
    }

    /// After the handler: render a returned rejection, commit the session
    /// and set, clear or leave the cookie. Done at once unless the commit
    /// writes to the store (or a sign-in is offered device binding).
    fn finish(self, response: Response) -> Next {
        // A rejection the handler returned is rendered here, once, by the
        // configured renderer in the format the client wants.
        let response = match response.extensions().get::<Rendered>() {
            Some(Rendered(rejection)) => self.render(rejection),
            None => response,
        };
        // A refused request (bad input, wrong password, not allowed) is not
        // user activity: it must not move the idle deadline, or failed
        // attempts would keep a session alive (OWASP Session Management
        // Cheat Sheet, idle timeout). Explicit changes are still committed.
        if response.status().is_client_error() {
            self.session.mark_status_query();
        }
        // Settled without a store call on the read path; only a request
        // that writes awaits (and allocates) the commit's future.
        match self.session.try_commit() {
            Some(committed) => self.committed(committed, response),
            None => Next::Later(Box::pin(async move {
                let committed = self.session.commit().await;
                match self.committed(committed, response) {
                    Next::Done(response) => response,
                    Next::Later(future) => future.await,
                }
            })),
        }
    }

    fn committed(
        self,
        committed: Result<CookieAction, tessera::SessionError>,
        mut response: Response,
    ) -> Next {
        let action = match committed {
            Ok(action) => action,
            Err(e) => {
                // Whatever the handler answered, the outcome is unknown (a
                // sign-in may not be stored): fail closed.
                tracing::error!(error = %e, "session commit failed: answering 503");
                return Next::Done(self.render(&SessionRejection::Unavailable));
            }
        };
        let installs = matches!(action, CookieAction::Set { .. }) && self.via == Via::Cookie;
        if let Err(rejection) = self.shared.apply(action, self.via, &mut response) {
            return Next::Done(self.render(&rejection));
        }
        // A new cookie for a signed-in session (a sign-in): offer device
        // binding with it.
        if installs && self.shared.config.dbsc().is_some() {
            return Next::Later(Box::pin(async move {
                if let Some(engine) = self.shared.config.dbsc() {
                    let offered = dbsc::offer_registration(engine, &self.session, &mut response);
                    if let Err(rejection) = offered.await {
                        return self.render(&rejection);
                    }
                }
                response
            }));
        }
        Next::Done(response)
    }
}

impl Shared {
    fn apply(
        &self,
        action: CookieAction,
        via: Via,
        response: &mut Response,
    ) -> Result<(), SessionRejection> {
        let cookie = self.config.cookie();
        match (action, via) {
            (CookieAction::Keep, _) => {}
            (CookieAction::Set { .. }, Via::Bearer) => {
                // The new token cannot be delivered in a cookie to a bearer
                // client; the application must return it another way.
                tracing::warn!(
                    "a bearer-authenticated request created or rotated a session; \
                     no Set-Cookie is sent to bearer clients"
                );
            }
            (CookieAction::Set { token, max_age }, Via::Cookie) => {
                let value = header_value(cookie.set_cookie(&token, max_age))?;
                let headers = response.headers_mut();
                headers.append(SET_COOKIE, value);
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            (CookieAction::Clear { .. }, Via::Bearer) => {}
            (CookieAction::Clear { logout }, Via::Cookie) => {
                let value = header_value(cookie.clear_cookie())?;
                let headers = response.headers_mut();
                headers.append(SET_COOKIE, value);
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if logout && self.config.clears_site_data_on_logout() {
                    headers.insert(CLEAR_SITE_DATA, HeaderValue::from_static("\"cookies\""));
                }
            }
        }
        Ok(())
    }
}

fn header_value(value: String) -> Result<HeaderValue, SessionRejection> {
    HeaderValue::try_from(value).map_err(|_| {
        tracing::error!("the session cookie is not a valid header value (check the cookie domain)");
        SessionRejection::Internal {
            reason: "cookie_header",
        }
    })
}

fn client_meta(req: &Request<Body>) -> ClientMeta {
    let ip = match req.extensions().get::<ClientIp>() {
        Some(ClientIp(ip)) => Some(*ip),
        None => req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
    };
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    ClientMeta::new(ip, user_agent)
}
