//! The server's own database: users and API keys, in SQLite, PostgreSQL or
//! MySQL/MariaDB, chosen by URL like the session store.
//!
//! - `sqlite://PATH`: by default the same file as the SQLite session store
//!   (through a separate connection pool). One machine.
//! - `postgres://…` / `postgresql://…` and `mysql://…` / `mariadb://…`: for
//!   several `tessera` instances on different machines, which must all see
//!   the same users and API keys. With a PostgreSQL or MySQL session store
//!   and no `database` setting, the server database *is* the store's
//!   database (see [`crate::config::Config::database_url`]); the tables
//!   (`tessera_users`, `tessera_api_keys`) never collide with the store's.
//!
//! Migrations are embedded in the binary, one set per backend
//! (`migrations/<backend>/`), and tracked in their own table,
//! `tessera_server_migrations`, rather than sqlx's `_sqlx_migrations`: the
//! session store (tessera-sql) migrates the same database with its own
//! migrator, and two migrators sharing one history table would each see the
//! other's entries as unknown and refuse to run. On PostgreSQL and MySQL,
//! where many instances may start at once, the migration run holds a
//! database-wide lock (`pg_advisory_lock`, `GET_LOCK`), so exactly one
//! instance applies each migration.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// The embedded migrations of one backend, in order: (version, name, SQL).
type Migrations = &'static [(i64, &'static str, &'static str)];

const SQLITE_MIGRATIONS: Migrations = &[
    (
        1,
        "users_and_api_keys",
        include_str!("../migrations/sqlite/0001_users_and_api_keys.sql"),
    ),
    (
        3,
        "security_events",
        include_str!("../migrations/sqlite/0003_security_events.sql"),
    ),
    (
        4,
        "signing_keys",
        include_str!("../migrations/sqlite/0004_signing_keys.sql"),
    ),
];

const POSTGRES_MIGRATIONS: Migrations = &[
    (
        1,
        "users_and_api_keys",
        include_str!("../migrations/postgres/0001_users_and_api_keys.sql"),
    ),
    (
        2,
        "login_counters",
        include_str!("../migrations/postgres/0002_login_counters.sql"),
    ),
    (
        3,
        "security_events",
        include_str!("../migrations/postgres/0003_security_events.sql"),
    ),
    (
        4,
        "signing_keys",
        include_str!("../migrations/postgres/0004_signing_keys.sql"),
    ),
];

const MYSQL_MIGRATIONS: Migrations = &[
    (
        1,
        "users_and_api_keys",
        include_str!("../migrations/mysql/0001_users_and_api_keys.sql"),
    ),
    (
        2,
        "login_counters",
        include_str!("../migrations/mysql/0002_login_counters.sql"),
    ),
    (
        3,
        "security_events",
        include_str!("../migrations/mysql/0003_security_events.sql"),
    ),
    (
        4,
        "signing_keys",
        include_str!("../migrations/mysql/0004_signing_keys.sql"),
    ),
];

/// The lock every instance takes around migrations (PostgreSQL advisory
/// lock key; MySQL lock name).
const PG_MIGRATION_LOCK: i64 = 0x7465_7373_6572_6131; // "tessera1"
const MYSQL_MIGRATION_LOCK: &str = "tessera_server_migrations";

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL names no database the server can keep its own tables in.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH, postgres://… or mysql://… (mariadb://…)"
    )]
    UnsupportedUrl(String),
    /// The database failed.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The SQLite file or its directory could not be created.
    #[error("cannot create the database file: {0}")]
    File(String),
}

/// A connection pool to the server database, on whichever backend its URL
/// names. Cheap to clone (clones share the pool).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use std::time::Duration;
/// let db = tessera_server::db::open("memory://", 1, Duration::from_secs(5)).await?;
/// assert_eq!(db.backend(), "sqlite");
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Db {
    /// SQLite (one machine).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
}

impl From<SqlitePool> for Db {
    fn from(pool: SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

impl Db {
    /// `"sqlite"`, `"postgres"` or `"mysql"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::MySql(_) => "mysql",
        }
    }

