//! API keys for the `/v1` API: generated as [`ApiKeyToken`]s (`tsk_…`),
//! printed once, stored only as their SHA-256 hash and looked up by it.
//!
//! A plain hash suffices because a key carries 256 bits of entropy (the same
//! reasoning as for session tokens in `tessera::token`), and looking a key
//! up by its hash means the comparison never touches the secret itself.
//!
//! **Remembered keys.** Every `/v1` call presents its key, and checking it
//! is a database query. With the session cache on and a store that has an
//! invalidation channel (Redis, PostgreSQL), a key found in the database is
//! remembered ([`ApiKeys::remembering`]) under a
//! [`Vouch`] of the cache. `tessera api-key revoke`
//! deletes the key, then publishes a credentials message on the store's
//! channel ([`ApiKeys::revoke`]); every instance forgets the keys it
//! remembers when the message arrives, as fast as it drops a revoked
//! session. While the channel is down nothing is remembered or used, and a
//! key is never remembered longer than `cache_max_staleness` (the bound for
//! a loss nobody noticed). Without a channel (MySQL, SQLite) or with the
//! cache off, every call asks the database. Unknown keys are never
//! remembered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera::cache::Vouch;
use tessera::token::{ApiKeyToken, TokenHash};

use crate::cache::SessionCache;

use crate::db::{Db, is_duplicate, now_secs, on_pool};
use crate::users::valid_username;

/// Why an API-key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The name is not acceptable (same rules as user names).
    #[error("invalid key name: use 1-64 characters from letters, digits, '.', '_', '-', '@'")]
    InvalidName,
    /// A key with this name exists.
    #[error("an API key with this name already exists")]
    Exists,
    /// The OS CSPRNG failed.
    #[error(transparent)]
    Random(#[from] tessera::error::RandomError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The API-key table.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    db: Db,
    /// Keys found recently (see the module docs); `None`: every
    /// verification asks the database.
    memory: Option<Memory>,
}

/// Keys found in the database, by hash, with their names and the mark of
/// the session cache taken before the query.
#[derive(Debug, Clone)]
struct Memory {
    found: moka::sync::Cache<TokenHash, (String, Vouch)>,
    cache: Arc<SessionCache>,
    /// Shared by clones, as `found` is.
    counts: Arc<MemoryCounts>,
}

#[derive(Debug, Default)]
struct MemoryCounts {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the key memory of [`ApiKeys::remembering`] did since start-up
/// ([`ApiKeys::memory_stats`]): exported as `tessera_api_key_memory_*` by
/// `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Well-formed keys answered from memory.
    pub hits: u64,
    /// Well-formed keys looked up in the database (unknown keys included:
    /// they are never remembered).
    pub misses: u64,
    /// Keys remembered now (approximate).
    pub entries: u64,
}

/// What [`ApiKeys::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// No key has that name.
    Missing,
    /// The key is deleted. `announced`: every instance was told to forget
    /// remembered keys (or there was no channel to tell them through);
    /// `false`: the message could not be published, and instances that
    /// remember the key refuse it within `cache_max_staleness`.
    Revoked {
        /// Whether the revocation was published (see above).
        announced: bool,
    },
}

/// Keys remembered at most: far more than a deployment's clients.
const MAX_REMEMBERED: u64 = 1_024;

impl ApiKeys {
    /// Wraps the server database (any backend: a [`Db`] or a SQLite pool).
    pub fn new(db: impl Into<Db>) -> Self {
        Self {
            db: db.into(),
            memory: None,
        }
    }

