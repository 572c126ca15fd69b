//! What a refused attempt reports. A leaf module: the limiter and its
//! counter backends both name these.

use std::time::Duration;

/// Which counter refused the attempt, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until an attempt will be accepted again (the `Retry-After`).
    pub retry_after: Duration,
    /// True if the per-user counter refused, false for the per-IP one.
    pub by_user: bool,
}

/// Why an attempt may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A budget is spent: answer 429 with `Retry-After`.
    #[error("too many failed attempts")]
    Limited(Limited),
    /// The shared counters could not be reached: fail closed (503).
    #[error("rate-limit counters unavailable: {0}")]
    Unavailable(String),
}
