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
//! an unsafe method (anything but GET, HEAD, OPTIONS, TRACE), the original
//! request must pass the same Fetch-Metadata / `Origin` check as tessera's
//! own routes ([`tessera::csrf::OriginCheck`], OWASP CSRF Prevention Cheat
//! Sheet, "Fetch Metadata" and "Verifying Origin With Standard Headers"): a
//! `Sec-Fetch-Site: cross-site` or untrusted `same-site` request, or an
//! `Origin` whose host is not the original `Host` (`X-Forwarded-Host` when
//! the proxy sets it), is refused with 403 whatever the cookie. The
//! protected application still owns any synchronizer token of its own
//! forms; this check is what a proxy can enforce without reading bodies.
//!
//! **The original method and URI** come from the headers the proxies set:
//!
//! | proxy | method | URI |
//! |---|---|---|
//! | Traefik `ForwardAuth` | `X-Forwarded-Method` | `X-Forwarded-Uri` |
//! | Caddy `forward_auth` | `X-Forwarded-Method` | `X-Forwarded-Uri` |
//! | nginx `auth_request` (shipped example) | `X-Original-Method` and `X-Forwarded-Method` | `X-Original-URI` |
//!
//! Each of these proxies also passes the client's *other* request headers
//! on to the check, so a client can add the header its proxy does not set
//! (`X-Forwarded-Method: GET` beside nginx's `X-Original-Method: POST`).
//! There is therefore no precedence between them: every value of every
//! method header must name the same method (compared case-insensitively),
//! and every URI header the same URI, else the request is refused with 400
//! `conflicting_forwarded_headers` (nginx turns any answer other than 2xx,
//! 401 and 403 into a 500, which still keeps the request out). A request
//! with **no** method header is not assumed to be a safe GET: it gets the
//! origin check too, so a cross-site `Origin` or `Sec-Fetch-Site` is
//! refused — a proxy that does not forward the method cannot tell a
//! cross-site form post from a link, and only the safe answer is right for
//! both. The URI is only used in audit lines.
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
//! **Device-bound sessions** (`dbsc = "additive"` or `"required"`,
//! [`crate::dbsc`]): the answer names the request's tier in
//! `X-Tessera-Session-Tier` (`bound` with a live bound cookie of a
//! device-bound session, else `unbound`). In required mode a bound session
//! without its bound cookie is refused with 401 `device_unbound`, cookie or
//! bearer session token alike; a proxy location that sets
//! `X-Tessera-Require-Tier: bound` demands a bound request whatever the
//! mode. Access tokens carry no device proof and are refused there.
//!
//! A bearer credential is not ambient (a browser never attaches it by
//! itself), so such requests skip the origin check (docs/design.md, invariant 7) and
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

/// Headers naming the original request's method (see the module docs for
/// which proxy sets which). All values present must agree.
pub const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// Headers naming the original request's URI. All values present must
/// agree.
pub const URI_HEADERS: [&str; 2] = ["x-forwarded-uri", "x-original-uri"];

/// Longest URI quoted in an audit line.
const MAX_LOGGED_URI: usize = 256;

/// A header's value; a present but non-ASCII value reads as empty (refused
/// by the check), never as absent.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// Why a forwarded request is refused before any session lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardRefusal {
    /// The method (or URI) headers name different values: someone other
    /// than the proxy wrote one of them.
    Conflicting,
    /// The original request failed the Fetch-Metadata / `Origin` check.
    Csrf(CsrfRejection),
}

/// The one value that every line of every header in `names` carries
/// (after `normalize`), `Ok(None)` if none is present.
///
/// # Errors
///
/// [`ForwardRefusal::Conflicting`] when two values differ.
fn agreed_value(
    headers: &HeaderMap,
    names: &[&str],
    normalize: fn(&str) -> String,
) -> Result<Option<String>, ForwardRefusal> {
    let mut agreed: Option<String> = None;
    for name in names {
        for value in headers.get_all(*name) {
            // Not text: cannot match anything a proxy writes.
            let value = normalize(value.to_str().unwrap_or("\u{fffd}"));
            match &agreed {
                None => agreed = Some(value),
                Some(seen) if *seen == value => {}
                Some(_) => return Err(ForwardRefusal::Conflicting),
            }
        }
    }
    Ok(agreed)
}

