//! `GET /v1/auth/verify`: forward authentication for reverse proxies (nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`).
//!
//! The proxy forwards the original request's headers; this reads the
//! session cookie from them and answers 200 with `X-Tessera-User` and
//! `X-Tessera-Session` (the public handle, never the token) for a signed-in
//! session, or 401. A forwarded request counts as activity. Store trouble is
//! a 503, which proxies treat as an error, never as a pass.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera::Access;
use tessera::cookie::Presented;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Forward-auth check.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "forward-auth",
    responses(
        (status = 200, description = "Signed in; X-Tessera-User and X-Tessera-Session headers set"),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let token = match state.cookie.find_token(cookies) {
        Presented::Token(token) => token,
        _ => return ApiError::unauthenticated("missing").into_response(),
    };
    let record = match state.manager.load(token.expose(), Access::Activity).await {
        Ok(record) => record,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(user) = record.user_id.as_deref() else {
        return ApiError::unauthenticated("missing").into_response();
    };
    let (Ok(user), Ok(handle)) = (
        HeaderValue::from_str(user),
        HeaderValue::from_str(record.handle.as_str()),
    ) else {
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
