//! An in-process store for tests and development.
//!
//! # Layout (why it is small)
//!
//! A session costs about 250 bytes here (the target in docs/performance.md
//! is at most 300 at a million sessions). Records are kept in a *slab* of fixed-size [`Slot`]s
//! (chunks of [`CHUNK`] slots, so growth never doubles the whole array), and
//! every index is a [`HashTable`] of 4-byte slot numbers hashed by a field of
//! the slot itself, so no key is stored twice:
//!
//! - `by_hash`: token hash → slot (the read path);
//! - `by_handle`: public handle → slot (revocation, device list);
//! - `by_user`: user id → the first slot of that user's sessions, which are
//!   chained through `prev_user`/`next_user` in the slots themselves.
//!
//! A slot holds the token hash, the handle and the CSRF secret as raw bytes,
//! times as milliseconds, the data as compact JSON bytes (nothing at all
//! when empty) and the client metadata boxed only when present. Expired
//! records are found by scanning the slab (a sweep from a cursor), not by a
//! deadline index, which would cost more per session than the record.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;

use crate::csrf::CsrfSecret;
use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{self, NotBefore};
use crate::policy::{Deadlines, ExpiryReason, SessionClass};
use crate::record::{ClientMeta, Data, SessionHandle, SessionRecord};
use crate::refresh::RefreshRecord;
use crate::time::Timestamp;
use crate::token::TokenHash;

#[cfg(test)]
mod layout_tests;
mod refresh;
mod store;

/// Slots examined, at most, by each `create` to remove expired records
/// (amortised purging, so the store cannot grow without bound even if
/// nobody calls [`Store::purge_expired`](crate::store::Store::purge_expired)).
const SCAN_ON_CREATE: usize = 32;

/// Slots per slab chunk.
const CHUNK: usize = 1024;

/// "No slot" in the user chains.
const NIL: u32 = u32::MAX;

/// `authenticated_at` of a session that never authenticated.
const NEVER: i64 = i64::MIN;

/// Sessions in a slab of compact slots behind one mutex.
///
/// **For tests and development only**: sessions live in one process and
/// vanish on restart. It is complete, though: compare-and-set, atomic
/// rotation, user index, and purging of expired records (each `create`
/// removes a few, and [`Store::purge_expired`](crate::store::Store::purge_expired) removes any number), so it
/// never grows without bound. About 250 bytes per session with small data.
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

/// A handle as stored: its 128 random bits, or (for a handle that did not
/// come from the generator, e.g. one decoded from elsewhere) its text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredHandle {
    Raw([u8; 16]),
    Text(Box<str>),
}

impl StoredHandle {
    fn of(handle: &SessionHandle) -> Self {
        match handle.to_raw() {
            Some(raw) => Self::Raw(raw),
            None => Self::Text(handle.as_str().into()),
        }
    }

    fn to_handle(&self) -> SessionHandle {
        match self {
            Self::Raw(raw) => SessionHandle::from_raw(raw),
            Self::Text(text) => SessionHandle::parse(text).unwrap_or_else(|| {
                // Only reachable for text that was stored from a handle, so
                // round-trip it through serde, which accepts any text.
                serde_json::from_value(serde_json::Value::String(text.to_string()))
                    .unwrap_or_else(|_| SessionHandle::from_raw(&[0; 16]))
            }),
        }
    }

    fn hash_with(&self, hasher: &RandomState) -> u64 {
        match self {
            Self::Raw(raw) => hasher.hash_one(raw),
            Self::Text(text) => hasher.hash_one(text.as_bytes()),
        }
    }
}

/// One session, compactly.
#[derive(Debug)]
struct Slot {
    hash: [u8; 32],
    csrf: [u8; 32],
    handle: StoredHandle,
    user: Option<Box<str>>,
    /// The data map as JSON; empty (no allocation) when it has no key.
    data: Box<[u8]>,
    client: Option<Box<ClientMeta>>,
    created_at: i64,
    last_seen_at: i64,
    /// [`NEVER`] for `None`.
    authenticated_at: i64,
    idle: i64,
    absolute: i64,
    class: SessionClass,
    version: u64,
    prev_user: u32,
    next_user: u32,
}

