//! Storage of device bindings, challenges and bound cookies.
//!
//! Everything is keyed by the session's public handle. A handle survives a
//! token rotation but not a sign-in (a sign-in is a new session identity),
//! so a binding follows its session through rotations and never outlives
//! the identity it was made for. Every row expires with the session's
//! absolute deadline at the latest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::proof::PublicJwk;
use crate::error::StoreError;
use crate::record::SessionHandle;
use crate::time::Timestamp;

/// A session bound to a device key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbscBinding {
    /// The session it belongs to.
    pub handle: SessionHandle,
    /// The DBSC `session_identifier` the browser names on refresh.
    pub session_id: String,
    /// RFC 7638 thumbprint of `jwk`.
    pub thumbprint: String,
    /// The registered public key.
    pub jwk: PublicJwk,
    /// When the key was registered.
    pub bound_at: Timestamp,
    /// When the binding goes (the session's absolute deadline).
    pub expires_at: Timestamp,
}

/// What a challenge or bound cookie is, in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Secret {
    /// A challenge (single use; consumed by a proof's `jti`).
    Challenge,
    /// A bound cookie (checked, never consumed; expires by itself).
    Cookie,
}

impl Secret {
    /// Short tag used by stores in keys and columns: `c` or `k`.
    pub const fn tag(self) -> &'static str {
        match self {
            Self::Challenge => "c",
            Self::Cookie => "k",
        }
    }
}

/// Storage of DBSC state. Separate from [`crate::Store`] (as
/// [`crate::refresh::RefreshStore`] is) so a deployment without DBSC pays
/// nothing; every store crate implements it and runs
/// `tessera::testkit::run_dbsc_all` unchanged.
///
/// Challenges and bound cookies are stored by the SHA-256 of their value
/// (hex, [`super::digest`]): a store dump yields no cookie that works.
#[async_trait]
pub trait DbscStore: Send + Sync + 'static {
    /// Stores the binding unless the handle already has a live one.
    /// Returns false (and changes nothing) if it has: a session is bound
    /// once, so a thief holding the cookies cannot re-register it with
    /// their own key.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn bind(&self, binding: &DbscBinding, now: Timestamp) -> Result<bool, StoreError>;

    /// The live binding of `handle` at `now`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn load_binding(
        &self,
        handle: &SessionHandle,
        now: Timestamp,
    ) -> Result<Option<DbscBinding>, StoreError>;

    /// Stores a challenge or bound-cookie digest for `handle`, expiring at
    /// `expires_at`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn put_secret(
        &self,
        handle: &SessionHandle,
        kind: Secret,
        digest: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Atomically deletes the challenge `digest` of `handle` if it is live
    /// at `now`; true if this call deleted it. Concurrent calls on one
    /// challenge, on any instance: exactly one gets true.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn consume_challenge(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// True if the bound cookie `digest` of `handle` is live at `now`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn cookie_is_live(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Deletes the binding, challenges and bound cookies of `handle`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn delete_dbsc(&self, handle: &SessionHandle) -> Result<(), StoreError>;
}

#[derive(Debug, Default)]
struct Inner {
    bindings: HashMap<SessionHandle, DbscBinding>,
    secrets: HashMap<(SessionHandle, Secret, String), Timestamp>,
}

/// An in-process [`DbscStore`] for tests, development and single-instance
/// deployments (pair it with [`crate::store::MemoryStore`]). Expired rows
/// are dropped lazily and by [`MemoryDbscStore::purge_expired`].
///
/// ```
/// use tessera::dbsc::{DbscStore, MemoryDbscStore, Secret};
/// use tessera::record::SessionHandle;
/// use tessera::time::Timestamp;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryDbscStore::new();
/// let handle = SessionHandle::generate()?;
/// let (now, later) = (Timestamp::from_millis(0), Timestamp::from_millis(1_000));
/// store.put_secret(&handle, Secret::Challenge, "d1", later).await?;
/// assert!(store.consume_challenge(&handle, "d1", now).await?);
/// assert!(!store.consume_challenge(&handle, "d1", now).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryDbscStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryDbscStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The maps are consistent after every statement; a panic elsewhere
        // while holding the lock leaves nothing half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every expired row; returns how many.
    pub fn purge_expired(&self, now: Timestamp) -> u64 {
        let mut inner = self.lock();
        let before = inner.bindings.len() + inner.secrets.len();
        inner.bindings.retain(|_, b| b.expires_at > now);
        inner.secrets.retain(|_, exp| *exp > now);
        let after = inner.bindings.len() + inner.secrets.len();
        u64::try_from(before - after).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl DbscStore for MemoryDbscStore {
    async fn bind(&self, binding: &DbscBinding, now: Timestamp) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if let Some(old) = inner.bindings.get(&binding.handle) {
            if old.expires_at > now {
                return Ok(false);
            }
        }
        inner
            .bindings
            .insert(binding.handle.clone(), binding.clone());
        Ok(true)
    }

    async fn load_binding(
        &self,
        handle: &SessionHandle,
        now: Timestamp,
    ) -> Result<Option<DbscBinding>, StoreError> {
        Ok(self
            .lock()
            .bindings
            .get(handle)
            .filter(|b| b.expires_at > now)
            .cloned())
    }

    async fn put_secret(
        &self,
        handle: &SessionHandle,
        kind: Secret,
        digest: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock()
            .secrets
            .insert((handle.clone(), kind, digest.to_owned()), expires_at);
        Ok(())
    }

    async fn consume_challenge(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = (handle.clone(), Secret::Challenge, digest.to_owned());
        Ok(self
            .lock()
            .secrets
            .remove(&key)
            .is_some_and(|exp| exp > now))
    }

    async fn cookie_is_live(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = (handle.clone(), Secret::Cookie, digest.to_owned());
        Ok(self.lock().secrets.get(&key).is_some_and(|exp| *exp > now))
    }

    async fn delete_dbsc(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.bindings.remove(handle);
        inner.secrets.retain(|(h, _, _), _| h != handle);
        Ok(())
    }
}
