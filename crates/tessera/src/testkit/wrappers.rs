//! Store wrappers for tests: count calls, or fail on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::SessionCap;
use crate::record::{SessionHandle, SessionRecord};
use crate::store::{Capped, CasOutcome, ModifyFn, Patch, PatchOutcome, Store};
use crate::time::Timestamp;
use crate::token::TokenHash;

/// Calls made through a [`CountingStore`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `load` calls.
    pub loads: u64,
    /// Calls that write: create, update, rotate, modify, modify_loaded,
    /// patch, deletes (including `delete_all`), purge.
    pub writes: u64,
    /// Every call, reads and writes.
    pub total: u64,
}

/// Wraps a store and counts calls, to prove that a code path makes no store
/// call (lazy loading, malformed tokens) or no write (touch policy).
///
/// ```
/// use tessera::store::{MemoryStore, Store};
/// use tessera::testkit::CountingStore;
/// use tessera::token::SessionToken;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = CountingStore::new(MemoryStore::new());
/// store.load(&SessionToken::generate()?.hash()).await?;
/// assert_eq!(store.counts().loads, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: Arc<S>,
    loads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

/// Clones share the wrapped store and the counters.
impl<S> Clone for CountingStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            loads: self.loads.clone(),
            writes: self.writes.clone(),
            total: self.total.clone(),
        }
    }
}

impl<S: Store> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            loads: Arc::default(),
            writes: Arc::default(),
            total: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            loads: self.loads.load(Ordering::SeqCst),
            writes: self.writes.load(Ordering::SeqCst),
            total: self.total.load(Ordering::SeqCst),
        }
    }

    /// Resets all counts to zero.
    pub fn reset(&self) {
        self.loads.store(0, Ordering::SeqCst);
        self.writes.store(0, Ordering::SeqCst);
        self.total.store(0, Ordering::SeqCst);
    }

    fn read(&self) {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    fn other(&self) {
        self.total.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: Store> Store for CountingStore<S> {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.write();
        self.inner.create(record).await
    }
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        self.write();
        self.inner.create_capped(record, cap, now).await
    }
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        self.write();
        self.inner.raise_not_before(scope, to).await
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        self.read();
        self.inner.not_before(scope).await
    }
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        self.read();
        self.inner.load(hash).await
    }
    /// Counted as a read when it answers (as the `load` it replaces was).
    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        let found = self.inner.load_in_memory(hash, now);
        if found.is_some() {
            self.read();
        }
        found
    }
    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.write();
        self.inner.update(expected_version, record, now).await
    }
    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.write();
        self.inner.rotate(old, expected_version, new, now).await
    }
    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(hash).await
    }
    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete_by_handle(handle, owner, why).await
    }
    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        self.write();
        self.inner.end(hash, why).await
    }
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.other();
        self.inner.ended(hash, now).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.other();
        self.inner.list_by_user(user_id, now).await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        self.write();
        self.inner.delete_by_user(user_id, except, why).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.write();
        self.inner.purge_expired(now, limit).await
    }
    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.write();
        self.inner.delete_all().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.other();
        self.inner.ping().await
    }
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.write();
        self.inner.modify(hash, now, f).await
    }
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.write();
        self.inner.modify_loaded(current, now, f).await
    }
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        self.write();
        self.inner.patch(hash, base, patch, now).await
    }
}

/// Wraps a store and, while switched on, fails every call with
/// [`StoreError::Unavailable`] — to prove that callers fail closed and
/// recover.
///
/// ```
/// use tessera::store::{MemoryStore, Store};
/// use tessera::testkit::FailingStore;
/// # async fn demo() {
/// let store = FailingStore::new(MemoryStore::new());
/// store.set_failing(true);
/// assert!(store.ping().await.is_err());
/// store.set_failing(false);
/// assert!(store.ping().await.is_ok());
/// # }
/// ```
#[derive(Debug)]
pub struct FailingStore<S> {
    inner: Arc<S>,
    failing: Arc<AtomicBool>,
}

/// Clones share the wrapped store and the failure switch.
impl<S> Clone for FailingStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            failing: self.failing.clone(),
        }
    }
}

impl<S: Store> FailingStore<S> {
    /// Wraps `inner`, initially working.
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            failing: Arc::default(),
        }
    }

    /// Switches failure on or off (clones share the switch).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("injected failure"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl<S: Store> Store for FailingStore<S> {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.create(record).await
    }
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        self.check()?;
        self.inner.create_capped(record, cap, now).await
    }
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        self.check()?;
        self.inner.raise_not_before(scope, to).await
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        self.check()?;
        self.inner.not_before(scope).await
    }
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        self.check()?;
        self.inner.load(hash).await
    }
    /// `None` while failing, so that the `load` that follows fails.
    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        self.check().ok()?;
        self.inner.load_in_memory(hash, now)
    }
    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.check()?;
        self.inner.update(expected_version, record, now).await
    }
    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.check()?;
        self.inner.rotate(old, expected_version, new, now).await
    }
    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(hash).await
    }
    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_by_handle(handle, owner, why).await
    }
    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.end(hash, why).await
    }
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.check()?;
        self.inner.ended(hash, now).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.check()?;
        self.inner.list_by_user(user_id, now).await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_by_user(user_id, except, why).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge_expired(now, limit).await
    }
    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_all().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.check()?;
        self.inner.modify(hash, now, f).await
    }
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.check()?;
        self.inner.modify_loaded(current, now, f).await
    }
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        self.check()?;
        self.inner.patch(hash, base, patch, now).await
    }
}
