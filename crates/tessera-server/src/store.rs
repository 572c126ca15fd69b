//! Choosing the session store and the clock from the configuration.

use std::path::PathBuf;
use std::sync::Arc;

use tessera::Store;
use tessera::store::MemoryStore;
use tessera::time::{Clock, SystemClock, Timestamp};

use crate::metrics::MeteredStore;

/// The store URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreOpenError {
    /// No backend for this URL scheme.
    #[error("unsupported store URL {0:?}: use sqlite://PATH or memory://")]
    Unsupported(String),
    /// The backend refused to open.
    #[error(transparent)]
    Store(#[from] tessera::StoreError),
}

/// Opens the session store named by `url`, wrapped for latency metrics.
///
/// - `sqlite://PATH` — the embedded default ([`tessera_sql::SqlStore`]),
///   created and migrated if missing; the server's users and API keys live
///   in the same file.
/// - `memory://` — in-process only, lost at exit (tests, demos).
///
/// # Errors
///
/// [`StoreOpenError`].
pub async fn open_session_store(url: &str) -> Result<Arc<dyn Store>, StoreOpenError> {
    let inner: Arc<dyn Store> = if url == "memory://" {
        Arc::new(MemoryStore::new())
    } else if url.starts_with("sqlite:") {
        Arc::new(tessera_sql::SqlStore::connect(url).await?)
    } else {
        return Err(StoreOpenError::Unsupported(url.to_owned()));
    };
    Ok(Arc::new(MeteredStore::new(inner)))
}

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
