//! The bounds of a cache and the counters it reports.

use std::time::Duration;

/// Bounds of a [`CachedStore`](super::CachedStore).
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

/// Counters of a [`CachedStore`](super::CachedStore) (cumulative since it
/// was built), for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that went to the store.
    pub misses: u64,
    /// Invalidation messages received from the channel and applied (this
    /// cache's own messages, heard back, are not applied nor counted here).
    pub invalidations_received: u64,
    /// This cache's own messages heard back from the channel and skipped
    /// (it applied each before publishing it).
    pub own_messages_skipped: u64,
    /// Writes through this cache whose resulting record replaced the
    /// cached copy (so the next load here is a hit showing the write).
    pub written_through: u64,
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
