//! Cache invalidation over PostgreSQL `LISTEN/NOTIFY`, for
//! `tessera::cache`.
//!
//! MySQL and MariaDB have no notification channel: a cache over them is
//! built with `CachedStore::without_channel`, and a revocation made on
//! another instance takes effect within `CacheConfig::max_staleness` (see
//! the crate README).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
/// How long [`Invalidation::publish`] waits for its own message to come
/// back through this channel's listener before returning anyway.
const ECHO_WAIT: Duration = Duration::from_millis(250);

/// A [`tessera::cache::Invalidation`] channel on a PostgreSQL store:
/// publishes with `pg_notify` on the store's pool, listens on a
/// connection of its own.
///
/// **A publish returns once the message came back.** PostgreSQL delivers
/// a notification to every listening connection after the notifying
/// transaction committed, asynchronously: the `pg_notify` returns before
/// any listener has it, so a revocation's caller could answer while
/// another instance still serves the session (measured: up to 7% of
/// revocations in a release build, for about a millisecond). So `publish`
/// waits until this channel's own listener has received the message (at
/// most 250 ms; then it returns anyway, the message being committed). The
/// server signals every listening connection at the same moment, so by
/// then the other instances' listeners have it too, or are receiving it:
/// the window shrinks to the other process's reading of its socket, as
/// with Redis, whose `PUBLISH` answers after writing to the subscribers.
/// Without a live listener (none subscribed, or its connection lost) it
/// does not wait.
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera::cache::{CacheConfig, CachedStore};
/// use tessera_sql::{PgChannel, SqlStore};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqlStore::connect("postgres://localhost/app").await?;
/// let channel = PgChannel::for_store(&store).ok_or("not a PostgreSQL store")?;
/// let cached = CachedStore::new(store, CacheConfig::default(), Arc::new(channel));
/// # let _ = cached; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgChannel {
    pool: PgPool,
    echoes: Arc<Echoes>,
}

/// Publishes waiting for their message to come back, by payload.
#[derive(Debug, Default)]
struct Echoes {
    /// Whether a listener of this channel is listening now.
    listening: AtomicBool,
    waiting: Mutex<HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>>,
}

impl Echoes {
    /// A receiver that fires when `payload` is heard, if a listener is
    /// listening (registered before the `NOTIFY`, so the echo cannot be
    /// missed).
    fn watch_for(&self, payload: &str) -> Option<tokio::sync::oneshot::Receiver<()>> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock().entry(payload.to_owned()).or_default().push(tx);
        Some(rx)
    }

    /// Wakes every publish waiting for `payload`. Identical payloads
    /// published at once share the first echo: they name the same change
    /// (the same session, handle, user or everyone) and each was
    /// committed before its publish began to wait.
    fn heard(&self, payload: &str) {
        let woken = self.lock().remove(payload);
        for tx in woken.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    /// Drops the waiters whose publish stopped waiting.
    fn forget(&self, payload: &str) {
        let mut waiting = self.lock();
        if let Some(senders) = waiting.get_mut(payload) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                waiting.remove(payload);
            }
        }
    }

    /// Listening or not; when not, every waiting publish returns (its
    /// echo may never come).
    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
        if !listening {
            let all = std::mem::take(&mut *self.lock());
            for tx in all.into_values().flatten() {
                let _ = tx.send(());
            }
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>> {
        // A panic while holding the lock leaves the map valid.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PgChannel {
    /// The channel on this pool's database.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            echoes: Arc::default(),
        }
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
        let payload = message.encode_from(origin);
        let echo = self.echoes.watch_for(&payload);
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&self.pool)
            .await;
        if let Some(echo) = echo {
            if sent.is_ok() && tokio::time::timeout(ECHO_WAIT, echo).await.is_err() {
                tracing::debug!("a cache invalidation did not come back within {ECHO_WAIT:?}");
            }
            self.echoes.forget(&payload);
        }
        sent.map_err(crate::error::map)?;
        Ok(())
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let pool = self.pool.clone();
        let echoes = self.echoes.clone();
        tokio::spawn(async move {
            listen(&pool, &sink, &echoes).await;
            echoes.set_listening(false);
        });
    }
}

/// Listens; on a lost connection marks the cache down, and after every
/// successful `LISTEN` marks it up (which flushes it).
async fn listen(pool: &PgPool, sink: &InvalidationSink, echoes: &Echoes) {
    'connect: loop {
        if sink.is_closed() {
            return;
        }
        let mut listener = match start(pool).await {
            Ok(listener) => listener,
            Err(e) => {
                sink.disconnected();
                echoes.set_listening(false);
                tracing::warn!(error = %e, "cannot listen for cache invalidations; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        sink.connected();
        echoes.set_listening(true);
        loop {
            // `try_recv` reports a lost connection as `Ok(None)` instead of
            // reconnecting silently (and losing notifications unseen). It
            // is not cancelled midway (a half-read message would corrupt
            // the connection), so a dropped cache ends this task at the
            // next notification.
            match listener.try_recv().await {
                Ok(Some(_)) if sink.is_closed() => return,
                Ok(Some(notification)) => {
                    // Applied first, then the publisher (if it is this
                    // process) is told: its caller answers after both.
                    sink.deliver_raw(notification.payload()).await;
                    echoes.heard(notification.payload());
                }
                Ok(None) | Err(_) => {
                    tracing::warn!("cache invalidation listener lost; bypassing the cache");
                    sink.disconnected();
                    echoes.set_listening(false);
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