    /// `sql`, written with `?` placeholders, in this backend's dialect
    /// (PostgreSQL numbers its placeholders: `$1`, `$2`, …). The statements
    /// of this crate contain no `?` other than placeholders.
    pub(crate) fn dialect(&self, sql: &str) -> String {
        match self {
            Self::Postgres(_) => {
                let mut out = String::with_capacity(sql.len() + 8);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
            Self::Sqlite(_) | Self::MySql(_) => sql.to_owned(),
        }
    }
}

impl Db {
    /// `column` as a plain text result. On MySQL the name columns are
    /// byte-compared (`ascii_bin`, see the migration), which marks them
    /// binary in results; converting to the connection's character set
    /// returns them as ordinary text.
    pub(crate) fn text(&self, column: &str) -> String {
        match self {
            Self::MySql(_) => format!("CONVERT({column} USING utf8mb4)"),
            Self::Sqlite(_) | Self::Postgres(_) => column.to_owned(),
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool inside `$db`, whichever
/// backend it is (the body is compiled once per backend).
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::MySql($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// True for a unique-constraint violation (a duplicate name), on any
/// backend.
pub(crate) fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The backend a server-database URL names, and the URL to give sqlx
/// (`memory://` is an in-memory SQLite database).
///
/// ```
/// use tessera_server::db::data_url;
/// assert_eq!(data_url("sqlite://tessera.db")?, "sqlite://tessera.db");
/// assert_eq!(data_url("memory://")?, "sqlite::memory:");
/// assert_eq!(data_url("postgresql://db/app")?, "postgresql://db/app");
/// assert_eq!(data_url("mariadb://db/app")?, "mysql://db/app");
/// assert!(data_url("redis://x").is_err());
/// # Ok::<(), tessera_server::db::DbError>(())
/// ```
///
/// # Errors
///
/// [`DbError::UnsupportedUrl`] for any other scheme (password redacted).
pub fn data_url(url: &str) -> Result<String, DbError> {
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" | "postgres" | "postgresql" | "mysql" => Ok(url.to_owned()),
        // sqlx knows MariaDB by the MySQL scheme.
        "mariadb" => Ok(format!("mysql{}", &url["mariadb".len()..])),
        _ if url == "memory://" => Ok(String::from("sqlite::memory:")),
        _ => Err(DbError::UnsupportedUrl(crate::store_url::redact(url))),
    }
}

/// Opens (creating a SQLite file if missing) the server database and
/// applies pending migrations.
///
/// # Errors
///
/// [`DbError`] if the URL is unsupported or the database fails.
pub async fn open(url: &str, pool_size: u32, timeout: Duration) -> Result<Db, DbError> {
    let db = connect(url, pool_size, timeout).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Opens (creating a SQLite file if missing) the server database without
/// migrating it.
///
/// # Errors
///
/// [`DbError`] if the URL is unsupported or the database fails.
pub async fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Db, DbError> {
    let url = data_url(url)?;
    if url.starts_with("sqlite:") {
        // Created 0600 before SQLite opens it (src/files.rs).
        crate::files::create_private_sqlite(&url).map_err(|e| DbError::File(e.to_string()))?;
        return connect_sqlite(&url, pool_size, timeout)
            .await
            .map(Db::Sqlite);
    }
    if url.starts_with("postgres") {
        let options = PgConnectOptions::from_str(&url)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await?;
        return Ok(Db::Postgres(pool));
    }
    let options = MySqlConnectOptions::from_str(&url)?;
    let pool = MySqlPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await?;
    Ok(Db::MySql(pool))
}

async fn connect_sqlite(
    url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<SqlitePool, DbError> {
    let in_memory = url.contains(":memory:");
    let options = SqliteConnectOptions::from_str(url)?
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
    Ok(SqlitePoolOptions::new()
        .max_connections(size)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await?)
}

/// The migration loop on `$conn` (one connection of any backend): create
/// the tracking table, then apply each migration not yet recorded in a
/// transaction with its record. A macro because the body is the same for
/// every backend but its types are not.
macro_rules! migrate_loop {
    ($conn:expr, $db:expr, $migrations:expr, $name_type:literal) => {{
        let create = concat!(
            "CREATE TABLE IF NOT EXISTS tessera_server_migrations (
                 version BIGINT PRIMARY KEY NOT NULL,
                 name ",
            $name_type,
            " NOT NULL,
                 applied_at BIGINT NOT NULL)"
        );
        sqlx::query(create).execute(&mut *$conn).await?;
        let select = $db.dialect("SELECT version FROM tessera_server_migrations WHERE version = ?");
        let insert = $db.dialect(
            "INSERT INTO tessera_server_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        );
        let mut applied = 0usize;
        for (version, name, sql) in $migrations {
            let mut tx = sqlx::Connection::begin(&mut *$conn).await?;
            let done: Option<i64> = sqlx::query_scalar(&select)
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(&insert)
                .bind(*version)
                .bind(*name)
                .bind(now_secs())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            applied += 1;
        }
        Ok::<usize, DbError>(applied)
    }};
}

/// Applies the embedded migrations not yet recorded. Returns how many were
/// applied.
///
/// # Errors
///
/// Database errors. On SQLite and PostgreSQL a failed migration leaves the
/// database as it was (each runs in a transaction); MySQL commits DDL
/// implicitly, so its migrations are written to be re-runnable
/// (`IF NOT EXISTS`).
pub async fn migrate(db: &Db) -> Result<usize, DbError> {
    match db {
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            let conn = &mut *conn;
            migrate_loop!(conn, db, SQLITE_MIGRATIONS, "TEXT")
        }
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let conn = &mut *conn;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
            let result = async { migrate_loop!(conn, db, POSTGRES_MIGRATIONS, "TEXT") }.await;
            // Also released when the connection closes, should this fail.
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
            result
        }
        Db::MySql(pool) => {
            let mut conn = pool.acquire().await?;
            let conn = &mut *conn;
            // Waits up to a minute for another instance's migrations.
            let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
                .bind(MYSQL_MIGRATION_LOCK)
                .fetch_one(&mut *conn)
                .await?;
            if got != Some(1) {
                return Err(DbError::Sqlx(sqlx::Error::PoolTimedOut));
            }
            let result = async { migrate_loop!(conn, db, MYSQL_MIGRATIONS, "VARCHAR(255)") }.await;
            sqlx::query("DO RELEASE_LOCK(?)")
                .bind(MYSQL_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
            result
        }
    }
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
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = open(&url, 2, Duration::from_secs(5)).await.unwrap();
        // open() applied them; a second run finds nothing to do.
        assert_eq!(migrate(&db).await.unwrap(), 0);
        let Db::Sqlite(pool) = &db else {
            panic!("sqlite")
        };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tessera_users")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn postgres_placeholders_are_numbered() {
        let db = Db::Postgres(PgPoolOptions::new().connect_lazy("postgres://h/d").unwrap());
        assert_eq!(
            db.dialect("UPDATE t SET a = ? WHERE b = ?"),
            "UPDATE t SET a = $1 WHERE b = $2"
        );
    }
}
