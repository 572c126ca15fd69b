//! Choosing the session store and the clock from the configuration.

use std::sync::Arc;

use tessera::dbsc::{DbscStore, MemoryDbscStore};
use tessera::refresh::RefreshStore;
use tessera::store::{MemoryStore, Store};
use tessera::time::Timestamp;

use crate::cache::{Channel, SessionCache};
use crate::config::Config;
use crate::metrics::MeteredStore;

pub use crate::store_url::{SUPPORTED, StoreKind, redact};

/// The store URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreOpenError {
    /// No backend for this URL scheme.
    #[error("unsupported store URL {0:?}: {SUPPORTED}")]
    Unsupported(String),
    /// The backend refused to open.
    #[error("cannot open the session store {url:?}: {source}")]
    Store {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: tessera::StoreError,
    },
}

/// The session store the server runs on: the backend, wrapped for latency
/// metrics, and cached in front of that when `cache = "on"`
/// ([`crate::cache`]). Every [`Store`] and [`RefreshStore`] call goes
/// through both wrappers, which forward every method (the backend's own
/// one-round-trip `patch` and `modify_loaded` included).
#[derive(Clone)]
pub struct SessionStore {
    metered: Arc<MeteredStore>,
    cache: Option<Arc<SessionCache>>,
    dbsc: DbscBackend,
}

/// The backend's DBSC store (device bindings, single-use challenges,
/// bound cookies: [`tessera::dbsc`]), beside its sessions.
#[derive(Clone)]
enum DbscBackend {
    Memory(Arc<MemoryDbscStore>),
    Sql(Arc<tessera_sql::SqlStore>),
    Redis(Arc<tessera_redis::RedisStore>),
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// The store sessions are served from (the cache when on).
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.cache {
            Some(cache) => cache.clone(),
            None => self.metered.clone(),
        }
    }

    /// The store of refresh-token families (token mode): the same backend,
    /// through the cache when on (which forwards every refresh call
    /// uncached).
    pub fn refresh_store(&self) -> Arc<dyn RefreshStore> {
        match &self.cache {
            Some(cache) => cache.clone(),
            None => self.metered.clone(),
        }
    }

    /// The cache, when `cache = "on"` (for its statistics).
    pub fn cache(&self) -> Option<&Arc<SessionCache>> {
        self.cache.as_ref()
    }

    /// The DBSC store of the same backend. Never cached: a challenge is
    /// consumed, and a bound cookie checked, in the store itself, so every
    /// instance agrees at once.
    pub fn dbsc_store(&self) -> Arc<dyn DbscStore> {
        match &self.dbsc {
            DbscBackend::Memory(s) => s.clone(),
            DbscBackend::Sql(s) => s.clone(),
            DbscBackend::Redis(s) => s.clone(),
        }
    }

    /// Deletes expired DBSC rows (SQL and memory; Redis expires its keys
    /// itself). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn purge_expired_dbsc(&self, now: Timestamp) -> Result<u64, tessera::StoreError> {
        match &self.dbsc {
            DbscBackend::Memory(s) => Ok(s.purge_expired(now)),
            DbscBackend::Sql(s) => s.purge_expired_dbsc(now).await,
            DbscBackend::Redis(_) => Ok(0),
        }
    }
}

/// Opens the session store named by `config.store`, wrapped for latency
/// metrics, with the configured pool size and timeouts, and with the
/// session cache in front when `cache = "on"` (see [`crate::cache`] for
/// each backend's invalidation channel). The one value serves as the
/// session [`Store`] and as the [`RefreshStore`] of token mode (refresh
/// families live beside their sessions, in the same backend):
///
/// - `sqlite://PATH` — the embedded default ([`tessera_sql::SqlStore`]),
///   created and migrated if missing;
/// - `postgres://…`, `postgresql://…`, `mysql://…`, `mariadb://…` —
///   [`tessera_sql::SqlStore`], migrated on connect; `store_pool_size`
///   connections, `store_timeout` for acquiring one and for each operation;
/// - `redis://…`, `rediss://…`, `redis-cluster://host:port,…` —
///   [`tessera_redis::RedisStore`]; `store_connect_timeout` per connection,
///   `store_timeout` per command and per operation, keys under
///   `store_key_prefix`;
/// - `memory://` — in-process only, lost at exit (tests, demos).
///
/// Every wait is bounded, so a store that stops answering makes requests
/// fail with 503 within `store_timeout`; the SQL pools and the Redis client
/// reconnect by themselves when it comes back.
///
/// # Errors
///
/// [`StoreOpenError`].
pub async fn open_session_store(config: &Config) -> Result<SessionStore, StoreOpenError> {
    let url = config.store.as_str();
    let fail = |source| StoreOpenError::Store {
        url: redact(url),
        source,
    };
    let (metered, channel, dbsc) = match StoreKind::of(url) {
        Some(StoreKind::Memory) => (
            MeteredStore::new(Arc::new(MemoryStore::new())),
            Channel::Private,
            DbscBackend::Memory(Arc::new(MemoryDbscStore::new())),
        ),
        Some(StoreKind::Sqlite | StoreKind::Postgres | StoreKind::MySql) => {
            // A SQLite file is created 0600 before SQLite opens it
            // (src/files.rs); other URLs are left alone.
            crate::files::create_private_sqlite(url)
                .map_err(|e| fail(tessera::StoreError::Backend(Box::new(e))))?;
            let options = tessera_sql::SqlOptions::default()
                .with_max_connections(config.store_pool_size)
                .with_acquire_timeout(config.store_timeout)
                .with_statement_timeout(config.store_timeout)
                .with_busy_timeout(config.store_timeout);
            let store = Arc::new(
                tessera_sql::SqlStore::connect_with(url, options)
                    .await
                    .map_err(fail)?,
            );
            // Only PostgreSQL has a notification channel.
            let channel = match tessera_sql::PgChannel::for_store(&store) {
                Some(pg) => Channel::Live(Arc::new(pg), "PostgreSQL LISTEN/NOTIFY"),
                None => Channel::Polling,
            };
            (
                MeteredStore::new(store.clone()),
                channel,
                DbscBackend::Sql(store),
            )
        }
        Some(StoreKind::Redis | StoreKind::RedisCluster) => {
            let store = Arc::new(
                tessera_redis::RedisStore::connect(url, redis_options(config))
                    .await
                    .map_err(fail)?,
            );
            let channel = Channel::Live(
                Arc::new(tessera_redis::RedisChannel::new(&store)),
                "Redis pub/sub",
            );
            (
                MeteredStore::new(store.clone()),
                channel,
                DbscBackend::Redis(store),
            )
        }
        None => return Err(StoreOpenError::Unsupported(redact(url))),
    };
    let metered = Arc::new(metered);
    let cache = crate::cache::wrap(config, &metered, channel);
    Ok(SessionStore {
        metered,
        cache,
        dbsc,
    })
}

/// The Redis options of `config`: key prefix and timeouts.
pub fn redis_options(config: &Config) -> tessera_redis::RedisOptions {
    // One command never waits longer than a whole operation may.
    tessera_redis::RedisOptions::default()
        .with_key_prefix(config.store_key_prefix.clone())
        .with_connect_timeout(config.store_connect_timeout)
        .with_response_timeout(config.store_timeout)
        .with_operation_timeout(config.store_timeout)
}

pub use crate::clock::ServerClock;
