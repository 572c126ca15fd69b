//! Rendering shared by every surface and the transport: errors as JSON or
//! as a small HTML page, and the security headers every response carries.
//! It sits below the site, `/v1` and the listener, which all use it.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::site::pages;

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
/// tessera_server::render::set_security_headers(&mut h, false);
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
