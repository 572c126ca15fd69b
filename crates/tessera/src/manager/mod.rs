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

mod refresh;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::audit::{self, AuditKind};
use crate::csrf::CsrfSecret;
use crate::ended::{Ended, Revocation};
use crate::error::SessionError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::{PolicyError, SessionClass, SessionLimitAction, SessionPolicy};
use crate::record::{ClientMeta, Data, DataChanges, SessionHandle, SessionRecord};
use crate::refresh::RefreshStore;
use crate::store::{Capped, CasOutcome, Modify, Patch, PatchOp, PatchOutcome, PatchRefusal, Store};
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
        let Some(mut record) = self.inner.store.load(hash).await? else {
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

    /// Applies `changes` to the latest stored data (key by key, so
    /// concurrent changes to other keys are kept) and, for
    /// [`Access::Activity`], moves the idle deadline.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if the session is gone or expired (it is
    /// never resurrected); store errors.
    pub async fn modify(
        &self,
        hash: &TokenHash,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        self.modify_base(Base::Hash(hash), changes, access).await
    }

    /// [`SessionManager::modify`] for a record this request already loaded:
    /// the write is a compare-and-set on the loaded version, without
    /// reading the record again first; if another write came in between,
    /// the store re-reads and merges (see [`Store::modify_loaded`]), so no
    /// change is lost and an ended session is never resurrected.
    ///
    /// ```
    /// use tessera::{Access, SessionManager};
    /// use tessera::record::DataChanges;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let mut changes = DataChanges::default();
    /// changes.set("theme", "dark".into());
    /// let record = manager.modify_loaded(&issued.record, &changes, Access::Activity).await?;
    /// assert_eq!(record.version, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::modify`].
    pub async fn modify_loaded(
        &self,
        record: &SessionRecord,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        self.modify_base(Base::Loaded(record), changes, access)
            .await
    }

    /// Compare-and-set of data keys, for clients that cannot run a closure
    /// inside [`SessionManager::update_value`] (the HTTP API's clients):
    /// `changes` are applied only if every key of `expected` currently holds
    /// exactly that value (JSON `null` means "absent"). Checked and written
    /// in one store compare-and-set, so two clients that both read 41 cannot
    /// both write 42: one gets `Ok((false, latest))` and retries from the
    /// latest value. Counts as activity when applied.
    ///
    /// Returns whether the changes were applied, and the record as stored.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::record::{Data, DataChanges};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let hash = issued.record.hash;
    /// let mut expected = Data::new();
    /// expected.insert("n".into(), serde_json::Value::Null); // absent so far
    /// let mut changes = DataChanges::default();
    /// changes.set("n", 1.into());
    /// assert!(manager.modify_expecting(&hash, &expected, &changes).await?.0);
    /// // The same expectation again no longer holds: nothing is written.
    /// let (applied, latest) = manager.modify_expecting(&hash, &expected, &changes).await?;
    /// assert!(!applied);
    /// assert_eq!(latest.data["n"], 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if the session is gone or expired; store
    /// errors.
    pub async fn modify_expecting(
        &self,
        hash: &TokenHash,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        self.modify_expecting_base(Base::Hash(hash), expected, changes)
            .await
    }

    /// [`SessionManager::modify_expecting`] for a record this request
    /// already loaded: the expectation is checked and the changes written in
    /// one compare-and-set on the loaded version, without reading the record
    /// again first. If another write came in between, the store re-reads the
    /// latest record and the expectation is checked again on it, so a stale
    /// load can never make a compare-and-set succeed.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::record::{Data, DataChanges};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let mut expected = Data::new();
    /// expected.insert("n".into(), serde_json::Value::Null);
    /// let mut changes = DataChanges::default();
    /// changes.set("n", 1.into());
    /// let (applied, written) = manager
    ///     .modify_expecting_loaded(&issued.record, &expected, &changes)
    ///     .await?;
    /// assert!(applied);
    /// // The loaded record is now stale: the store re-reads, and the
    /// // expectation (n absent) no longer holds.
    /// let (applied, latest) = manager
    ///     .modify_expecting_loaded(&issued.record, &expected, &changes)
    ///     .await?;
    /// assert!(!applied);
    /// assert_eq!(latest.version, written.version);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::modify_expecting`].
    pub async fn modify_expecting_loaded(
        &self,
        record: &SessionRecord,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        self.modify_expecting_base(Base::Loaded(record), expected, changes)
            .await
    }

    async fn modify_expecting_base(
        &self,
        base: Base<'_>,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        let now = self.now();
        let policy = &self.inner.policy;
        // Set by the attempt whose expectation held; a later attempt (after
        // a version conflict) sets it again from the record it saw.
        let applied = AtomicBool::new(false);
        // Set by the attempt whose merged data is over the limit; that
        // attempt writes nothing.
        let too_large = AtomicBool::new(false);
        let apply = |record: &mut SessionRecord| {
            let holds = expected
                .iter()
                .all(|(key, want)| match record.data.get(key) {
                    Some(have) => have == want,
                    None => want.is_null(),
                });
            applied.store(holds, Ordering::Relaxed);
            too_large.store(false, Ordering::Relaxed);
            if !holds {
                return Modify::Keep;
            }
            changes.apply(&mut record.data);
            if !changes.is_empty() && !policy.data_fits(&record.data) {
                too_large.store(true, Ordering::Relaxed);
                return Modify::Keep;
            }
            record.last_seen_at = now;
            record.deadlines.idle =
                policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            Modify::Write
        };
        let record = self
            .store_modify(base, now, &apply)
            .await?
            .ok_or(SessionError::NotFound)?;
        if too_large.load(Ordering::Relaxed) {
            return Err(self.data_too_large());
        }
        Ok((applied.load(Ordering::Relaxed), record))
    }

    async fn modify_base(
        &self,
        base: Base<'_>,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        let now = self.now();
        let policy = &self.inner.policy;
        // Set by the attempt (the closure may run again on a newer record)
        // whose merged data is over the limit; that attempt writes nothing.
        let too_large = std::sync::atomic::AtomicBool::new(false);
        let apply = |record: &mut SessionRecord| {
            changes.apply(&mut record.data);
            let fits = changes.is_empty() || policy.data_fits(&record.data);
            too_large.store(!fits, std::sync::atomic::Ordering::Relaxed);
            if !fits {
                return Modify::Keep;
            }
            if access == Access::Activity {
                record.last_seen_at = now;
                record.deadlines.idle =
                    policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            }
            Modify::Write
        };
        let written = self.store_modify(base, now, &apply).await?;
        if too_large.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(self.data_too_large());
        }
        written.ok_or(SessionError::NotFound)
    }

    /// [`SessionError::Unsupported`] unless the policy offers `class`.
    fn check_class(&self, class: SessionClass) -> Result<(), SessionError> {
        if self.inner.policy.offers(class) {
            Ok(())
        } else {
            Err(SessionError::Unsupported(
                "this lifetime class is not configured",
            ))
        }
    }

    fn data_too_large(&self) -> SessionError {
        SessionError::DataTooLarge {
            limit: self.inner.policy.max_data_bytes.unwrap_or(usize::MAX),
        }
    }

    /// [`SessionError::DataTooLarge`] unless `data` fits the policy.
    fn check_data_size(&self, data: &crate::record::Data) -> Result<(), SessionError> {
        if self.inner.policy.data_fits(data) {
            Ok(())
        } else {
            Err(self.data_too_large())
        }
    }

    async fn store_modify(
        &self,
        base: Base<'_>,
        now: Timestamp,
        f: crate::store::ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, crate::error::StoreError> {
        match base {
            Base::Hash(hash) => self.inner.store.modify(hash, now, f).await,
            Base::Loaded(record) => self.inner.store.modify_loaded(record, now, f).await,
        }
    }

    /// Applies typed changes ([`PatchOp`]s) to the latest stored record in
    /// one store operation ([`Store::patch`]): no read before the write on
    /// stores that apply it themselves, and no update lost to a concurrent
    /// write. With [`Access::Activity`] the idle deadline moves. `base` is
    /// the record this request loaded, if any (the first compare-and-set
    /// base of stores that cannot apply a patch in place).
    ///
    /// ```
    /// use tessera::{Access, SessionManager};
    /// use tessera::store::{MemoryStore, PatchOp, PatchOutcome};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let ops = vec![PatchOp::Increment { key: "n".into(), by: 5 }];
    /// let PatchOutcome::Applied(record) =
    ///     manager.patch(&issued.record.hash, None, ops, Access::Activity).await?
    /// else { panic!("the session is live") };
    /// assert_eq!(record.data["n"], 5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if no live session is stored under
    /// `hash`; [`SessionError::DataTooLarge`] if the data would exceed the
    /// policy's limit (nothing was written); store errors. Other refusals
    /// come back as [`PatchOutcome::Refused`].
    pub async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        ops: Vec<PatchOp>,
        access: Access,
    ) -> Result<PatchOutcome, SessionError> {
        let patch = Patch::for_policy(&self.inner.policy, ops, access == Access::Activity);
        match self
            .inner
            .store
            .patch(hash, base, &patch, self.now())
            .await?
        {
            PatchOutcome::Missing => Err(SessionError::NotFound),
            PatchOutcome::Refused {
                why: PatchRefusal::TooLarge,
                ..
            } => Err(self.data_too_large()),
            outcome => Ok(outcome),
        }
    }

    /// Atomic read-modify-write of one data key: `f` gets the current value
    /// (or `None`) and returns the new one. `f` may run more than once.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`], [`SessionError::Data`] if the stored
    /// value does not deserialize as `T`, store errors.
    pub async fn update_value<T, F>(
        &self,
        hash: &TokenHash,
        key: &str,
        f: F,
    ) -> Result<T, SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        Ok(self.update_value_base(Base::Hash(hash), key, f).await?.0)
    }

    /// [`SessionManager::update_value`] for a record this request already
    /// loaded: one compare-and-set on the loaded version instead of a read
    /// and a write; on a conflict the store re-reads the latest record and
    /// `f` runs again on it, so no increment is lost.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let n = manager.update_value_loaded(&issued.record, "n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::update_value`].
    pub async fn update_value_loaded<T, F>(
        &self,
        record: &SessionRecord,
        key: &str,
        f: F,
    ) -> Result<T, SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        Ok(self
            .update_value_base(Base::Loaded(record), key, f)
            .await?
            .0)
    }

    /// [`SessionManager::update_value_loaded`], also returning the record as
    /// written (so the request's view has the new version and deadlines).
    pub(crate) async fn update_value_written<T, F>(
        &self,
        record: &SessionRecord,
        key: &str,
        f: F,
    ) -> Result<(T, SessionRecord), SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        self.update_value_base(Base::Loaded(record), key, f).await
    }

    async fn update_value_base<T, F>(
        &self,
        base: Base<'_>,
        key: &str,
        f: F,
    ) -> Result<(T, SessionRecord), SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        let now = self.now();
        let policy = &self.inner.policy;
        let failure: std::sync::Mutex<Option<serde_json::Error>> = std::sync::Mutex::new(None);
        let apply = |record: &mut SessionRecord| {
            let current = match record.data.get(key).cloned().map(serde_json::from_value) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    set_failure(&failure, e);
                    return Modify::Keep;
                }
            };
            match serde_json::to_value(f(current)) {
                Ok(v) => {
                    record.data.insert(key.to_owned(), v);
                }
                Err(e) => {
                    set_failure(&failure, e);
                    return Modify::Keep;
                }
            }
            record.last_seen_at = now;
            record.deadlines.idle =
                policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            Modify::Write
        };
        let record = self
            .store_modify(base, now, &apply)
            .await?
            .ok_or(SessionError::NotFound)?;
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(SessionError::Data(e));
        }
        let value = record.data.get(key).cloned().unwrap_or_default();
        Ok((serde_json::from_value(value)?, record))
    }

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

    async fn rotate_checked(
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
    async fn retire_identity(&self, earlier: &SessionRecord) {
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
    /// Unlike [`Store::create_capped`], this check and the rotation are
    /// two store operations, so racing sign-ins on existing sessions can
    /// overshoot the cap (sign-ins without a presented session, and
    /// `POST /v1/sessions`, go through the atomic `create_capped`).
    async fn refuse_at_limit(
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
    async fn enforce_session_limit(
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
