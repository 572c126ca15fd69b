//! [`ReferenceStore`]: how to write a store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::contract::Store;
use super::outcome::{Capped, CasOutcome};
use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{self, NotBefore, Scope};
use crate::policy::{ExpiryReason, SessionCap};
use crate::record::{SessionHandle, SessionRecord};
use crate::refresh::{RefreshRecord, RefreshStore, RefreshUse, UsedRefresh};
use crate::time::Timestamp;
use crate::token::{SECRET_LEN, TokenHash};

/// How to write a store: the smallest correct [`Store`] and
/// [`RefreshStore`], written to be read.
///
/// It keeps everything in a few `HashMap`s behind one `std::sync::Mutex`.
/// Every method takes the lock once, so each is one atomic step, which is
/// what the [`Store`] contract asks of a backend: a SQL store gets the same
/// from one transaction (or one statement), Redis from one Lua script.
/// Each method is short and says, in its comment, the rule it keeps: read
/// its source (`src/store/reference.rs`) next to the [`Store`] docs.
///
/// What it leaves to the trait's provided methods, because they are correct
/// for any store that gets the required ones right:
///
/// - [`Store::modify`]: a compare-and-set loop over [`Store::load`] and
///   [`Store::update`] ([`super::cas_loop`]);
/// - [`Store::modify_loaded`]: one compare-and-set from the caller's copy,
///   then `modify`;
/// - [`Store::patch`]: `modify` with [`super::Patch::apply`].
///
/// A store overrides them only to save round trips (see
/// [`MemoryStore`](super::MemoryStore), which runs `modify` under its lock,
/// or Redis, which applies a patch in a script). It must override
/// [`Store::create_capped`]: the provided one is not atomic.
///
/// It is **not** for production: it forgets everything on restart, scans
/// whole maps where a real backend would use an index, and grows until
/// [`Store::purge_expired`] is called. Use [`MemoryStore`](super::MemoryStore)
/// for tests and development, and a store crate in production. The end of
/// its source file runs the store and refresh-token conformance suites on
/// it, unchanged, with `tessera::store_conformance!` and
/// `tessera::refresh_conformance!` (feature `testkit`): so must yours.
///
/// Device-bound sessions have a trait of their own,
/// [`DbscStore`](crate::dbsc::DbscStore), independent of the sessions (its
/// rows are keyed by the session's handle): its reference is
/// [`MemoryDbscStore`](crate::dbsc::MemoryDbscStore), written the same way
/// (two maps behind one mutex), and run on the DBSC suite by
/// `tessera::dbsc_conformance!`. A store crate implements all three on
/// one backend.
///
/// ```
/// use tessera::SessionManager;
/// use tessera::store::ReferenceStore;
///
/// let manager = SessionManager::builder(ReferenceStore::new()).build()?;
/// # Ok::<(), tessera::policy::PolicyError>(())
/// ```
#[derive(Debug, Default)]
pub struct ReferenceStore {
    maps: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    /// The sessions, by the hash of their token (stores never see tokens).
    sessions: HashMap<TokenHash, SessionRecord>,
    /// Handle index: revocation from a device list, refresh families.
    by_handle: HashMap<SessionHandle, TokenHash>,
    /// User index: listing and "sign out everywhere". Like `by_handle`, it
    /// changes in the same step as `sessions`, in `insert` and `remove`.
    by_user: HashMap<String, Vec<TokenHash>>,
    /// Why ended sessions ended, and until when to say so (their absolute
    /// deadline): see [`crate::ended`].
    tombstones: HashMap<TokenHash, (Ended, Timestamp)>,
    /// Kill switches (see [`crate::not_before`]).
    not_before_everyone: Option<NotBefore>,
    not_before_users: HashMap<String, NotBefore>,
    /// Refresh tokens, by hash; a family is the handle of its session.
    refresh: HashMap<TokenHash, RefreshRecord>,
}

