//! The sweeper: a background task that deletes expired sessions (and, on
//! the SQL stores, expired refresh tokens: `purge_expired` deletes those
//! after the sessions, within the same batch limit).
//!
//! SQL has no TTLs, so expired rows stay until something removes them. They
//! are harmless for security (every use checks both deadlines, and writes
//! treat them as missing), but unbounded growth is a bug. The sweeper calls
//! [`Store::purge_expired`] in **bounded batches** — each batch is one or
//! two short statements — and **rests between batches** for a time
//! proportional to how long the batch took ([`SweeperConfig::pace`]), so
//! request reads and writes are never blocked behind one long delete, and a
//! big backlog (a million expired rows after an outage) is worked off at a
//! bounded share of the store's write capacity instead of in one burst that
//! queues readers behind the write lock, fsyncs and WAL checkpoints
//! (measured in `docs/performance.md`: unpaced, the read p99 of the worst
//! window rose 27×).
//!
//! It works on any [`Store`]; for stores that expire records themselves
//! (Redis) it is a cheap no-op.

use std::sync::Arc;
use std::time::Duration;

use tessera::Store;
use tessera::StoreError;
use tessera::time::{Clock, SystemClock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Batches one sweep deletes at most, so a huge backlog is worked off over
/// several runs instead of holding the store busy for long.
pub const DEFAULT_MAX_BATCHES: u32 = 100;

/// Default [`SweeperConfig::pace`]: after each full batch, rest four times
/// as long as the batch took, so the sweeper uses at most a fifth of the
/// store's time. Measured on SQLite (docs/performance.md): with batches of
/// 100 and this pace, 100,000 expired rows went in about a minute while the
/// median read p99 stayed within 1.2× of idle; unpaced 500-row batches
/// raised it 11×.
pub const DEFAULT_PACE: u32 = 4;

/// Shortest rest between two batches of a paced sweep.
const MIN_REST: Duration = Duration::from_millis(1);

/// Deletes expired records in batches of `batch_size` until a batch comes
/// back short or `max_batches` ran. Returns how many were deleted.
///
/// This is one sweep; [`spawn_sweeper`] runs it periodically, and a CLI can
/// call it directly.
///
/// # Errors
///
/// The first store error; records deleted before it stay deleted.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera::store::MemoryStore;
/// use tessera::time::Timestamp;
///
/// let store = MemoryStore::new();
/// let n = tessera_sql::sweep_once(&store, Timestamp::from_millis(0), 500, 10).await?;
/// assert_eq!(n, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
pub async fn sweep_once<S: Store + ?Sized>(
    store: &S,
    now: tessera::time::Timestamp,
    batch_size: usize,
    max_batches: u32,
) -> Result<u64, StoreError> {
    sweep_paced(store, now, batch_size, max_batches, 0).await
}

/// [`sweep_once`] with pacing: after each full batch it rests `pace` times
/// as long as the batch took (at least a millisecond), so that a large
/// backlog takes a bounded share of the store's time (`1 / (1 + pace)`)
/// and request traffic runs in between. `pace = 0` only yields to other
/// tasks between batches.
///
/// # Errors
///
/// The first store error; records deleted before it stay deleted.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera::store::MemoryStore;
/// use tessera::time::Timestamp;
///
/// let store = MemoryStore::new();
/// let n = tessera_sql::sweep_paced(&store, Timestamp::from_millis(0), 100, 10, 1).await?;
/// assert_eq!(n, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
pub async fn sweep_paced<S: Store + ?Sized>(
    store: &S,
    now: tessera::time::Timestamp,
    batch_size: usize,
    max_batches: u32,
    pace: u32,
) -> Result<u64, StoreError> {
    let batch_size = batch_size.max(1);
    let full = u64::try_from(batch_size).unwrap_or(u64::MAX);
    let mut total = 0u64;
    for _ in 0..max_batches {
        let started = tokio::time::Instant::now();
        let n = store.purge_expired(now, batch_size).await?;
        total = total.saturating_add(n);
        if n < full {
            break;
        }
        if pace == 0 {
            // Let request traffic in between two batches.
            tokio::task::yield_now().await;
        } else {
            let rest = started.elapsed().saturating_mul(pace).max(MIN_REST);
            tokio::time::sleep(rest).await;
        }
    }
    Ok(total)
}

/// What the sweeper has done so far, published after every run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepStats {
    /// Completed runs (successful or not).
    pub runs: u64,
    /// Records deleted over all runs.
    pub purged: u64,
    /// Runs that ended with a store error.
    pub failures: u64,
}

/// How a [`Sweeper`] runs.
///
/// ```
/// use std::time::Duration;
/// let config = tessera_sql::SweeperConfig::new(Duration::from_secs(60), 500);
/// assert_eq!(config.batch_size, 500);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweeperConfig {
    /// Time between two sweeps.
    pub interval: Duration,
    /// Records deleted per statement.
    pub batch_size: usize,
    /// Batches per sweep at most.
    pub max_batches: u32,
    /// Rest after each full batch, as a multiple of the batch's duration
    /// (see [`sweep_paced`]); 0 = only yield. Default [`DEFAULT_PACE`].
    pub pace: u32,
}

