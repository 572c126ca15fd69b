//! The PostgreSQL backend: for many `tessera` instances on one database.
//!
//! - Compare-and-set is **one statement**
//!   (`UPDATE … WHERE hash = $ AND version = $ AND next_deadline > $`).
//!   Under READ COMMITTED a concurrent writer waits for the row lock and
//!   then re-checks the `WHERE` against the new row version, so exactly one
//!   of two racing writers wins.
//! - [`Store::modify`](tessera::store::Store::modify) locks the row with `SELECT … FOR UPDATE` in a
//!   transaction: concurrent increments queue, none conflicts or is lost.
//! - [`Store::rotate`](tessera::store::Store::rotate) re-keys the row with one `UPDATE` instead of a
//!   delete and an insert. A revocation racing with it (by handle or by
//!   user) waits for the row lock and then follows the update to the new
//!   row version, so it deletes the rotated session rather than missing it.
//! - The sweeper deletes a bounded batch per statement and skips rows other
//!   transactions hold (`FOR UPDATE SKIP LOCKED`), so sweepers on several
//!   instances never wait for each other or for requests.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tessera::StoreError;

use crate::options::SqlOptions;

mod refresh;
mod sql;
mod store;

/// A [`Store`](tessera::store::Store) on PostgreSQL (11 or later). See the crate README
/// ("Consistency") for its consistency.
///
/// ```no_run
/// # async fn demo() -> Result<(), tessera::StoreError> {
/// let store = tessera_sql::PgStore::connect("postgres://tessera@db.internal/tessera").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) timeout: Duration,
}

fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl PgStore {
    /// Connects with default [`SqlOptions`] and runs the migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`PgStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`PgStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let timeout_ms = options.statement_timeout.as_millis().max(1).to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(crate::error::map)?
            // The server abandons a statement the client has given up on.
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
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

    /// Runs the embedded migrations (idempotent; concurrent instances
    /// serialise on an advisory lock).
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator()
            .run(&self.pool)
            .await
            .map_err(StoreError::backend)
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
