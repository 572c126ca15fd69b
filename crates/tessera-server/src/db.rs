//! The server's own database: users and API keys, in SQLite — by default
//! the same file as the SQLite session store (through a separate connection
//! pool), or the file named by the `database` setting when sessions live
//! elsewhere (PostgreSQL, MySQL, Redis).
//!
//! Migrations are embedded in the binary and tracked in their own table,
//! `tessera_server_migrations`, rather than sqlx's `_sqlx_migrations`: the
//! session store (tessera-sql) migrates the same file with its own migrator,
//! and two migrators sharing one history table would each see the other's
//! entries as unknown and refuse to run.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// The embedded migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "users_and_api_keys",
    include_str!("../migrations/0001_users_and_api_keys.sql"),
)];

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL names no SQLite database the server can keep its own
    /// tables in.
    #[error("unsupported database URL {0:?}: use sqlite://PATH")]
    UnsupportedUrl(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// The SQLite URL for a database URL (`memory://` is an in-memory
/// database).
///
/// ```
/// use tessera_server::db::data_url;
/// assert_eq!(data_url("sqlite://tessera.db").unwrap(), "sqlite://tessera.db");
/// assert_eq!(data_url("memory://").unwrap(), "sqlite::memory:");
/// assert!(data_url("ftp://x").is_err());
/// ```
///
/// # Errors
///
/// [`DbError::UnsupportedUrl`] for anything but `sqlite:` and `memory://`.
pub fn data_url(store_url: &str) -> Result<String, DbError> {
    if store_url.starts_with("sqlite:") {
        Ok(store_url.to_owned())
    } else if store_url == "memory://" {
        Ok(String::from("sqlite::memory:"))
    } else {
        Err(DbError::UnsupportedUrl(crate::store::redact(store_url)))
    }
}

/// Opens (creating if missing) the server database for `store_url` and
/// applies pending migrations.
///
/// # Errors
///
/// [`DbError`] if the URL is unsupported or SQLite fails.
pub async fn open(
    store_url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<SqlitePool, DbError> {
    let pool = connect(store_url, pool_size, timeout).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Opens (creating if missing) the server database without migrating it.
///
/// # Errors
///
/// [`DbError`] if the URL is unsupported or SQLite fails.
pub async fn connect(
    store_url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<SqlitePool, DbError> {
    let url = data_url(store_url)?;
    let in_memory = url.contains(":memory:");
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .busy_timeout(timeout)
        .foreign_keys(true);
    let options = if in_memory {
        options
    } else {
        // WAL lets the session store and this pool read while the other
        // writes.
        options.journal_mode(SqliteJournalMode::Wal)
    };
    // An in-memory database exists per connection: keep exactly one.
    let size = if in_memory { 1 } else { pool_size };
    let pool = SqlitePoolOptions::new()
        .max_connections(size)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Applies the embedded migrations not yet recorded, each in a transaction.
/// Returns how many were applied.
///
/// # Errors
///
/// SQLite errors; a failed migration leaves the database as it was.
pub async fn migrate(pool: &SqlitePool) -> Result<usize, DbError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tessera_server_migrations (
             version INTEGER PRIMARY KEY NOT NULL,
             name TEXT NOT NULL,
             applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM tessera_server_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO tessera_server_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        )
        .bind(version)
        .bind(name)
        .bind(now_secs())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += 1;
    }
    Ok(applied)
}

/// Seconds since the epoch, for informational columns.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

    #[tokio::test]
    async fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = open(&url, 2, Duration::from_secs(5)).await.unwrap();
        // open() applied them; a second run finds nothing to do.
        assert_eq!(migrate(&pool).await.unwrap(), 0);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tessera_users")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
