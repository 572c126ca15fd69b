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
//! A sign-in gives the session a new handle (a new identity, see
//! [`crate::Renewal::Login`]), so a family issued before it has no live
//! session any more and is refused; as a second line, a refresh also
//! refuses when the family's user is not the session's user.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditKind};
use crate::ended::Revocation;
use crate::error::{SessionError, StoreError};
use crate::manager::SessionManager;
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

impl SessionManager {
    fn refresh_store(&self) -> Result<&dyn RefreshStore, SessionError> {
        self.refresh_backend().ok_or(SessionError::Unsupported(
            "this manager has no refresh store (SessionManagerBuilder::refresh_store)",
        ))
    }

    /// Issues the first refresh token of `session`'s family. It expires
    /// with the session's absolute deadline.
    ///
    /// # Errors
    ///
    /// Store and randomness errors; [`SessionError::Unsupported`] without a
    /// refresh store.
    pub async fn issue_refresh(
        &self,
        session: &SessionRecord,
    ) -> Result<RefreshToken, SessionError> {
        let store = self.refresh_store()?;
        let token = RefreshToken::generate()?;
        let record = RefreshRecord {
            hash: token.hash(),
            family: session.handle.clone(),
            user_id: session.user_id.clone(),
            issued_at: self.now(),
            expires_at: session.deadlines.absolute,
            used: None,
        };
        store.insert_refresh(&record).await?;
        Ok(token)
    }

    /// Exchanges a refresh token for a new one (RFC 9700 rotation), with
    /// reuse detection and the grace period described in the
    /// [module docs](self).
    ///
    /// The order of checks matters: the format first (no store call for
    /// junk), then the token, then its session (a revoked session kills its
    /// tokens at once), and only then the exchange itself, so a refused
    /// request changes nothing — except a detected reuse, which revokes.
    ///
    /// # Errors
    ///
    /// [`RefreshError`].
    pub async fn refresh(&self, presented: &str) -> Result<Refreshed, RefreshError> {
        let parent = RefreshToken::parse(presented).map_err(|_| RefreshError::Malformed)?;
        let store = self.refresh_store()?;
        let now = self.now();
        let Some(record) = store.load_refresh(&parent.hash()).await? else {
            return Err(RefreshError::Invalid);
        };
        if now >= record.expires_at {
            return Err(RefreshError::Invalid);
        }
        let session = match self.session_of(&record).await? {
            Some(s) if s.user_id == record.user_id => s,
            Some(_) => {
                // The family was issued to another user than the one the
                // session now belongs to. A sign-in mints a new handle, so
                // this should not happen; if it does, the tokens must not
                // mint credentials for the new user (session fixation moved
                // to the refresh token).
                store.delete_refresh_family(&record.family).await?;
                return Err(RefreshError::Invalid);
            }
            None => {
                // The session ended: its tokens are worthless; tidy up.
                store.delete_refresh_family(&record.family).await?;
                return Err(RefreshError::Invalid);
            }
        };
        let used = match record.used.clone() {
            Some(used) => used,
            None => {
                let child = RefreshToken::generate().map_err(SessionError::from)?;
                let child_record = RefreshRecord {
                    hash: child.hash(),
                    family: record.family.clone(),
                    user_id: record.user_id.clone(),
                    issued_at: now,
                    expires_at: record.expires_at,
                    used: None,
                };
                let sealed = parent.seal_child(&child);
                match store
                    .use_refresh(&parent.hash(), &child_record, &sealed, now)
                    .await?
                {
                    RefreshUse::Rotated => {
                        let session = self.touch(session).await?;
                        audit::emit(
                            AuditKind::Refreshed,
                            Some(&record.family),
                            record.user_id.as_deref(),
                            "",
                        );
                        return Ok(Refreshed {
                            token: child,
                            session,
                            retried: false,
                        });
                    }
                    RefreshUse::Unknown => return Err(RefreshError::Invalid),
                    // Lost a race with a concurrent refresh of the same
                    // token: handled like any second presentation.
                    RefreshUse::AlreadyUsed(used) => used,
                }
            }
        };
        self.second_presentation(&parent, &record, used, session, now)
            .await
    }

