//! The one place where session, CSRF and store failures become HTTP
//! responses — for the layer, and for `tessera serve`, which converts from
//! [`SessionRejection`] instead of classifying errors itself.
//!
//! | failure                                   | status | `error`          | `reason` |
//! |-------------------------------------------|--------|------------------|----------|
//! | store unavailable, CSPRNG failure, any unclassified error | 503 | `unavailable` | `session_store` |
//! | no (live) session where one is required   | 401    | `unauthenticated`| `expired_idle`, `expired_absolute`, `signed_out`, `revoked`, `device_unbound`, `missing` |
//! | CSRF token or origin check failed         | 403    | `csrf_rejected`  | [`CsrfRejection::as_code`] |
//! | concurrent change kept winning            | 409    | `conflict`       | `concurrent_modification` |
//! | sign-in over the per-user session limit   | 409    | `session_limit`  | `session_limit` |
//! | session data over the size limit          | 413    | `data_too_large` | `data_too_large` |
//! | form body too large for the CSRF check    | 413    | `payload_too_large` | `csrf_form_too_large` |
//! | unreadable request body                   | 400    | `invalid_body`   | `unreadable_body` |
//! | a user id against the rule of [`tessera::user_id`] | 400 | `invalid_user_id` | `invalid_user_id` |
//! | [`SessionLayer`](crate::SessionLayer) not installed, stored data of the wrong type | 500 | `internal` | `session_layer_missing`, `session_data`, … |
//!
//! A store failure is never turned into 401 or 200: the answer is unknown,
//! so the request fails closed with 503 and the cause is logged (docs/design.md,
//! invariant 9), which also keeps it distinguishable from a bug (500). So
//! is any [`SessionError`] this mapping does not know (the enum is
//! non-exhaustive): only statements about the presented session are 401.
//!
//! The body is JSON `{"error": …, "reason": …, "message"?: …}` when the
//! client wants JSON ([`wants_json`]), and a short text line otherwise. An
//! application with its own formats plugs its renderer into the layer
//! ([`SessionConfig::with_renderer`](crate::SessionConfig::with_renderer));
//! rejections a handler returns through `?` are rendered by the layer too,
//! so every refusal is rendered once, by one function.

use std::fmt;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{HeaderName, StatusCode};
use tessera::SessionError;
use tessera::csrf::CsrfRejection;
use tessera::session::EndReason;

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
/// // Anything the mapping does not classify fails closed.
/// let r = SessionRejection::from(SessionError::Unsupported("refresh tokens"));
/// assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The session store (or the CSPRNG) failed, or the error is not
    /// classified: 503.
    Unavailable,
    /// A signed-in session is required: 401, with why there is none.
    Unauthenticated {
        /// Why there is no usable session ([`EndReason::Unknown`] when
        /// none was presented).
        reason: EndReason,
    },
    /// The CSRF guard refused the request: 403.
    Csrf(CsrfRejection),
    /// A concurrent change kept winning: 409, the client may retry.
    Conflict,
    /// A sign-in was refused: the user holds the maximum number of
    /// sessions and the policy refuses new ones: 409.
    SessionLimit,
    /// The session data would exceed the policy's limit: 413; nothing was
    /// written.
    DataTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A user id that breaks the rule of [`tessera::user_id`]: 400;
    /// nothing was written.
    InvalidUserId,
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

/// Marker put on rendered rejections so the layer renders a rejection a
/// handler returned with the configured renderer, in the format the
/// client wants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rendered(pub(crate) SessionRejection);

impl SessionRejection {
    /// No session was presented, or it is unknown: 401 `missing`.
    pub const MISSING: Self = Self::Unauthenticated {
        reason: EndReason::Unknown,
    };

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Csrf(_) => StatusCode::FORBIDDEN,
            Self::Conflict | Self::SessionLimit => StatusCode::CONFLICT,
            Self::DataTooLarge { .. } | Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest | Self::InvalidUserId => StatusCode::BAD_REQUEST,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field: a stable code for the class of failure, the same
    /// on every surface of tessera (the layer, `tessera serve`'s site and
    /// `/v1`).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Csrf(_) => "csrf_rejected",
            Self::Conflict => "conflict",
            Self::SessionLimit => "session_limit",
            Self::DataTooLarge { .. } => "data_too_large",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BadRequest => "invalid_body",
            Self::InvalidUserId => "invalid_user_id",
            Self::Internal { .. } => "internal",
        }
    }

    /// The `reason` field: what exactly failed (for 401 the
    /// [`EndReason::as_code`]; for 403 the [`CsrfRejection::as_code`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "session_store",
            Self::Unauthenticated { reason } => reason.as_code(),
            Self::Internal { reason } => reason,
            Self::Csrf(r) => r.as_code(),
            Self::Conflict => "concurrent_modification",
            Self::SessionLimit => "session_limit",
            Self::DataTooLarge { .. } => "data_too_large",
            Self::PayloadTooLarge => "csrf_form_too_large",
            Self::BadRequest => "unreadable_body",
            Self::InvalidUserId => "invalid_user_id",
        }
    }

    /// For a revoked session, who or what revoked it
    /// ([`tessera::Revocation::as_code`]), so a page can say it in words.
    ///
    /// ```
    /// use tessera::{Revocation, SessionError};
    /// use tessera_axum::SessionRejection;
    /// let r = SessionRejection::from(SessionError::Revoked { by: Revocation::PasswordChanged });
    /// assert_eq!(r.revoked_by(), Some("password_changed"));
    /// ```
    pub fn revoked_by(&self) -> Option<&'static str> {
        match self {
            Self::Unauthenticated {
                reason: EndReason::Revoked(by),
            } => Some(by.as_code()),
            _ => None,
        }
    }

    /// A sentence for people, where the code alone says too little.
    pub fn message(&self) -> Option<String> {
        Some(match self {
            Self::Unavailable => "the session store is not available; try again".to_owned(),
            Self::Conflict => "the session changed concurrently; retry".to_owned(),
            Self::SessionLimit => {
                "the user holds the maximum number of sessions; sign out elsewhere first".to_owned()
            }
            Self::DataTooLarge { limit } => {
                format!("the session data would exceed {limit} bytes; nothing was changed")
            }
            Self::PayloadTooLarge => {
                "the request body is larger than the configured limit".to_owned()
            }
            Self::BadRequest => "the request body could not be read".to_owned(),
            Self::InvalidUserId => tessera::user_id::InvalidUserId.to_string(),
            _ => return None,
        })
    }

    /// `Retry-After` seconds: 1 for a transient infrastructure failure.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Unavailable).then_some(1)
    }

    /// The rejection a response was rendered from by
    /// [`SessionRejection::render`], if any.
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

    /// The default rendering: JSON when `json` is true, else a text line.
    /// `Cache-Control: no-store` always; `Retry-After` on 503.
    pub fn render(&self, json: bool) -> Response {
        let (content_type, body) = if json {
            let mut body = serde_json::Map::new();
            body.insert("error".into(), self.error_code().into());
            body.insert("reason".into(), self.reason().into());
            if let Some(by) = self.revoked_by() {
                body.insert("revoked_by".into(), by.into());
            }
            if let Some(message) = self.message() {
                body.insert("message".into(), message.into());
            }
            (
                "application/json",
                serde_json::Value::Object(body).to_string(),
            )
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
        if let Some(secs) = self.retry_after() {
            headers.insert(
                HeaderName::from_static("retry-after"),
                HeaderValue::from(secs),
            );
        }
        response.extensions_mut().insert(Rendered(*self));
        response
    }
}

