//! The storage contract every backend implements.
//!
//! A [`Store`] keeps [`SessionRecord`]s keyed by [`TokenHash`], with an index
//! by user and by public handle. It is deliberately small and explicit about
//! atomicity, because that is where session libraries lose writes and leave
//! fixation holes:
//!
//! - [`Store::update`] is a **compare-and-set** on `version`: it writes only
//!   if the stored version is the one the caller read. A late write cannot
//!   overwrite a newer one, and cannot resurrect a deleted or expired
//!   session.
//! - [`Store::modify`] is a read-modify-write of one record; backends that
//!   can lock a row (SQL) or a map shard (memory) do it without retries, and
//!   the default implementation is a compare-and-set loop.
//! - [`Store::patch`] applies typed changes ([`Patch`]: set, remove,
//!   increment, compare-and-set of one key) to the latest stored record in
//!   one store operation, so the common writes need no read first.
//! - [`Store::rotate`] replaces a record's key (and, for a sign-in, its
//!   handle) in one atomic step: there is no moment when both or neither
//!   token works, and on failure the old session is intact.
//!
//! Expired records: stores may keep them until [`Store::purge_expired`] (or a
//! TTL) removes them, and [`Store::load`] may return them, so the caller can
//! tell the user *why* a session ended; the [`crate::manager`] never serves
//! one. Writes (`update`, `modify`, `rotate`) must treat a record expired at
//! `now` as missing.
//!
//! Every implementation runs the conformance suite in `tessera::testkit`
//! (feature `testkit`) unchanged.
//!
//! # Writing a store
//!
//! Start from [`ReferenceStore`]: the smallest store that keeps every rule
//! above, a few hash maps behind one mutex, each method commented with the
//! rule it keeps, with the session and refresh-token conformance suites
//! run on it. It shows which methods a store must write and which it can
//! leave to the trait.
//! [`MemoryStore`] keeps the same rules in a compact layout built for
//! a million sessions, which makes it the harder one to learn from.

mod fallback;
#[cfg(test)]
mod forwarding;
mod memory;
mod patch;
mod reference;

pub use fallback::{cas_loop, patch_by_modify};
pub use memory::MemoryStore;
pub use patch::{Activity, Patch, PatchOp, PatchOutcome, PatchRefusal};
pub use reference::ReferenceStore;

use async_trait::async_trait;

use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::{SessionCap, SessionLimitAction};
use crate::record::{SessionHandle, SessionRecord};
use crate::time::Timestamp;
use crate::token::TokenHash;

/// Result of a compare-and-set write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CasOutcome {
    /// The write happened.
    Applied,
    /// The stored version was not the expected one; nothing was written.
    Conflict,
    /// No live record under that key (deleted, expired or never there);
    /// nothing was written.
    Missing,
}

/// Result of [`Store::create_capped`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Capped {
    /// The record was created; these sessions of the same user (oldest
    /// first) ended in the same step to make room.
    Created {
        /// Handles of the evicted sessions.
        evicted: Vec<SessionHandle>,
    },
    /// The user was at the cap and the action is
    /// [`SessionLimitAction::RefuseNew`]: nothing was written.
    Refused,
}

/// What a [`Store::modify`] closure decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modify {
    /// Write the changed record (the store bumps the version).
    Write,
    /// Leave the stored record as it is.
    Keep,
}

/// The closure type of [`Store::modify`]. It may be called more than once
/// (once per attempt), always with the latest stored record.
pub type ModifyFn<'a> = &'a (dyn Fn(&mut SessionRecord) -> Modify + Send + Sync);

