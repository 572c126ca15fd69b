//! `impl RefreshStore for MemoryStore`: refresh-token families beside the
//! sessions.

use crate::error::StoreError;
use crate::record::{SessionHandle, SessionRecord};
use crate::refresh::{RefreshRecord, RefreshStore, RefreshUse, UsedRefresh};
use crate::time::Timestamp;
use crate::token::SECRET_LEN;
use crate::token::TokenHash;
use async_trait::async_trait;

use super::MemoryStore;

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
        match inner.find_handle(handle) {
            Some(index) => inner.usable(index),
            None => Ok(None),
        }
    }
}
