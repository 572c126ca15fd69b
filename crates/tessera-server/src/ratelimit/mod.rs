//! Sign-in throttling: password attempts are counted per user name and per
//! client network over a fixed window; at the limit further attempts get 429
//! with `Retry-After` until the window ends (OWASP Authentication Cheat
//! Sheet, "Login Throttling"; OWASP Credential Stuffing Prevention Cheat
//! Sheet; NIST SP 800-63B §5.2.2, "Rate Limiting (Throttling)"; ASVS 5.0
//! V6.3.1).
//!
//! Counting per user name stops guessing one account's password from many
//! addresses; counting per address stops spraying one password over many
//! accounts. IPv6 clients are counted per /64, the block one subscriber
//! usually gets, so rotating through its addresses buys nothing.
//!
//! **Reserve, then verify.** An attempt is counted *before* its password is
//! checked ([`LoginLimiter::reserve`]), with an atomic increment: however
//! many guesses arrive at once, at most the limit get past the counter. A
//! correct password gives the attempt back ([`LoginLimiter::succeeded`]:
//! the user's counter starts over and the address's count drops by one); an
//! attempt that was never checked (the hashing gate was full, the database
//! failed) gives back both ([`LoginLimiter::cancel`]). Asking the counter
//! after the check instead would let every guess that starts before the
//! first one finishes through.
//!
//! Counters live in this process ([`LoginLimiter::new`], a moka cache
//! bounded in bytes: the memory and SQLite stores) or in the shared store
//! ([`LoginLimiter::in_database`] for PostgreSQL and MySQL,
//! [`LoginLimiter::in_redis`] for Redis and Redis Cluster: an atomic
//! increment whose first hit starts the window's expiry), so that several
//! instances give an attacker one budget, not one each. When shared
//! counters cannot be reached the attempt fails closed with 503.

mod error;
mod local;
mod shared;

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use self::error::{LimitError, Limited};
use self::local::LocalCounters;
use self::shared::{RedisCounters, SqlCounters};

/// Default memory for local counters: 16 MiB, about 40,000 of the longest
/// user names or 90,000 ordinary ones.
pub const DEFAULT_MEMORY_BYTES: u64 = crate::config::values::DEFAULT_LOGIN_LIMITER_MEMORY;

/// Longest user name kept as is in a counter key; longer ones (which the
/// sign-in handlers already refuse) are keyed by their SHA-256.
const MAX_KEY_NAME: usize = 256;

/// An attempt counted against the user's and the address's budgets. Hand
/// it back to [`LoginLimiter::failed`], [`LoginLimiter::succeeded`] or
/// [`LoginLimiter::cancel`]; dropped, it stays counted (as a failure).
#[derive(Debug)]
#[must_use = "an attempt is settled with failed, succeeded or cancel"]
pub struct Reservation {
    user_key: String,
    ip_key: String,
}

#[derive(Clone)]
enum Counters {
    Local(LocalCounters),
    Sql(SqlCounters),
    Redis(RedisCounters),
}

impl Counters {
    async fn incr(&self, key: &str) -> Result<(u32, Duration), LimitError> {
        match self {
            Self::Local(c) => Ok(c.incr(key)),
            Self::Sql(c) => c.incr(key).await,
            Self::Redis(c) => c.incr(key).await,
        }
    }

    async fn decr(&self, key: &str) -> Result<(), LimitError> {
        match self {
            Self::Local(c) => {
                c.decr(key);
                Ok(())
            }
            Self::Sql(c) => c.decr(key).await,
            Self::Redis(c) => c.decr(key).await,
        }
    }

    async fn clear(&self, key: &str) -> Result<(), LimitError> {
        match self {
            Self::Local(c) => {
                c.clear(key);
                Ok(())
            }
            Self::Sql(c) => c.clear(key).await,
            Self::Redis(c) => c.clear(key).await,
        }
    }
}

/// Attempt counters for password checks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tessera_server::ratelimit::{LimitError, LoginLimiter};
///
/// let limiter = LoginLimiter::new(2, 10, Duration::from_secs(60));
/// let ip = Some("192.0.2.1".parse()?);
/// for _ in 0..2 {
///     let attempt = limiter.reserve("alice", ip).await?;
///     limiter.failed(attempt); // a wrong password keeps its count
/// }
/// assert!(matches!(
///     limiter.reserve("alice", ip).await,
///     Err(LimitError::Limited(l)) if l.by_user
/// ));
/// let bob = limiter.reserve("bob", ip).await?;
/// limiter.succeeded(bob).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginLimiter {
    counters: Counters,
    max_user: u32,
    max_ip: u32,
    window: Duration,
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

impl LoginLimiter {
    /// A limiter in this process allowing `max_user` attempts per user name
    /// and `max_ip` per client network within `window`, in at most
    /// [`DEFAULT_MEMORY_BYTES`].
    pub fn new(max_user: u32, max_ip: u32, window: Duration) -> Self {
        Self::local(max_user, max_ip, window, DEFAULT_MEMORY_BYTES)
    }

