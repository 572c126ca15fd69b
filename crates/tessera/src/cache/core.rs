//! The cache proper: a bounded moka cache of verified records, generation
//! counters (striped by token hash, plus one global) that keep racing
//! loads and writes from re-inserting what an invalidation just removed,
//! and the counters behind [`CacheStats`].
//!
//! Two kinds of counters per stripe: *eviction* generations, bumped by
//! every invalidation, which loads and writes both watch; and *write*
//! generations, bumped by this node's own finished writes, which tell a
//! load that what it read may be older than such a write. Writes of one
//! session on this node do not cancel each other: the entry keeps the
//! highest version written or loaded, so many requests writing one
//! session at once still read it from memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use super::config::{CacheConfig, CacheStats};
use super::message::{Invalidate, Origin};
use crate::record::SessionRecord;
use crate::time::{Clock, Timestamp};
use crate::token::TokenHash;

/// Generation stripes: a load or write of a session watches one stripe
/// (by its token hash) and the global counter, so an invalidation of one
/// session does not cancel the insert of a load of an unrelated one.
const STRIPES: usize = 256;

/// A cached record and when the store last vouched for the kill switches
/// that apply to it.
pub(crate) struct Entry {
    record: SessionRecord,
    /// When a load last read this session from the store (which checks
    /// the per-user and global "not before" inside `load`). A record this
    /// node wrote itself replaces the entry but keeps this instant: the
    /// write did not check the kill switches, so the staleness bound still
    /// runs from the last load. `None` for a record this node wrote when
    /// no load had vouched for the session: such an entry is never served;
    /// it only tells a racing load that its record is older than this
    /// node's write (see [`Core::insert`]).
    verified: Option<Instant>,
}

/// What a load or a write saw before going to the store; see
/// [`Core::insert`] and [`Core::write_through`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    global: u64,
    stripe: u64,
    writes: u64,
    /// Set before a write: when the store last vouched for the entry this
    /// node held for the session, if it held one.
    held: Option<Instant>,
}

pub(crate) struct Core {
    cache: Cache<TokenHash, Arc<Entry>, foldhash::fast::RandomState>,
    /// Per-stripe generations, bumped (before and after the eviction) by
    /// every invalidation of one session in the stripe.
    stripes: Box<[AtomicU64]>,
    /// Bumped (before and after the eviction) by every invalidation that
    /// may touch sessions in any stripe (a handle, a user, everyone, a
    /// flush).
    ///
    /// A load reads its stripe and this before asking the store and checks
    /// both again after inserting; if either moved, the load may have read
    /// the store before a change that has since been evicted, so it
    /// removes its own entry. Either the check sees the bump, or the bump
    /// (and the eviction after it) comes after the insert: a stale record
    /// never survives an invalidation that ran concurrently with its load.
    /// The second bump, after the eviction, makes the same hold for a
    /// write that looked for this node's entry between the first bump and
    /// the eviction (see [`Core::write_through`]).
    global: AtomicU64,
    /// Per-stripe generations of this node's own writes, bumped by every
    /// [`Core::write_through`] before it touches the cache. A load that
    /// sees one move may have read the store before such a write, so it
    /// caches its record only over an entry it can compare versions with
    /// (see [`Core::insert`]); writes do not watch them, so writes of one
    /// session on this node do not cancel each other.
    writes: Box<[AtomicU64]>,
    /// Bumped by every [`Invalidate::Credentials`] and every flush (which
    /// covers [`Invalidate::Everyone`], a lost or regained channel and an
    /// unreadable message): what a [`Vouch`](super::Vouch) is checked
    /// against.
    credentials: AtomicU64,
    /// Whether invalidations are known to arrive (the channel is
    /// subscribed, or there is no other node). While false, nothing is
    /// served from or put into the cache.
    live: AtomicBool,
    clock: Arc<dyn Clock>,
    max_staleness: Duration,
    origin: Origin,
    hits: AtomicU64,
    misses: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    flushes: AtomicU64,
    published: AtomicU64,
    publish_failures: AtomicU64,
    written_through: AtomicU64,
}

