//! Rotation, sign-in on an existing session, sign-out, revocation (one,
//! a user's, everyone's) and the per-user session cap.

use crate::audit::{self, AuditKind};
use crate::csrf::CsrfSecret;
use crate::ended::{Ended, Revocation};
use crate::error::SessionError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::{SessionClass, SessionLimitAction};
use crate::record::{Data, DataChanges, SessionHandle, SessionRecord};
use crate::store::CasOutcome;
use crate::time::Timestamp;
use crate::token::{SessionToken, TokenHash};
use crate::user_id::UserId;

use super::{Issued, ROTATE_ATTEMPTS, Renewal, SessionManager, sign_in_stamp};

impl SessionManager {
    /// Replaces the session's token (and CSRF secret) atomically: the old
    /// token stops working at the same instant the new one starts, and on
    /// failure the old session is intact. ASVS 5.0 V7.2.4; OWASP: renew the
    /// ID on every privilege change.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`]/[`SessionError::Expired`] if the session
    /// ended, [`SessionError::Conflict`] under persistent contention, store
    /// errors.
    pub async fn rotate(
        &self,
        hash: &TokenHash,
        renewal: Renewal,
        pending: &DataChanges,
    ) -> Result<Issued, SessionError> {
        self.rotate_with_class(hash, renewal, pending, None).await
    }

    /// [`SessionManager::rotate`], also choosing the session's lifetime
    /// class: `Some(class)` sets it (with fresh deadlines of that class) on
    /// a sign-in or re-authentication, `None` keeps the session's class. A
    /// plain [`Renewal::Rotate`] never changes the class or the absolute
    /// deadline, so `class` must be `None` for it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::{Renewal, SessionManager, SessionPolicy};
    /// use tessera::policy::SessionClass;
    /// use tessera::record::DataChanges;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let day = Duration::from_secs(24 * 3600);
    /// let policy = SessionPolicy::default().with_remember(day, 30 * day);
    /// let manager = SessionManager::builder(MemoryStore::new()).policy(policy).build()?;
    /// let anonymous = manager.create(None, Default::default(), Default::default()).await?;
    /// let login = Renewal::Login { user_id: "alice".into() };
    /// let issued = manager
    ///     .rotate_with_class(&anonymous.record.hash, login, &DataChanges::default(),
    ///         Some(SessionClass::Remember))
    ///     .await?;
    /// assert_eq!(issued.record.class, SessionClass::Remember);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::rotate`]; [`SessionError::Unsupported`] for a
    /// class the policy does not offer, or a class with
    /// [`Renewal::Rotate`] (nothing is written).
    pub async fn rotate_with_class(
        &self,
        hash: &TokenHash,
        renewal: Renewal,
        pending: &DataChanges,
        class: Option<SessionClass>,
    ) -> Result<Issued, SessionError> {
        self.rotate_checked(hash, renewal, pending, class, None)
            .await
    }

    /// A sign-in on an existing session ([`Renewal::Login`]) whose
    /// credential check started at `checked_at`: see
    /// [`SessionManager::create_signed_in`] for why that instant matters.
    ///
    /// # Errors
    ///
    /// As [`SessionManager::rotate_with_class`].
    pub async fn sign_in_checked(
        &self,
        hash: &TokenHash,
        user_id: String,
        pending: &DataChanges,
        class: Option<SessionClass>,
        checked_at: Timestamp,
    ) -> Result<Issued, SessionError> {
        self.rotate_checked(
            hash,
            Renewal::Login { user_id },
            pending,
            class,
            Some(checked_at),
        )
        .await
    }

