//! The one place where session, CSRF and store failures become HTTP
//! responses.
//!
//! | failure                                   | status | `error`          |
//! |-------------------------------------------|--------|------------------|
//! | store unavailable, CSPRNG failure         | 503    | `unavailable`    |
//! | no (live) session where one is required   | 401    | `unauthenticated`|
//! | CSRF token or origin check failed         | 403    | `forbidden`      |
//! | concurrent change kept winning            | 409    | `conflict`       |
//! | form body too large for the CSRF check    | 413    | `payload_too_large` |
//! | unreadable request body                   | 400    | `bad_request`    |
//! | [`SessionLayer`](crate::SessionLayer) not installed | 500 | `internal` |
//!
//! A store failure is never turned into 401 or 200: the answer is unknown,
//! so the request fails closed with 503 and the cause is logged (docs/design.md,
//! invariant 9), which also keeps it distinguishable from a bug (500).
//!
//! The body is JSON `{"error": …, "reason": …}` when the client accepts
//! JSON, and a short text line otherwise. Rejections produced inside a
//! handler (through `?`) are rendered as JSON and re-rendered by the layer
//! for clients that do not accept JSON.

use std::fmt;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{HeaderName, StatusCode};
use tessera::SessionError;
use tessera::csrf::CsrfRejection;

/// Why a request was refused. Converts from [`SessionError`], so handlers
/// can use `?` on session calls and return `Result<_, SessionRejection>`.
///
/// ```
/// use axum::response::IntoResponse;
/// use tessera::SessionError;
/// use tessera::policy::ExpiryReason;
/// use tessera_axum::SessionRejection;
///
/// let r = SessionRejection::from(SessionError::Expired { reason: ExpiryReason::Idle });
/// assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
/// assert_eq!(r.reason(), "expired_idle");
/// assert_eq!(r.into_response().status(), 401);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The session store (or the CSPRNG) failed: 503.
    Unavailable,
    /// A signed-in session is required: 401 with `reason`
    /// `expired_idle`, `expired_absolute` or `missing`.
    Unauthenticated {
        /// Why there is no usable session.
        reason: &'static str,
    },
    /// The CSRF guard refused the request: 403.
    Csrf(CsrfRejection),
    /// A concurrent change kept winning: 409, the client may retry.
    Conflict,
    /// The form body is larger than the CSRF form limit: 413.
    PayloadTooLarge,
    /// The request body could not be read: 400.
    BadRequest,
    /// The layer is missing or session data is corrupt: 500 (a bug or a
    /// misconfiguration, never a client error).
    Internal {
        /// What went wrong.
        reason: &'static str,
    },
}

/// Marker put on rendered rejections so the layer can re-render them in the
/// format the client accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rendered(pub(crate) SessionRejection);

impl SessionRejection {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Csrf(_) => StatusCode::FORBIDDEN,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field: a stable code for the class of failure.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Csrf(_) => "forbidden",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BadRequest => "bad_request",
            Self::Internal { .. } => "internal",
        }
    }

    /// The `reason` field: what exactly failed (for 401, `expired_idle`,
    /// `expired_absolute` or `missing`; for 403, the
    /// [`CsrfRejection::as_code`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "session_store",
            Self::Unauthenticated { reason } | Self::Internal { reason } => reason,
            Self::Csrf(r) => r.as_code(),
            Self::Conflict => "concurrent_modification",
            Self::PayloadTooLarge => "csrf_form_too_large",
            Self::BadRequest => "unreadable_body",
        }
    }

    /// The rejection a response was rendered from, if it was rendered by
    /// [`SessionRejection::render`] (by the layer's guard, its commit, or an
    /// extractor).
    ///
    /// This lets an application present the layer's refusals in its own
    /// format (an HTML error page, its own JSON error shape) from a
    /// middleware placed outside the [`SessionLayer`](crate::SessionLayer),
    /// without re-implementing any of the checks.
    ///
    /// ```
    /// use tessera_axum::SessionRejection;
    ///
    /// let response = SessionRejection::Unavailable.render(true);
    /// assert_eq!(SessionRejection::of(&response), Some(SessionRejection::Unavailable));
    /// assert_eq!(SessionRejection::of(&axum::response::Response::new(axum::body::Body::empty())), None);
    /// ```
    pub fn of<B>(response: &http::Response<B>) -> Option<Self> {
        response.extensions().get::<Rendered>().map(|r| r.0)
    }

    /// The response, as JSON when `json` is true, else as text.
    pub fn render(&self, json: bool) -> Response {
        let (content_type, body) = if json {
            let body = serde_json::json!({ "error": self.error_code(), "reason": self.reason() });
            ("application/json", body.to_string())
        } else {
            (
                "text/plain; charset=utf-8",
                format!("{}: {}\n", self.error_code(), self.reason()),
            )
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Error pages about sessions must not be cached either.
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if matches!(self, Self::Unavailable) {
            // A transient infrastructure failure: invite a retry.
            headers.insert(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("1"),
            );
        }
        response.extensions_mut().insert(Rendered(*self));
        response
    }
}

/// Whether the client accepts JSON (an `Accept` naming `application/json` or
/// a `+json` type). Browsers and `*/*` get text.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|v| {
        let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        v.split(',').any(|item| {
            let essence = item.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json")
        })
    })
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_code(), self.reason())
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        self.render(true)
    }
}

impl From<CsrfRejection> for SessionRejection {
    fn from(r: CsrfRejection) -> Self {
        Self::Csrf(r)
    }
}

impl From<SessionError> for SessionRejection {
    /// Maps a core error, logging infrastructure failures (they are the
    /// operator's business, not the client's).
    fn from(e: SessionError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "session store failure: failing the request closed (503)");
            return Self::Unavailable;
        }
        if let Some(reason) = e.reason_code() {
            return Self::Unauthenticated { reason };
        }
        match e {
            SessionError::Conflict => Self::Conflict,
            SessionError::Data(err) => {
                tracing::error!(error = %err, "session data does not have the expected type");
                Self::Internal {
                    reason: "session_data",
                }
            }
            // `SessionError` is non-exhaustive: anything new is treated as
            // an unknown answer, failing closed.
            other => {
                tracing::error!(error = %other, "unexpected session error: failing closed (503)");
                Self::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::StoreError;

    #[test]
    fn store_errors_are_503_never_401() {
        let r = SessionRejection::from(SessionError::Store(StoreError::Timeout));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn unknown_session_is_401_missing() {
        let r = SessionRejection::from(SessionError::NotFound);
        assert_eq!(r, SessionRejection::Unauthenticated { reason: "missing" });
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(ACCEPT, HeaderValue::from_static("text/html, */*;q=0.8"));
        assert!(!wants_json(&h));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/problem+json; q=1"),
        );
        assert!(wants_json(&h));
        h.insert(ACCEPT, HeaderValue::from_static("Application/JSON"));
        assert!(wants_json(&h));
    }
}