impl ReferenceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Every method leaves the maps consistent before it can panic, so a
        // poisoned lock still guards consistent maps.
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Maps {
    /// Why a kill switch refuses `record`, if one does.
    fn refusal(&self, record: &SessionRecord) -> Option<Revocation> {
        let user = record.user_id.as_ref();
        let user = user.and_then(|u| self.not_before_users.get(u)).copied();
        not_before::refusal(record, user, self.not_before_everyone)
    }

    /// The record under `hash` as a write must see it: present, valid at
    /// the caller's `now` (never the wall clock: the caller's clock is the
    /// one the contract is about), and not refused by a kill switch. Every
    /// write goes through here, so an expired, deleted or switched-off
    /// session is never written back to life.
    fn live(&self, hash: &TokenHash, now: Timestamp) -> Option<&SessionRecord> {
        let record = self.sessions.get(hash)?;
        (record.is_valid_at(now) && self.refusal(record).is_none()).then_some(record)
    }

    /// Inserts a record and its index entries. The caller has checked that
    /// neither its hash nor its handle is taken.
    fn insert(&mut self, record: SessionRecord) {
        self.by_handle.insert(record.handle.clone(), record.hash);
        if let Some(user) = &record.user_id {
            self.by_user
                .entry(user.clone())
                .or_default()
                .push(record.hash);
        }
        self.sessions.insert(record.hash, record);
    }

    /// Removes a record and its index entries.
    fn remove(&mut self, hash: &TokenHash) -> Option<SessionRecord> {
        let record = self.sessions.remove(hash)?;
        self.by_handle.remove(&record.handle);
        if let Some(user) = &record.user_id {
            if let Some(hashes) = self.by_user.get_mut(user) {
                hashes.retain(|h| h != hash);
                if hashes.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        Some(record)
    }

    /// Removes a record and leaves a tombstone saying why, in the same
    /// step, kept until the session's absolute deadline (never longer:
    /// tombstones must not grow without bound).
    fn bury(&mut self, hash: &TokenHash, why: Ended) -> bool {
        let Some(record) = self.remove(hash) else {
            return false;
        };
        self.tombstones
            .insert(*hash, (why, record.deadlines.absolute));
        true
    }

    /// The user's sessions valid at `now` and not switched off, oldest
    /// first (by creation time, then handle: a total order every store
    /// agrees on).
    fn user_sessions(&self, user: &str, now: Timestamp) -> Vec<SessionRecord> {
        let hashes = self.by_user.get(user).map_or(&[][..], Vec::as_slice);
        let mut out: Vec<SessionRecord> = hashes
            .iter()
            .filter_map(|h| self.live(h, now).cloned())
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
        out
    }

    /// True if a record with this hash or this handle exists.
    fn taken(&self, record: &SessionRecord) -> bool {
        self.sessions.contains_key(&record.hash) || self.by_handle.contains_key(&record.handle)
    }
}

/// Removes up to `limit` entries of `map` whose value `is_over`; returns
/// how many.
fn purge<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    limit: usize,
    is_over: impl Fn(&V) -> bool,
) -> usize {
    let over: Vec<K> = map
        .iter()
        .filter(|(_, v)| is_over(v))
        .take(limit)
        .map(|(k, _)| k.clone())
        .collect();
    for k in &over {
        map.remove(k);
    }
    over.len()
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[async_trait]
impl Store for ReferenceStore {
    /// A hash or handle already in use is a `Duplicate`, and nothing
    /// changes: a create never overwrites.
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut maps = self.lock();
        if maps.taken(record) {
            return Err(StoreError::Duplicate);
        }
        maps.insert(record.clone());
        Ok(())
    }

    /// Count, evict (or refuse) and insert in one step: that is what makes
    /// N racing sign-ins leave exactly the cap. Evictions leave the same
    /// tombstone as a revocation.
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        let mut maps = self.lock();
        if maps.taken(record) {
            return Err(StoreError::Duplicate);
        }
        let mut evicted = Vec::new();
        if let Some(user) = &record.user_id {
            let live = maps.user_sessions(user, now);
            let Some(excess) = cap.excess(live.len()) else {
                return Ok(Capped::Refused);
            };
            for old in live.into_iter().take(excess) {
                maps.bury(&old.hash, Ended::Revoked(Revocation::SessionLimit));
                evicted.push(old.handle);
            }
        }
        maps.insert(record.clone());
        Ok(Capped::Created { evicted })
    }

    /// Expired records are returned (the manager tells the user why they
    /// ended); records a kill switch refuses are not, and the switches are
    /// read under the same lock as the record.
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let maps = self.lock();
        let record = maps.sessions.get(hash);
        Ok(record.filter(|r| maps.refusal(r).is_none()).cloned())
    }

    /// Compare-and-set on the version, on a record valid at `now`. The user
    /// and handle are the stored ones whatever the caller sent: the indexes
    /// stay right.
    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let mut maps = self.lock();
        let Some(stored) = maps.live(&record.hash, now) else {
            return Ok(CasOutcome::Missing);
        };
        if stored.version != expected_version {
            return Ok(CasOutcome::Conflict);
        }
        let mut next = record.clone();
        next.handle = stored.handle.clone();
        next.user_id.clone_from(&stored.user_id);
        maps.sessions.insert(next.hash, next);
        Ok(CasOutcome::Applied)
    }

    /// Checks everything first (live, version, the new hash and handle
    /// free), then removes the old record and inserts the new one under the
    /// same lock: no reader sees both tokens or neither, and on any refusal
    /// the old session is intact. A new handle (a sign-in) retires the old
    /// one with the old record.
    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let mut maps = self.lock();
        let Some(stored) = maps.live(old, now) else {
            return Ok(CasOutcome::Missing);
        };
        if stored.version != expected_version {
            return Ok(CasOutcome::Conflict);
        }
        let new_handle = stored.handle != new.handle;
        if maps.sessions.contains_key(&new.hash)
            || (new_handle && maps.by_handle.contains_key(&new.handle))
        {
            return Err(StoreError::Duplicate);
        }
        maps.remove(old);
        maps.insert(new.clone());
        Ok(CasOutcome::Applied)
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.lock().remove(hash).is_some())
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        Ok(self.lock().bury(hash, why))
    }

    /// A tombstone still valid at `now`, or else the kill switch that
    /// refuses a record still stored.
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        let maps = self.lock();
        let tombstone = maps.tombstones.get(hash).filter(|(_, until)| now < *until);
        if let Some((why, _)) = tombstone {
            return Ok(Some(*why));
        }
        let refused = maps.sessions.get(hash).and_then(|r| maps.refusal(r));
        Ok(refused.map(Ended::Revoked))
    }

    /// Through the handle index; the owner check and the deletion are one
    /// step, so a user can never revoke another user's session.
    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        let mut maps = self.lock();
        let found = maps
            .by_handle
            .get(handle)
            .and_then(|h| maps.sessions.get(h));
        let Some(record) = found else {
            return Ok(false);
        };
        if owner.is_some_and(|owner| record.user_id.as_deref() != Some(owner)) {
            return Ok(false);
        }
        let hash = record.hash;
        Ok(maps.bury(&hash, Ended::Revoked(why)))
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self.lock().user_sessions(user_id, now))
    }

    /// Under the lock, so a racing `rotate` either ran before (and its new
    /// record is in the index, and goes) or runs after (and finds nothing).
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        let mut maps = self.lock();
        let hashes = maps.by_user.get(user_id).cloned().unwrap_or_default();
        let mut n = 0;
        for hash in hashes {
            let kept = maps.sessions.get(&hash).map(|r| &r.handle);
            if except.is_some() && kept == except {
                continue;
            }
            if maps.bury(&hash, Ended::Revoked(why)) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every session and every refresh-token family, in one step. The kill
    /// switches stay (they are policy, not sessions) and so do tombstones.
    async fn delete_all(&self) -> Result<u64, StoreError> {
        let mut maps = self.lock();
        let n = count(maps.sessions.len());
        maps.sessions.clear();
        maps.by_handle.clear();
        maps.by_user.clear();
        maps.refresh.clear();
        Ok(n)
    }

    /// Never backward: the later time (and its cause) wins, so setting is
    /// idempotent and racing setters converge.
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let mut maps = self.lock();
        let current = match scope {
            Scope::Everyone => maps.not_before_everyone,
            Scope::User(user) => maps.not_before_users.get(user).copied(),
        };
        let next = not_before::raised(current, to);
        match scope {
            Scope::Everyone => maps.not_before_everyone = Some(next),
            Scope::User(user) => {
                maps.not_before_users.insert(user.to_owned(), next);
            }
        }
        Ok(next)
    }

    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        let maps = self.lock();
        Ok(match scope {
            Scope::Everyone => maps.not_before_everyone,
            Scope::User(user) => maps.not_before_users.get(user).copied(),
        })
    }

    /// Sessions first, then tombstones and refresh tokens past their end,
    /// `limit` in all. A session that expired idle leaves an
    /// `expired_idle` tombstone (until its absolute deadline), so a person
    /// back after a long pause hears "inactivity", not "no session".
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut maps = self.lock();
        let expired: Vec<(TokenHash, ExpiryReason)> = maps
            .sessions
            .values()
            .filter_map(|r| Some((r.hash, r.deadlines.expired_at(now)?)))
            .take(limit)
            .collect();
        for (hash, reason) in &expired {
            if *reason == ExpiryReason::Idle {
                maps.bury(hash, Ended::Expired(ExpiryReason::Idle));
            } else {
                // Past the absolute deadline: a tombstone would be over.
                maps.remove(hash);
            }
        }
        let mut n = expired.len();
        n += purge(&mut maps.tombstones, limit - n, |(_, until)| *until <= now);
        n += purge(&mut maps.refresh, limit - n, |r| r.expires_at <= now);
        Ok(count(n))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl RefreshStore for ReferenceStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let mut maps = self.lock();
        if maps.refresh.contains_key(&record.hash) {
            return Err(StoreError::Duplicate);
        }
        maps.refresh.insert(record.hash, record.clone());
        Ok(())
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        Ok(self.lock().refresh.get(hash).cloned())
    }

    /// Check unused and mark used in one step: of racing exchanges of one
    /// token exactly one rotates, and the others see who won (the sealed
    /// child lets a retry within the grace period get the same token).
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let mut maps = self.lock();
        let Some(record) = maps.refresh.get(parent).filter(|r| now < r.expires_at) else {
            return Ok(RefreshUse::Unknown);
        };
        if let Some(used) = &record.used {
            return Ok(RefreshUse::AlreadyUsed(used.clone()));
        }
        if maps.refresh.contains_key(&child.hash) {
            return Err(StoreError::Duplicate);
        }
        let used = UsedRefresh {
            at: now,
            child: child.hash,
            sealed_child: *sealed_child,
        };
        if let Some(record) = maps.refresh.get_mut(parent) {
            record.used = Some(used);
        }
        maps.refresh.insert(child.hash, child.clone());
        Ok(RefreshUse::Rotated)
    }

    /// A scan, for brevity: a real backend indexes tokens by family.
    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        let mut maps = self.lock();
        let before = maps.refresh.len();
        maps.refresh.retain(|_, r| r.family != *family);
        Ok(count(before - maps.refresh.len()))
    }

    /// Through the handle index, which a rotation keeps and a sign-in
    /// retires; refused by the kill switches as [`Store::load`] is.
    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let maps = self.lock();
        let record = maps
            .by_handle
            .get(handle)
            .and_then(|h| maps.sessions.get(h));
        Ok(record.filter(|r| maps.refusal(r).is_none()).cloned())
    }
}

/// The store conformance suite, one test per case:
/// `cargo test -p tessera --features testkit --lib store::reference::`.
#[cfg(all(test, feature = "testkit"))]
mod conformance {
    use std::sync::Arc;

    use super::ReferenceStore;

    crate::store_conformance!(async { Arc::new(ReferenceStore::new()) });
}

/// The refresh-token conformance suite, one test per case.
#[cfg(all(test, feature = "testkit"))]
mod refresh_conformance {
    use std::sync::Arc;

    use super::ReferenceStore;

    crate::refresh_conformance!(async { Arc::new(ReferenceStore::new()) });
}
