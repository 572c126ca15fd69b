//! The refresh-token flows of [`SessionManager`]: issue, rotate with reuse
//! detection, revoke and introspect. The scheme, and the storage contract
//! these flows run on, are in [`crate::refresh`].

use crate::audit::{self, AuditKind};
use crate::ended::Revocation;
use crate::error::SessionError;
use crate::record::{SessionHandle, SessionRecord};
use crate::refresh::{
    RefreshError, RefreshRecord, RefreshStore, RefreshUse, Refreshed, UsedRefresh,
};
use crate::time::Timestamp;
use crate::token::RefreshToken;

use super::SessionManager;

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
    /// [`crate::refresh`] module docs.
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
