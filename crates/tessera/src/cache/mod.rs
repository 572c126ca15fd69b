//! A per-instance cache of verified sessions that hears about every change.
//!
//! With several instances on one shared store (PostgreSQL, Redis), every
//! request pays a round trip to the store. [`CachedStore`] keeps the
//! records this instance loaded in memory (a bounded [moka] cache) and
//! answers repeated loads without the store. What makes that safe for a
//! session store is that it *hears*: every write made through any
//! instance's `CachedStore` publishes an [`Invalidate`] message on an
//! [`Invalidation`] channel (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`),
//! and every instance evicts what the message names. A revocation on one
//! node is honoured on all of them as soon as its message arrives (ASVS 5.0
//! V7.4.1 and V7.4.5: terminated sessions must not be usable anywhere).
//!
//! # What it guarantees
//!
//! - **Staleness bound.** No entry is served once older than
//!   [`CacheConfig::max_staleness`] (default 1 s). This holds whatever the
//!   channel does: if a message is lost without anyone noticing, a revoked
//!   session may still be accepted by another node for at most that long
//!   after it was cached. With the channel working, the delay is the
//!   channel's delivery time (see `docs/performance.md`).
//! - **A lost channel is noticed.** When the subscription drops, the cache
//!   is flushed and serves nothing (every load goes to the store) until the
//!   subscription is back, and is flushed again then, because messages may
//!   have been missed in between.
//! - **Deadlines are the store's near the edge.** An entry within
//!   `max_staleness` of its idle or absolute deadline is not served: the
//!   store is asked, so a touch made on another node whose message is still
//!   on its way cannot make a live session look expired here, and the
//!   session manager still checks both deadlines against the request's time
//!   on every load (ASVS 5.0 V7.3.1, V7.3.2).
//! - **No stale re-insert.** A load that races an invalidation does not put
//!   the record it read back into the cache after the eviction: a
//!   generation counter, bumped by every invalidation, is checked after the
//!   insert, and the entry is dropped if it moved.
//! - **Absences are never cached**, so a refused token still reaches the
//!   store's tombstone, and the reason a session ended (signed out,
//!   revoked, expired) comes out as without the cache.
//! - **Writes go to the store.** The touch policy is unchanged: a touch
//!   that moves the idle deadline is written to the store and invalidates
//!   the session everywhere; the next load on each node reads it afresh.
//!
//! # Sizing
//!
//! [`CacheConfig::max_entries`] and [`CacheConfig::max_bytes`] bound the
//! cache (least-recently/frequently used entries go first). An entry is
//! about 400 bytes plus its data; size it for the sessions active within
//! `max_staleness`, not for every session: an entry lives at most that long.
//!
//! # Without a channel
//!
//! [`CachedStore::without_channel`] serves entries for up to
//! `max_staleness` with no invalidation from other processes. That is exact
//! only when this process is the store's one writer; for SQLite (which
//! another process, such as the `tessera` CLI, may write) and MySQL (which
//! has no notification channel) it is the polling fallback: a revocation
//! made elsewhere takes effect here within `max_staleness`.
//!
//! [moka]: https://docs.rs/moka

mod channel;
mod core;
mod message;
mod store;

use std::time::Duration;

pub use channel::{Invalidation, InvalidationSink, LocalChannel};
pub use message::Invalidate;
pub use store::CachedStore;

/// Bounds of a [`CachedStore`].
///
/// ```
/// use std::time::Duration;
/// use tessera::cache::CacheConfig;
///
/// let config = CacheConfig {
///     max_staleness: Duration::from_millis(500),
///     ..CacheConfig::default()
/// };
/// assert_eq!(config.max_entries, 100_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// At most this many records (default 100,000).
    pub max_entries: u64,
    /// At most about this many bytes of records (default 64 MiB).
    pub max_bytes: u64,
    /// No entry is served once older than this (default 1 s): the worst
    /// case when invalidations are lost unnoticed.
    pub max_staleness: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_staleness: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`CachedStore`] (cumulative since it was built), for
/// metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that went to the store.
    pub misses: u64,
    /// Invalidation messages received from the channel.
    pub invalidations_received: u64,
    /// Times the whole cache was dropped (reconnection, lost channel,
    /// "everyone" message, unreadable message).
    pub flushes: u64,
    /// Invalidations published.
    pub published: u64,
    /// Invalidations that could not be published.
    pub publish_failures: u64,
    /// Entries now cached (approximate).
    pub entries: u64,
    /// Their estimated size in bytes (approximate).
    pub weighted_bytes: u64,
    /// Whether the channel is subscribed (or there is none).
    pub live: bool,
}

impl CacheStats {
    /// Hits over loads, 0 with no load yet.
    pub fn hit_rate(&self) -> f64 {
        let loads = self.hits + self.misses;
        if loads == 0 {
            0.0
        } else {
            // Precision loss above 2^52 loads is irrelevant for a ratio.
            #[allow(clippy::cast_precision_loss)]
            let rate = self.hits as f64 / loads as f64;
            rate
        }
    }
}
