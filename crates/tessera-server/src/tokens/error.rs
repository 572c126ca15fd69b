//! Errors of the OAuth-style token endpoints (`POST /token`,
//! `POST /v1/tokens/refresh`, `POST /v1/tokens/revoke`): the RFC 6749
//! §5.2 shape, `{"error": code, "error_description": text}`, which OAuth
//! client libraries (AppAuth and friends) understand.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// The body of a token-endpoint error (RFC 6749 §5.2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`,
    /// `rate_limited`, `temporarily_unavailable`, `server_error`.
    pub error: &'static str,
    /// A human-readable explanation (never echoes a secret).
    pub error_description: String,
}

/// A token-endpoint error response.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: OAuthErrorBody,
    /// `Retry-After` in seconds (429 and 503).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with a status, code and description.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use tessera_server::tokens::error::OAuthError;
    /// let e = OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", "missing token");
    /// assert_eq!(e.body.error, "invalid_request");
    /// ```
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            body: OAuthErrorBody {
                error,
                error_description: description.into(),
            },
            retry_after: None,
        }
    }

    /// 400 `invalid_request`: a missing, duplicated or malformed parameter.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// A refused refresh token: 401 `invalid_grant`. The same answer for an
    /// unknown, expired, revoked or reused token, so a caller (perhaps a
    /// thief) learns nothing about which; the audit log says which.
    pub fn refused_refresh() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "the refresh token is invalid, expired or revoked; sign in again",
        )
    }

    /// 503 `temporarily_unavailable`: the store did not answer (fail
    /// closed).
    pub fn unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the session store is not available; try again",
        );
        e.retry_after = Some(1);
        e
    }
}

impl From<ApiError> for OAuthError {
    /// Body-reading errors (malformed JSON or form, too large) keep their
    /// status and become `invalid_request`; a store failure stays a 503.
    fn from(e: ApiError) -> Self {
        let description = e
            .body
            .message
            .clone()
            .unwrap_or_else(|| e.body.error.to_owned());
        let code = match e.status {
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request",
        };
        let mut out = Self::new(e.status, code, description);
        out.retry_after = e.retry_after;
        out
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let h = response.headers_mut();
        // RFC 6749 §5.1/§5.2: token responses are never cached.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        response
    }
}