    /// Remembers keys found in the database while `cache` vouches for them
    /// (its channel is up and no revocation arrived since), for `ttl` at
    /// most; [`ApiKeys::revoke`] tells every instance through `cache`'s
    /// channel. See the module docs. A cache without a channel never
    /// vouches: nothing is remembered.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
    /// use tessera::store::MemoryStore;
    /// use tessera_server::api_keys::{ApiKeys, Revoked};
    /// use tessera_server::metrics::MeteredStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    /// let db = tessera_server::db::open(&url, 1, Duration::from_secs(5)).await?;
    /// let store = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    /// let channel = Arc::new(LocalChannel::new());
    /// let cache = Arc::new(CachedStore::from_arc(store, CacheConfig::default(), channel));
    ///
    /// let keys = ApiKeys::new(db).remembering(cache, Duration::from_secs(1));
    /// let key = keys.create("backend").await?;
    /// assert_eq!(keys.verify(key.expose()).await?.as_deref(), Some("backend"));
    /// // Deleted, and every instance on the channel told to forget it.
    /// assert_eq!(keys.revoke("backend").await?, Revoked::Revoked { announced: true });
    /// assert_eq!(keys.verify(key.expose()).await?, None);
    /// assert_eq!(keys.revoke("backend").await?, Revoked::Missing);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn remembering(mut self, cache: Arc<SessionCache>, ttl: Duration) -> Self {
        self.memory = Some(Memory {
            found: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(ttl)
                .build(),
            cache,
            counts: Arc::default(),
        });
        self
    }

    /// The key memory's counters; `None` when keys are not remembered
    /// (every verification asks the database).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
    /// use tessera::store::MemoryStore;
    /// use tessera_server::api_keys::ApiKeys;
    /// use tessera_server::metrics::MeteredStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    /// let db = tessera_server::db::open(&url, 1, Duration::from_secs(5)).await?;
    /// assert_eq!(ApiKeys::new(db.clone()).memory_stats(), None);
    /// let store = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    /// let channel = Arc::new(LocalChannel::new());
    /// let cache = Arc::new(CachedStore::from_arc(store, CacheConfig::default(), channel));
    /// let keys = ApiKeys::new(db).remembering(cache, Duration::from_secs(60));
    /// let key = keys.create("backend").await?;
    /// for _ in 0..3 {
    ///     keys.verify(key.expose()).await?;
    /// }
    /// let stats = keys.memory_stats().ok_or("keys are remembered")?;
    /// assert_eq!((stats.hits, stats.misses), (2, 1));
    /// # Ok(()) }
    /// ```
    pub fn memory_stats(&self) -> Option<MemoryStats> {
        self.memory.as_ref().map(|memory| MemoryStats {
            hits: memory.counts.hits.load(Ordering::Relaxed),
            misses: memory.counts.misses.load(Ordering::Relaxed),
            entries: memory.found.entry_count(),
        })
    }

    /// Creates a key named `name` and returns it; this is the only time the
    /// key exists outside the client.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError`].
    pub async fn create(&self, name: &str) -> Result<ApiKeyToken, ApiKeyError> {
        if !valid_username(name) {
            return Err(ApiKeyError::InvalidName);
        }
        let key = ApiKeyToken::generate()?;
        let sql = self
            .db
            .dialect("INSERT INTO tessera_api_keys (name, key_hash, created_at) VALUES (?, ?, ?)");
        let result = on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(name)
            .bind(key.hash().as_bytes().as_slice())
            .bind(now_secs())
            .execute(pool)
            .await
            .map(drop));
        match result {
            // The name is the primary key; a duplicate hash (2^-256) would
            // be refused the same way.
            Err(e) if is_duplicate(&e) => Err(ApiKeyError::Exists),
            other => Ok(other.map(|()| key)?),
        }
    }

    /// Revokes the key named `name`. With a session cache
    /// ([`ApiKeys::remembering`]), then tells every instance to forget the
    /// keys it remembers, and returns once the channel took the message
    /// ([`Revoked::Revoked`] says whether it did; if not, the instances
    /// forget within `cache_max_staleness`). The delete comes first: an
    /// instance that hears the message and looks the key up again must
    /// not find it.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn revoke(&self, name: &str) -> Result<Revoked, ApiKeyError> {
        let sql = self
            .db
            .dialect("DELETE FROM tessera_api_keys WHERE name = ?");
        let affected = on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        let announced = match &self.memory {
            // Also when nothing was deleted here: someone may have deleted
            // the row by other means while instances remember it.
            Some(memory) => memory.cache.forget_credentials().await,
            None => true,
        };
        Ok(if affected == 0 {
            Revoked::Missing
        } else {
            Revoked::Revoked { announced }
        })
    }

    /// The name of the key `presented`, if it is a live key. Malformed input
    /// is refused without a database query.
    ///
    /// # Errors
    ///
    /// Database errors (the caller answers 503).
    pub async fn verify(&self, presented: &str) -> Result<Option<String>, ApiKeyError> {
        let Ok(key) = ApiKeyToken::parse(presented) else {
            return Ok(None);
        };
        let hash = key.hash();
        // The mark is taken before the query: a revocation whose message
        // arrives after it ends the mark, whether the query saw the delete
        // or not.
        let mut mark = None;
        if let Some(memory) = &self.memory {
            if let Some((name, vouch)) = memory.found.get(&hash) {
                if memory.cache.vouches(vouch) {
                    memory.counts.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(name));
                }
                memory.found.invalidate(&hash);
            }
            memory.counts.misses.fetch_add(1, Ordering::Relaxed);
            mark = memory.cache.vouch();
        }
        let sql = self.db.dialect(&format!(
            "SELECT {} FROM tessera_api_keys WHERE key_hash = ?",
            self.db.text("name")
        ));
        let name: Option<String> = on_pool!(&self.db, pool => sqlx::query_scalar(&sql)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(pool)
            .await?);
        if let (Some(memory), Some(vouch), Some(name)) = (&self.memory, mark, &name) {
            memory.found.insert(hash, (name.clone(), vouch));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn keys_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let db = crate::db::open(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        let keys = ApiKeys::new(db.clone());
        let Db::Sqlite(pool) = db else {
            panic!("sqlite")
        };
        let key = keys.create("backend").await.unwrap();
        assert!(matches!(
            keys.create("backend").await,
            Err(ApiKeyError::Exists)
        ));
        assert_eq!(
            keys.verify(key.expose()).await.unwrap().as_deref(),
            Some("backend")
        );
        assert_eq!(keys.verify("tsk_junk").await.unwrap(), None);

        // The table never holds the key itself.
        let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM tessera_api_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored.as_slice(), key.hash().as_bytes().as_slice());
        assert!(!String::from_utf8_lossy(&stored).contains(&key.expose()[4..]));

        assert_eq!(
            keys.revoke("backend").await.unwrap(),
            Revoked::Revoked { announced: true }
        );
        assert_eq!(keys.verify(key.expose()).await.unwrap(), None);
        assert_eq!(keys.revoke("backend").await.unwrap(), Revoked::Missing);
    }
}