impl SweeperConfig {
    /// A sweep every `interval`, `batch_size` records per statement, at
    /// most [`DEFAULT_MAX_BATCHES`] per sweep.
    pub fn new(interval: Duration, batch_size: usize) -> Self {
        Self {
            interval,
            batch_size: batch_size.max(1),
            max_batches: DEFAULT_MAX_BATCHES,
            pace: DEFAULT_PACE,
        }
    }

    /// Sets the pacing (see [`SweeperConfig::pace`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = tessera_sql::SweeperConfig::new(Duration::from_secs(60), 500).with_pace(3);
    /// assert_eq!(config.pace, 3);
    /// ```
    pub fn with_pace(mut self, pace: u32) -> Self {
        self.pace = pace;
        self
    }

    /// Sets the batches per sweep.
    pub fn with_max_batches(mut self, max_batches: u32) -> Self {
        self.max_batches = max_batches.max(1);
        self
    }
}

/// A running sweeper task. Dropping it stops the task.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tessera::store::MemoryStore;
///
/// let sweeper = tessera_sql::spawn_sweeper(Arc::new(MemoryStore::new()), Duration::from_secs(60), 500);
/// sweeper.stop();
/// # });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sweeper {
    task: JoinHandle<()>,
    stats: watch::Receiver<SweepStats>,
}

impl Sweeper {
    /// Starts a sweeper with the given clock (a
    /// [`ManualClock`](tessera::time::ManualClock) in tests). The first
    /// sweep runs at once, then one every `config.interval`. Must be called
    /// inside a tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: SweeperConfig) -> Self {
        let (tx, stats) = watch::channel(SweepStats::default());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
            // After a stall, sweep once, not once per missed tick.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let result = sweep_paced(
                    store.as_ref(),
                    clock.now(),
                    config.batch_size,
                    config.max_batches,
                    config.pace,
                )
                .await;
                tx.send_modify(|s| {
                    s.runs = s.runs.saturating_add(1);
                    match &result {
                        Ok(n) => s.purged = s.purged.saturating_add(*n),
                        Err(_) => s.failures = s.failures.saturating_add(1),
                    }
                });
                match result {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "swept expired sessions"),
                    // The store may be down; the next tick tries again.
                    Err(e) => tracing::warn!(error = %e, "session sweep failed"),
                }
            }
        });
        Self { task, stats }
    }

    /// The statistics, updated after every run; `changed().await` on the
    /// receiver waits for the next run.
    pub fn subscribe(&self) -> watch::Receiver<SweepStats> {
        self.stats.clone()
    }

    /// The statistics now.
    pub fn stats(&self) -> SweepStats {
        *self.stats.borrow()
    }

    /// Stops the task (between two statements; a batch in flight is
    /// abandoned, which rolls it back).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`Sweeper`] on the system clock: every `interval`, delete
/// expired records `batch_size` at a time.
pub fn spawn_sweeper(store: Arc<dyn Store>, interval: Duration, batch_size: usize) -> Sweeper {
    Sweeper::spawn(
        store,
        Arc::new(SystemClock),
        SweeperConfig::new(interval, batch_size),
    )
}

#[cfg(test)]
mod tests {
    use tessera::policy::SessionPolicy;
    use tessera::record::{ClientMeta, SessionRecord};
    use tessera::store::MemoryStore;
    use tessera::time::Timestamp;
    use tessera::token::SessionToken;

    use super::*;

    async fn store_with_expired(n: usize, live: usize) -> (MemoryStore, Timestamp) {
        let store = MemoryStore::new();
        let then = Timestamp::from_millis(1_000);
        let later = Timestamp::from_millis(then.as_millis() + 365 * 24 * 3_600_000);
        for i in 0..n + live {
            // Live ones first: a create purges a few records expired at
            // its own time, which must not take the expired ones early.
            let at = if i < live { later } else { then };
            let record = SessionRecord::new(
                SessionToken::generate().unwrap().hash(),
                None,
                at,
                SessionPolicy::default().deadlines_at(at),
                ClientMeta::default(),
            )
            .unwrap();
            store.create(&record).await.unwrap();
        }
        // "now": the first ones have expired, the later ones not.
        (store, Timestamp::from_millis(later.as_millis() + 1))
    }

    #[tokio::test]
    async fn paced_sweep_deletes_every_expired_record_and_keeps_live_ones() {
        let (store, now) = store_with_expired(25, 3).await;
        let n = sweep_paced(&store, now, 4, 100, 1).await.unwrap();
        assert_eq!(n, 25);
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn paced_sweep_stops_after_max_batches() {
        let (store, now) = store_with_expired(25, 0).await;
        let n = sweep_paced(&store, now, 4, 2, 1).await.unwrap();
        assert_eq!(n, 8, "two batches of four");
        assert_eq!(store.len(), 17);
    }

    #[test]
    fn sweepers_are_paced_by_default() {
        let config = SweeperConfig::new(Duration::from_secs(1), 10);
        assert_eq!(config.pace, DEFAULT_PACE);
        const { assert!(DEFAULT_PACE > 0) };
        assert_eq!(config.with_pace(0).pace, 0);
    }
}
