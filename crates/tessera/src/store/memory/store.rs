//! `impl Store for MemoryStore`: the trait over the slab and its indexes
//! (`mod.rs`).

use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{self, NotBefore, Scope};
use crate::policy::SessionCap;
use crate::record::{SessionHandle, SessionRecord};
use crate::store::{Capped, CasOutcome, Modify, ModifyFn, Store};
use crate::time::Timestamp;
use crate::token::TokenHash;
use async_trait::async_trait;

use super::{Inner, MemoryStore, SCAN_ON_CREATE, Slot, StoredHandle};

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.find(&record.hash).is_some() || inner.has_handle(&record.handle) {
            return Err(StoreError::Duplicate);
        }
        let slot = Slot::new(record)?;
        inner.purge(record.created_at, usize::MAX, SCAN_ON_CREATE);
        inner.insert(slot)
    }

    /// Counts, evicts (or refuses) and inserts under the one store lock,
    /// so racing creations for a user are serialized.
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        let mut inner = self.lock();
        if inner.find(&record.hash).is_some() || inner.has_handle(&record.handle) {
            return Err(StoreError::Duplicate);
        }
        let slot = Slot::new(record)?;
        inner.purge(record.created_at, usize::MAX, SCAN_ON_CREATE);
        let mut evicted = Vec::new();
        if let Some(user) = record.user_id.as_deref() {
            // The user's live sessions, oldest first.
            let mut live: Vec<(i64, SessionHandle, u32)> = inner
                .user_slots(user)
                .into_iter()
                .filter_map(|i| {
                    let s = inner.slot(i).filter(|s| s.is_valid_at(now))?;
                    Some((s.created_at, s.handle.to_handle(), i))
                })
                .collect();
            let Some(excess) = cap.excess(live.len()) else {
                return Ok(Capped::Refused);
            };
            live.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (_, handle, index) in live.into_iter().take(excess) {
                if inner.bury(index, Ended::Revoked(Revocation::SessionLimit)) {
                    evicted.push(handle);
                }
            }
        }
        inner.insert(slot)?;
        Ok(Capped::Created { evicted })
    }

    /// The record and the not-befores are read under the one lock.
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let inner = self.lock();
        match inner.find(hash) {
            Some(index) => inner.usable(index),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(index) = inner.live(&record.hash, now) else {
            return Ok(CasOutcome::Missing);
        };
        let Some(slot) = inner.slot_mut(index) else {
            return Ok(CasOutcome::Missing);
        };
        if slot.version != expected_version {
            return Ok(CasOutcome::Conflict);
        }
        // The user and handle are fixed for a record's life (indexes):
        // `set` leaves them alone.
        slot.set(record)?;
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
        let Some(index) = inner.live(old, now) else {
            return Ok(CasOutcome::Missing);
        };
        if inner.slot(index).map(|s| s.version) != Some(expected_version) {
            return Ok(CasOutcome::Conflict);
        }
        if inner.find(&new.hash).is_some() {
            return Err(StoreError::Duplicate);
        }
        // A sign-in moves the session to a new handle, which must be free.
        let same_handle = inner
            .slot(index)
            .is_some_and(|s| s.handle == StoredHandle::of(&new.handle));
        if !same_handle && inner.has_handle(&new.handle) {
            return Err(StoreError::Duplicate);
        }
        // Both steps under one lock: no reader sees neither or both. The
        // new slot is built first, so a failure leaves the old one intact
        // (and the insert reuses the slot just freed, so it cannot fail).
        let slot = Slot::new(new)?;
        inner.remove_at(index);
        inner.insert(slot)?;
        Ok(CasOutcome::Applied)
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.lock().remove(hash))
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.find(hash) {
            Some(index) => Ok(inner.bury(index, why)),
            None => Ok(false),
        }
    }

    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        let inner = self.lock();
        if let Some((why, _)) = inner.tombstones.get(hash).filter(|(_, until)| now < *until) {
            return Ok(Some(*why));
        }
        let Some(slot) = inner.find(hash).and_then(|i| inner.slot(i)) else {
            return Ok(None);
        };
        let record = slot.to_record()?;
        Ok(inner.refusal(&record).map(Ended::Revoked))
    }

    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let mut inner = self.lock();
        let slot = match scope {
            Scope::Everyone => &mut inner.not_before_everyone,
            Scope::User(user) => {
                let current = inner.not_before_users.get(user).copied();
                let next = not_before::raised(current, to);
                inner.not_before_users.insert(user.to_owned(), next);
                return Ok(next);
            }
        };
        let next = not_before::raised(*slot, to);
        *slot = Some(next);
        Ok(next)
    }

    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        let inner = self.lock();
        Ok(match scope {
            Scope::Everyone => inner.not_before_everyone,
            Scope::User(user) => inner.not_before_users.get(user).copied(),
        })
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(index) = inner.find_handle(handle) else {
            return Ok(false);
        };
        if let Some(owner) = owner {
            let owned = inner
                .slot(index)
                .is_some_and(|s| s.user.as_deref() == Some(owner));
            if !owned {
                return Ok(false);
            }
        }
        Ok(inner.bury(index, Ended::Revoked(why)))
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.lock();
        let mut out = Vec::new();
        for index in inner.user_slots(user_id) {
            if inner.slot(index).is_some_and(|s| s.is_valid_at(now)) {
                out.extend(inner.usable(index)?);
            }
        }
        drop(inner);
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
        why: Revocation,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let except = except.map(StoredHandle::of);
        let mut n = 0;
        for index in inner.user_slots(user_id) {
            let keep = inner
                .slot(index)
                .is_some_and(|s| Some(&s.handle) == except.as_ref());
            if !keep && inner.bury(index, Ended::Revoked(why)) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Purges expired sessions, then expired refresh tokens, `limit` in all.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        // One full pass over the slab at most.
        let scan = inner.capacity();
        let sessions = inner.purge(now, limit, scan);
        let left = limit.saturating_sub(usize::try_from(sessions).unwrap_or(usize::MAX));
        let refresh = inner.purge_refresh(now, left);
        let left = left.saturating_sub(usize::try_from(refresh).unwrap_or(usize::MAX));
        Ok(sessions + refresh + inner.purge_tombstones(now, left))
    }

    /// Clears every map under the lock: no rotation can interleave.
    async fn delete_all(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let n = u64::try_from(inner.by_hash.len()).unwrap_or(u64::MAX);
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
        let Some(index) = inner.live(hash, now) else {
            return Ok(None);
        };
        let Some(slot) = inner.slot_mut(index) else {
            return Ok(None);
        };
        let current = slot.to_record()?;
        let mut record = current.clone();
        if f(&mut record) == Modify::Keep {
            return Ok(Some(current));
        }
        record.version = current.version.saturating_add(1);
        record.user_id = current.user_id;
        record.handle = current.handle;
        record.hash = *hash;
        slot.set(&record)?;
        Ok(Some(record))
    }

    /// Under the lock, a stored version equal to the loaded one means the
    /// slot still holds exactly `current` (every write bumps the version),
    /// so the change is applied to the caller's copy instead of decoding the
    /// slot again. Any other version falls back to [`Store::modify`], which
    /// starts from the stored record: no update is lost.
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        {
            let mut inner = self.lock();
            let Some(index) = inner.live(&current.hash, now) else {
                return Ok(None);
            };
            let Some(slot) = inner.slot_mut(index) else {
                return Ok(None);
            };
            if slot.version == current.version {
                let mut record = current.clone();
                if f(&mut record) == Modify::Keep {
                    // Report the record as stored, not the closure's scratch.
                    return Ok(Some(current.clone()));
                }
                // The identity of a session never changes in a write.
                record.version = current.version.saturating_add(1);
                record.user_id.clone_from(&current.user_id);
                record.handle = current.handle.clone();
                record.hash = current.hash;
                slot.set(&record)?;
                return Ok(Some(record));
            }
        }
        self.modify(&current.hash, now, f).await
    }
}
