//! Cache invalidation over PostgreSQL `LISTEN/NOTIFY`, for
//! `tessera::cache`.
//!
//! MySQL and MariaDB have no notification channel: a cache over them is
//! built with `CachedStore::without_channel`, and a revocation made on
//! another instance takes effect within `CacheConfig::max_staleness` (see
//! the crate README).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tessera::cache::{Invalidate, Invalidation, InvalidationSink, Origin};
use tessera::error::StoreError;

use crate::SqlStore;

/// The `NOTIFY` channel (database-scoped in PostgreSQL, so instances on
/// other databases of the same server do not hear each other).
const CHANNEL: &str = "tessera_invalidate";
/// Pause between failed attempts to listen again.
const RETRY: Duration = Duration::from_millis(100);

/// A [`tessera::cache::Invalidation`] channel on a PostgreSQL store:
/// publishes with `pg_notify` on the store's pool, listens on a
/// connection of its own.
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera::cache::{CacheConfig, CachedStore};
/// use tessera_sql::{PgChannel, SqlStore};
/// # async fn demo() -> Result<(), tessera::error::StoreError> {
/// let store = SqlStore::connect("postgres://localhost/app").await?;
/// let channel = PgChannel::for_store(&store).ok_or("not PostgreSQL").unwrap();
/// let cached = CachedStore::new(store, CacheConfig::default(), Arc::new(channel));
/// # let _ = cached; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgChannel {
    pool: PgPool,
}

impl PgChannel {
    /// The channel on this pool's database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The channel of a PostgreSQL [`SqlStore`]; `None` for SQLite and
    /// MySQL, which have no notification channel.
    pub fn for_store(store: &SqlStore) -> Option<Self> {
        store.postgres_pool().map(|pool| Self::new(pool.clone()))
    }
}

#[async_trait]
impl Invalidation for PgChannel {
    async fn publish(&self, message: &Invalidate, origin: Origin) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(message.encode_from(origin))
            .execute(&self.pool)
            .await
            .map_err(crate::error::map)?;
        Ok(())
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let pool = self.pool.clone();
        tokio::spawn(async move { listen(&pool, &sink).await });
    }
}

/// Listens; on a lost connection marks the cache down, and after every
/// successful `LISTEN` marks it up (which flushes it).
async fn listen(pool: &PgPool, sink: &InvalidationSink) {
    'connect: loop {
        if sink.is_closed() {
            return;
        }
        let mut listener = match start(pool).await {
            Ok(listener) => listener,
            Err(e) => {
                sink.disconnected();
                tracing::warn!(error = %e, "cannot listen for cache invalidations; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        sink.connected();
        loop {
            // `try_recv` reports a lost connection as `Ok(None)` instead of
            // reconnecting silently (and losing notifications unseen). It
            // is not cancelled midway (a half-read message would corrupt
            // the connection), so a dropped cache ends this task at the
            // next notification.
            match listener.try_recv().await {
                Ok(Some(_)) if sink.is_closed() => return,
                Ok(Some(notification)) => sink.deliver_raw(notification.payload()).await,
                Ok(None) | Err(_) => {
                    tracing::warn!("cache invalidation listener lost; bypassing the cache");
                    sink.disconnected();
                    continue 'connect;
                }
            }
        }
    }
}

async fn start(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // The connection is this listener's own; `try_recv` must not hide a
    // loss by reconnecting.
    listener.ignore_pool_close_event(true);
    // On a loss, return at once: this task marks the cache down, then
    // listens afresh on a new connection.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
