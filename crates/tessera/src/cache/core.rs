//! The cache proper: a bounded moka cache of verified records, a
//! generation counter that keeps racing loads from re-inserting what an
//! invalidation just removed, and the counters behind [`CacheStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use super::config::{CacheConfig, CacheStats};
use super::message::Invalidate;
use crate::record::SessionRecord;
use crate::time::{Clock, Timestamp};
use crate::token::TokenHash;

pub(crate) struct Core {
    cache: Cache<TokenHash, Arc<SessionRecord>>,
    /// Bumped (before the eviction) by every invalidation and flush. A
    /// load reads it before asking the store and checks it again after
    /// inserting; if it moved, the load may have read the store before a
    /// change that has since been evicted, so it removes its own entry.
    /// Either the check sees the bump, or the bump (and the eviction after
    /// it) comes after the insert: a stale record never survives an
    /// invalidation that ran concurrently with its load.
    generation: AtomicU64,
    /// Whether invalidations are known to arrive (the channel is
    /// subscribed, or there is no other node). While false, nothing is
    /// served from or put into the cache.
    live: AtomicBool,
    clock: Arc<dyn Clock>,
    max_staleness: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    received: AtomicU64,
    flushes: AtomicU64,
    published: AtomicU64,
    publish_failures: AtomicU64,
}

impl Core {
    pub(crate) fn new(config: &CacheConfig, clock: Arc<dyn Clock>, live: bool) -> Self {
        // One bound in bytes, and one in entries through it: no entry weighs
        // less than `max_bytes / max_entries`, so no more than `max_entries`
        // fit.
        let floor = u32::try_from(config.max_bytes / config.max_entries.max(1)).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_, record: &Arc<SessionRecord>| weight(record).max(floor))
            // The staleness bound: an entry is never served once older than
            // this, whatever the channel did or did not deliver.
            .time_to_live(config.max_staleness)
            .support_invalidation_closures()
            .build();
        Self {
            cache,
            generation: AtomicU64::new(0),
            live: AtomicBool::new(live),
            clock,
            max_staleness: config.max_staleness,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            received: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
        }
    }

    /// The cached record under `hash`, unless it is at or near a deadline.
    pub(crate) async fn get(&self, hash: &TokenHash) -> Option<SessionRecord> {
        if !self.live.load(Ordering::SeqCst) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let Some(record) = self.cache.get(hash).await else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if self.near_deadline(&record, self.clock.now()) {
            // Another node may have moved the idle deadline (a touch whose
            // message is still on its way): near a deadline the store
            // decides, so a stale copy never makes a live session look
            // expired, nor an expired one look live.
            self.cache.invalidate(hash).await;
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(SessionRecord::clone(&record))
    }

    /// The generation to pass to [`Core::insert`], read before the store.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches `record`, read from the store after [`Core::generation`]
    /// returned `seen`, unless an invalidation ran since.
    pub(crate) async fn insert(&self, record: &SessionRecord, seen: u64) {
        if !self.live.load(Ordering::SeqCst)
            || self.generation() != seen
            || self.near_deadline(record, self.clock.now())
        {
            return;
        }
        let hash = record.hash;
        self.cache.insert(hash, Arc::new(record.clone())).await;
        if self.generation() != seen || !self.live.load(Ordering::SeqCst) {
            // An invalidation (or a lost channel) raced this load; its
            // eviction may have run before the insert above.
            self.cache.invalidate(&hash).await;
        }
    }

    /// Applies an invalidation, from this node or another.
    pub(crate) async fn apply(&self, message: &Invalidate) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match message {
            Invalidate::Session(hash) => self.cache.invalidate(hash).await,
            Invalidate::Handle(handle) => {
                let handle = handle.clone();
                self.evict_if(move |r| r.handle == handle);
            }
            Invalidate::User(user) => {
                let user = user.clone();
                self.evict_if(move |r| r.user_id.as_deref() == Some(user.as_str()));
            }
            Invalidate::Everyone => self.flush(),
        }
    }

    /// A message from another node.
    pub(crate) async fn receive(&self, message: &Invalidate) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.apply(message).await;
    }

    fn evict_if(&self, predicate: impl Fn(&SessionRecord) -> bool + Send + Sync + 'static) {
        // moka guarantees that no read returns an entry matching the
        // predicate once this returns; the removal itself runs later.
        if self
            .cache
            .invalidate_entries_if(move |_, record| predicate(record))
            .is_err()
        {
            self.flush();
        }
    }

    /// Drops every entry.
    pub(crate) fn flush(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // No read returns an entry inserted before this call.
        self.cache.invalidate_all();
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
        + record.client.ip.as_ref().map_or(0, String::len)
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