    pub(super) async fn rotate_checked(
        &self,
        hash: &TokenHash,
        renewal: Renewal,
        pending: &DataChanges,
        class: Option<SessionClass>,
        checked_at: Option<Timestamp>,
    ) -> Result<Issued, SessionError> {
        if let Renewal::Login { user_id } = &renewal {
            UserId::check(user_id)?;
        }
        if let Some(class) = class {
            self.check_class(class)?;
            if renewal == Renewal::Rotate {
                return Err(SessionError::Unsupported(
                    "a plain rotation keeps the session's lifetime class",
                ));
            }
        }
        for _ in 0..ROTATE_ATTEMPTS {
            let current = self.load_hash(hash).await?;
            let now = self.now();
            let token = SessionToken::generate()?;
            let mut next = current.clone();
            next.hash = token.hash();
            next.version = current.version.saturating_add(1);
            next.csrf_secret = CsrfSecret::generate()?;
            next.last_seen_at = now;
            match &renewal {
                Renewal::Rotate => {
                    next.deadlines.idle = self.inner.policy.idle_deadline_for(
                        current.class,
                        now,
                        current.deadlines.absolute,
                    );
                }
                Renewal::Login { user_id } => {
                    if current.user_id.as_deref().is_some_and(|u| u != user_id) {
                        next.data = Data::new();
                    }
                    // A new identity: the store retires the earlier handle
                    // in the same atomic step as the earlier token.
                    next.handle = SessionHandle::generate()?;
                    next.user_id = Some(user_id.clone());
                    let signed_in_at = sign_in_stamp(now, checked_at);
                    next.created_at = signed_in_at;
                    next.authenticated_at = Some(signed_in_at);
                    next.class = class.unwrap_or(current.class);
                    next.deadlines = self.inner.policy.deadlines_for(next.class, now);
                }
                Renewal::Reauthenticate => {
                    next.authenticated_at = Some(now);
                    next.class = class.unwrap_or(current.class);
                    next.deadlines = self.inner.policy.deadlines_for(next.class, now);
                }
            }
            pending.apply(&mut next.data);
            if let Renewal::Login { user_id } = &renewal {
                self.refuse_at_limit(user_id, &current.handle, now).await?;
            }
            match self
                .inner
                .store
                .rotate(hash, current.version, &next, now)
                .await?
            {
                CasOutcome::Applied => {
                    let kind = match renewal {
                        Renewal::Reauthenticate => AuditKind::Reauthenticated,
                        _ => AuditKind::Rotated,
                    };
                    let detail = if next.handle == current.handle {
                        String::new()
                    } else {
                        // A sign-in: name the identity it replaced.
                        format!("sign-in; replaces {}", current.handle)
                    };
                    audit::emit(kind, Some(&next.handle), next.user_id.as_deref(), &detail);
                    if let Renewal::Login { user_id } = &renewal {
                        self.retire_identity(&current).await;
                        self.enforce_session_limit(user_id, &next.handle).await?;
                    }
                    return Ok(Issued {
                        token,
                        record: next,
                    });
                }
                CasOutcome::Missing => return Err(SessionError::NotFound),
                CasOutcome::Conflict => continue,
            }
        }
        Err(SessionError::Conflict)
    }

    /// Tidies up after a sign-in replaced `earlier` with a new identity:
    /// deletes the earlier handle's refresh-token family. Not needed for
    /// safety — a refresh requires a live session under the family's
    /// handle, and the rotation removed that handle atomically with the
    /// earlier token — so a failure here is only logged.
    pub(super) async fn retire_identity(&self, earlier: &SessionRecord) {
        if let Some(refresh) = self.refresh_backend() {
            if let Err(e) = refresh.delete_refresh_family(&earlier.handle).await {
                tracing::warn!(error = %e, "could not delete a retired refresh family");
            }
        }
    }

