//! Mapping sqlx errors onto [`StoreError`], in one place.
//!
//! The mapping decides what a caller can do: `Unavailable` and `Timeout`
//! are transient (fail closed with 503, retry later), `Duplicate` is a key
//! collision, `Corrupt` is a row that cannot be trusted.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use sqlx::error::{DatabaseError, ErrorKind};
use tessera::StoreError;

/// A store URL that this build cannot open.
///
/// The message names only the scheme, never the URL: URLs carry passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedUrl {
    scheme: String,
}

impl UnsupportedUrl {
    pub(crate) fn new(scheme: &str) -> Self {
        Self {
            scheme: scheme.chars().take(32).collect(),
        }
    }

    /// The scheme that was not recognised.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
}

impl fmt::Display for UnsupportedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unsupported SQL store URL scheme {:?} (expected sqlite:, postgres:, postgresql:, mysql: or mariadb:, with the matching cargo feature)",
            self.scheme
        )
    }
}

impl std::error::Error for UnsupportedUrl {}

/// Maps an sqlx error to the store error a caller can act on.
pub(crate) fn map(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::unavailable(e),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        sqlx::Error::Database(db) => map_database(db),
        other => StoreError::backend(other),
    }
}

fn map_database(db: Box<dyn DatabaseError>) -> StoreError {
    if db.kind() == ErrorKind::UniqueViolation {
        return StoreError::Duplicate;
    }
    match classify(db.as_ref()) {
        Class::Timeout => StoreError::Timeout,
        Class::Unavailable => StoreError::Unavailable(db.into_error()),
        Class::Other => StoreError::Backend(db.into_error()),
    }
}

enum Class {
    Timeout,
    Unavailable,
    Other,
}

fn classify(db: &dyn DatabaseError) -> Class {
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // `code()` is SQLite's extended result code; the primary code is
        // its low byte.
        let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
        return match code {
            // SQLITE_BUSY / SQLITE_LOCKED: the busy timeout ran out.
            5 | 6 => Class::Timeout,
            // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
            10 | 13 | 14 => Class::Unavailable,
            _ => Class::Other,
        };
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        return match code {
            // query_canceled (statement_timeout), lock_not_available.
            "57014" | "55P03" => Class::Timeout,
            // admin/crash shutdown, cannot connect now, too many connections.
            "57P01" | "57P02" | "57P03" | "53300" => Class::Unavailable,
            // connection_exception class.
            c if c.starts_with("08") => Class::Unavailable,
            _ => Class::Other,
        };
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.number() {
            // lock wait timeout; MySQL max_execution_time; MariaDB max_statement_time.
            1205 | 3024 | 1969 => Class::Timeout,
            // too many connections, server shutdown.
            1040 | 1053 => Class::Unavailable,
            _ => Class::Other,
        };
    }
    let _ = db;
    Class::Other
}

/// The error of one store operation in progress: either straight from
/// sqlx or already a [`StoreError`] (a row that did not decode, say), so
/// `?` works on both inside an operation.
#[derive(Debug)]
pub(crate) enum OpError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl OpError {
    fn into_store(self) -> StoreError {
        match self {
            Self::Sql(e) => map(e),
            Self::Store(e) => e,
        }
    }
}

/// Result of an operation in progress.
pub(crate) type OpResult<T> = Result<T, OpError>;

/// True for errors after which re-running the whole transaction is the
/// prescribed fix: deadlocks and serialization failures (SQLSTATE 40001,
/// 40P01). The transaction was rolled back, so nothing was half-applied.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn is_retryable(e: &OpError) -> bool {
    let OpError::Sql(sqlx::Error::Database(db)) = e else {
        return false;
    };
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // ER_LOCK_DEADLOCK.
        return my.number() == 1213;
    }
    matches!(db.code().as_deref(), Some("40001" | "40P01"))
}

/// Attempts at a transaction that keeps hitting deadlocks.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const RETRY_ATTEMPTS: u32 = 5;

/// Whether attempt number `attempt` (from 1) failed in a way that another
/// attempt may fix; if so, waits a little first.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) async fn retry_after(e: &OpError, attempt: u32) -> bool {
    if attempt >= RETRY_ATTEMPTS || !is_retryable(e) {
        return false;
    }
    tracing::debug!(attempt, "retrying a deadlocked session store transaction");
    // The other transaction holds the locks: give it time to finish.
    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
    true
}

/// A future that evaluates an `async` block, and evaluates it afresh after a deadlock or
/// serialization failure, a few times. Only for blocks that are one whole
/// transaction (or one statement), so a failed attempt left nothing behind.
/// A macro rather than a function taking a closure: closures returning
/// borrowing futures defeat the `Send` inference `async_trait` needs.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! retrying {
    ($body:expr) => {
        async {
            let mut attempt = 1u32;
            loop {
                let result: $crate::error::OpResult<_> = $body.await;
                match result {
                    Err(e) if $crate::error::retry_after(&e, attempt).await => attempt += 1,
                    other => break other,
                }
            }
        }
    };
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use retrying;

/// The body of [`Store::delete_all`](tessera::store::Store::delete_all),
/// the same on every backend: every session, then every refresh token, in
/// one transaction on `$pool` (so no rotated session survives). A macro,
/// not a function, because the pools are of different types and sqlx has
/// no backend-generic `rows_affected`. The caller decides on bounds and
/// retries.
macro_rules! delete_all {
    ($pool:expr) => {
        async {
            let mut tx = $pool.begin().await?;
            let n = sqlx::query("DELETE FROM tessera_sessions")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM tessera_refresh_tokens")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n)
        }
    };
}

pub(crate) use delete_all;

/// Maps an operation's error onto [`StoreError`] without a time bound, for
/// the one operation whose length grows with the table
/// ([`tessera::store::Store::delete_all`]).
pub(crate) async fn unbounded<T, Fut>(fut: Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = OpResult<T>>,
{
    fut.await.map_err(OpError::into_store)
}

/// Bounds an operation by the configured statement timeout, and maps its
/// error onto [`StoreError`].
pub(crate) async fn bounded<T, Fut>(limit: Duration, fut: Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = OpResult<T>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(OpError::into_store),
        Err(_) => Err(StoreError::Timeout),
    }
}
