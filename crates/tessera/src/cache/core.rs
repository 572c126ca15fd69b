//! The cache proper: a bounded moka cache of verified records, generation
//! counters (striped by token hash, plus one global) that keep racing
//! loads and writes from re-inserting what an invalidation just removed,
//! and the counters behind [`CacheStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// runs from the last load.
    verified: Instant,
}

/// What a load or a write saw before going to the store; see
/// [`Core::insert`] and [`Core::write_through`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    global: u64,
    stripe: u64,
    /// Set before a write: when the store last vouched for the entry this
    /// node held for the session, if it held one.
    held: Option<Instant>,
}

pub(crate) struct Core {
    cache: Cache<TokenHash, Arc<Entry>>,
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
            .build();
        Self {
            cache,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
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

    /// The cached record under `hash`, unless it is at or near a deadline,
    /// or the store vouched for it longer than `max_staleness` ago. Counted
    /// as a hit or a miss.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<SessionRecord> {
        let found = self.servable(hash);
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
        self.servable(hash)
    }

    fn servable(&self, hash: &TokenHash) -> Option<SessionRecord> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entry = self.cache.get(hash)?;
        if self.near_deadline(&entry.record, self.clock.now()) || self.too_old(&entry) {
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
        // Stripe first, global second; `unchanged` reads them in the same
        // order.
        let stripe = self.stripe(hash).load(Ordering::SeqCst);
        let global = self.global.load(Ordering::SeqCst);
        Seen {
            global,
            stripe,
            held: None,
        }
    }

    fn unchanged(&self, hash: &TokenHash, seen: Seen, own_bumps: u64) -> bool {
        self.stripe(hash).load(Ordering::SeqCst) == seen.stripe.wrapping_add(own_bumps)
            && self.global.load(Ordering::SeqCst) == seen.global
    }

    /// Caches `record`, read from the store after [`Core::seen`] returned
    /// `seen`, unless an invalidation that may concern it ran since.
    pub(crate) fn insert(&self, record: &SessionRecord, seen: Seen) {
        let hash = record.hash;
        if !self.live.load(Ordering::SeqCst)
            || !self.unchanged(&hash, seen, 0)
            || self.near_deadline(record, self.clock.now())
        {
            return;
        }
        let entry = Entry {
            record: record.clone(),
            verified: Instant::now(),
        };
        self.cache.insert(hash, Arc::new(entry));
        if !self.unchanged(&hash, seen, 0) || !self.live.load(Ordering::SeqCst) {
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
                seen.held = Some(entry.verified);
            }
        }
        seen
    }

    /// After this node wrote `record` to the store (the record as stored
    /// afterwards): evicts this node's older copy and, when safe, caches
    /// `record` in its place, so the next load of the session here is a
    /// hit that shows the write.
    ///
    /// `record` is cached only if this node held an entry for the session
    /// when the write began (`seen.held`) and no invalidation that may
    /// concern the session ran since. A write does not check the kill
    /// switches ("not before") that a store load checks, so the entry it
    /// replaces must be one a load verified: it keeps that load's instant,
    /// so the staleness bound still counts from the store's last word on
    /// them. Why that suffices: a kill switch's message is applied here
    /// as bump, eviction, bump. If its first bump came after `seen` was
    /// read, the checks below see it; if its second bump came before, its
    /// eviction did too, so the entry found afterwards was loaded after
    /// the kill switch (which that load would have refused) or is not
    /// there; and the first bump cannot come before `seen` with the second
    /// after it without the check seeing the second. A message applied
    /// after the check evicts `record` like any entry.
    pub(crate) fn write_through(&self, record: &SessionRecord, seen: Seen) {
        let hash = record.hash;
        // A load that read the store before this write must not cache what
        // it read: it sees this bump.
        self.stripe(&hash).fetch_add(1, Ordering::SeqCst);
        let Some(verified) = seen.held else {
            self.cache.invalidate(&hash);
            return;
        };
        let entry = Entry {
            record: record.clone(),
            verified,
        };
        if !self.live.load(Ordering::SeqCst)
            || !self.unchanged(&hash, seen, 1)
            || self.near_deadline(record, self.clock.now())
            || self.too_old(&entry)
        {
            self.cache.invalidate(&hash);
            return;
        }
        // Replaces the older copy in one step (no window without an entry).
        self.cache.insert(hash, Arc::new(entry));
        if !self.unchanged(&hash, seen, 1) || !self.live.load(Ordering::SeqCst) {
            // Anything else happened to the session or its stripe since the
            // write began (an invalidation, or a concurrent write on this
            // node whose record may be newer): drop ours.
            self.cache.invalidate(&hash);
        } else {
            self.written_through.fetch_add(1, Ordering::Relaxed);
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

    /// True once the store vouched for the entry `max_staleness` ago.
    fn too_old(&self, entry: &Entry) -> bool {
        entry.verified.elapsed() >= self.max_staleness
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
