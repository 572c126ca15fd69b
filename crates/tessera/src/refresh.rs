//! Rotating refresh tokens with reuse (theft) detection — RFC 9700 §4.14.2,
//! ASVS 5.0 V10.4.5/V10.4.8/V10.4.9.
//!
//! A **family** of refresh tokens belongs to one session (its public
//! handle). Every refresh returns a new refresh token (the *child*) and
//! marks the presented one (the *parent*) as used; the store remembers the
//! link. Presenting a used token again means two parties hold the same
//! token — the client and a thief, and the server cannot tell which is
//! which — so the whole family **and its session** are revoked and the
//! event is audited as `refresh_reuse_detected`.
//!
//! # Lost responses and racing tabs
//!
//! A client whose refresh response was lost (or two tabs refreshing at the
//! same moment) presents the parent twice. Treating that as theft logs
//! users out for nothing (supabase/auth-js#213). tessera allows a short
//! **grace period** ([`crate::SessionPolicy::refresh_grace`], default 10 s):
//! within it, a used parent whose child has not been used yet returns *the
//! same child* again, so there is still exactly one lineage. The child can
//! be returned again without being stored because the store keeps it
//! **sealed** with a key derived from the parent's secret
//! ([`crate::token::RefreshToken::seal_child`]): only a holder of the
//! parent can unseal it, and a store dump yields nothing usable.
//!
//! The trade-off, stated plainly: during the grace period a thief who
//! stole the parent and presents it gets the same child as the client, and
//! the theft is detected only when both use that child (the second use is a
//! reuse). Outside the grace period, or once the child has been used, any
//! presentation of the parent revokes the family at once. The alternative,
//! committing the child only on its first use (SuperTokens), has the same
//! window in a different place; the grace period keeps the store logic a
//! single compare-and-set.
//!
//! Refresh tokens expire with their session's absolute deadline (V10.4.8:
//! an absolute expiry even when activity slides), and a refresh counts as
//! activity on the session. Revoking the session (sign-out, revoke by
//! handle, revoke-all) makes its refresh tokens unusable at once: a
//! refresh requires the session to be live.
//!
//! The flows themselves (issue, refresh, revoke, introspect) are methods of
//! [`crate::SessionManager`]; this module holds what they and the stores
//! share: the stored records, the [`RefreshStore`] contract and the
//! outcome types.
//!
//! A sign-in gives the session a new handle (a new identity, see
//! [`crate::Renewal::Login`]), so a family issued before it has no live
//! session any more and is refused; as a second line, a refresh also
//! refuses when the family's user is not the session's user.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{SessionError, StoreError};
pub use crate::policy::DEFAULT_REFRESH_GRACE;
use crate::record::{SessionHandle, SessionRecord};
use crate::time::Timestamp;
use crate::token::{RefreshToken, SECRET_LEN, TokenHash};

/// One refresh token as stored: keyed by its hash, never by the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Hash of the refresh token.
    pub hash: TokenHash,
    /// The family: the public handle of the session it belongs to.
    pub family: SessionHandle,
    /// The session's user.
    pub user_id: Option<String>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops working whatever happens (the session's absolute
    /// deadline).
    pub expires_at: Timestamp,
    /// Set once the token has been exchanged.
    pub used: Option<UsedRefresh>,
}

/// What a used refresh token remembers about its exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedRefresh {
    /// When it was exchanged.
    pub at: Timestamp,
    /// Hash of the child it was exchanged for.
    pub child: TokenHash,
    /// The child, sealed with a key only the parent's holder can derive.
    pub sealed_child: [u8; SECRET_LEN],
}

/// Result of [`RefreshStore::use_refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum RefreshUse {
    /// The parent was unused: it is now marked used and the child is stored.
    Rotated,
    /// The parent had been used before; nothing changed.
    AlreadyUsed(UsedRefresh),
    /// No live refresh token under that hash (unknown or expired); nothing
    /// changed.
    Unknown,
}

/// Storage of refresh-token families. Every backend that implements
/// [`crate::Store`] implements this too and runs
/// `tessera::testkit::run_refresh_all` unchanged.
#[async_trait]
pub trait RefreshStore: Send + Sync + 'static {
    /// Stores the first token of a family.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the hash exists; backend errors.
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError>;

    /// The refresh token under `hash`, used or not, possibly expired.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError>;

    /// Atomically: if the token under `parent` exists, is unexpired at
    /// `now` and unused, mark it used (at `now`, with `child.hash` and
    /// `sealed_child`) and insert `child`. Concurrent calls with the same
    /// parent: exactly one gets [`RefreshUse::Rotated`].
    ///
    /// # Errors
    ///
    /// Backend errors; on error either nothing changed or the rotation is
    /// complete.
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError>;

    /// Deletes every refresh token of a family; returns how many.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError>;

    /// The live-or-expired session with this handle, if stored.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError>;
}

/// A successful refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new refresh token (the same one again on a retry within the
    /// grace period).
    pub token: RefreshToken,
    /// The session, with the idle deadline moved by the activity.
    pub session: SessionRecord,
    /// True if this was a retry answered with the already-issued child.
    pub retried: bool,
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// Not a well-formed refresh token; no store was asked.
    #[error("malformed refresh token")]
    Malformed,
    /// Unknown, expired, or its session has ended.
    #[error("invalid refresh token")]
    Invalid,
    /// A used token was presented again: the family and its session were
    /// revoked (RFC 9700 §4.14.2). `user_id` is the session's user, so the
    /// caller can tell them (a security activity page, a notification).
    #[error("refresh token reuse detected; the session was revoked")]
    ReuseDetected {
        /// The user of the revoked session, if it had one.
        user_id: Option<String>,
    },
    /// Session-level failure (store, randomness).
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        Self::Session(SessionError::Store(e))
    }
}