impl Core {
    pub(crate) fn new(config: &CacheConfig, clock: Arc<dyn Clock>, live: bool) -> Self {
        // One bound in bytes, and one in entries through it: no entry weighs
        // less than `max_bytes / max_entries`, so no more than `max_entries`
        // fit.
        let floor = u32::try_from(config.max_bytes / config.max_entries.max(1)).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_, entry: &Arc<Entry>| weight(&entry.record).max(floor))
            // Memory is reclaimed at the latest this long after an insert;
            // the staleness bound itself is checked on every read, from
            // `Entry::verified`.
            .time_to_live(config.max_staleness)
            .support_invalidation_closures()
            // Keys are SHA-256 outputs, and only tokens this service issued
            // are ever inserted, so a fast hash (seeded per process) is
            // enough; moka's default, SipHash, is DoS resistance the keys
            // do not need.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            cache,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            writes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            credentials: AtomicU64::new(0),
            live: AtomicBool::new(live),
            clock,
            max_staleness: config.max_staleness,
            origin: Origin::random(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            received: AtomicU64::new(0),
            own: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            written_through: AtomicU64::new(0),
        }
    }

    /// This cache's id in the messages it publishes.
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    fn stripe(&self, hash: &TokenHash) -> &AtomicU64 {
        // Always in range; any counter would do as long as one hash always
        // maps to the same one.
        self.stripes.get(stripe_of(hash)).unwrap_or(&self.global)
    }

    /// The write generation of `hash`'s stripe.
    fn writes(&self, hash: &TokenHash) -> &AtomicU64 {
        // Always in range, as above.
        self.writes.get(stripe_of(hash)).unwrap_or(&self.global)
    }

    /// The cached record under `hash`, unless it is at or near a deadline,
    /// or the store vouched for it longer than `max_staleness` ago. Counted
    /// as a hit or a miss.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<SessionRecord> {
        let found = self.servable(hash, self.clock.now());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// [`Core::get`] without counting: for a write that can use this
    /// node's copy as its starting point, which is not a load.
    pub(crate) fn peek(&self, hash: &TokenHash) -> Option<SessionRecord> {
        self.servable(hash, self.clock.now())
    }

    /// [`Core::get`] at `now` (the caller's reading of this cache's clock),
    /// counting only a hit: a miss goes on to [`Core::get`] through the
    /// store's `load`, which counts it.
    pub(crate) fn hit(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        let found = self.servable(hash, now)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(found)
    }

    fn servable(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entry = self.cache.get(hash)?;
        entry.verified?;
        if self.near_deadline(&entry.record, now) || self.too_old(&entry) {
            // Another node may have moved the idle deadline (a touch whose
            // message is still on its way): near a deadline the store
            // decides, so a stale copy never makes a live session look
            // expired, nor an expired one look live.
            self.cache.invalidate(hash);
            return None;
        }
        Some(entry.record.clone())
    }

    /// What a load of `hash` passes to [`Core::insert`], read before the
    /// store.
    pub(crate) fn seen(&self, hash: &TokenHash) -> Seen {
        // Stripe, writes, global; the checks below read them in the same
        // order.
        let stripe = self.stripe(hash).load(Ordering::SeqCst);
        let writes = self.writes(hash).load(Ordering::SeqCst);
        let global = self.global.load(Ordering::SeqCst);
        Seen {
            global,
            stripe,
            writes,
            held: None,
        }
    }

    /// No invalidation that may concern `hash` ran since `seen` (this
    /// node's writes may have).
    fn not_evicted(&self, hash: &TokenHash, seen: Seen) -> bool {
        self.stripe(hash).load(Ordering::SeqCst) == seen.stripe
            && self.global.load(Ordering::SeqCst) == seen.global
    }

    /// Caches `record`, read from the store after [`Core::seen`] returned
    /// `seen`, unless an invalidation that may concern it ran since, or it
    /// may be older than a write this node made meanwhile.
    ///
    /// Such a write bumps the stripe's write generation and then, in one
    /// step per key as this insert, leaves its record (or a newer one) in
    /// the cache, or evicts. So when the write generation has moved by the
    /// time of that step, the record read here may be older: it is cached
    /// only over an entry of the same or a lower version, never into an
    /// empty slot (the write's entry may be gone already, dropped near a
    /// deadline or for room, and with it the version to compare with).
    /// A write whose step comes after this one replaces the record if its
    /// own is newer.
    ///
    /// An entry of a higher version (this node wrote the session since the
    /// read) stays, and this load vouches for it: the kill switches the
    /// store checked belong to the session, not to a version of it, and
    /// the checks on `seen` cover any invalidation since. That is how a
    /// session written by many requests at once becomes servable again
    /// once its entry's staleness bound ran out, although every load of it
    /// then reads an older version than the last write.
    pub(crate) fn insert(&self, record: &SessionRecord, seen: Seen) {
        let hash = record.hash;
        if !self.live.load(Ordering::SeqCst)
            || !self.not_evicted(&hash, seen)
            || self.near_deadline(record, self.clock.now())
        {
            return;
        }
        let version = record.version;
        let writes = self.writes(&hash);
        let now = self.clock.now();
        self.cache
            .entry(hash)
            .and_compute_with(|current| match current {
                Some(current) if current.value().record.version > version => {
                    let newer = &current.value().record;
                    if self.near_deadline(newer, now) {
                        Op::Nop
                    } else {
                        Op::Put(Arc::new(Entry {
                            record: newer.clone(),
                            verified: Some(Instant::now()),
                        }))
                    }
                }
                // Read here, inside the step: a write whose step came
                // first bumped it before.
                None if writes.load(Ordering::SeqCst) != seen.writes => Op::Nop,
                _ => Op::Put(Arc::new(Entry {
                    record: record.clone(),
                    verified: Some(Instant::now()),
                })),
            });
        if !self.not_evicted(&hash, seen) || !self.live.load(Ordering::SeqCst) {
            // An invalidation (or a lost channel) raced this load; its
            // eviction may have run before the insert above.
            self.cache.invalidate(&hash);
        }
    }

    /// What a write of `hash` passes to [`Core::write_through`], read
    /// before the store: the generations, then whether this node holds a
    /// servable entry for the session (in that order, see
    /// [`Core::write_through`]).
    pub(crate) fn before_write(&self, hash: &TokenHash) -> Seen {
        let mut seen = self.seen(hash);
        if !self.live.load(Ordering::SeqCst) {
            return seen;
        }
        if let Some(entry) = self.cache.get(hash) {
            if !self.too_old(&entry) {
                seen.held = entry.verified;
            }
        }
        seen
    }

    /// After this node wrote `record` to the store (the record as stored
    /// afterwards): puts it in the place of this node's older copy, so the
    /// next load of the session here is a hit that shows the write.
    ///
    /// `record` replaces what is cached unless that is newer: another
    /// write of this node that finished first may have cached a higher
    /// version (versions only grow: each write of a session in the store
    /// makes the next one), and moka runs these replacements one at a time
    /// per key, so of several writes the newest record stays, whichever
    /// finishes last. Near a deadline, once an invalidation that may
    /// concern the session ran since the write began, or with the channel
    /// down, it evicts instead, as an invalidation does.
    ///
    /// A write does not check the kill switches ("not before") that a
    /// store load checks, so the entry keeps the instant at which a load
    /// last vouched for the session (the entry this node held when the
    /// write began, `seen.held`, or the one it replaces, whichever is
    /// later): the staleness bound still counts from the store's last word
    /// on them. Without either, the entry is not served (`verified` is
    /// `None`) until a load vouches again. Why that suffices: a kill
    /// switch's message is applied here as bump, eviction, bump. If its
    /// first bump came after `seen` was read, the checks below see it; if
    /// its second bump came before, its eviction did too, so every entry
    /// found afterwards was vouched for by a load after the kill switch
    /// (which that load would have refused) or is not there; and the first
    /// bump cannot come before `seen` with the second after it without the
    /// check seeing the second. A message applied after the check evicts
    /// `record` like any entry.
    pub(crate) fn write_through(&self, record: &SessionRecord, seen: Seen) {
        let hash = record.hash;
        // A load that read the store before this write must not cache what
        // it read over an empty slot: it sees this bump.
        self.writes(&hash).fetch_add(1, Ordering::SeqCst);
        if !self.live.load(Ordering::SeqCst)
            || !self.not_evicted(&hash, seen)
            || self.near_deadline(record, self.clock.now())
        {
            self.evict(&hash);
            return;
        }
        let version = record.version;
        let result = self
            .cache
            .entry(hash)
            .and_compute_with(|current| match current {
                Some(current) if current.value().record.version >= version => Op::Nop,
                current => Op::Put(Arc::new(Entry {
                    record: record.clone(),
                    verified: seen.held.max(current.and_then(|c| c.value().verified)),
                })),
            });
        if !self.not_evicted(&hash, seen) || !self.live.load(Ordering::SeqCst) {
            // An invalidation ran since the write began; its eviction may
            // have come before the insert above: drop ours.
            self.cache.invalidate(&hash);
        } else if let CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) = result {
            if entry.value().verified.is_some() {
                self.written_through.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Applies an invalidation, from this node or another: bump, evict,
    /// bump (see the field docs).
    pub(crate) fn apply(&self, message: &Invalidate) {
        match message {
            Invalidate::Session(hash) => self.evict(hash),
            Invalidate::Sessions(hashes) => {
                for hash in hashes {
                    self.evict(hash);
                }
            }
            Invalidate::Handle(handle) => {
                self.global.fetch_add(1, Ordering::SeqCst);
                let handle = handle.clone();
                self.evict_if(move |r| r.handle == handle);
                self.global.fetch_add(1, Ordering::SeqCst);
            }
            Invalidate::User(user) => {
                self.global.fetch_add(1, Ordering::SeqCst);
                let user = user.clone();
                self.evict_if(move |r| r.user_id.as_deref() == Some(user.as_str()));
                self.global.fetch_add(1, Ordering::SeqCst);
            }
            Invalidate::Everyone => self.flush(),
            Invalidate::Credentials => {
                self.credentials.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// The credentials generation, while the channel is live; `None`
    /// otherwise (nothing may be remembered while messages can be missed).
    pub(crate) fn credentials(&self) -> Option<u64> {
        // Generation first, then liveness: a channel lost in between bumps
        // the generation (`set_live` flushes), so a value read before the
        // loss never matches again.
        let generation = self.credentials.load(Ordering::SeqCst);
        self.live.load(Ordering::SeqCst).then_some(generation)
    }

    /// One session: bump its stripe, evict, bump.
    fn evict(&self, hash: &TokenHash) {
        let stripe = self.stripe(hash);
        stripe.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(hash);
        stripe.fetch_add(1, Ordering::SeqCst);
    }

    /// A message from the channel: applied, unless this cache sent it (it
    /// applied it before publishing; hearing it back would only evict what
    /// its own write just cached).
    pub(crate) fn receive(&self, message: &Invalidate, origin: Option<Origin>) {
        if origin == Some(self.origin) {
            self.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.apply(message);
    }

    fn evict_if(&self, predicate: impl Fn(&SessionRecord) -> bool + Send + Sync + 'static) {
        // moka guarantees that no read returns an entry matching the
        // predicate once this returns; the removal itself runs later.
        if self
            .cache
            .invalidate_entries_if(move |_, entry| predicate(&entry.record))
            .is_err()
        {
            self.flush();
        }
    }

    /// Drops every entry.
    pub(crate) fn flush(&self) {
        self.credentials.fetch_add(1, Ordering::SeqCst);
        self.global.fetch_add(1, Ordering::SeqCst);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // No read returns an entry inserted before this call.
        self.cache.invalidate_all();
        self.global.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the channel up or down; either way the cache starts empty.
    pub(crate) fn set_live(&self, live: bool) {
        if live {
            // Messages may have been missed while down: start afresh,
            // then serve.
            self.flush();
            self.live.store(true, Ordering::SeqCst);
        } else {
            self.live.store(false, Ordering::SeqCst);
            self.flush();
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn published(&self, ok: bool) {
        if ok {
            self.published.fetch_add(1, Ordering::Relaxed);
        } else {
            self.publish_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations_received: self.received.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            own_messages_skipped: self.own.load(Ordering::Relaxed),
            written_through: self.written_through.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            weighted_bytes: self.cache.weighted_size(),
            live: self.is_live(),
        }
    }

    /// True if a deadline falls within `max_staleness` of `now`: the window
    /// in which another node's unannounced touch could have moved it.
    fn near_deadline(&self, record: &SessionRecord, now: Timestamp) -> bool {
        !record.is_valid_at(now + self.max_staleness)
    }

    /// True once the store vouched for the entry `max_staleness` ago (or
    /// never did).
    fn too_old(&self, entry: &Entry) -> bool {
        entry
            .verified
            .is_none_or(|verified| verified.elapsed() >= self.max_staleness)
    }
}

/// The generation stripe of a session: token hashes are uniformly random,
/// so their first byte spreads sessions evenly.
fn stripe_of(hash: &TokenHash) -> usize {
    usize::from(hash.as_bytes()[0]) % STRIPES
}

/// Approximate heap size of a cached record, for the byte bound.
fn weight(record: &SessionRecord) -> u32 {
    let data: usize = record
        .data
        .iter()
        .map(|(k, v)| k.len() + json_size(v))
        .sum();
    let strings = record.handle.as_str().len()
        + record.user_id.as_ref().map_or(0, String::len)
        + record.client.user_agent.as_ref().map_or(0, String::len);
    let total = std::mem::size_of::<SessionRecord>() + 64 + data + strings;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// A cheap upper-bound estimate of a JSON value's heap size.
fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 16,
        Value::String(s) => 24 + s.len(),
        Value::Array(items) => 24 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => {
            48 + map
                .iter()
                .map(|(k, v)| 32 + k.len() + json_size(v))
                .sum::<usize>()
        }
    }
}
