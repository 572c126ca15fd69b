//! [`SqlStore`]: one type for every SQL backend, chosen by URL.

use async_trait::async_trait;
use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope};
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::store::{CasOutcome, ModifyFn, Patch, PatchOutcome, Store};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

use crate::error::UnsupportedUrl;
use crate::options::SqlOptions;

/// A session store on SQLite, PostgreSQL or MySQL/MariaDB, chosen by the
/// URL's scheme:
///
/// | URL | backend | feature |
/// |-----|---------|---------|
/// | `sqlite://path.db`, `sqlite:///abs/path.db`, `sqlite::memory:` | [`SqliteStore`](crate::SqliteStore) | `sqlite` |
/// | `postgres://…`, `postgresql://…` | [`PgStore`](crate::PgStore) | `postgres` |
/// | `mysql://…`, `mariadb://…` | [`MySqlStore`](crate::MySqlStore) | `mysql` |
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera::SessionManager;
/// use tessera_sql::SqlStore;
///
/// let dir = tempfile::tempdir()?;
/// let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
/// let store = SqlStore::connect(&url).await?;
/// assert_eq!(store.backend(), "sqlite");
/// let manager = SessionManager::builder(store).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlStore {
    inner: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(crate::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(crate::PgStore),
    #[cfg(feature = "mysql")]
    MySql(crate::MySqlStore),
}

/// Calls the same method on whichever backend is inside.
macro_rules! dispatch {
    ($self:expr, $s:ident => $call:expr) => {
        match &$self.inner {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($s) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($s) => $call,
            #[cfg(feature = "mysql")]
            Backend::MySql($s) => $call,
        }
    };
}

/// The scheme of a URL, lowercased (`sqlite::memory:` has scheme `sqlite`).
fn scheme(url: &str) -> String {
    url.split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl SqlStore {
    /// Connects with default [`SqlOptions`] and runs the migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] wrapping [`UnsupportedUrl`] for a scheme
    /// this build does not support; [`StoreError::Unavailable`] if the
    /// database cannot be reached; backend errors otherwise.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Connects with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`SqlStore::connect`].
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self, StoreError> {
        let scheme = scheme(url);
        let inner = match scheme.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => Backend::Sqlite(crate::SqliteStore::connect_with(url, &options).await?),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                Backend::Postgres(crate::PgStore::connect_with(url, &options).await?)
            }
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => {
                Backend::MySql(crate::MySqlStore::connect_with(url, &options).await?)
            }
            other => return Err(StoreError::backend(UnsupportedUrl::new(other))),
        };
        Ok(Self { inner })
    }

    /// Whether this build can open URLs like `url` (by scheme only; nothing
    /// is connected).
    ///
    /// ```
    /// assert!(tessera_sql::SqlStore::supports("sqlite://sessions.db"));
    /// assert!(!tessera_sql::SqlStore::supports("redis://localhost"));
    /// ```
    // With some features off the arms differ; `matches!` would hide that.
    #[allow(clippy::match_like_matches_macro)]
    pub fn supports(url: &str) -> bool {
        match scheme(url).as_str() {
            "sqlite" => cfg!(feature = "sqlite"),
            "postgres" | "postgresql" => cfg!(feature = "postgres"),
            "mysql" | "mariadb" => cfg!(feature = "mysql"),
            _ => false,
        }
    }

    /// Runs the embedded migrations of the backend (idempotent).
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// The backend inside, as a [`tessera::dbsc::DbscStore`] (see
    /// `dbsc.rs`).
    pub(crate) fn dbsc(&self) -> &dyn tessera::dbsc::DbscStore {
        dispatch!(self, s => s)
    }

    /// Deletes expired DBSC bindings, challenges and bound cookies.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn purge_expired_dbsc(&self, now: Timestamp) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_expired_dbsc(now).await)
    }

    /// The PostgreSQL pool, when this store is on PostgreSQL (for
    /// [`crate::PgChannel::for_store`]).
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.inner {
            Backend::Postgres(store) => Some(store.pool()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// `"sqlite"`, `"postgres"` or `"mysql"`.
    pub fn backend(&self) -> &'static str {
        match &self.inner {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Backend::MySql(_) => "mysql",
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create(record).await)
    }

    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: tessera::policy::SessionCap,
        now: Timestamp,
    ) -> Result<tessera::store::Capped, StoreError> {
        dispatch!(self, s => s.create_capped(record, cap, now).await)
    }

    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        dispatch!(self, s => s.raise_not_before(scope, to).await)
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        dispatch!(self, s => s.not_before(scope).await)
    }

    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, s => s.load(hash).await)
    }

    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        dispatch!(self, s => s.load_in_memory(hash, now))
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        dispatch!(self, s => s.update(expected_version, record, now).await)
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        dispatch!(self, s => s.rotate(old, expected_version, new, now).await)
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(hash).await)
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_by_handle(handle, owner, why).await)
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        dispatch!(self, s => s.end(hash, why).await)
    }

    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        dispatch!(self, s => s.ended(hash, now).await)
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        dispatch!(self, s => s.list_by_user(user_id, now).await)
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_by_user(user_id, except, why).await)
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_expired(now, limit).await)
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_all().await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, s => s.modify(hash, now, f).await)
    }

    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, s => s.modify_loaded(current, now, f).await)
    }

    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        dispatch!(self, s => s.patch(hash, base, patch, now).await)
    }
}

/// Refresh-token families (RFC 9700 §4.14.2 rotation with reuse
/// detection) in the same database, table `tessera_refresh_tokens`. Pass
/// the same store to
/// [`SessionManagerBuilder::refresh_store`](tessera::manager::SessionManagerBuilder::refresh_store):
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use std::sync::Arc;
/// use tessera::SessionManager;
/// use tessera_sql::SqlStore;
///
/// let store = Arc::new(SqlStore::connect("sqlite::memory:").await?);
/// let manager = SessionManager::builder_from_arc(store.clone())
///     .refresh_store(store)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[async_trait]
impl RefreshStore for SqlStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_refresh(record).await)
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        dispatch!(self, s => s.load_refresh(hash).await)
    }

    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        dispatch!(self, s => s.use_refresh(parent, child, sealed_child, now).await)
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_refresh_family(family).await)
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, s => s.load_session_by_handle(handle).await)
    }
}
