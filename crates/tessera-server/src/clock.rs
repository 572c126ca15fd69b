//! The server's clock (a leaf: it depends on no other module of the
//! server).

use std::path::PathBuf;

use tessera::time::{Clock, SystemClock, Timestamp};

/// The server's clock: the system clock, except in debug builds when
/// `TESSERA_TEST_CLOCK_FILE` names a file holding "now" in milliseconds.
///
/// The file clock exists so the integration tests can move time across the
/// idle and absolute deadlines of a running server without sleeping. It is
/// compiled out of release builds.
#[derive(Debug, Clone)]
pub enum ServerClock {
    /// The real clock.
    System,
    /// Time read from a file (debug builds, tests only).
    File(PathBuf),
}

impl ServerClock {
    /// The clock for this process.
    pub fn from_env() -> Self {
        #[cfg(debug_assertions)]
        if let Some(path) = std::env::var_os("TESSERA_TEST_CLOCK_FILE") {
            tracing::warn!("debug build: session time is read from TESSERA_TEST_CLOCK_FILE");
            return Self::File(PathBuf::from(path));
        }
        Self::System
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        match self {
            Self::System => SystemClock.now(),
            Self::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map(Timestamp::from_millis)
                .unwrap_or_else(|| SystemClock.now()),
        }
    }
}