    /// A used parent presented again: the same child within the grace
    /// period if that child is still unused, otherwise theft.
    async fn second_presentation(
        &self,
        parent: &RefreshToken,
        record: &RefreshRecord,
        used: UsedRefresh,
        session: SessionRecord,
        now: Timestamp,
    ) -> Result<Refreshed, RefreshError> {
        let store = self.refresh_store()?;
        let grace = self.policy().refresh_grace;
        let within_grace = now < used.at + grace;
        let child_unused = match store.load_refresh(&used.child).await? {
            Some(child) => child.used.is_none(),
            None => false,
        };
        if within_grace && child_unused {
            let child = parent.unseal_child(&used.sealed_child);
            // Integrity check: the unsealed token must be the stored child.
            if child.hash() == used.child {
                return Ok(Refreshed {
                    token: child,
                    session,
                    retried: true,
                });
            }
        }
        self.revoke_family(&record.family, Revocation::RefreshReuse)
            .await?;
        audit::emit(
            AuditKind::RefreshReuseDetected,
            Some(&record.family),
            session.user_id.as_deref(),
            "a used refresh token was presented again; family and session revoked",
        );
        Err(RefreshError::ReuseDetected {
            user_id: record.user_id.clone(),
        })
    }

    /// The live session a refresh family belongs to.
    async fn session_of(
        &self,
        record: &RefreshRecord,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let store = self.refresh_store()?;
        let Some(session) = store.load_session_by_handle(&record.family).await? else {
            return Ok(None);
        };
        match self.load_hash(&session.hash).await {
            Ok(s) => Ok(Some(s)),
            Err(
                SessionError::NotFound
                | SessionError::Expired { .. }
                | SessionError::SignedOut
                | SessionError::Revoked { .. },
            ) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Revokes a session and every refresh token of its family (RFC 7009
    /// revocation of a refresh token revokes the grant). The audit event
    /// names the session's real owner, read from the store, not a user a
    /// caller or a token claims.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn revoke_family(
        &self,
        family: &SessionHandle,
        why: Revocation,
    ) -> Result<(), SessionError> {
        let store = self.refresh_store()?;
        let owner = store
            .load_session_by_handle(family)
            .await?
            .and_then(|s| s.user_id);
        // Session first: once it is gone no refresh can succeed, even if
        // deleting the tokens fails half-way.
        self.revoke(family, None, why).await?;
        store.delete_refresh_family(family).await?;
        audit::emit(
            AuditKind::Revoked,
            Some(family),
            owner.as_deref(),
            "refresh family",
        );
        Ok(())
    }

    /// Revokes the family of a presented refresh token (RFC 7009: an
    /// unknown or malformed token is not an error). Returns whether a
    /// family was revoked.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn revoke_refresh(&self, presented: &str) -> Result<bool, SessionError> {
        let Ok(token) = RefreshToken::parse(presented) else {
            return Ok(false);
        };
        let store = self.refresh_store()?;
        let Some(record) = store.load_refresh(&token.hash()).await? else {
            return Ok(false);
        };
        // The client gave up its grant (RFC 7009).
        self.revoke_family(&record.family, Revocation::Other)
            .await?;
        Ok(true)
    }

    /// Whether a presented refresh token is currently usable, and its
    /// record and session (RFC 7662 introspection). Report the session's
    /// user: a token whose family was issued to another user than the
    /// session's is not usable (see [`SessionManager::refresh`]) and is
    /// answered `None`. Never changes anything.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn introspect_refresh(
        &self,
        presented: &str,
    ) -> Result<Option<(RefreshRecord, SessionRecord)>, SessionError> {
        let Ok(token) = RefreshToken::parse(presented) else {
            return Ok(None);
        };
        let store = self.refresh_store()?;
        let Some(record) = store.load_refresh(&token.hash()).await? else {
            return Ok(None);
        };
        if record.used.is_some() || self.now() >= record.expires_at {
            return Ok(None);
        }
        // Through `session_of`, so expiry and the kill switches apply
        // exactly as they do to a refresh.
        let session = match self.session_of(&record).await? {
            Some(s) if s.user_id == record.user_id => s,
            _ => return Ok(None),
        };
        Ok(Some((record, session)))
    }
}

/// Default grace period for retried refreshes.
pub const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(10);