/// A session store. See the [module docs](self) for the contract.
///
/// A wrapper around another store (a cache, metrics, a test double) must
/// forward every method, the provided ones too: a provided method it leaves
/// out runs over the wrapper's other methods and loses the wrapped store's
/// own (an atomic `create_capped`, a one-round-trip `patch`). A test of
/// this crate finds the wrappers of the workspace and fails on any method
/// one leaves out.
///
/// ```
/// use tessera::store::{MemoryStore, Store};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// store.ping().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new record.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the key or handle exists; backend errors.
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError>;

    /// Inserts `record` (which has a user) and enforces the per-user `cap`
    /// **in the same atomic step**: counting the user's sessions valid at
    /// `now`, then either ending the oldest ones (by `created_at`, then
    /// handle) with the tombstone `Ended::Revoked(Revocation::SessionLimit)`
    /// as [`Store::end`] leaves, or refusing. Concurrent calls for one user
    /// are linearizable: N racing creations with a cap of k leave exactly k
    /// live sessions (evict), or exactly k succeed while fewer than k
    /// existed before (refuse). ASVS 5.0 V7.1.2.
    ///
    /// How each bundled store makes it one step: the memory store under
    /// its lock, SQL in one transaction that first locks the user's lock
    /// row, Redis in one Lua script on the user's index key.
    ///
    /// The default implementation is **not** atomic (create, list, then
    /// evict; or count, then create): racing creations can overshoot the
    /// cap. Stores that can do better must override it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the key or handle exists; backend
    /// errors (nothing was written, or the store says otherwise).
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        let Some(user) = record.user_id.as_deref() else {
            self.create(record).await?;
            return Ok(Capped::Created {
                evicted: Vec::new(),
            });
        };
        let max = cap.max.max(1);
        if cap.action == SessionLimitAction::RefuseNew {
            if self.list_by_user(user, now).await?.len() >= max {
                return Ok(Capped::Refused);
            }
            self.create(record).await?;
            return Ok(Capped::Created {
                evicted: Vec::new(),
            });
        }
        self.create(record).await?;
        let sessions = self.list_by_user(user, now).await?;
        let excess = sessions.len().saturating_sub(max);
        let mut evicted = Vec::new();
        for old in sessions
            .iter()
            .filter(|r| r.handle != record.handle)
            .take(excess)
        {
            if self
                .delete_by_handle(&old.handle, Some(user), Revocation::SessionLimit)
                .await?
            {
                evicted.push(old.handle.clone());
            }
        }
        Ok(Capped::Created { evicted })
    }

    /// The record under `hash`, possibly expired, or `None`.
    ///
    /// **Kill switches**: a record refused by the not-before of its user
    /// or the global one ([`crate::not_before::refusal`]) is not returned,
    /// and the check is made in the same store operation as the read (one
    /// statement, one script, or — where keys live on different nodes —
    /// the cheapest correct sequence the store's README states), so it
    /// holds whatever the store size. [`Store::ended`] then reports it as
    /// `Ended::Revoked(cause)`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError>;

    /// Compare-and-set: replaces the record under `record.hash` with
    /// `record` iff the stored version is `expected_version` and the stored
    /// record is valid at `now`. `record.version` must be
    /// `expected_version + 1`. The user and handle of a record never change
    /// through `update`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError>;

    /// Atomically: if the record under `old` has `expected_version` and is
    /// valid at `now`, delete it and insert `new`. Otherwise change nothing.
    ///
    /// `new` keeps the old handle and user (a token rotation), or carries a
    /// new handle and possibly another user (a sign-in: a new session
    /// identity). In the second case the old handle is retired in the same
    /// step: from the instant `new` can be loaded, nothing can be found,
    /// listed or revoked under the old handle, so a refresh-token family or
    /// an access token naming it is dead
    /// ([`RefreshStore::load_session_by_handle`](crate::refresh::RefreshStore::load_session_by_handle)
    /// finds nothing).
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if `new`'s hash, or its new handle, is
    /// taken; backend errors. On error the old record is intact.
    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError>;

    /// Deletes the record under `hash`. Returns whether one was there.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError>;

    /// Deletes the record under `hash` and, in the same atomic step, leaves
    /// a tombstone saying `why` (see [`crate::ended`]) that
    /// [`Store::ended`] reports until the session's absolute deadline.
    /// Returns whether a record was there (without one, nothing is
    /// written).
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError>;

    /// Why the session under `hash` ended, if a tombstone valid at `now`
    /// remembers it, or `Ended::Revoked(cause)` when its record is still
    /// stored but refused by a not-before (see [`Store::load`]). `None` for
    /// a live session, an unknown token, or a tombstone past its session's
    /// absolute deadline.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError>;

    /// Deletes the session with this handle, if it belongs to `owner` (any
    /// owner when `None`), leaving a tombstone `Ended::Revoked(why)` as
    /// [`Store::end`] does. Returns whether one was deleted.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError>;

    /// The user's sessions that are valid at `now`, oldest first.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Deletes every session of the user except the one with handle
    /// `except`, leaving a tombstone `Ended::Revoked(why)` for each as
    /// [`Store::end`] does. Returns how many were deleted. Afterwards no
    /// deleted session can be loaded, including by a concurrent `rotate`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError>;

    /// Deletes **every** session in the store, and every refresh-token
    /// family with them (stores that also implement
    /// [`RefreshStore`](crate::refresh::RefreshStore)). Returns how many
    /// sessions were deleted (expired ones not yet purged may count).
    ///
    /// This is the administrator's "sign everybody out" of ASVS 5.0 V7.4.5
    /// (terminate all active sessions, for example after a breach or a key
    /// compromise). It gives the same guarantee as
    /// [`Store::delete_by_user`], for all users at once: afterwards no session
    /// that existed when the call started can be loaded, including one a
    /// concurrent `rotate` re-keyed. Sessions created while the call runs
    /// may survive it; they are new sign-ins. Stores scoped by a key prefix
    /// or a database delete only within their scope.
    ///
    /// Not bounded by a store's per-operation timeout: deleting every row
    /// of a large table can legitimately take longer.
    ///
    /// ```
    /// use tessera::store::{MemoryStore, Store};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let (_, record) = tessera::testkit::sample_record(Some("alice"));
    /// store.create(&record).await?;
    /// assert_eq!(store.delete_all().await?, 1);
    /// assert!(store.load(&record.hash).await?.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Backend errors; sessions deleted before the error stay deleted, and
    /// calling it again finishes the job.
    async fn delete_all(&self) -> Result<u64, StoreError>;

    /// Raises the not-before of `scope` to `to` and returns the value in
    /// force afterwards (see [`crate::not_before`]): from the moment this
    /// returns, every [`Store::load`] on any instance refuses the sessions
    /// of the scope created before `to.at`. Values never move backward:
    /// an earlier or equal time leaves the stored one (and its cause)
    /// unchanged, so the call is idempotent, and concurrent calls leave the
    /// latest time, atomically (one statement or one script). O(1) in the
    /// number of sessions. ASVS 5.0 V7.4.3, V7.4.5.
    ///
    /// ```
    /// use tessera::not_before::{NotBefore, Scope};
    /// use tessera::store::{MemoryStore, Store};
    /// use tessera::time::Timestamp;
    /// use tessera::{Ended, Revocation};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let (_, record) = tessera::testkit::sample_record(Some("alice"));
    /// store.create(&record).await?;
    /// let later = Timestamp::from_millis(record.created_at.as_millis() + 1);
    /// store.raise_not_before(Scope::User("alice"), NotBefore::new(later, Revocation::PasswordChanged)).await?;
    /// assert!(store.load(&record.hash).await?.is_none());
    /// assert_eq!(store.ended(&record.hash, record.created_at).await?,
    ///     Some(Ended::Revoked(Revocation::PasswordChanged)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Backend errors: the switch may not be set, and the caller must
    /// report the failure (never assume the sessions are refused).
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError>;

    /// The not-before in force for `scope`, if any (for display).
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError>;

    /// Deletes up to `limit` records expired at `now`; returns how many.
    /// Stores that expire records by themselves (Redis TTLs) return 0.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError>;

    /// Checks that the backend answers (for readiness probes).
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Read-modify-write of one record. `f` receives the latest stored
    /// record (valid at `now`); if it returns [`Modify::Write`], the changed
    /// record is written with the version bumped. Returns the record as
    /// stored afterwards, or `None` if there is no live record.
    ///
    /// The default implementation is a compare-and-set loop with jittered
    /// backoff; backends that can lock override it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Contention`] if the loop gives up; backend errors.
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        cas_loop(self, hash, now, f).await
    }

    /// [`Store::modify`] starting from `current`, a record this caller
    /// loaded earlier (in the same request): the first attempt is a
    /// compare-and-set on `current.version` with no read before it. If the
    /// stored record has moved on (a conflict), if `current` looks expired,
    /// or if `f` decides to [`Modify::Keep`], it falls back to
    /// [`Store::modify`], which reads the latest record. So no update is
    /// lost and nothing expired is written: the compare-and-set checks both
    /// the version and the deadlines at `now` (docs/design.md, invariants 3 and 8).
    ///
    /// Saves one round trip per write on stores whose `modify` starts with
    /// a read (Redis, SQL); stores that hold a lock anyway (memory) may
    /// simply call `modify`.
    ///
    /// ```
    /// use tessera::record::{ClientMeta, SessionRecord};
    /// use tessera::policy::SessionPolicy;
    /// use tessera::store::{MemoryStore, Modify, Store};
    /// use tessera::time::Timestamp;
    /// use tessera::token::SessionToken;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let now = Timestamp::from_millis(0);
    /// let record = SessionRecord::new(SessionToken::generate()?.hash(), None, now,
    ///     SessionPolicy::default().deadlines_at(now), ClientMeta::default())?;
    /// store.create(&record).await?;
    /// let written = store.modify_loaded(&record, now, &|r: &mut SessionRecord| {
    ///     r.data.insert("n".into(), 1.into());
    ///     Modify::Write
    /// }).await?.ok_or("the session ended")?;
    /// assert_eq!(written.version, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Store::modify`].
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if !current.is_valid_at(now) {
            // Another request may have moved the idle deadline: ask the store.
            return self.modify(&current.hash, now, f).await;
        }
        let mut next = current.clone();
        if f(&mut next) == Modify::Keep {
            // Keep must report the record *as stored*, which may be newer.
            return self.modify(&current.hash, now, f).await;
        }
        next.hash = current.hash;
        next.handle = current.handle.clone();
        next.user_id.clone_from(&current.user_id);
        next.version = current.version.saturating_add(1);
        match self.update(current.version, &next, now).await? {
            CasOutcome::Applied => Ok(Some(next)),
            CasOutcome::Missing => Ok(None),
            CasOutcome::Conflict => self.modify(&current.hash, now, f).await,
        }
    }
    /// Applies `patch` to the latest record under `hash`, if it is valid at
    /// `now` (after [`Patch::cap_deadlines`]), in one atomic step: the
    /// version is bumped, nothing is lost to a concurrent write (the patch
    /// is applied to whatever is stored, never to a stale copy), and a
    /// deleted or expired session is not resurrected. A
    /// [`PatchRefusal`] writes nothing.
    ///
    /// `base` is a copy this caller loaded earlier, if any: stores that
    /// cannot apply a patch in place use it as the first compare-and-set
    /// base (one round trip when nothing changed meanwhile); stores that
    /// apply the patch server-side ignore it.
    ///
    /// The default implementation runs [`Store::modify_loaded`] (with a
    /// base) or [`Store::modify`] with [`Patch::apply`], so it is correct
    /// for any store; the bundled stores override it where the backend can
    /// apply the patch itself (Redis: one Lua script) and document it.
    ///
    /// ```
    /// use tessera::store::{MemoryStore, Patch, PatchOp, PatchOutcome, Store};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let (_, record) = tessera::testkit::sample_record(None);
    /// store.create(&record).await?;
    /// let inc = Patch::new(vec![PatchOp::Increment { key: "n".into(), by: 1 }]);
    /// let PatchOutcome::Applied(now_stored) = store.patch(&record.hash, None, &inc, record.created_at).await? else {
    ///     panic!("the session is live");
    /// };
    /// assert_eq!(now_stored.data["n"], 1);
    /// assert_eq!(now_stored.version, record.version + 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Store::modify`].
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        patch_by_modify(self, hash, base, patch, now).await
    }
}