/// The original request's method, upper-cased, if the proxy forwarded it.
///
/// # Errors
///
/// [`ForwardRefusal::Conflicting`] when the method headers disagree.
pub fn forwarded_method(headers: &HeaderMap) -> Result<Option<String>, ForwardRefusal> {
    agreed_value(headers, &METHOD_HEADERS, |m| m.trim().to_ascii_uppercase())
}

/// The original request's URI, if the proxy forwarded it.
///
/// # Errors
///
/// [`ForwardRefusal::Conflicting`] when the URI headers disagree.
pub fn forwarded_uri(headers: &HeaderMap) -> Result<Option<String>, ForwardRefusal> {
    agreed_value(headers, &URI_HEADERS, |u| u.trim().to_owned())
}

/// Checks what the proxy says about the original request: consistent
/// method and URI headers, and the origin check for an unsafe or unknown
/// method.
///
/// # Errors
///
/// The [`ForwardRefusal`] that applies.
pub fn check_forwarded_request(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), ForwardRefusal> {
    let method = forwarded_method(headers)?;
    forwarded_uri(headers)?;
    // No method header: checked like an unsafe method (see the module docs).
    if method.as_deref().is_some_and(|m| !is_unsafe_method(m)) {
        return Ok(());
    }
    // The host the browser addressed: what the proxy says it received, else
    // the Host it passed on. With several proxies the first entry is the
    // client-facing one.
    let host = header_text(headers, "x-forwarded-host")
        .map(|h| h.split(',').next().unwrap_or("").trim())
        .or_else(|| header_text(headers, "host"));
    state
        .origin
        .check(
            header_text(headers, "sec-fetch-site"),
            header_text(headers, "origin"),
            host,
        )
        .map_err(ForwardRefusal::Csrf)
}

/// `METHOD URI` of the original request for an audit line, bounded.
fn describe_request(headers: &HeaderMap) -> String {
    let method = match forwarded_method(headers) {
        Ok(Some(method)) => method,
        Ok(None) => String::from("(no method)"),
        Err(_) => return String::from("conflicting methods"),
    };
    let mut uri = match forwarded_uri(headers) {
        Ok(uri) => uri.unwrap_or_default(),
        Err(_) => String::from("conflicting URIs"),
    };
    if uri.len() > MAX_LOGGED_URI {
        let mut end = MAX_LOGGED_URI;
        while !uri.is_char_boundary(end) {
            end -= 1;
        }
        uri.truncate(end);
        uri.push('…');
    }
    format!("{method} {uri}").trim_end().to_owned()
}

