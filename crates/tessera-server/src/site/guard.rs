//! The per-request session glue for the site routes: finds the session
//! cookie, runs the origin check on every unsafe request, hands handlers a
//! lazy [`tessera::Session`], and after the handler writes the cookie the
//! session asks for (or answers 503 when the store failed).
//!
//! The origin check runs before any handler and with or without a session,
//! which is what blocks login CSRF (OWASP CSRF Cheat Sheet, "Login CSRF");
//! the synchronizer token is checked by each state-changing handler through
//! [`require_csrf`] (DESIGN invariant 7).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera::Session;
use tessera::csrf::is_unsafe_method;
use tessera::record::ClientMeta;
use tessera::session::CookieAction;

use crate::audit::{self, ServerEvent};
use crate::error::ApiError;
use crate::extract::{client_ip, wants_json};
use crate::site::pages;
use crate::state::AppState;

/// What the guard gives each site handler (a request extension).
#[derive(Debug, Clone)]
pub struct SiteCtx {
    /// The request's session (loaded on first use).
    pub session: Session,
    /// The client IP used for rate limiting and the device list.
    pub ip: String,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
    if let Some(secs) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// The middleware. See the module docs.
pub async fn session_guard(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let json = wants_json(headers);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = client_ip(headers, peer, state.config.trust_forwarded_for);

    if is_unsafe_method(req.method().as_str()) {
        let check = state.origin.check(
            header_str(headers, "sec-fetch-site"),
            header_str(headers, "origin"),
            header_str(headers, "host"),
        );
        if let Err(rejection) = check {
            audit::emit(
                ServerEvent::CsrfRejected,
                None,
                Some(&ip),
                rejection.as_code(),
            );
            return fail(
                json,
                ApiError::new(StatusCode::FORBIDDEN, "csrf_rejected").reason(rejection.as_code()),
            );
        }
    }

    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let presented = state.cookie.find_token(cookies);
    let user_agent = header_str(headers, "user-agent").map(str::to_owned);
    let session = Session::new(
        state.manager.clone(),
        presented,
        ClientMeta::new(Some(ip.clone()), user_agent),
    );
    req.extensions_mut().insert(SiteCtx {
        session: session.clone(),
        ip,
    });

    let mut response = next.run(req).await;

    // A refused request (bad CSRF token, bad input, wrong password) is not
    // user activity: it must leave the stored session exactly as it was.
    if response.status().is_client_error() {
        session.mark_status_query();
    }
    match session.commit().await {
        Ok(CookieAction::Keep) => {}
        Ok(CookieAction::Set { token, max_age }) => {
            append(&mut response, &state.cookie.set_cookie(&token, max_age));
        }
        Ok(CookieAction::Clear { .. }) => {
            append(&mut response, &state.cookie.clear_cookie());
        }
        Ok(_) => {}
        Err(e) => return fail(json, ApiError::from(e)),
    }
    response
}

fn append(response: &mut Response, set_cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Checks the synchronizer token of a state-changing request: from the
/// `X-CSRF-Token` header, else from the form's `csrf_token` field.
///
/// # Errors
///
/// 403 `csrf_rejected` (reason `csrf_token_missing`/`csrf_token_invalid`),
/// or a store error.
pub async fn require_csrf(
    ctx: &SiteCtx,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), ApiError> {
    let presented = header_str(headers, "x-csrf-token").or(form_token);
    let rejection = match presented {
        None => Some(tessera::csrf::CsrfRejection::MissingToken),
        Some(token) if !ctx.session.verify_csrf(token).await? => {
            Some(tessera::csrf::CsrfRejection::InvalidToken)
        }
        Some(_) => None,
    };
    match rejection {
        None => Ok(()),
        Some(r) => {
            let user = ctx.session.user_id().await.ok().flatten();
            audit::emit(
                ServerEvent::CsrfRejected,
                user.as_deref(),
                Some(&ctx.ip),
                r.as_code(),
            );
            Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_rejected").reason(r.as_code()))
        }
    }
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
        None => {
            let reason = ctx
                .session
                .end_reason()
                .await?
                .map_or("missing", |r| r.as_code());
            Err(ApiError::unauthenticated(reason))
        }
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
    let h = response.headers_mut();
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
    response
}