    /// Like [`LoginLimiter::new`], with counters in at most about
    /// `max_bytes` of memory.
    pub fn local(max_user: u32, max_ip: u32, window: Duration, max_bytes: u64) -> Self {
        Self {
            counters: Counters::Local(LocalCounters::new(window, max_bytes)),
            max_user,
            max_ip,
            window,
        }
    }

    /// A limiter whose counters live in a PostgreSQL or MySQL database
    /// (table `tessera_login_counters`), shared by every instance using it.
    /// A SQLite database gets counters in this process instead, with
    /// [`DEFAULT_MEMORY_BYTES`].
    pub fn in_database(max_user: u32, max_ip: u32, window: Duration, db: crate::db::Db) -> Self {
        let counters = match db {
            crate::db::Db::Sqlite(_) => {
                Counters::Local(LocalCounters::new(window, DEFAULT_MEMORY_BYTES))
            }
            db => Counters::Sql(SqlCounters::new(db, window)),
        };
        Self {
            counters,
            max_user,
            max_ip,
            window,
        }
    }

    /// A limiter whose counters live in Redis or Redis Cluster (keys
    /// `{prefix}c:login:…`), shared by every instance using it.
    pub fn in_redis(
        max_user: u32,
        max_ip: u32,
        window: Duration,
        store: tessera_redis::RedisStore,
    ) -> Self {
        Self {
            counters: Counters::Redis(RedisCounters::new(store, window)),
            max_user,
            max_ip,
            window,
        }
    }

    /// Where the counters live: `memory`, `database` or `redis`.
    pub fn backend(&self) -> &'static str {
        match self.counters {
            Counters::Local(_) => "memory",
            Counters::Sql(_) => "database",
            Counters::Redis(_) => "redis",
        }
    }

    /// The counting window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts an attempt for `user` from `ip` before its password is
    /// checked.
    ///
    /// Each counter is incremented atomically and the attempt proceeds only
    /// if the new count is within the budget; otherwise the increment is
    /// taken back and the attempt refused. Of any number of concurrent
    /// attempts, at most the budget proceed.
    ///
    /// # Errors
    ///
    /// [`LimitError::Limited`] when a budget is spent;
    /// [`LimitError::Unavailable`] when shared counters cannot be reached.
    pub async fn reserve(&self, user: &str, ip: Option<IpAddr>) -> Result<Reservation, LimitError> {
        let user_key = user_key(user);
        let ip_key = ip_key(ip);
        let (hits, left) = self.counters.incr(&user_key).await?;
        if hits > self.max_user {
            self.counters.decr(&user_key).await?;
            return Err(LimitError::Limited(Limited {
                retry_after: left,
                by_user: true,
            }));
        }
        let (hits, left) = match self.counters.incr(&ip_key).await {
            Ok(counted) => counted,
            Err(e) => {
                self.counters.decr(&user_key).await?;
                return Err(e);
            }
        };
        if hits > self.max_ip {
            self.counters.decr(&ip_key).await?;
            self.counters.decr(&user_key).await?;
            return Err(LimitError::Limited(Limited {
                retry_after: left,
                by_user: false,
            }));
        }
        Ok(Reservation { user_key, ip_key })
    }

    /// The password was wrong: the attempt stays counted.
    pub fn failed(&self, attempt: Reservation) {
        drop(attempt);
    }

    /// The password was right: the user's counter starts over and the
    /// address's count gives this attempt back.
    ///
    /// # Errors
    ///
    /// [`LimitError::Unavailable`] when shared counters cannot be reached.
    pub async fn succeeded(&self, attempt: Reservation) -> Result<(), LimitError> {
        self.counters.clear(&attempt.user_key).await?;
        self.counters.decr(&attempt.ip_key).await
    }

    /// The password was never checked (the hashing gate was full, the
    /// database failed): both counts give this attempt back.
    ///
    /// # Errors
    ///
    /// [`LimitError::Unavailable`] when shared counters cannot be reached.
    pub async fn cancel(&self, attempt: Reservation) -> Result<(), LimitError> {
        self.counters.decr(&attempt.user_key).await?;
        self.counters.decr(&attempt.ip_key).await
    }
}

/// The counter key of a user name: case-insensitive, and never longer than
/// [`MAX_KEY_NAME`] bytes plus a prefix.
fn user_key(user: &str) -> String {
    let name = user.to_ascii_lowercase();
    if name.len() <= MAX_KEY_NAME {
        format!("u:{name}")
    } else {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("u#{hex}")
    }
}

