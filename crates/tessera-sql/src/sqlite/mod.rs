//! The SQLite backend: the embedded default.
//!
//! - **WAL mode**, so readers never wait for the writer and the writer never
//!   waits for readers.
//! - **One writer connection** in its own pool, plus a pool of readers.
//!   SQLite admits one writer at a time whatever we do; queueing writes in
//!   the pool (fair, bounded by `acquire_timeout`) instead of in SQLite's
//!   busy handler (sleep-and-poll) keeps latency flat under contention.
//! - Multi-statement writes use **`BEGIN IMMEDIATE`**, which takes the write
//!   lock up front. A deferred transaction that reads and then writes can
//!   fail with `SQLITE_BUSY` ("database is locked") without ever calling the
//!   busy handler, if another writer committed in between; an immediate one
//!   cannot. `busy_timeout` covers writers in *other* processes (the CLI).
//! - `synchronous = FULL`: a commit is on disk before it is acknowledged, so
//!   a sign-out or revocation survives a power cut (NORMAL could roll it
//!   back and resurrect the session).
//! - `sqlite::memory:` works too (one connection, never recycled, since
//!   every connection to `:memory:` is a different database).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tessera::StoreError;

use crate::options::SqlOptions;

mod refresh;
mod sql;
mod store;
#[cfg(test)]
mod tests;

/// A [`Store`](tessera::store::Store) on an SQLite file.
///
/// Usually reached through [`SqlStore::connect`](crate::SqlStore::connect)
/// with a `sqlite://` URL; see the crate README ("Consistency") for how it avoids
/// "database is locked".
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera::Store;
/// use tessera_sql::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.ping().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) timeout: Duration,
}

/// The embedded SQLite migrations (`migrations/sqlite/`).
fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/sqlite");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` with default
    /// [`SqlOptions`], and runs the migrations.
    ///
    /// `url` is `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`,
    /// or `sqlite::memory:`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the file cannot be opened; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`SqliteStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`SqliteStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(crate::error::map)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            // A local file does not drop connections; skip the round trip.
            .test_before_acquire(false);
        if in_memory {
            // The database lives and dies with its one connection.
            writer = writer
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let writer = writer
            .connect_with(connect.clone())
            .await
            .map_err(crate::error::map)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .min_connections(options.min_connections)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .connect_lazy_with(connect)
        };
        let store = Self {
            writer,
            reader,
            timeout: options.statement_timeout,
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Runs the embedded migrations (idempotent).
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator()
            .run(&self.writer)
            .await
            .map_err(StoreError::backend)
    }

    /// Closes every connection; the last one to close checkpoints the WAL
    /// into the main file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The pool that serves writes (one connection), for callers that need
    /// raw access such as backups.
    pub fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }
}
