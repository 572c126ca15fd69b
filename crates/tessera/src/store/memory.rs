//! An in-process store for tests and development.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{CasOutcome, Modify, ModifyFn, Store};
use crate::error::StoreError;
use crate::record::{SessionHandle, SessionRecord};
use crate::refresh::{RefreshRecord, RefreshStore, RefreshUse, UsedRefresh};
use crate::time::Timestamp;
use crate::token::SECRET_LEN;
use crate::token::TokenHash;

/// Expired records removed, at most, by each `create` (amortised purging,
/// so the map cannot grow without bound even if nobody calls
/// [`Store::purge_expired`]).
const PURGE_ON_CREATE: usize = 16;

/// Sessions in a `HashMap` behind one mutex.
///
/// **For tests and development only**: sessions live in one process and
/// vanish on restart. It is complete, though: compare-and-set, atomic
/// rotation, user index, and purging of expired records (each `create`
/// removes a few, and [`Store::purge_expired`] removes any number), so it
/// never grows without bound.
///
/// ```
/// use tessera::SessionManager;
/// use tessera::store::MemoryStore;
///
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// # Ok::<(), tessera::policy::PolicyError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<TokenHash, SessionRecord>,
    by_handle: HashMap<SessionHandle, TokenHash>,
    by_user: HashMap<String, HashSet<TokenHash>>,
    /// (earliest deadline, key): the purge order.
    by_deadline: BTreeSet<(Timestamp, TokenHash)>,
    refresh: HashMap<TokenHash, RefreshRecord>,
    refresh_by_family: HashMap<SessionHandle, HashSet<TokenHash>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held, expired ones included.
    ///
    /// ```
    /// assert_eq!(tessera::store::MemoryStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the store, so recover.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, record: SessionRecord) {
        self.by_handle.insert(record.handle.clone(), record.hash);
        if let Some(user) = &record.user_id {
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(record.hash);
        }
        self.by_deadline
            .insert((record.deadlines.next(), record.hash));
        self.records.insert(record.hash, record);
    }

    fn remove(&mut self, hash: &TokenHash) -> Option<SessionRecord> {
        let record = self.records.remove(hash)?;
        self.by_handle.remove(&record.handle);
        if let Some(user) = &record.user_id {
            if let Some(set) = self.by_user.get_mut(user) {
                set.remove(hash);
                if set.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        self.by_deadline.remove(&(record.deadlines.next(), *hash));
        Some(record)
    }

    /// Replaces a record in place (same key, same user and handle).
    fn replace(&mut self, record: SessionRecord) {
        if let Some(old) = self.records.get(&record.hash) {
            self.by_deadline
                .remove(&(old.deadlines.next(), record.hash));
        }
        self.by_deadline
            .insert((record.deadlines.next(), record.hash));
        self.records.insert(record.hash, record);
    }

    fn live(&self, hash: &TokenHash, now: Timestamp) -> Option<&SessionRecord> {
        self.records.get(hash).filter(|r| r.is_valid_at(now))
    }

    fn insert_refresh(&mut self, record: RefreshRecord) {
        self.refresh_by_family
            .entry(record.family.clone())
            .or_default()
            .insert(record.hash);
        self.refresh.insert(record.hash, record);
    }

    fn purge_refresh(&mut self, now: Timestamp, limit: usize) -> u64 {
        let expired: Vec<(TokenHash, SessionHandle)> = self
            .refresh
            .values()
            .filter(|r| r.expires_at <= now)
            .take(limit)
            .map(|r| (r.hash, r.family.clone()))
            .collect();
        for (hash, family) in &expired {
            self.refresh.remove(hash);
            if let Some(set) = self.refresh_by_family.get_mut(family) {
                set.remove(hash);
                if set.is_empty() {
                    self.refresh_by_family.remove(family);
                }
            }
        }
        u64::try_from(expired.len()).unwrap_or(u64::MAX)
    }

    fn purge(&mut self, now: Timestamp, limit: usize) -> u64 {
        let expired: Vec<TokenHash> = self
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .take(limit)
            .map(|(_, hash)| *hash)
            .collect();
        let mut n = 0;
        for hash in expired {
            if self.remove(&hash).is_some() {
                n += 1;
            }
        }
        n
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.records.contains_key(&record.hash) || inner.by_handle.contains_key(&record.handle)
        {
            return Err(StoreError::Duplicate);
        }
        inner.purge(record.created_at, PURGE_ON_CREATE);
        inner.insert(record.clone());
        Ok(())
    }

    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.lock().records.get(hash).cloned())
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(current) = inner.live(&record.hash, now) else {
            return Ok(CasOutcome::Missing);
        };
        if current.version != expected_version {
            return Ok(CasOutcome::Conflict);
        }
        let mut record = record.clone();
        // The user and handle are fixed for a record's life (indexes).
        record.user_id.clone_from(&current.user_id);
        record.handle = current.handle.clone();
        inner.replace(record);
        Ok(CasOutcome::Applied)
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(current) = inner.live(old, now) else {
            return Ok(CasOutcome::Missing);
        };
        if current.version != expected_version {
            return Ok(CasOutcome::Conflict);
        }
        if inner.records.contains_key(&new.hash) {
            return Err(StoreError::Duplicate);
        }
        // Both steps under one lock: no reader sees neither or both.
        inner.remove(old);
        inner.insert(new.clone());
        Ok(CasOutcome::Applied)
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.lock().remove(hash).is_some())
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(hash) = inner.by_handle.get(handle).copied() else {
            return Ok(false);
        };
        if let Some(owner) = owner {
            let owned = inner
                .records
                .get(&hash)
                .is_some_and(|r| r.user_id.as_deref() == Some(owner));
            if !owned {
                return Ok(false);
            }
        }
        Ok(inner.remove(&hash).is_some())
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<SessionRecord> = inner
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|hash| inner.live(hash, now).cloned())
            .collect();
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.handle.cmp(&b.handle))
        });
        Ok(out)
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let hashes: Vec<TokenHash> = inner
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let mut n = 0;
        for hash in hashes {
            let keep = inner
                .records
                .get(&hash)
                .is_some_and(|r| Some(&r.handle) == except);
            if !keep && inner.remove(&hash).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Purges expired sessions, then expired refresh tokens, `limit` in all.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let sessions = inner.purge(now, limit);
        let left = limit.saturating_sub(usize::try_from(sessions).unwrap_or(usize::MAX));
        Ok(sessions + inner.purge_refresh(now, left))
    }

    /// Clears every map under the lock: no rotation can interleave.
    async fn delete_all(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let n = u64::try_from(inner.records.len()).unwrap_or(u64::MAX);
        *inner = Inner::default();
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Runs `f` under the lock: no retries, no lost updates.
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(current) = inner.live(hash, now) else {
            return Ok(None);
        };
        let mut record = current.clone();
        if f(&mut record) == Modify::Keep {
            return Ok(Some(record));
        }
        record.version = current.version.saturating_add(1);
        record.user_id.clone_from(&current.user_id);
        record.handle = current.handle.clone();
        record.hash = *hash;
        inner.replace(record.clone());
        Ok(Some(record))
    }
}