    /// Ends a session (sign-out). Returns whether it existed.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn destroy(&self, hash: &TokenHash) -> Result<bool, SessionError> {
        let existed = self.inner.store.end(hash, Ended::SignedOut).await?;
        if existed {
            audit::emit(AuditKind::Destroyed, None, None, &hash.fingerprint());
        }
        Ok(existed)
    }

    /// The user's live sessions, oldest first (for a device list).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn list_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, SessionError> {
        Ok(self.inner.store.list_by_user(user_id, self.now()).await?)
    }

    /// Revokes one session by handle; with `owner`, only if it belongs to
    /// that user (so a user cannot revoke someone else's session by
    /// guessing handles). Its token then answers `revoked` (with `why`)
    /// until its absolute deadline.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn revoke(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, SessionError> {
        let done = self
            .inner
            .store
            .delete_by_handle(handle, owner, why)
            .await?;
        if done {
            audit::emit(AuditKind::Revoked, Some(handle), owner, why.as_code());
        }
        Ok(done)
    }

    /// Revokes every session of a user, optionally keeping one (the
    /// caller's own, after a password change: ASVS 5.0 V7.4.3). Returns how
    /// many were revoked.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, SessionError> {
        let n = self
            .inner
            .store
            .delete_by_user(user_id, except, why)
            .await?;
        audit::emit(
            AuditKind::Revoked,
            except,
            Some(user_id),
            if except.is_some() {
                "all other sessions of the user"
            } else {
                "all sessions of the user"
            },
        );
        Ok(n)
    }

    /// The kill switch for one user (ASVS 5.0 V7.4.3): raises the user's
    /// not-before to `at` ([`crate::not_before`]), so that every session of
    /// the user created before `at` is refused at its next load, on every
    /// instance, including one a sign-in racing this call stores later;
    /// then deletes the user's sessions except `except` (tidying up, with
    /// tombstones saying `why`). Returns how many were deleted.
    ///
    /// Call it **after** the credential change (password, disable) has
    /// committed, with `at` read from [`SessionManager::now`] after the
    /// commit: a sign-in that read the old credential started before `at`
    /// and is refused (see [`SessionManager::create_signed_in`]). A session
    /// to keep (the one that changed the password) must have been re-issued
    /// at or after `at` first ([`crate::Session::login_checked`] or
    /// [`Renewal::Login`]); it is then both spared by `at` and named in
    /// `except`.
    ///
    /// ```
    /// use tessera::{Access, Revocation, SessionError, SessionManager};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(Some("alice".into()), Default::default(), Default::default()).await?;
    /// let at = tessera::time::Timestamp::from_millis(manager.now().as_millis() + 1);
    /// manager.revoke_user_before("alice", at, None, Revocation::PasswordChanged).await?;
    /// let refused = manager.load(issued.token.expose(), Access::Status).await;
    /// assert!(matches!(refused, Err(SessionError::Revoked { by: Revocation::PasswordChanged })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Store errors. If the not-before could not be set, nothing is
    /// deleted and the error says so: the caller must report the failure,
    /// never assume the sessions ended.
    pub async fn revoke_user_before(
        &self,
        user_id: &str,
        at: Timestamp,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, SessionError> {
        let in_force = self
            .inner
            .store
            .raise_not_before(Scope::User(user_id), NotBefore::new(at, why))
            .await?;
        audit::emit(
            AuditKind::Revoked,
            None,
            Some(user_id),
            &format!(
                "kill switch: sessions of the user created before {} ({})",
                in_force.at.to_rfc3339(),
                why.as_code()
            ),
        );
        // The switch already refuses them; deleting frees the records and
        // leaves tombstones. The switch holds even if this fails.
        match self.inner.store.delete_by_user(user_id, except, why).await {
            Ok(n) => Ok(n),
            Err(e) => {
                tracing::warn!(error = %e, "kill switch set; deleting the user's sessions failed");
                Ok(0)
            }
        }
    }

    /// The global kill switch, "sign everybody out" (ASVS 5.0 V7.4.5:
    /// terminate all active sessions, for example after a breach or a key
    /// compromise): raises the store-wide not-before to now
    /// ([`crate::not_before`]), so every session created before this call,
    /// of every user and anonymous, is refused at its next load on every
    /// instance, with `reason: "revoked"` and cause
    /// [`Revocation::Everyone`]. One O(1) store write whatever the number
    /// of sessions; refresh tokens die with their sessions (a refresh needs
    /// a loadable session). Refused records stay stored until they expire
    /// (Redis TTL, the SQL sweeper). Returns the not-before in force.
    /// Audited as one `revoked` event.
    ///
    /// ```
    /// use tessera::{Access, SessionManager};
    /// use tessera::record::{ClientMeta, Data};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(Some("alice".into()), Data::new(), ClientMeta::default()).await?;
    /// # tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    /// manager.revoke_everyone().await?;
    /// let token = issued.token.expose();
    /// assert!(manager.load(token, Access::Status).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Store errors: the switch may not be set.
    pub async fn revoke_everyone(&self) -> Result<NotBefore, SessionError> {
        let to = NotBefore::new(self.now(), Revocation::Everyone);
        let in_force = self
            .inner
            .store
            .raise_not_before(Scope::Everyone, to)
            .await?;
        audit::emit(
            AuditKind::Revoked,
            None,
            None,
            &format!(
                "kill switch: every session created before {}",
                in_force.at.to_rfc3339()
            ),
        );
        Ok(in_force)
    }

    /// Deletes up to `limit` expired records; returns how many.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn purge_expired(&self, limit: usize) -> Result<u64, SessionError> {
        Ok(self.inner.store.purge_expired(self.now(), limit).await?)
    }

    /// With [`SessionLimitAction::RefuseNew`], refuses a sign-in on an
    /// existing session (a rotation to a new identity) when `user_id`
    /// already holds the maximum, not counting `replaced`, which the
    /// rotation retires.
    ///
    /// Unlike [`Store::create_capped`](crate::store::Store::create_capped), this check and the rotation are
    /// two store operations, so racing sign-ins on existing sessions can
    /// overshoot the cap (sign-ins without a presented session, and
    /// `POST /v1/sessions`, go through the atomic `create_capped`).
    pub(super) async fn refuse_at_limit(
        &self,
        user_id: &str,
        replaced: &SessionHandle,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        let Some(cap) = self.inner.policy.session_cap() else {
            return Ok(());
        };
        if cap.action != SessionLimitAction::RefuseNew {
            return Ok(());
        }
        let held = self
            .inner
            .store
            .list_by_user(user_id, now)
            .await?
            .iter()
            .filter(|r| r.handle != *replaced)
            .count();
        if held >= cap.max {
            audit::emit(
                AuditKind::SessionLimitRefused,
                None,
                Some(user_id),
                "session limit",
            );
            return Err(SessionError::SessionLimit);
        }
        Ok(())
    }

    /// Keeps at most `max_sessions_per_user` sessions, revoking the oldest
    /// others. Every concurrent caller sees the same order (created_at, then
    /// handle), so racing sign-ins converge on the same survivors instead of
    /// all surviving (spring-security#12867).
    pub(super) async fn enforce_session_limit(
        &self,
        user_id: &str,
        keep: &SessionHandle,
    ) -> Result<(), SessionError> {
        let Some(cap) = self.inner.policy.session_cap() else {
            return Ok(());
        };
        if cap.action != SessionLimitAction::EvictOldest {
            return Ok(());
        }
        let sessions = self.list_user(user_id).await?;
        let excess = sessions.len().saturating_sub(cap.max);
        for record in sessions.iter().filter(|r| r.handle != *keep).take(excess) {
            if self
                .inner
                .store
                .delete_by_handle(&record.handle, Some(user_id), Revocation::SessionLimit)
                .await?
            {
                audit::emit(
                    AuditKind::Revoked,
                    Some(&record.handle),
                    Some(user_id),
                    "session limit",
                );
            }
        }
        Ok(())
    }
}
