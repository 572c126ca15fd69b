//! The site routes' session glue, on top of [`tessera_axum::SessionLayer`].
//!
//! The security rules — finding the session cookie, the Fetch-Metadata /
//! `Origin` check on every unsafe request (which also blocks login CSRF:
//! OWASP CSRF Prevention Cheat Sheet, "Login CSRF"), the synchronizer token
//! (`X-CSRF-Token` or the `csrf_token` form field) on every unsafe
//! cookie-authenticated request (docs/design.md, invariant 7), writing the cookie
//! back, refused requests not counting as activity, and 503 on any store
//! failure (docs/design.md, invariant 9) — live once, in `tessera-axum`. This module
//! only adapts them to the server:
//!
//! - [`session_layer`] configures the layer from the settings and plugs in
//!   the server's renderer ([`fail`]: the JSON [`ApiError`] body or an HTML
//!   error page), so the layer renders each refusal once, in the server's
//!   formats;
//! - [`site_context`], a middleware *outside* the layer, gives the layer the
//!   client IP ([`crate::proxy`]: the forwarding header only behind
//!   `trusted_proxies`);
//! - [`SiteCtx`] hands handlers the session and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera::Session;
use tessera_axum::{ClientIp, SessionConfig, SessionLayer};

use crate::error::ApiError;
use crate::extract::client_ip;
use crate::site::pages;
use crate::state::AppState;

/// What each site handler gets: the request's session (loaded on first
/// use) and the client IP used for rate limiting.
#[derive(Debug, Clone)]
pub struct SiteCtx {
    /// The request's session (loaded on first use).
    pub session: Session,
    /// The client IP used for rate limiting and the device list.
    pub ip: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SiteCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = tessera_axum::Session::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?
            .into_inner();
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map_or_else(|| String::from("unknown"), |ClientIp(ip)| ip.to_string());
        Ok(Self { session, ip })
    }
}

/// The session layer for the site routes, configured from the server's
/// settings: its cookie, its trusted origins, and the body limit for forms
/// whose `csrf_token` field must be read.
pub fn session_layer(state: &AppState) -> SessionLayer {
    let mut config = SessionConfig::default()
        .with_cookie(state.cookie.clone())
        .with_origin_check(state.origin.clone())
        .with_csrf_form_limit(state.config.body_limit)
        // The layer's refusals in the server's formats: its JSON error
        // body, or an HTML error page for browsers.
        .with_renderer(|rejection, json| fail(json, ApiError::from(*rejection)));
    if let Some(engine) = &state.dbsc {
        config = config.with_dbsc(engine.clone());
    }
    SessionLayer::with_config(state.manager.clone(), config)
}

/// The middleware around the session layer. See the module docs.
pub async fn site_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = client_ip(req.headers(), peer, &state.config);
    if let Ok(ip) = ip.parse::<IpAddr>() {
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

/// Renders an error as JSON or as a small HTML page.
pub fn fail(json: bool, e: ApiError) -> Response {
    if json {
        return e.into_response();
    }
    let status = e.status;
    let message = e
        .body
        .message
        .clone()
        .unwrap_or_else(|| pages::describe_error(e.body.error).to_owned());
    let mut response = (status, pages::error_page(status, &message)).into_response();
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The signed-in record, or 401 with the reason the session ended.
///
/// # Errors
///
/// 401 `unauthenticated` with `expired_idle`, `expired_absolute` or
/// `missing`; store errors.
pub async fn signed_in(
    ctx: &SiteCtx,
) -> Result<(String, tessera::record::SessionRecord), ApiError> {
    let record = ctx.session.record().await?;
    match record {
        Some(r) => match r.user_id.clone() {
            Some(user) => Ok((user, r)),
            None => Err(ApiError::unauthenticated("missing")),
        },
        None => match ctx.session.end_reason().await? {
            Some(tessera::session::EndReason::Revoked(by)) => Err(ApiError::revoked(by)),
            reason => Err(ApiError::unauthenticated(
                reason.map_or("missing", |r| r.as_code()),
            )),
        },
    }
}

/// Adds the security headers every response carries: a strict CSP with no
/// inline script (`script-src 'self'`), `frame-ancestors 'none'` against
/// clickjacking, `Referrer-Policy: same-origin`, `nosniff`; and
/// `Cache-Control: no-store` on everything but static assets, so no
/// authenticated page or JSON is kept by a shared cache or the back button
/// (OWASP Session Management Cheat Sheet, "Web Content Caching").
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut response = next.run(req).await;
    set_security_headers(response.headers_mut(), is_static);
    response
}

/// Sets the headers of [`security_headers`] on `h`; for responses made
/// outside the router (the connection limits of [`crate::listen`]).
///
/// ```
/// use axum::http::HeaderMap;
/// let mut h = HeaderMap::new();
/// tessera_server::site::guard::set_security_headers(&mut h, false);
/// assert_eq!(h["cache-control"], "no-store");
/// assert_eq!(h["x-frame-options"], "DENY");
/// ```
pub fn set_security_headers(h: &mut HeaderMap, is_static: bool) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
