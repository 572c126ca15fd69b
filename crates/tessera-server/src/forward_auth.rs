//! `GET /v1/auth/verify`: forward authentication for reverse proxies (nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`).
//!
//! The proxy forwards the original request's headers; this reads the
//! session cookie from them and answers 200 with `X-Tessera-User` and
//! `X-Tessera-Session` (the public handle, never the token) for a signed-in
//! session, or 401. A forwarded request counts as activity. Store trouble is
//! a 503, which proxies treat as an error, never as a pass.
//!
//! **Cross-site requests.** The session cookie is ambient authority: a page
//! on another site can make the browser send it with a form post to the
//! protected application. So when the proxy says the original request used
//! an unsafe method (`X-Forwarded-Method`, as Traefik and Caddy send it, or
//! `X-Original-Method`, as the shipped nginx example sets it: anything but
//! GET, HEAD, OPTIONS, TRACE), the original request must pass the same
//! Fetch-Metadata / `Origin` check as tessera's own routes
//! ([`tessera::csrf::OriginCheck`], OWASP CSRF Prevention Cheat Sheet,
//! "Fetch Metadata" and "Verifying Origin With Standard Headers"): a
//! `Sec-Fetch-Site: cross-site` or untrusted `same-site` request, or an
//! `Origin` whose host is not the original `Host` (`X-Forwarded-Host` when
//! the proxy sets it), is refused with 403 whatever the cookie. The
//! protected application still owns any synchronizer token of its own
//! forms; this check is what a proxy can enforce without reading bodies.
//! Without a method header the request is treated as a GET: a proxy that
//! protects unsafe requests must forward the method.
//!
//! **Bearer credentials.** API and mobile clients present
//! `Authorization: Bearer …` instead of a cookie:
//!
//! - an opaque session token (`tss_…`) is checked exactly like the cookie
//!   (store lookup, counts as activity); a malformed one is refused without
//!   a store call;
//! - an access token (JWT signed by this server) is verified with the
//!   signing keys alone — **no store call** — so it passes until its `exp`
//!   even if its session was revoked meanwhile (at most the access-token
//!   lifetime). Use opaque session tokens where revocation must bite at
//!   once.
//!
//! A bearer credential is not ambient (a browser never attaches it by
//! itself), so such requests skip the origin check (DESIGN invariant 7) and
//! the cookie is then ignored entirely. An `Authorization` value that is
//! neither (another scheme, or a bearer token this server did not sign)
//! is not ours: the cookie stays in charge, with its origin check.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera::Access;
use tessera::cookie::Presented;
use tessera::csrf::{CsrfRejection, is_unsafe_method};

use crate::audit::{self, ServerEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::client_ip;
use crate::state::AppState;

/// Headers naming the original request's method, in order of preference.
pub const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// A header's value; a present but non-ASCII value reads as empty (refused
/// by the check), never as absent.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// The original request's method, upper-cased, if the proxy forwarded it.
fn forwarded_method(headers: &HeaderMap) -> Option<String> {
    METHOD_HEADERS
        .iter()
        .find_map(|name| header_text(headers, name))
        .map(|m| m.trim().to_ascii_uppercase())
}

/// Runs the origin check on a forwarded unsafe request.
///
/// # Errors
///
/// The [`CsrfRejection`] that applies.
pub fn check_forwarded_origin(state: &AppState, headers: &HeaderMap) -> Result<(), CsrfRejection> {
    let Some(method) = forwarded_method(headers) else {
        return Ok(());
    };
    if !is_unsafe_method(&method) {
        return Ok(());
    }
    // The host the browser addressed: what the proxy says it received, else
    // the Host it passed on. With several proxies the first entry is the
    // client-facing one.
    let host = header_text(headers, "x-forwarded-host")
        .map(|h| h.split(',').next().unwrap_or("").trim())
        .or_else(|| header_text(headers, "host"));
    state.origin.check(
        header_text(headers, "sec-fetch-site"),
        header_text(headers, "origin"),
        host,
    )
}

/// Forward-auth check.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "forward-auth",
    params(
        ("X-Forwarded-Method" = Option<String>, Header, description = "Method of the original request (or X-Original-Method); unsafe methods get the origin check"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "Host of the original request, compared with its Origin"),
    ),
    responses(
        (status = 200, description = "Signed in (session cookie, Authorization: Bearer tss_… session token, or Bearer access token); X-Tessera-User and X-Tessera-Session headers set"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A forwarded unsafe request from another site (csrf_rejected)"),
        (status = 503, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    // A bearer session token is looked for exactly as the session layer
    // does (one rule for duplicates: two different tokens are ambiguous).
    match tessera_axum::find_bearer(&headers) {
        Some(Presented::Token(token)) => {
            return match state.manager.load(token.expose(), Access::Activity).await {
                Ok(record) => signed_in(record.user_id.as_deref(), record.handle.as_str()),
                Err(e) => ApiError::from(e).into_response(),
            };
        }
        // Ours by its prefix but broken, or two different tokens: refused
        // without a store call.
        Some(Presented::Absent) | None => {}
        Some(Presented::Ambiguous) => {
            return ApiError::unauthenticated("ambiguous").into_response();
        }
        // Malformed (and any kind added later): never a store call.
        Some(_) => return ApiError::unauthenticated("missing").into_response(),
    }
    if let Some(verified) = access_token(&state, &headers) {
        return signed_in(Some(&verified.claims.sub), verified.claims.sid.as_str());
    }
    if let Err(rejection) = check_forwarded_origin(&state, &headers) {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let ip = client_ip(&headers, peer, &state.config);
        audit::emit(
            ServerEvent::CsrfRejected,
            None,
            Some(&ip),
            &format!("forward auth: {}", rejection.as_code()),
        );
        return ApiError::new(StatusCode::FORBIDDEN, "csrf_rejected")
            .reason(rejection.as_code())
            .into_response();
    }
    let cookies = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes());
    let token = match state.cookie.find_token(cookies) {
        Presented::Token(token) => token,
        _ => return ApiError::unauthenticated("missing").into_response(),
    };
    let record = match state.manager.load(token.expose(), Access::Activity).await {
        Ok(record) => record,
        Err(e) => return ApiError::from(e).into_response(),
    };
    signed_in(record.user_id.as_deref(), record.handle.as_str())
}

/// The first `Authorization: Bearer` value that is a valid access token
/// signed by this server (session tokens are found by
/// [`tessera_axum::find_bearer`]).
fn access_token(state: &AppState, headers: &HeaderMap) -> Option<tessera_jwt::VerifiedToken> {
    // A few values at most: bounded work per request.
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .take(8)
        .filter_map(|value| {
            let (scheme, credential) = value.to_str().ok()?.trim().split_once(' ')?;
            // RFC 9110 §11.1: the scheme is case-insensitive.
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credential.trim())
        })
        .find_map(|credential| state.signing.verify(credential).ok())
}

/// 200 with the user and session headers, or 401 without a user.
fn signed_in(user: Option<&str>, handle: &str) -> Response {
    let Some(user) = user else {
        return ApiError::unauthenticated("missing").into_response();
    };
    let (Ok(user), Ok(handle)) = (HeaderValue::from_str(user), HeaderValue::from_str(handle))
    else {
        // A user id that cannot be a header value cannot be forwarded.
        return ApiError::unauthenticated("missing").into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert("x-tessera-user", user);
    h.insert("x-tessera-session", handle);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
