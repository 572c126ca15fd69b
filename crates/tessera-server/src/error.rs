//! HTTP errors: one JSON shape, `{"error": code, "reason"?: …, "message"?: …}`,
//! and the one place where core errors become status codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera::SessionError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `unauthenticated`, `invalid_json`,
    /// `payload_too_large`, `csrf_rejected`, `reauth_required`,
    /// `rate_limited`, `unavailable`, …
    pub error: &'static str,
    /// Why a session is unusable: `signed_out`, `revoked`,
    /// `expired_idle`, `expired_absolute` or `missing`; or which check
    /// refused a request.
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

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "session store failure");
            return Self::unavailable();
        }
        match e {
            SessionError::Conflict => Self::new(StatusCode::CONFLICT, "conflict")
                .message("the session changed concurrently; retry"),
            SessionError::SessionLimit => Self::new(StatusCode::CONFLICT, "session_limit")
                .message("the user holds the maximum number of sessions; sign out elsewhere first"),
            SessionError::Data(err) => Self::bad_request("invalid_data", err.to_string()),
            SessionError::DataTooLarge { limit } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "data_too_large").message(format!(
                    "the session data would exceed {limit} bytes; nothing was changed"
                ))
            }
            SessionError::Revoked { by } => Self::revoked(by),
            SessionError::Expired { .. }
            | SessionError::SignedOut
            | SessionError::NotFound
            | SessionError::Malformed(_)
            | SessionError::Unauthenticated => {
                Self::unauthenticated(e.reason_code().unwrap_or("missing"))
            }
            // Anything else (a capability this deployment lacks, the
            // CSPRNG, an error added later) says nothing about the client's
            // session: fail closed with 503, never 401 or 200, as the axum
            // layer does (docs/design.md, invariant 9).
            other => {
                tracing::error!(error = %other, "session operation failed");
                Self::unavailable()
            }
        }
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
