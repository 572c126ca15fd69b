//! Sign-in throttling: failures are counted per user name and per client IP
//! over a window; at the limit further attempts get 429 with `Retry-After`
//! until the window ends (OWASP Authentication Cheat Sheet, "Login
//! Throttling"; ASVS 5.0 V6.3.1).
//!
//! Counting per user name stops guessing one account's password from many
//! IPs; counting per IP stops spraying one password over many accounts. A
//! successful sign-in clears its user name's counter. Counters live in a
//! bounded moka cache, so a flood of random names cannot exhaust memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Most distinct keys tracked at once.
const CAPACITY: u64 = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counters for sign-ins.
///
/// ```
/// use std::time::Duration;
/// use tessera_server::ratelimit::LoginLimiter;
///
/// let limiter = LoginLimiter::new(2, 10, Duration::from_secs(60));
/// assert!(limiter.check("alice", "192.0.2.1").is_ok());
/// limiter.failed("alice", "192.0.2.1");
/// limiter.failed("alice", "192.0.2.1");
/// assert!(limiter.check("alice", "192.0.2.1").is_err());
/// assert!(limiter.check("bob", "192.0.2.1").is_ok());
/// ```
#[derive(Clone)]
pub struct LoginLimiter {
    per_user: Cache<String, Window>,
    per_ip: Cache<String, Window>,
    max_user: u32,
    max_ip: u32,
    window: Duration,
    lock: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("max_user", &self.max_user)
            .field("max_ip", &self.max_ip)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Which counter refused the attempt, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until an attempt will be accepted again (the `Retry-After`).
    pub retry_after: Duration,
    /// True if the per-user counter refused, false for the per-IP one.
    pub by_user: bool,
}

impl LoginLimiter {
    /// A limiter allowing `max_user` failures per user name and `max_ip`
    /// per IP within `window`.
    pub fn new(max_user: u32, max_ip: u32, window: Duration) -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(window)
                .build()
        };
        Self {
            per_user: cache(),
            per_ip: cache(),
            max_user,
            max_ip,
            window,
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    fn blocked(&self, cache: &Cache<String, Window>, key: &str, max: u32) -> Option<Duration> {
        let w = cache.get(key)?;
        let elapsed = w.started.elapsed();
        (w.failures >= max && elapsed < self.window).then(|| self.window - elapsed)
    }

    /// Whether an attempt may proceed.
    ///
    /// # Errors
    ///
    /// [`Limited`] with the time to wait.
    pub fn check(&self, user: &str, ip: &str) -> Result<(), Limited> {
        let user = user.to_ascii_lowercase();
        if let Some(retry_after) = self.blocked(&self.per_user, &user, self.max_user) {
            return Err(Limited {
                retry_after,
                by_user: true,
            });
        }
        if let Some(retry_after) = self.blocked(&self.per_ip, ip, self.max_ip) {
            return Err(Limited {
                retry_after,
                by_user: false,
            });
        }
        Ok(())
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, ip: &str) {
        // One lock keeps read-increment-write of a counter atomic; the work
        // inside is a few map operations.
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for (cache, key) in [
            (&self.per_user, user.to_ascii_lowercase()),
            (&self.per_ip, ip.to_owned()),
        ] {
            let now = Instant::now();
            let next = match cache.get(&key) {
                Some(w) if w.started.elapsed() < self.window => Window {
                    started: w.started,
                    failures: w.failures.saturating_add(1),
                },
                _ => Window {
                    started: now,
                    failures: 1,
                },
            };
            cache.insert(key, next);
        }
    }

    /// Clears the user name's counter after a successful sign-in.
    pub fn succeeded(&self, user: &str) {
        self.per_user.invalidate(&user.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    #[test]
    fn per_ip_limit_covers_many_user_names() {
        let limiter = LoginLimiter::new(100, 3, Duration::from_secs(60));
        for name in ["a", "b", "c"] {
            limiter.failed(name, "198.51.100.7");
        }
        let limited = limiter.check("d", "198.51.100.7").unwrap_err();
        assert!(!limited.by_user);
        assert!(limited.retry_after <= Duration::from_secs(60));
        assert!(limiter.check("d", "198.51.100.8").is_ok());
    }

    #[test]
    fn success_clears_the_user_counter_and_names_are_case_insensitive() {
        let limiter = LoginLimiter::new(2, 100, Duration::from_secs(60));
        limiter.failed("Alice", "1");
        limiter.failed("alice", "2");
        assert!(limiter.check("ALICE", "3").unwrap_err().by_user);
        limiter.succeeded("alice");
        assert!(limiter.check("alice", "3").is_ok());
    }
}