impl Slot {
    fn new(record: &SessionRecord) -> Result<Self, StoreError> {
        let mut slot = Self {
            hash: *record.hash.as_bytes(),
            csrf: [0; 32],
            handle: StoredHandle::of(&record.handle),
            user: record.user_id.as_deref().map(Box::from),
            data: Box::default(),
            client: None,
            created_at: 0,
            last_seen_at: 0,
            authenticated_at: NEVER,
            idle: 0,
            absolute: 0,
            class: SessionClass::Default,
            version: 0,
            prev_user: NIL,
            next_user: NIL,
        };
        slot.set(record)?;
        Ok(slot)
    }

    /// Copies everything but the key, the handle and the user (which never
    /// change for a slot) from `record`.
    fn set(&mut self, record: &SessionRecord) -> Result<(), StoreError> {
        self.csrf = *record.csrf_secret.as_bytes();
        self.data = if record.data.is_empty() {
            Box::default()
        } else {
            serde_json::to_vec(&record.data)
                .map_err(StoreError::backend)?
                .into_boxed_slice()
        };
        self.client =
            (record.client != ClientMeta::default()).then(|| Box::new(record.client.clone()));
        self.created_at = record.created_at.as_millis();
        self.last_seen_at = record.last_seen_at.as_millis();
        self.authenticated_at = record.authenticated_at.map_or(NEVER, Timestamp::as_millis);
        self.idle = record.deadlines.idle.as_millis();
        self.absolute = record.deadlines.absolute.as_millis();
        self.class = record.class;
        self.version = record.version;
        Ok(())
    }

    fn deadlines(&self) -> Deadlines {
        Deadlines {
            idle: Timestamp::from_millis(self.idle),
            absolute: Timestamp::from_millis(self.absolute),
        }
    }

    fn is_valid_at(&self, now: Timestamp) -> bool {
        self.deadlines().expired_at(now).is_none()
    }

