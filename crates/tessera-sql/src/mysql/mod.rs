//! The MySQL / MariaDB backend (InnoDB).
//!
//! - Compare-and-set is **one statement**
//!   (`UPDATE … WHERE hash = ? AND version = ? AND next_deadline > ?`);
//!   InnoDB's `UPDATE` is a locking read of the latest committed row, so
//!   exactly one of two racing writers wins. sqlx asks the server for
//!   "found rows", so the affected-row count means "matched".
//! - [`Store::modify`](tessera::store::Store::modify) locks the row with `SELECT … FOR UPDATE` in a
//!   transaction; [`Store::rotate`](tessera::store::Store::rotate) re-keys the row with one `UPDATE`, so a
//!   racing revocation by handle or user (locking reads too) finds it.
//! - A transaction InnoDB picks as a deadlock victim is re-run (it was
//!   rolled back whole).
//! - `handle` and `user_id` are `VARBINARY`: the default collations would
//!   compare `'Alice '` equal to `'alice'` and hand one user another's
//!   sessions.
//! - The sweeper deletes a bounded batch per statement
//!   (`DELETE … ORDER BY next_deadline LIMIT ?`) through the deadline index.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use tessera::StoreError;

use crate::options::SqlOptions;

mod refresh;
mod rows;
mod sql;
mod store;

/// A [`Store`](tessera::store::Store) on MySQL 8 or MariaDB 10.6+ (InnoDB). See the
/// crate README ("Consistency") for its consistency.
///
/// ```no_run
/// # async fn demo() -> Result<(), tessera::StoreError> {
/// let store = tessera_sql::MySqlStore::connect("mysql://tessera@db.internal/tessera").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pub(crate) pool: MySqlPool,
    pub(crate) timeout: Duration,
}

/// The `GET_LOCK` name held while migrating.
const MIGRATION_LOCK: &str = "tessera_sql_migrations";

/// How long an instance waits for another one's migrations, in seconds.
const MIGRATION_LOCK_WAIT_SECS: i64 = 120;

fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/mysql");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl MySqlStore {
    /// Connects with default [`SqlOptions`] and runs the migrations.
    /// `mysql://` and `mariadb://` URLs are accepted alike.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`MySqlStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`MySqlStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let connect = MySqlConnectOptions::from_str(url).map_err(crate::error::map)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(crate::error::map)?;
        let store = Self {
            pool,
            timeout: options.statement_timeout,
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Runs the embedded migrations (idempotent), under a database-wide
    /// lock so that instances starting together migrate one at a time.
    ///
    /// sqlx's migrator takes `GET_LOCK(…, -1)` and ignores the answer, and
    /// MariaDB does not wait on a negative timeout: two instances would run
    /// the same migration at once and the second would find it "partially
    /// applied". So the run holds a lock of its own, with a real timeout,
    /// on the connection it migrates through.
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails or the lock is not granted
    /// within two minutes.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(crate::error::map)?;
        let granted: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(MIGRATION_LOCK)
            .bind(MIGRATION_LOCK_WAIT_SECS)
            .fetch_one(&mut *conn)
            .await
            .map_err(crate::error::map)?;
        if granted != Some(1) {
            return Err(StoreError::backend(
                "another instance held the migration lock too long",
            ));
        }
        let result = migrator()
            .run(&mut *conn)
            .await
            .map_err(StoreError::backend);
        // Also released when the connection closes, should this fail.
        sqlx::query("DO RELEASE_LOCK(?)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(crate::error::map)?;
        result
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}
