//! [`SessionManager`]: the session lifecycle on top of a [`Store`].
//!
//! The manager is where the invariants of docs/design.md are enforced, in one
//! place, for every front end (the axum layer, the server's `/v1` API, the
//! CLI):
//!
//! - a presented token is parsed before any store call, so malformed input
//!   costs nothing (invariant 1);
//! - a loaded record is checked against both deadlines at every use, and an
//!   expired one is deleted and reported with its reason (invariant 3);
//! - activity moves the idle deadline only when the touch policy says so
//!   (invariant 4);
//! - sign-in, re-authentication and privilege changes rotate the token
//!   atomically (invariant 5);
//! - every write is a compare-and-set or a store-side read-modify-write
//!   (invariant 8), and every store error is returned, never swallowed
//!   (invariant 9).

mod data;
mod lifecycle;
mod refresh;

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{self, AuditKind};
use crate::ended::Ended;
use crate::error::SessionError;
use crate::policy::{PolicyError, SessionClass, SessionPolicy};
use crate::record::{ClientMeta, Data, DataChanges, SessionRecord};
use crate::refresh::RefreshStore;
use crate::store::{Capped, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{SessionToken, TokenHash};
use crate::user_id::UserId;

/// Attempts at rotating when concurrent writes keep changing the record.
const ROTATE_ATTEMPTS: usize = 16;

/// Whether using a session counts as user activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The user did something: the idle deadline may move forward.
    Activity,
    /// A status query (a page polling its own expiry): nothing is written,
    /// so polling cannot keep a session alive.
    Status,
}

/// Why a token is being replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// New token, same session: after a privilege change, or periodically.
    Rotate,
    /// The user signed in. A sign-in is a **new session identity**: a new
    /// token *and* a new public handle, so everything keyed by the earlier
    /// handle (its refresh-token family, device-list entries, access
    /// tokens naming it as `sid`) stops resolving at the same instant the
    /// earlier token stops working — nothing issued before the sign-in
    /// keeps working for the new user (OWASP Session Management Cheat
    /// Sheet, "Renew the Session ID After Any Privilege Level Change";
    /// ASVS 5.0 V7.2.4). The session gets fresh deadlines and
    /// `authenticated_at`; data is kept only if the previous session was
    /// anonymous or the same user's, so nothing leaks between accounts.
    Login {
        /// The user now signed in.
        user_id: String,
    },
    /// The user proved their identity again (step-up): `authenticated_at`
    /// and both deadlines start afresh.
    Reauthenticate,
}

/// A newly issued token and the record it opens. The token is only here;
/// the store keeps its hash.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token to hand to the client (cookie or response body).
    pub token: SessionToken,
    /// The record as stored.
    pub record: SessionRecord,
}

impl Issued {
    /// Remaining absolute lifetime at `now`: the cookie's `Max-Age`.
    pub fn max_age(&self, now: Timestamp) -> Duration {
        now.until(self.record.deadlines.absolute)
    }
}

/// Builds a [`SessionManager`].
pub struct SessionManagerBuilder {
    store: Arc<dyn Store>,
    refresh: Option<Arc<dyn RefreshStore>>,
    policy: SessionPolicy,
    clock: Arc<dyn Clock>,
}

