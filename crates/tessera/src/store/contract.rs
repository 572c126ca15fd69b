//! The [`Store`] trait, and the generic read-modify-write behind its
//! provided [`Store::modify`] and [`Store::patch`] ([`cas_loop`],
//! [`patch_by_modify`]). They share a module because each needs the
//! other: the provided methods call the fallbacks, which are generic over
//! the trait.

use std::time::Duration;

use async_trait::async_trait;

use super::outcome::{Capped, CasOutcome, Modify, ModifyFn};
use super::patch::{Patch, PatchOutcome};
use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::{SessionCap, SessionLimitAction};
use crate::record::{SessionHandle, SessionRecord};
use crate::time::Timestamp;
use crate::token::TokenHash;

/// A session store. See the [module docs](super) for the contract.
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

    /// What [`Store::load`] would answer for `hash` at `now`, if this store
    /// can tell from memory, without I/O; `None` means "ask `load`", never
    /// "no such session".
    ///
    /// For a cache in front of a remote store
    /// ([`CachedStore`](crate::cache::CachedStore)): the session manager
    /// asks here first, so a cache hit costs no future and no allocation.
    /// The default answers `None`; a wrapper forwards it (and a wrapper that
    /// injects failures answers `None` while failing, so that `load`
    /// fails).
    ///
    /// ```
    /// use tessera::store::{MemoryStore, Store};
    /// use tessera::time::{Clock, SystemClock};
    /// use tessera::token::SessionToken;
    /// let store = MemoryStore::new();
    /// let hash = SessionToken::generate()?.hash();
    /// assert!(store.load_in_memory(&hash, SystemClock.now()).is_none());
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        let _ = (hash, now);
        None
    }

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
    /// [`PatchRefusal`](super::PatchRefusal) writes nothing.
    ///
    /// `base` is a copy this caller loaded earlier, if any (possibly stale):
    /// stores that cannot apply a patch in place use it as the first
    /// compare-and-set base (one round trip when nothing changed
    /// meanwhile); stores that can apply the patch server-side may ignore
    /// it or, like Redis, prefer the compare-and-set when it is cheaper for
    /// the server.
    ///
    /// The default implementation runs [`Store::modify_loaded`] (with a
    /// base) or [`Store::modify`] with [`Patch::apply`], so it is correct
    /// for any store; the bundled stores override it where the backend can
    /// apply the patch itself (Redis: one Lua script when there is no
    /// base) and document it.
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

/// [`Store::patch`] through [`Store::modify_loaded`] / [`Store::modify`]:
/// the default implementation, public so that a store overriding `patch`
/// for some cases can fall back to it.
///
/// # Errors
///
/// As [`Store::modify`].
pub async fn patch_by_modify<S: Store + ?Sized>(
    store: &S,
    hash: &TokenHash,
    base: Option<&SessionRecord>,
    patch: &Patch,
    now: Timestamp,
) -> Result<PatchOutcome, StoreError> {
    // Set by the attempt whose result counts: the closure runs once per
    // attempt, each time on the latest record.
    let refused = std::sync::Mutex::new(None);
    let expired = std::sync::atomic::AtomicBool::new(false);
    let f = |record: &mut SessionRecord| {
        let gone = !patch.is_live(record, now);
        expired.store(gone, std::sync::atomic::Ordering::Relaxed);
        if gone {
            return Modify::Keep;
        }
        let outcome = patch.apply(record, now);
        let keep = outcome.is_err();
        *refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = outcome.err();
        if keep { Modify::Keep } else { Modify::Write }
    };
    let stored = match base {
        Some(base) if base.hash == *hash => store.modify_loaded(base, now, &f).await?,
        _ => store.modify(hash, now, &f).await?,
    };
    let Some(record) = stored else {
        return Ok(PatchOutcome::Missing);
    };
    if expired.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(PatchOutcome::Missing);
    }
    let why = refused
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    Ok(match why {
        Some(why) => PatchOutcome::Refused { why, record },
        None => PatchOutcome::Applied(record),
    })
}

/// Attempts before [`cas_loop`] reports [`StoreError::Contention`].
const CAS_ATTEMPTS: u32 = 64;

/// The generic read-modify-write loop behind [`Store::modify`], public so
/// that store implementations overriding `modify` for some cases can fall
/// back to it.
///
/// # Errors
///
/// [`StoreError::Contention`] after repeated conflicts; backend errors.
pub async fn cas_loop<S: Store + ?Sized>(
    store: &S,
    hash: &TokenHash,
    now: Timestamp,
    f: ModifyFn<'_>,
) -> Result<Option<SessionRecord>, StoreError> {
    for attempt in 0..CAS_ATTEMPTS {
        let Some(current) = store.load(hash).await? else {
            return Ok(None);
        };
        if !current.is_valid_at(now) {
            return Ok(None);
        }
        let mut next = current.clone();
        if f(&mut next) == Modify::Keep {
            // The record as stored, not the closure's scratch copy: a
            // caller that kept must not see changes that were not written
            // (a refused patch may have applied some of its operations).
            return Ok(Some(current));
        }
        // The identity of a session never changes in a write.
        next.hash = current.hash;
        next.handle = current.handle;
        next.user_id = current.user_id;
        next.version = current.version.saturating_add(1);
        match store.update(current.version, &next, now).await? {
            CasOutcome::Applied => return Ok(Some(next)),
            CasOutcome::Missing => return Ok(None),
            CasOutcome::Conflict => backoff(attempt).await,
        }
    }
    Err(StoreError::Contention)
}

/// Sleeps a short, jittered, growing time so contending writers spread out.
async fn backoff(attempt: u32) {
    let mut b = [0u8; 1];
    // Jitter only; a failed RNG just means no jitter.
    let _ = crate::random::fill(&mut b);
    let base_us = 50u64 << attempt.min(6);
    let [r] = b;
    let jitter = u64::from(r) * base_us / 255;
    tokio::time::sleep(Duration::from_micros(base_us + jitter)).await;
}
