//! HTTP errors: one JSON shape, `{"error": code, "reason"?: …, "message"?: …}`,
//! and the one place where core errors become status codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera::SessionError;
use tessera_axum::SessionRejection;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code (docs/errors.md). Session failures, the same
    /// on every surface: `unavailable` (503, also any unclassified error),
    /// `unauthenticated` (401), `csrf_rejected` (403), `conflict` and
    /// `session_limit` (409), `data_too_large` and `payload_too_large`
    /// (413), `invalid_body` (400), `internal` (500). Server codes:
    /// `invalid_json`, `invalid_form`, `invalid_method`, `invalid_header`,
    /// `invalid_user_id`, `invalid_user`, `invalid_token`, `invalid_data`,
    /// `invalid_patch`, `invalid_batch`, `invalid_checked_at`,
    /// `invalid_reason`, `invalid_tier`, `weak_password`,
    /// `password_required`, `remember_not_configured`,
    /// `conflicting_forwarded_headers` (400), `unauthorized` and
    /// `invalid_credentials` (401), `reauth_required` (403), `not_found`
    /// (404), `request_timeout` (408), `exists` (409),
    /// `unsupported_media_type` (415), `rate_limited` (429), `busy` (503).
    pub error: &'static str,
    /// Why a session is unusable: `signed_out`, `revoked`,
    /// `expired_idle`, `expired_absolute`, `device_unbound` or `missing`;
    /// or which check refused a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `reason: "revoked"`: who or what revoked the session
    /// (`other_device`, `password_changed`, `disabled`, `admin`,
    /// `refresh_reuse`, `session_limit`, `other`), so a page can tell the
    /// person in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<&'static str>,
    /// A human-readable explanation (never echoes secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: ErrorBody,
    /// `Retry-After` in seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status and code.
    pub fn new(status: StatusCode, error: &'static str) -> Self {
        Self {
            status,
            body: ErrorBody {
                error,
                reason: None,
                revoked_by: None,
                message: None,
            },
            retry_after: None,
        }
    }

    /// Adds a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.body.reason = Some(reason.into());
        self
    }

    /// Adds a message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.body.message = Some(message.into());
        self
    }

    /// 400 with a message naming the problem.
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error).message(message)
    }

    /// 401 `unauthenticated`, reason `revoked`, with who or what revoked
    /// the session.
    pub fn revoked(by: tessera::Revocation) -> Self {
        let mut e = Self::unauthenticated("revoked");
        e.body.revoked_by = Some(by.as_code());
        e
    }

    /// 401 `unauthenticated` with a session reason.
    pub fn unauthenticated(reason: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated").reason(reason)
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found")
    }

    /// 503: the store or database did not answer; fail closed.
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            .message("the session store is not available; try again")
    }
}

impl ApiError {
    /// 503 `busy` with `Retry-After: 1`: every password-hashing slot is
    /// taken (see [`crate::admission`]); nothing was checked or counted.
    pub fn busy() -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy")
            .message("too many sign-ins at once; try again in a moment");
        e.retry_after = Some(1);
        e
    }
}

impl From<SessionRejection> for ApiError {
    /// The server's rendering of the one classification of session
    /// failures ([`SessionRejection`]): the same status, `error` and
    /// `reason` codes as the axum layer, with `revoked_by`, a message and
    /// `Retry-After` where the rejection has them.
    fn from(rejection: SessionRejection) -> Self {
        let mut e =
            Self::new(rejection.status(), rejection.error_code()).reason(rejection.reason());
        e.body.revoked_by = rejection.revoked_by();
        e.body.message = rejection.message();
        e.retry_after = rejection.retry_after();
        e
    }
}

impl From<SessionError> for ApiError {
    /// Through [`SessionRejection`]: one classification for the layer, the
    /// site and `/v1`. Only statements about the presented session are
    /// 401; anything unclassified fails closed with 503 (docs/design.md,
    /// invariant 9).
    fn from(e: SessionError) -> Self {
        SessionRejection::from(e).into()
    }
}

impl From<crate::users::UserError> for ApiError {
    fn from(e: crate::users::UserError) -> Self {
        use crate::users::UserError;
        match e {
            UserError::WeakPassword => Self::bad_request("weak_password", e.to_string()),
            UserError::InvalidName => Self::bad_request("invalid_user", e.to_string()),
            UserError::Exists => Self::new(StatusCode::CONFLICT, "exists"),
            UserError::NotFound => Self::not_found(),
            UserError::Busy(_) => Self::busy(),
            other => {
                tracing::error!(error = %other, "user database failure");
                Self::unavailable()
            }
        }
    }
}

impl From<crate::api_keys::ApiKeyError> for ApiError {
    fn from(e: crate::api_keys::ApiKeyError) -> Self {
        tracing::error!(error = %e, "api key database failure");
        Self::unavailable()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

#[cfg(test)]
mod session_error_tests {
    use super::*;

    /// Only statements about the presented session are 401; an error the
    /// server does not classify is 503, whatever it is.
    #[test]
    fn unclassified_session_errors_fail_closed() {
        let status = |e: SessionError| ApiError::from(e).status;
        assert_eq!(
            status(SessionError::Unsupported("refresh tokens")),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(SessionError::Random(tessera::error::RandomError)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(SessionError::NotFound), StatusCode::UNAUTHORIZED);
        assert_eq!(status(SessionError::SignedOut), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(SessionError::Unauthenticated),
            StatusCode::UNAUTHORIZED
        );
    }
}
