//! What registration and refresh answer: the bound cookie to set, the
//! session config, a challenge, or why it failed for good.

use std::time::Duration;

use super::proof::ProofError;
use super::store::DbscBinding;
use crate::error::{SessionError, StoreError};

/// A bound cookie to set.
#[derive(Debug, Clone)]
pub struct BoundCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value (a secret).
    pub value: String,
    /// `Max-Age`.
    pub max_age: Duration,
    /// The attributes (see [`DbscConfig::cookie_attributes`](super::DbscConfig::cookie_attributes)).
    pub attributes: String,
}

impl BoundCookie {
    /// The `Set-Cookie` value.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Max-Age={}; {}",
            self.name,
            self.value,
            self.max_age.as_secs(),
            self.attributes
        )
    }
}

/// A successful registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The binding stored.
    pub binding: DbscBinding,
    /// The first bound cookie.
    pub cookie: BoundCookie,
    /// The session config JSON (W3C DBSC "session instructions").
    pub config: serde_json::Value,
}

/// The answer to a refresh.
#[derive(Debug, Clone)]
#[must_use]
pub enum RefreshOutcome {
    /// A fresh proof verified: set this cookie and answer with the session
    /// config (200).
    Refreshed {
        /// The new bound cookie.
        cookie: BoundCookie,
        /// The session config JSON ([`Dbsc::session_config`](super::Dbsc::session_config)).
        config: serde_json::Value,
    },
    /// No fresh proof: answer 403 with this `Secure-Session-Challenge`
    /// value. `refused` says why a proof that was sent did not count.
    Challenge {
        /// The field value.
        header: String,
        /// Why the proof sent (if any) was refused.
        refused: Option<ProofError>,
    },
}

/// Why registration or refresh failed for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbscError {
    /// The registration proof was refused (bad proof, unknown or used
    /// challenge). Nothing was stored.
    #[error("registration refused: {0}")]
    Refused(ProofError),
    /// The registration proof named no live challenge (wrong, replayed or
    /// expired `jti`). Nothing was stored.
    #[error("registration challenge unknown, used or expired")]
    StaleChallenge,
    /// The session is already bound; it cannot be bound again.
    #[error("session already bound")]
    AlreadyBound,
    /// Refresh of a session that is not bound (or under another DBSC
    /// session id): the browser should end its DBSC session.
    #[error("no such device-bound session")]
    NotBound,
    /// A proof from another key: the session has been revoked.
    #[error("proof from another key; session revoked")]
    KeyMismatch,
    /// Store or randomness failure.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<StoreError> for DbscError {
    fn from(e: StoreError) -> Self {
        Self::Session(SessionError::Store(e))
    }
}