/// Forward-auth check.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "forward-auth",
    params(
        ("X-Forwarded-Method" = Option<String>, Header, description = "Method of the original request (Traefik, Caddy); X-Original-Method (nginx) must agree with it. Unsafe or missing methods get the origin check"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "URI of the original request (Traefik, Caddy; X-Original-URI for nginx), for audit lines; all values must agree"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "Host of the original request, compared with its Origin"),
        ("X-Tessera-Require-Tier" = Option<String>, Header, description = "`bound` demands a device-bound request (DBSC); 401 device_unbound otherwise"),
    ),
    responses(
        (status = 200, description = "Signed in (session cookie, Authorization: Bearer tss_… session token, or Bearer access token); X-Tessera-User, X-Tessera-Session and X-Tessera-Session-Tier headers set"),
        (status = 400, body = ErrorBody, description = "The method or URI headers disagree (conflicting_forwarded_headers)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A forwarded unsafe (or unnamed) request from another site (csrf_rejected)"),
        (status = 503, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    if let (Some(engine), Some(skipped)) = (
        &state.dbsc,
        header_text(&headers, tessera::dbsc::header::SKIPPED),
    ) {
        // The browser gave a refresh up (`unreachable`, `server_error`,
        // `quota_exceeded`): audited and counted, as on the site.
        engine.record_skipped(None, skipped);
    }
    let require = match header_text(&headers, crate::dbsc::REQUIRE_TIER_HEADER) {
        Some(value) => match crate::dbsc::parse_tier(value) {
            Ok(tier) => Some(tier),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    // A bearer session token is looked for exactly as the session layer
    // does (one rule for duplicates: two different tokens are ambiguous).
    match tessera_axum::find_bearer(&headers) {
        Some(Presented::Token(token)) => {
            // A bearer request carries no bound cookie: a device-bound
            // session is `unbound` here (refused in required mode).
            return session_answer(&state, token.expose(), None, require).await;
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
    if let Some(verified) = access_token(&state, &headers).await {
        // Verified without the store, so without any device proof.
        if require == Some(tessera::dbsc::Tier::Bound) {
            return ApiError::unauthenticated("device_unbound").into_response();
        }
        return signed_in(
            Some(&verified.claims.sub),
            verified.claims.sid.as_str(),
            tessera::dbsc::Tier::Unbound,
        );
    }
    if let Err(refusal) = check_forwarded_request(&state, &headers) {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let ip = client_ip(&headers, peer, &state.config);
        let (code, error) = match refusal {
            ForwardRefusal::Conflicting => (
                "conflicting_method",
                ApiError::bad_request(
                    "conflicting_forwarded_headers",
                    "the forwarded method or URI headers name different values",
                ),
            ),
            ForwardRefusal::Csrf(rejection) => (
                rejection.as_code(),
                ApiError::new(StatusCode::FORBIDDEN, "csrf_rejected").reason(rejection.as_code()),
            ),
        };
        audit::emit(
            ServerEvent::CsrfRejected,
            None,
            ip,
            &format!("forward auth: {code} ({})", describe_request(&headers)),
        );
        return error.into_response();
    }
    let cookies = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes());
    let token = match state.cookie.find_token(cookies) {
        Presented::Token(token) => token,
        _ => return ApiError::unauthenticated("missing").into_response(),
    };
    let bound_cookie = crate::dbsc::bound_cookie(&state, &headers);
    session_answer(&state, token.expose(), bound_cookie.as_deref(), require).await
}

/// Loads the session of `token` as activity, applies the DBSC gate, and
/// answers 200 with the user, session and tier headers.
async fn session_answer(
    state: &AppState,
    token: &str,
    bound_cookie: Option<&str>,
    require: Option<tessera::dbsc::Tier>,
) -> Response {
    let record = match state.manager.load(token, Access::Activity).await {
        Ok(record) => record,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match crate::dbsc::admit(state, &record, bound_cookie, require).await {
        Ok(tier) => signed_in(record.user_id.as_deref(), record.handle.as_str(), tier),
        Err(e) => e.into_response(),
    }
}

/// The first `Authorization: Bearer` value that is a valid access token
/// signed by this server (session tokens are found by
/// [`tessera_axum::find_bearer`]).
async fn access_token(state: &AppState, headers: &HeaderMap) -> Option<tessera_jwt::VerifiedToken> {
    // A few values at most: bounded work per request.
    let credentials = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .take(8)
        .filter_map(|value| {
            let (scheme, credential) = value.to_str().ok()?.trim().split_once(' ')?;
            // RFC 9110 §11.1: the scheme is case-insensitive.
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credential.trim())
        });
    for credential in credentials {
        if let Ok(verified) = state.signing.verify(credential).await {
            return Some(verified);
        }
    }
    None
}

/// 200 with the user, session and tier headers, or 401 without a user.
fn signed_in(user: Option<&str>, handle: &str, tier: tessera::dbsc::Tier) -> Response {
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
    h.insert(
        crate::dbsc::TIER_HEADER,
        HeaderValue::from_static(tier.as_str()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