    fn to_record(&self) -> Result<SessionRecord, StoreError> {
        let data: Data = if self.data.is_empty() {
            Data::new()
        } else {
            serde_json::from_slice(&self.data).map_err(|e| StoreError::Corrupt(e.to_string()))?
        };
        Ok(SessionRecord {
            hash: TokenHash::from_bytes(self.hash),
            handle: self.handle.to_handle(),
            user_id: self.user.as_deref().map(str::to_owned),
            data,
            created_at: Timestamp::from_millis(self.created_at),
            last_seen_at: Timestamp::from_millis(self.last_seen_at),
            authenticated_at: (self.authenticated_at != NEVER)
                .then(|| Timestamp::from_millis(self.authenticated_at)),
            deadlines: self.deadlines(),
            class: self.class,
            version: self.version,
            csrf_secret: CsrfSecret::from_bytes(self.csrf),
            client: self.client.as_deref().cloned().unwrap_or_default(),
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The slab: `None` is a free slot (listed in `free`).
    chunks: Vec<Box<[Option<Slot>]>>,
    free: Vec<u32>,
    by_hash: HashTable<u32>,
    by_handle: HashTable<u32>,
    by_user: HashTable<u32>,
    hasher: RandomState,
    /// Where the next expiry scan starts.
    cursor: usize,
    refresh: HashMap<TokenHash, RefreshRecord>,
    refresh_by_family: HashMap<SessionHandle, HashSet<TokenHash>>,
    /// Why ended sessions ended, by token hash, until their absolute
    /// deadline (see [`crate::ended`]).
    tombstones: HashMap<TokenHash, (Ended, Timestamp)>,
    /// The global not-before (see [`crate::not_before`]).
    not_before_everyone: Option<NotBefore>,
    /// Not-befores by user. One entry per user whose sessions were ever
    /// switched off: bounded by the number of users.
    not_before_users: HashMap<String, NotBefore>,
}

impl Inner {
    /// Why the record in `slot` is refused by a not-before, if it is.
    fn refusal(&self, record: &SessionRecord) -> Option<Revocation> {
        let user = record
            .user_id
            .as_deref()
            .and_then(|u| self.not_before_users.get(u).copied());
        not_before::refusal(record, user, self.not_before_everyone)
    }

    /// The record at `index` unless a not-before refuses it.
    fn usable(&self, index: u32) -> Result<Option<SessionRecord>, StoreError> {
        let Some(slot) = self.slot(index) else {
            return Ok(None);
        };
        let record = slot.to_record()?;
        Ok(self.refusal(&record).is_none().then_some(record))
    }
}

fn slot_at(chunks: &[Box<[Option<Slot>]>], i: u32) -> Option<&Slot> {
    let i = i as usize;
    chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
}

fn slot_at_mut(chunks: &mut [Box<[Option<Slot>]>], i: u32) -> Option<&mut Slot> {
    let i = i as usize;
    chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)?.as_mut()
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
        self.lock().by_hash.len()
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
    fn slot(&self, i: u32) -> Option<&Slot> {
        slot_at(&self.chunks, i)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        slot_at_mut(&mut self.chunks, i)
    }

    fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    fn find(&self, hash: &TokenHash) -> Option<u32> {
        let h = self.hasher.hash_one(hash.as_bytes());
        let chunks = &self.chunks;
        self.by_hash
            .find(h, |&i| {
                slot_at(chunks, i).is_some_and(|s| &s.hash == hash.as_bytes())
            })
            .copied()
    }

    fn find_handle(&self, handle: &SessionHandle) -> Option<u32> {
        let stored = StoredHandle::of(handle);
        let h = stored.hash_with(&self.hasher);
        let chunks = &self.chunks;
        self.by_handle
            .find(h, |&i| {
                slot_at(chunks, i).is_some_and(|s| s.handle == stored)
            })
            .copied()
    }

    /// The first slot of the user's chain.
    fn find_user(&self, user: &str) -> Option<u32> {
        let h = self.hasher.hash_one(user.as_bytes());
        let chunks = &self.chunks;
        self.by_user
            .find(h, |&i| {
                slot_at(chunks, i).is_some_and(|s| s.user.as_deref() == Some(user))
            })
            .copied()
    }

    fn user_slots(&self, user: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut next = self.find_user(user).unwrap_or(NIL);
        while let Some(slot) = self.slot(next) {
            out.push(next);
            next = slot.next_user;
        }
        out
    }

    fn live(&self, hash: &TokenHash, now: Timestamp) -> Option<u32> {
        self.find(hash)
            .filter(|&i| self.slot(i).is_some_and(|s| s.is_valid_at(now)))
    }

    fn has_handle(&self, handle: &SessionHandle) -> bool {
        self.find_handle(handle).is_some()
    }

    fn insert(&mut self, mut slot: Slot) -> Result<(), StoreError> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.capacity())
                    .ok()
                    .filter(|&i| i < NIL)
                    .ok_or_else(|| StoreError::backend("memory store full"))?;
                self.chunks
                    .push(std::iter::repeat_with(|| None).take(CHUNK).collect());
                // The rest of the new chunk is free, lowest index first.
                self.free.extend((i + 1..i + CHUNK as u32).rev());
                i
            }
        };
        let hasher = &self.hasher;
        let h_hash = hasher.hash_one(slot.hash);
        let h_handle = slot.handle.hash_with(hasher);
        let h_user = slot.user.as_deref().map(|u| hasher.hash_one(u.as_bytes()));
        // Chain into the user's list as its new head.
        let head = slot.user.as_deref().and_then(|u| self.find_user(u));
        if let Some(head) = head {
            slot.next_user = head;
        }
        let chunks = &mut self.chunks;
        if let Some(cell) = chunks
            .get_mut(index as usize / CHUNK)
            .and_then(|c| c.get_mut(index as usize % CHUNK))
        {
            *cell = Some(slot);
        }
        let hasher = &self.hasher;
        let chunks = &self.chunks;
        self.by_hash.insert_unique(h_hash, index, |&i| {
            slot_at(chunks, i).map_or(0, |s| hasher.hash_one(s.hash))
        });
        self.by_handle.insert_unique(h_handle, index, |&i| {
            slot_at(chunks, i).map_or(0, |s| s.handle.hash_with(hasher))
        });
        match (head, h_user) {
            (Some(head), Some(h)) => {
                if let Ok(entry) = self.by_user.find_entry(h, |&i| i == head) {
                    *entry.into_mut() = index;
                }
                if let Some(old) = self.slot_mut(head) {
                    old.prev_user = index;
                }
            }
            (None, Some(h)) => {
                self.by_user.insert_unique(h, index, |&i| {
                    slot_at(chunks, i)
                        .and_then(|s| s.user.as_deref())
                        .map_or(0, |u| hasher.hash_one(u.as_bytes()))
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn remove_at(&mut self, index: u32) -> Option<Slot> {
        let slot = self
            .chunks
            .get_mut(index as usize / CHUNK)?
            .get_mut(index as usize % CHUNK)?
            .take()?;
        let hasher = &self.hasher;
        if let Ok(entry) = self
            .by_hash
            .find_entry(hasher.hash_one(slot.hash), |&i| i == index)
        {
            entry.remove();
        }
        if let Ok(entry) = self
            .by_handle
            .find_entry(slot.handle.hash_with(hasher), |&i| i == index)
        {
            entry.remove();
        }
        if let Some(user) = slot.user.as_deref() {
            if let Some(prev) = self.slot_mut(slot.prev_user) {
                prev.next_user = slot.next_user;
            }
            if let Some(next) = self.slot_mut(slot.next_user) {
                next.prev_user = slot.prev_user;
            }
            if slot.prev_user == NIL {
                // It was the head: the next one (if any) becomes the head.
                let h = self.hasher.hash_one(user.as_bytes());
                if let Ok(entry) = self.by_user.find_entry(h, |&i| i == index) {
                    if slot.next_user == NIL {
                        entry.remove();
                    } else {
                        *entry.into_mut() = slot.next_user;
                    }
                }
            }
        }
        self.free.push(index);
        Some(slot)
    }

    fn remove(&mut self, hash: &TokenHash) -> bool {
        match self.find(hash) {
            Some(i) => self.remove_at(i).is_some(),
            None => false,
        }
    }

    /// Removes the slot and leaves a tombstone saying why, in the same
    /// step (under the same lock).
    fn bury(&mut self, index: u32, why: Ended) -> bool {
        match self.remove_at(index) {
            Some(slot) => {
                self.tombstones.insert(
                    TokenHash::from_bytes(slot.hash),
                    (why, Timestamp::from_millis(slot.absolute)),
                );
                true
            }
            None => false,
        }
    }

    /// Removes an expired slot; an idle-expired one leaves a tombstone
    /// until its absolute deadline, so the reason can still be told.
    fn bury_expired(&mut self, index: u32, reason: ExpiryReason, now: Timestamp) -> bool {
        let absolute_passed = self
            .slot(index)
            .is_some_and(|s| s.absolute <= now.as_millis());
        if absolute_passed {
            self.remove_at(index).is_some()
        } else {
            self.bury(index, Ended::Expired(reason))
        }
    }

    /// Removes up to `limit` tombstones whose session's absolute deadline
    /// passed.
    fn purge_tombstones(&mut self, now: Timestamp, limit: usize) -> u64 {
        let done: Vec<TokenHash> = self
            .tombstones
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .take(limit)
            .map(|(hash, _)| *hash)
            .collect();
        for hash in &done {
            self.tombstones.remove(hash);
        }
        u64::try_from(done.len()).unwrap_or(u64::MAX)
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

    /// Removes up to `limit` records expired at `now`, examining at most
    /// `scan` slots from the cursor onwards (wrapping around).
    fn purge(&mut self, now: Timestamp, limit: usize, scan: usize) -> u64 {
        let capacity = self.capacity();
        if capacity == 0 {
            return 0;
        }
        let mut n = 0;
        for _ in 0..scan.min(capacity) {
            if n as usize >= limit {
                break;
            }
            let index = self.cursor % capacity;
            self.cursor = (index + 1) % capacity;
            let Ok(index) = u32::try_from(index) else {
                continue;
            };
            let expired = self.slot(index).and_then(|s| s.deadlines().expired_at(now));
            if let Some(reason) = expired
                && self.bury_expired(index, reason, now)
            {
                n += 1;
            }
        }
        n
    }
}

/// The store conformance suite, one test per case:
/// `cargo test -p tessera --features testkit --lib store::memory::conformance::<case>`.
#[cfg(all(test, feature = "testkit"))]
mod conformance {
    use std::sync::Arc;

    use super::MemoryStore;

    crate::store_conformance!(async { Arc::new(MemoryStore::new()) });
}

/// The refresh-token conformance suite, one test per case.
#[cfg(all(test, feature = "testkit"))]
mod refresh_conformance {
    use std::sync::Arc;

    use super::MemoryStore;

    crate::refresh_conformance!(async { Arc::new(MemoryStore::new()) });
}
