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
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The standard tower dance: keep the service that was polled ready,
        // leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(shared.handle(inner, req).await) })
    }
}

impl Shared {
    async fn handle<S, ResBody>(&self, mut inner: S, req: Request<Body>) -> Response
    where
        S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible>,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<axum::BoxError>,
    {
        let json = wants_json(req.headers());
        let config = &self.config;
        let (presented, via) =
            credential::find(config.cookie(), config.accepts_bearer(), req.headers());
        let credential = via.credential(&presented);
        let mut session = tessera::Session::new(self.manager.clone(), presented, client_meta(&req));
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
        let mut req = match guard::check(
            config.origin_check(),
            config.csrf_form_limit(),
            &session,
            credential,
            !dbsc_endpoint,
            req,
        )
        .await
        {
            Ok(req) => req,
            Err(rejection) => return config.render(&rejection, json),
        };
        req.extensions_mut().insert(session.clone());

        let response = match inner.call(req).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
        // A rejection the handler returned is rendered here, once, by the
        // configured renderer in the format the client wants.
        let mut response = match response.extensions().get::<Rendered>() {
            Some(Rendered(rejection)) => config.render(rejection, json),
            None => response,
        };
        // A refused request (bad input, wrong password, not allowed) is not
        // user activity: it must not move the idle deadline, or failed
        // attempts would keep a session alive (OWASP Session Management
        // Cheat Sheet, idle timeout). Explicit changes are still committed.
        if response.status().is_client_error() {
            session.mark_status_query();
        }

        match session.commit().await {
            Ok(action) => {
                let installs = matches!(action, CookieAction::Set { .. }) && via == Via::Cookie;
                if let Err(rejection) = self.apply(action, via, &mut response) {
                    return config.render(&rejection, json);
                }
                // A new cookie for a signed-in session (a sign-in): offer
                // device binding with it.
                if let (true, Some(engine)) = (installs, engine) {
                    if let Err(rejection) =
                        dbsc::offer_registration(engine, &session, &mut response).await
                    {
                        return config.render(&rejection, json);
                    }
                }
                response
            }
            Err(e) => {
                // Whatever the handler answered, the outcome is unknown (a
                // sign-in may not be stored): fail closed.
                tracing::error!(error = %e, "session commit failed: answering 503");
                config.render(&SessionRejection::Unavailable, json)
            }
        }
    }

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
        Some(ClientIp(ip)) => Some(ip.to_string()),
        None => req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
    };
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    ClientMeta::new(ip, user_agent)
}
