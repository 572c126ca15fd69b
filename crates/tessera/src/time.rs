//! Time as tessera sees it: millisecond timestamps and an injectable clock.
//!
//! Logic never reads the wall clock itself; it asks a [`Clock`], so tests can
//! move time with [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Stores keep it as a 64-bit integer, so deadline indexes stay simple
/// integer comparisons.
///
/// ```
/// use std::time::Duration;
/// use tessera::time::Timestamp;
///
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!(t + Duration::from_secs(1), Timestamp::from_millis(2_000));
/// assert_eq!(t.to_rfc3339(), "1970-01-01T00:00:01Z");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The time from `self` until `later`, zero if `later` is not later.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::time::Timestamp;
    /// let a = Timestamp::from_millis(0);
    /// assert_eq!(a.until(Timestamp::from_millis(1500)), Duration::from_millis(1500));
    /// assert_eq!(Timestamp::from_millis(9).until(a), Duration::ZERO);
    /// ```
    pub fn until(self, later: Timestamp) -> Duration {
        let ms = later.0.saturating_sub(self.0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// RFC 3339 text in UTC, second precision (for JSON and HTML).
    ///
    /// Written field by field rather than through `time`'s general RFC 3339
    /// formatter: every session answer carries several of these, and the
    /// general formatter was a measurable share of a `/v1` check. The text
    /// is the same (`YYYY-MM-DDTHH:MM:SSZ`; RFC 3339 has four-digit years,
    /// so years outside 0–9999 are `"invalid"` as before).
    pub fn to_rfc3339(self) -> String {
        use std::fmt::Write as _;
        let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(self.as_secs()) else {
            return String::from("invalid");
        };
        let year = dt.year();
        if !(0..=9999).contains(&year) {
            return String::from("invalid");
        }
        let mut out = String::with_capacity(20);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        out
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        let ms = i64::try_from(rhs.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        let ms = i64::try_from(rhs.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms({})", self.0, self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A source of the current time.
///
/// ```
/// use tessera::time::{Clock, SystemClock};
/// assert!(SystemClock.now().as_millis() > 0);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tessera::time::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_millis(0));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), Timestamp::from_millis(60_000));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    /// What `time`'s general RFC 3339 formatter writes.
    fn general(t: Timestamp) -> String {
        time::OffsetDateTime::from_unix_timestamp(t.as_secs())
            .ok()
            .and_then(|dt| {
                dt.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| String::from("invalid"))
    }

    #[test]
    fn rfc3339_text_is_what_the_general_formatter_writes() {
        let year_10000 = 253_402_300_800_000; // 10000-01-01T00:00:00Z
        let mut cases = vec![
            0,
            1,
            999,
            -1,
            -62_167_219_200_000, // 0000-01-01T00:00:00Z
            -62_167_219_200_001, // a millisecond before: year -1
            year_10000 - 1,
            year_10000,
            i64::MAX,
            i64::MIN,
            951_782_400_000, // 2000-02-29
            1_798_761_599_999,
        ];
        // A pseudo-random walk over four centuries around now.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = 400 * 366 * 86_400_000_u64;
            cases.push(i64::try_from(x % span).unwrap() - 100 * 366 * 86_400_000);
        }
        for ms in cases {
            let t = Timestamp::from_millis(ms);
            assert_eq!(t.to_rfc3339(), general(t), "{ms}");
        }
    }
}
