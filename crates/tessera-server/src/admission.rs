//! Password-hashing admission: at most a fixed number of Argon2 computations
//! run at once, a short bounded line waits behind them, and everything past
//! that is answered at once with 503 and `Retry-After`.
//!
//! Each Argon2id computation holds its whole memory cost (19 MiB, see
//! [`crate::users`]) for its duration. Without a bound, N concurrent sign-ins
//! hold N × 19 MiB: a flood of sign-ins with made-up user names (which cost
//! the same as real ones, so that timing does not reveal which users exist)
//! grows the process by gigabytes, and the allocator keeps much of it
//! afterwards. The bound turns that into at most `width` × 19 MiB, whatever
//! the number of clients (OWASP Denial of Service Cheat Sheet, "limit the
//! amount of resources a single request may consume"; OWASP Password
//! Storage Cheat Sheet on the cost of memory-hard hashes).
//!
//! The default width is the number of CPUs the process may use: Argon2 with
//! `p = 1` keeps one core busy, so more at once would only queue inside the
//! kernel instead of here.
//!
//! The hashes run on `width` threads of their own ([`HashAdmission::run`]),
//! not on tokio's blocking pool. The allocator keeps a freed 19 MiB block in
//! the arena of the thread that used it; on the blocking pool every new
//! thread that ever hashed would keep one (measured: 11 hashes, two at a
//! time, left +213 MiB resident). On a fixed set of threads the memory kept
//! is at most `width` blocks.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tessera_server::admission::Busy> {
//! use tessera_server::admission::HashAdmission;
//!
//! let admission = HashAdmission::new(1);
//! let first = admission.admit().await?;
//! assert_eq!(admission.running(), 1);
//! drop(first);
//! assert_eq!(admission.running(), 0);
//! # Ok(()) }
//! ```

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// A hashing job for the admission's threads.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// How many requests may wait for a hashing slot, per slot. A short line
/// absorbs the bursts of ordinary use (a few people signing in in the same
/// second) without an error; waiting costs a task, not a hash's memory.
pub const QUEUE_PER_SLOT: usize = 4;

/// The number of hashing slots when none is configured: the CPUs this
/// process may use (at least 1).
///
/// ```
/// assert!(tessera_server::admission::default_width() >= 1);
/// ```
pub fn default_width() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Every hashing slot is taken and the line behind them is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress; try again shortly")]
pub struct Busy;

/// The gate in front of every Argon2 computation of the server. Cheap to
/// clone; clones share the slots.
#[derive(Debug, Clone)]
pub struct HashAdmission {
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    width: usize,
    jobs: SyncSender<Job>,
}

/// The loop of one hashing thread: jobs until every sender is gone.
fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// A hashing slot, held until the hash is finished. Move it into the
/// blocking task that computes the hash, so a client that disconnects
/// mid-hash does not free the slot while the computation still runs.
#[derive(Debug)]
pub struct HashPermit {
    _slot: OwnedSemaphorePermit,
}

impl HashAdmission {
    /// A gate with `width` slots (at least 1) and a line of
    /// [`QUEUE_PER_SLOT`] × `width` waiting requests.
    pub fn new(width: usize) -> Self {
        let width = width.max(1);
        // A job is sent only by a slot holder, so at most `width` are ever
        // queued or running: the channel never blocks a sender.
        let (tx, rx) = sync_channel::<Job>(width);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..width {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessera-hash-{i}"))
                .spawn(move || work(&rx));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "could not start a hashing thread"),
            }
        }
        if started == 0 {
            tracing::error!("no hashing thread: every password check will answer busy");
        }
        Self {
            running: Arc::new(Semaphore::new(width)),
            waiting: Arc::new(Semaphore::new(width.saturating_mul(QUEUE_PER_SLOT))),
            width,
            jobs: tx,
        }
    }

    /// Runs `f` on one of the hashing threads, holding `permit` until it
    /// returns (also when the caller stops waiting).
    ///
    /// # Errors
    ///
    /// [`Busy`] if no hashing thread is running.
    pub async fn run<T, F>(&self, permit: HashPermit, f: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f());
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }

    /// The number of slots.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Slots taken right now.
    pub fn running(&self) -> usize {
        self.width.saturating_sub(self.running.available_permits())
    }

    /// Takes a slot: at once if one is free, else after the requests ahead
    /// in the (bounded, first-come first-served) line.
    ///
    /// # Errors
    ///
    /// [`Busy`] at once when the line is full too.
    pub async fn admit(&self) -> Result<HashPermit, Busy> {
        if let Ok(slot) = self.running.clone().try_acquire_owned() {
            return Ok(HashPermit { _slot: slot });
        }
        // A place in line is held only while waiting; dropping the request
        // (client gone) gives it back.
        let _place = self.waiting.try_acquire().map_err(|_| Busy)?;
        let slot = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        Ok(HashPermit { _slot: slot })
    }
}

impl Default for HashAdmission {
    /// [`default_width`] slots.
    fn default() -> Self {
        Self::new(default_width())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_and_line_refuses_at_once_and_frees_on_drop() {
        let admission = HashAdmission::new(1);
        let held = admission.admit().await.unwrap();
        // QUEUE_PER_SLOT requests wait in line...
        let mut waiters = Vec::new();
        for _ in 0..QUEUE_PER_SLOT {
            let a = admission.clone();
            waiters.push(tokio::spawn(async move { a.admit().await.map(drop) }));
        }
        while admission.waiting.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // ...and the next one is refused without waiting.
        assert_eq!(admission.admit().await.unwrap_err(), Busy);
        drop(held);
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert_eq!(admission.running(), 0);
    }
}