impl SessionManagerBuilder {
    /// Sets the timeouts and touch policy.
    pub fn policy(mut self, policy: SessionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the clock (tests use [`crate::time::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Enables refresh tokens, kept in `store` (normally the same backend
    /// object as the session store).
    pub fn refresh_store(mut self, store: Arc<dyn RefreshStore>) -> Self {
        self.refresh = Some(store);
        self
    }

    /// Validates the policy and builds the manager.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] if the policy cannot be enforced.
    pub fn build(self) -> Result<SessionManager, PolicyError> {
        self.policy.validate()?;
        Ok(SessionManager {
            inner: Arc::new(Inner {
                store: self.store,
                refresh: self.refresh,
                policy: self.policy,
                clock: self.clock,
            }),
        })
    }
}

/// The session lifecycle. Cheap to clone; share one per application.
///
/// ```
/// use tessera::{Access, SessionManager};
/// use tessera::record::ClientMeta;
/// use tessera::store::MemoryStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// let issued = manager.create(Some("alice".into()), Default::default(), ClientMeta::default()).await?;
/// let record = manager.load(issued.token.expose(), Access::Activity).await?;
/// assert_eq!(record.user_id.as_deref(), Some("alice"));
///
/// manager.destroy(&record.hash).await?;
/// assert!(manager.load(issued.token.expose(), Access::Activity).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    refresh: Option<Arc<dyn RefreshStore>>,
    policy: SessionPolicy,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// Starts building a manager over `store` with the default policy and
    /// the system clock.
    pub fn builder(store: impl Store) -> SessionManagerBuilder {
        Self::builder_from_arc(Arc::new(store))
    }

    /// Like [`SessionManager::builder`], for a store chosen at run time.
    pub fn builder_from_arc(store: Arc<dyn Store>) -> SessionManagerBuilder {
        SessionManagerBuilder {
            store,
            refresh: None,
            policy: SessionPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.inner.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The refresh-token store, if configured.
    pub fn refresh_backend(&self) -> Option<&dyn RefreshStore> {
        self.inner.refresh.as_deref()
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Creates a session. With a `user_id` it counts as a sign-in
    /// (`authenticated_at` = now). Enforces
    /// [`SessionPolicy::max_sessions_per_user`] in the same atomic store
    /// operation as the insert ([`Store::create_capped`]): the user's
    /// oldest sessions end, or the new one is refused, per
    /// [`SessionPolicy::session_limit_action`].
    ///
    /// # Errors
    ///
    /// [`SessionError::SessionLimit`] when refused at the cap; store and
    /// randomness errors.
    pub async fn create(
        &self,
        user_id: Option<String>,
        data: Data,
        client: ClientMeta,
    ) -> Result<Issued, SessionError> {
        self.create_with_class(user_id, data, client, SessionClass::Default)
            .await
    }

    /// [`SessionManager::create`] for a session of lifetime `class` (for
    /// example [`SessionClass::Remember`] when the user ticked "keep me
    /// signed in").
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::{SessionError, SessionManager, SessionPolicy};
    /// use tessera::policy::SessionClass;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let plain = SessionManager::builder(MemoryStore::new()).build()?;
    /// let refused = plain
    ///     .create_with_class(None, Default::default(), Default::default(), SessionClass::Remember)
    ///     .await;
    /// assert!(matches!(refused, Err(SessionError::Unsupported(_))));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::create`]; [`SessionError::Unsupported`] for a
    /// class the policy does not offer (nothing is stored).
    pub async fn create_with_class(
        &self,
        user_id: Option<String>,
        data: Data,
        client: ClientMeta,
        class: SessionClass,
    ) -> Result<Issued, SessionError> {
        self.create_checked(user_id, data, client, class, None)
            .await
    }

    /// [`SessionManager::create_with_class`] for a sign-in whose password
    /// (or other credential) check started at `checked_at`, read from
    /// [`SessionManager::now`] **before** the credential was read. The
    /// session counts as created (and authenticated) just before that
    /// instant, so a password change or disable that commits after the
    /// check read the old credential — and then sets the user's
    /// not-before ([`crate::not_before`]) — refuses it, even when the
    /// session is stored after the not-before was set.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::policy::SessionClass;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let checked_at = manager.now();
    /// // ... read the password hash and verify the password ...
    /// let issued = manager
    ///     .create_signed_in("alice".into(), Default::default(), Default::default(),
    ///         SessionClass::Default, checked_at)
    ///     .await?;
    /// assert!(issued.record.created_at < checked_at);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::create_with_class`].
    pub async fn create_signed_in(
        &self,
        user_id: String,
        data: Data,
        client: ClientMeta,
        class: SessionClass,
        checked_at: Timestamp,
    ) -> Result<Issued, SessionError> {
        self.create_checked(Some(user_id), data, client, class, Some(checked_at))
            .await
    }

    async fn create_checked(
        &self,
        user_id: Option<String>,
        data: Data,
        client: ClientMeta,
        class: SessionClass,
        checked_at: Option<Timestamp>,
    ) -> Result<Issued, SessionError> {
        if let Some(user) = &user_id {
            UserId::check(user)?;
        }
        self.check_class(class)?;
        let now = self.now();
        let signed_in_at = sign_in_stamp(now, checked_at);
        let token = SessionToken::generate()?;
        let mut record = SessionRecord::new(
            token.hash(),
            user_id,
            now,
            self.inner.policy.deadlines_for(class, now),
            client,
        )?;
        record.class = class;
        record.data = data;
        self.check_data_size(&record.data)?;
        if record.user_id.is_some() {
            record.created_at = signed_in_at;
            record.authenticated_at = Some(signed_in_at);
        }
        let cap = self.inner.policy.session_cap();
        let evicted = match (&record.user_id, cap) {
            (Some(_), Some(cap)) => {
                match self.inner.store.create_capped(&record, cap, now).await? {
                    Capped::Created { evicted } => evicted,
                    Capped::Refused => {
                        audit::emit(
                            AuditKind::SessionLimitRefused,
                            None,
                            record.user_id.as_deref(),
                            "session limit",
                        );
                        return Err(SessionError::SessionLimit);
                    }
                }
            }
            _ => {
                self.inner.store.create(&record).await?;
                Vec::new()
            }
        };
        audit::emit(
            AuditKind::Created,
            Some(&record.handle),
            record.user_id.as_deref(),
            "",
        );
        for handle in &evicted {
            audit::emit(
                AuditKind::Revoked,
                Some(handle),
                record.user_id.as_deref(),
                "session limit",
            );
        }
        Ok(Issued { token, record })
    }

    /// Parses and loads a presented token, enforcing both deadlines; with
    /// [`Access::Activity`] the idle deadline moves per the touch policy.
    ///
    /// # Errors
    ///
    /// [`SessionError::Malformed`] (no store call was made),
    /// [`SessionError::NotFound`], [`SessionError::Expired`], store errors.
    pub async fn load(&self, token: &str, access: Access) -> Result<SessionRecord, SessionError> {
        let token = SessionToken::parse(token)?;
        let record = self.load_hash(&token.hash()).await?;
        match access {
            Access::Status => Ok(record),
            Access::Activity => self.touch(record).await,
        }
    }

    /// Loads a live record by hash without recording activity. An expired
    /// record found on the way is deleted and reported.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`], [`SessionError::Expired`], store errors.
    pub async fn load_hash(&self, hash: &TokenHash) -> Result<SessionRecord, SessionError> {
        let now = self.now();
        // A cache answers from memory first: a hit makes no store call and
        // allocates no future.
        let loaded = match self.inner.store.load_in_memory(hash, now) {
            Some(record) => Some(record),
            None => self.inner.store.load(hash).await?,
        };
        let Some(mut record) = loaded else {
            // Only a refused token pays for the second lookup: why it ended,
            // if a tombstone remembers (see `crate::ended`).
            return Err(match self.inner.store.ended(hash, now).await? {
                Some(Ended::SignedOut) => SessionError::SignedOut,
                Some(Ended::Revoked(by)) => SessionError::Revoked { by },
                Some(Ended::Expired(reason)) => SessionError::Expired { reason },
                _ => SessionError::NotFound,
            });
        };
        if !self.inner.policy.offers(record.class) {
            // Stored while the operator offered the class and no longer
            // offered: held to the default lifetime from its sign-in, so
            // turning "keep me signed in" off shortens those sessions too.
            // The next write stores the shorter deadlines.
            let cap = record.created_at + self.inner.policy.absolute_timeout;
            record.deadlines.absolute = record.deadlines.absolute.min(cap);
            record.deadlines.idle = record.deadlines.idle.min(record.deadlines.absolute);
        }
        if let Some(reason) = record.deadlines.expired_at(now) {
            // An expired session is gone: replace it with its tombstone now
            // rather than wait for the sweeper. A failure does not matter
            // for safety (the record is refused at every use), so it is
            // only logged.
            if let Err(e) = self.inner.store.end(hash, Ended::Expired(reason)).await {
                tracing::warn!(error = %e, "could not end an expired session");
            }
            let kind = match reason {
                crate::policy::ExpiryReason::Idle => AuditKind::ExpiredIdle,
                crate::policy::ExpiryReason::Absolute => AuditKind::ExpiredAbsolute,
            };
            audit::emit(kind, Some(&record.handle), record.user_id.as_deref(), "");
            return Err(SessionError::Expired { reason });
        }
        Ok(record)
    }

    /// Records activity on a loaded record: writes the new idle deadline if
    /// the touch policy requires it, else returns the record unchanged.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if the session ended meanwhile; store errors.
    pub async fn touch(&self, record: SessionRecord) -> Result<SessionRecord, SessionError> {
        let now = self.now();
        if !self
            .inner
            .policy
            .needs_touch_for(record.class, &record.deadlines, now)
        {
            return Ok(record);
        }
        self.modify_loaded(&record, &DataChanges::default(), Access::Activity)
            .await
    }
}

/// Where a read-modify-write starts: from the key (read first) or from a
/// record this request already loaded (compare-and-set first).
#[derive(Clone, Copy)]
enum Base<'a> {
    Hash(&'a TokenHash),
    Loaded(&'a SessionRecord),
}

fn set_failure(slot: &std::sync::Mutex<Option<serde_json::Error>>, e: serde_json::Error) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
}

/// The creation time of a sign-in's session: `now`, or for a sign-in
/// whose credential check started at `checked_at`, one millisecond before
/// that. A not-before is set from a clock read *after* the credential
/// change committed, and refuses sessions created strictly before it
/// ([`crate::not_before::NotBefore::refuses`]); a check that read the old
/// credential started no later than that reading, possibly in the same
/// millisecond, hence the millisecond earlier.
fn sign_in_stamp(now: Timestamp, checked_at: Option<Timestamp>) -> Timestamp {
    checked_at.map_or(now, |at| {
        now.min(Timestamp::from_millis(at.as_millis().saturating_sub(1)))
    })
}