#[async_trait]
impl RefreshStore for MemoryStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.refresh.contains_key(&record.hash) {
            return Err(StoreError::Duplicate);
        }
        inner.insert_refresh(record.clone());
        Ok(())
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        Ok(self.lock().refresh.get(hash).cloned())
    }

    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.refresh.get_mut(parent) else {
            return Ok(RefreshUse::Unknown);
        };
        if now >= record.expires_at {
            return Ok(RefreshUse::Unknown);
        }
        if let Some(used) = &record.used {
            return Ok(RefreshUse::AlreadyUsed(used.clone()));
        }
        if inner.refresh.contains_key(&child.hash) {
            return Err(StoreError::Duplicate);
        }
        if let Some(record) = inner.refresh.get_mut(parent) {
            record.used = Some(UsedRefresh {
                at: now,
                child: child.hash,
                sealed_child: *sealed_child,
            });
        }
        inner.insert_refresh(child.clone());
        Ok(RefreshUse::Rotated)
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let hashes = inner.refresh_by_family.remove(family).unwrap_or_default();
        let mut n = 0;
        for hash in hashes {
            if inner.refresh.remove(&hash).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .by_handle
            .get(handle)
            .and_then(|hash| inner.records.get(hash))
            .cloned())
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        let store = Arc::new(super::MemoryStore::new());
        crate::testkit::run_all(store.clone()).await;
        crate::testkit::run_refresh_all(store.clone(), store).await;
    }
}
