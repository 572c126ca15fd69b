//! Counters in this process: a moka cache bounded in bytes.

use std::time::{Duration, Instant};

use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

/// What one entry costs beyond its key's bytes: the value, the `String`
/// header, and moka's own bookkeeping per entry (an estimate, rounded up).
pub(super) const ENTRY_OVERHEAD: usize = 160;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    hits: u32,
}

/// Fixed-window counters in memory.
#[derive(Clone)]
pub(super) struct LocalCounters {
    cache: Cache<String, Window>,
    window: Duration,
}

impl LocalCounters {
    /// Counters for `window`, holding at most about `max_bytes` (keys plus
    /// [`ENTRY_OVERHEAD`] each). Past it moka evicts the entries it judges
    /// least useful (TinyLFU), so a flood of random names cannot grow it.
    pub(super) fn new(window: Duration, max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, _: &Window| {
                u32::try_from(key.len().saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
            })
            // Entries are also checked against `started`; the TTL only
            // frees memory once a window is over.
            .time_to_live(window)
            .build();
        Self { cache, window }
    }

    fn left(&self, w: &Window) -> Duration {
        self.window.saturating_sub(w.started.elapsed())
    }

    fn live(&self, w: &Window) -> bool {
        w.started.elapsed() < self.window
    }

    /// Adds one to `key` (a new window if none is running) and returns the
    /// count and the time left in its window. Atomic per key: moka runs
    /// computations on one key one after another.
    pub(super) fn incr(&self, key: &str) -> (u32, Duration) {
        let entry = self.cache.entry_by_ref(key).and_upsert_with(|old| {
            match old.map(moka::Entry::into_value) {
                Some(w) if self.live(&w) => Window {
                    started: w.started,
                    hits: w.hits.saturating_add(1),
                },
                _ => Window {
                    started: Instant::now(),
                    hits: 1,
                },
            }
        });
        let w = entry.into_value();
        (w.hits, self.left(&w))
    }

    /// Takes one back from `key`, if its window is still running.
    pub(super) fn decr(&self, key: &str) {
        let _: CompResult<String, Window> = self.cache.entry_by_ref(key).and_compute_with(|old| {
            match old.map(moka::Entry::into_value) {
                Some(w) if self.live(&w) && w.hits > 1 => Op::Put(Window {
                    started: w.started,
                    hits: w.hits - 1,
                }),
                Some(_) => Op::Remove,
                None => Op::Nop,
            }
        });
    }

    /// Forgets `key`.
    pub(super) fn clear(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Bytes held by the entries, as weighed (after pending evictions).
    #[cfg(test)]
    pub(super) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}
