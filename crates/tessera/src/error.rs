//! Errors, one enum per concern. Each variant is something a caller can act
//! on; the HTTP mapping lives in one place in `tessera-axum`.

use std::error::Error as StdError;

use crate::policy::ExpiryReason;
pub use crate::random::RandomError;
use crate::token::MalformedToken;

/// A boxed error from a store backend.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A store could not do what was asked.
///
/// Every variant means "the answer is unknown": callers must fail closed
/// (HTTP 503), never treat the request as authenticated or anonymous.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, pool exhausted,
    /// node down).
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The backend did not answer in time.
    #[error("session store timed out")]
    Timeout,
    /// A stored record could not be decoded.
    #[error("corrupt session record: {0}")]
    Corrupt(String),
    /// A record with this key or handle already exists.
    #[error("duplicate session key")]
    Duplicate,
    /// Compare-and-set kept failing under contention.
    #[error("too much contention on one session")]
    Contention,
    /// Any other backend failure.
    #[error("session store error: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Backend`].
    pub fn backend(e: impl Into<BoxError>) -> Self {
        Self::Backend(e.into())
    }

    /// Wraps a connection-level error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }
}

/// Why a session could not be used for a request.
///
/// ```
/// use tessera::error::SessionError;
/// use tessera::policy::ExpiryReason;
///
/// let e = SessionError::Expired { reason: ExpiryReason::Idle };
/// assert_eq!(e.reason_code(), Some("expired_idle"));
/// assert!(!e.is_unavailable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The presented token is not well-formed; no store was asked.
    #[error("malformed session token: {0}")]
    Malformed(#[from] MalformedToken),
    /// No such session (never existed, signed out, revoked or purged).
    #[error("unknown session")]
    NotFound,
    /// The session ended by its own sign-out (a tombstone remembers it;
    /// see [`crate::ended`]).
    #[error("session signed out")]
    SignedOut,
    /// The session was revoked (device list, password change, an
    /// administrator, …; see [`crate::ended`]).
    #[error("session revoked ({})", by.as_code())]
    Revoked {
        /// Who or what revoked it.
        by: crate::ended::Revocation,
    },
    /// The session ended.
    #[error("session expired ({})", reason.as_code())]
    Expired {
        /// Idle or absolute.
        reason: ExpiryReason,
    },
    /// The operation needs a signed-in user.
    #[error("not signed in")]
    Unauthenticated,
    /// A concurrent change won and retrying did not help.
    #[error("concurrent modification")]
    Conflict,
    /// The user already holds
    /// [`max_sessions_per_user`](crate::SessionPolicy::max_sessions_per_user)
    /// sessions and the policy is
    /// [`RefuseNew`](crate::policy::SessionLimitAction::RefuseNew); no
    /// session was created or changed.
    #[error("the user holds the maximum number of sessions")]
    SessionLimit,
    /// A value could not be (de)serialized.
    #[error("session data error: {0}")]
    Data(#[from] serde_json::Error),
    /// The session data would exceed the policy's
    /// [`max_data_bytes`](crate::SessionPolicy::max_data_bytes); nothing
    /// was written.
    #[error("session data larger than {limit} bytes")]
    DataTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The store failed; the request must fail closed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The OS CSPRNG failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The operation needs something this manager was not configured with.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A user id that breaks the rule of [`crate::user_id`] (empty, too
    /// long, control characters); nothing was written.
    #[error(transparent)]
    InvalidUserId(#[from] crate::user_id::InvalidUserId),
}

impl SessionError {
    /// True when the failure is the infrastructure's, not the client's
    /// (HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Random(_))
    }

    /// The `reason` code reported to clients for an unusable session:
    /// `signed_out`, `revoked`, `expired_idle`, `expired_absolute` or
    /// `missing`.
    pub fn reason_code(&self) -> Option<&'static str> {
        match self {
            Self::Expired { reason } => Some(reason.as_code()),
            Self::SignedOut => Some("signed_out"),
            Self::Revoked { .. } => Some("revoked"),
            Self::NotFound | Self::Malformed(_) | Self::Unauthenticated => Some("missing"),
            _ => None,
        }
    }
}
