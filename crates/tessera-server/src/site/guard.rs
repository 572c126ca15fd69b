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
use axum::middleware::Next;
use axum::response::Response;
use tessera::Session;
use tessera_axum::{ClientIp, SessionConfig, SessionLayer};

use crate::error::ApiError;
use crate::extract::client_ip;
use crate::state::AppState;

/// What each site handler gets: the request's session (loaded on first
/// use) and the client IP used for rate limiting.
#[derive(Debug, Clone)]
pub struct SiteCtx {
    /// The request's session (loaded on first use).
    pub session: Session,
    /// The client IP used for rate limiting and the device list (`None`
    /// when the connection has no peer address).
    pub ip: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for SiteCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = tessera_axum::Session::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?
            .into_inner();
        let ip = parts.extensions.get::<ClientIp>().map(|ClientIp(ip)| *ip);
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
    if let Some(ip) = client_ip(req.headers(), peer, &state.config) {
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
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

pub use crate::render::{fail, security_headers, set_security_headers};