/// The counter key of a client address: an IPv4 address as is (also when
/// written IPv4-mapped), an IPv6 address by its /64 network. One IPv6
/// subscriber usually holds a whole /64 (RFC 6177), so counting single
/// addresses would give it 2^64 budgets.
///
/// ```
/// use tessera_server::ratelimit::ip_key;
/// let ip = |s: &str| s.parse().ok();
/// assert_eq!(ip_key(ip("192.0.2.7")), "ip:192.0.2.7");
/// assert_eq!(ip_key(ip("::ffff:192.0.2.7")), "ip:192.0.2.7");
/// assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1")), "ip:2001:db8:1:2::/64");
/// assert_eq!(ip_key(ip("2001:db8:1:2:bbbb::9")), "ip:2001:db8:1:2::/64");
/// assert_eq!(ip_key(None), "ip?unknown");
/// ```
pub fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("ip:{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
        // No peer address (not a socket connection): one shared bucket.
        None => String::from("ip?unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn limited(r: Result<Reservation, LimitError>) -> Limited {
        match r {
            Err(LimitError::Limited(l)) => l,
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn per_ip_limit_covers_many_user_names() {
        let limiter = LoginLimiter::new(100, 3, Duration::from_secs(60));
        for name in ["a", "b", "c"] {
            limiter.failed(limiter.reserve(name, ip("198.51.100.7")).await.unwrap());
        }
        let l = limited(limiter.reserve("d", ip("198.51.100.7")).await);
        assert!(!l.by_user);
        assert!(l.retry_after <= Duration::from_secs(60));
        limiter.failed(limiter.reserve("d", ip("198.51.100.8")).await.unwrap());
    }

    #[tokio::test]
    async fn success_clears_the_user_counter_and_names_are_case_insensitive() {
        let limiter = LoginLimiter::new(2, 100, Duration::from_secs(60));
        limiter.failed(limiter.reserve("Alice", ip("192.0.2.1")).await.unwrap());
        let second = limiter.reserve("alice", ip("192.0.2.2")).await.unwrap();
        assert!(limited(limiter.reserve("ALICE", ip("192.0.2.3")).await).by_user);
        limiter.succeeded(second).await.unwrap();
        limiter.failed(limiter.reserve("alice", ip("192.0.2.3")).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_reservations_never_exceed_the_budget() {
        let limiter = LoginLimiter::new(5, 1000, Duration::from_secs(60));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.reserve("alice", ip("192.0.2.1")).await })
            })
            .collect();
        let mut granted = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await.unwrap() {
                granted.push(r);
            }
        }
        assert_eq!(granted.len(), 5);
        // A cancelled attempt gives its place back.
        limiter.cancel(granted.pop().unwrap()).await.unwrap();
        let again = limiter.reserve("alice", ip("192.0.2.1")).await.unwrap();
        limiter.failed(again);
        assert!(limited(limiter.reserve("alice", ip("192.0.2.1")).await).by_user);
    }

    #[tokio::test]
    async fn a_refused_user_does_not_spend_the_address_budget() {
        let limiter = LoginLimiter::new(1, 3, Duration::from_secs(60));
        limiter.failed(limiter.reserve("alice", ip("192.0.2.1")).await.unwrap());
        for _ in 0..10 {
            assert!(limited(limiter.reserve("alice", ip("192.0.2.1")).await).by_user);
        }
        // Two more attempts fit the address's budget of 3.
        limiter.failed(limiter.reserve("bob", ip("192.0.2.1")).await.unwrap());
        limiter.failed(limiter.reserve("carol", ip("192.0.2.1")).await.unwrap());
        assert!(!limited(limiter.reserve("dave", ip("192.0.2.1")).await).by_user);
    }

    #[tokio::test]
    async fn ipv6_addresses_of_one_slash_64_share_a_budget() {
        let limiter = LoginLimiter::new(100, 2, Duration::from_secs(60));
        limiter.failed(limiter.reserve("a", ip("2001:db8:0:1::1")).await.unwrap());
        limiter.failed(
            limiter
                .reserve("b", ip("2001:db8:0:1:ffff::2"))
                .await
                .unwrap(),
        );
        assert!(!limited(limiter.reserve("c", ip("2001:db8:0:1::3")).await).by_user);
        limiter.failed(limiter.reserve("c", ip("2001:db8:0:2::3")).await.unwrap());
    }

    #[test]
    fn local_counters_stay_within_their_byte_budget() {
        let budget = 256 * 1024;
        let counters = LocalCounters::new(Duration::from_secs(60), budget);
        for i in 0..20_000 {
            counters.incr(&format!("u:{}{i}", "x".repeat(250)));
        }
        let used = counters.weighted_size();
        assert!(used <= budget, "{used} > {budget}");
        assert!(used > budget / 2, "the cache is used: {used}");
    }

    #[test]
    fn long_names_are_keyed_by_their_digest() {
        assert_eq!(user_key("Alice"), "u:alice");
        let long = user_key(&"a".repeat(10_000));
        assert!(long.starts_with("u#") && long.len() == 66, "{long}");
    }
}