/// Whether the client wants JSON back: a JSON request body
/// (`Content-Type: application/json` or `…+json`), or an `Accept` naming
/// `application/json` or a `+json` type. Browsers and `*/*` get text (or
/// the application's HTML).
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// let mut h = HeaderMap::new();
/// assert!(!tessera_axum::wants_json(&h));
/// h.insert("accept", HeaderValue::from_static("text/html, */*;q=0.8"));
/// assert!(!tessera_axum::wants_json(&h));
/// h.insert("content-type", HeaderValue::from_static("application/json"));
/// assert!(tessera_axum::wants_json(&h));
/// ```
pub fn wants_json(headers: &HeaderMap) -> bool {
    // On the raw bytes, without decoding or lower-casing copies: this runs
    // on every request. Media types are ASCII and case-insensitive
    // (RFC 9110 §8.3.1); a non-ASCII byte simply matches nothing.
    fn is_json(media_type: &[u8]) -> bool {
        let essence = media_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let suffix = essence
            .len()
            .checked_sub(5)
            .and_then(|at| essence.get(at..));
        essence.eq_ignore_ascii_case(b"application/json")
            || suffix.is_some_and(|s| s.eq_ignore_ascii_case(b"+json"))
    }
    let body_is_json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| is_json(v.as_bytes()));
    body_is_json
        || headers
            .get_all(ACCEPT)
            .iter()
            .any(|v| v.as_bytes().split(|&b| b == b',').any(is_json))
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_code(), self.reason())
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    /// JSON, marked so the layer renders it again with its renderer, in
    /// the format the client wants.
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
    /// The one classification of core errors. Infrastructure failures are
    /// logged (they are the operator's business, not the client's).
    fn from(e: SessionError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "session store failure: failing the request closed (503)");
            return Self::Unavailable;
        }
        let reason = match e {
            SessionError::Expired { reason } => EndReason::Expired(reason),
            SessionError::SignedOut => EndReason::SignedOut,
            SessionError::Revoked { by } => EndReason::Revoked(by),
            SessionError::NotFound | SessionError::Unauthenticated => EndReason::Unknown,
            SessionError::Malformed(_) => EndReason::Malformed,
            SessionError::Conflict => return Self::Conflict,
            SessionError::SessionLimit => return Self::SessionLimit,
            SessionError::DataTooLarge { limit } => return Self::DataTooLarge { limit },
            SessionError::InvalidUserId(_) => return Self::InvalidUserId,
            SessionError::Data(err) => {
                tracing::error!(error = %err, "session data does not have the expected type");
                return Self::Internal {
                    reason: "session_data",
                };
            }
            // `SessionError` is non-exhaustive, and some variants (a
            // capability this deployment lacks) say nothing about the
            // client's session: fail closed.
            other => {
                tracing::error!(error = %other, "unexpected session error: failing closed (503)");
                return Self::Unavailable;
            }
        };
        Self::Unauthenticated { reason }
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
        assert_eq!(r, SessionRejection::MISSING);
        assert_eq!(r.reason(), "missing");
    }

    /// Only statements about the presented session are 401; anything not
    /// classified is 503.
    #[test]
    fn unclassified_errors_fail_closed() {
        let status = |e: SessionError| SessionRejection::from(e).status();
        assert_eq!(
            status(SessionError::Unsupported("refresh tokens")),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(SessionError::Random(tessera::error::RandomError)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(SessionError::SignedOut), StatusCode::UNAUTHORIZED);
        assert_eq!(status(SessionError::SessionLimit), StatusCode::CONFLICT);
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
