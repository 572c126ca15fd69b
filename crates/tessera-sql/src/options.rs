//! Connection pool and timeout settings.

use std::time::Duration;

/// How a [`SqlStore`](crate::SqlStore) connects and how long it waits.
///
/// Every wait is bounded, so a store that stops answering turns into
/// [`StoreError::Unavailable`](tessera::StoreError::Unavailable) or
/// [`StoreError::Timeout`](tessera::StoreError::Timeout) — and a 503 — within
/// a known time instead of a hung request (docs/design.md, invariant 9).
///
/// ```
/// use std::time::Duration;
/// use tessera_sql::SqlOptions;
///
/// let options = SqlOptions::default()
///     .with_max_connections(20)
///     .with_acquire_timeout(Duration::from_secs(2));
/// assert_eq!(options.max_connections, 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Largest number of pooled connections. For SQLite this sizes the
    /// reader pool; writes always go through one connection (SQLite has one
    /// writer at a time anyway). Default 10.
    pub max_connections: u32,
    /// Connections kept open while idle. Default 0.
    pub min_connections: u32,
    /// Longest wait for a pooled connection; past it the operation fails
    /// with `StoreError::Unavailable`. Default 5 seconds.
    pub acquire_timeout: Duration,
    /// Longest time one store operation may take in total; past it the
    /// operation fails with `StoreError::Timeout`. On PostgreSQL it is also
    /// set as the server-side `statement_timeout`. Default 5 seconds.
    pub statement_timeout: Duration,
    /// SQLite only: how long a connection waits for another process's
    /// write lock (`PRAGMA busy_timeout`). Default 5 seconds.
    pub busy_timeout: Duration,
    /// Run the embedded migrations on connect. Default `true`; turn off
    /// when the schema is managed separately (then call
    /// [`SqlStore::migrate`](crate::SqlStore::migrate) from a deploy step).
    pub migrate: bool,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

impl SqlOptions {
    /// Sets [`SqlOptions::max_connections`] (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`SqlOptions::min_connections`].
    pub fn with_min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// Sets [`SqlOptions::acquire_timeout`].
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::statement_timeout`].
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::busy_timeout`].
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::migrate`].
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}
