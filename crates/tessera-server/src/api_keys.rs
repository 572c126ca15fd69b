//! API keys for the `/v1` API: generated as [`ApiKeyToken`]s (`tsk_…`),
//! printed once, stored only as their SHA-256 hash and looked up by it.
//!
//! A plain hash suffices because a key carries 256 bits of entropy (the same
//! reasoning as for session tokens in `tessera::token`), and looking a key
//! up by its hash means the comparison never touches the secret itself.
//!
//! With the session cache on (`cache = "on"`), a key found in the database
//! is remembered for `cache_max_staleness` ([`ApiKeys::cached`]): every
//! `/v1` call presents the key, and the lookup was a database query per
//! call. The operator who turned the cache on accepted that bound for
//! revocations made elsewhere; a revoked key is refused by every instance
//! within it. Unknown keys are never remembered.

use std::time::Duration;

use tessera::token::{ApiKeyToken, TokenHash};

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
    /// Keys found recently, by hash, with their names (see the module
    /// docs); `None`: every verification asks the database.
    found: Option<moka::sync::Cache<TokenHash, String>>,
}

/// Keys remembered at most: far more than a deployment's clients.
const MAX_REMEMBERED: u64 = 1_024;

impl ApiKeys {
    /// Wraps the server database (any backend: a [`Db`] or a SQLite pool).
    pub fn new(db: impl Into<Db>) -> Self {
        Self {
            db: db.into(),
            found: None,
        }
    }

    /// Remembers each key found in the database for `ttl`, so a revoked
    /// key may still be accepted here for up to `ttl` (see the module
    /// docs). The server does this with the session cache on, with its
    /// `cache_max_staleness`.
    #[must_use]
    pub fn cached(mut self, ttl: Duration) -> Self {
        self.found = Some(
            moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(ttl)
                .build(),
        );
        self
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

    /// Revokes the key named `name`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn revoke(&self, name: &str) -> Result<bool, ApiKeyError> {
        let sql = self
            .db
            .dialect("DELETE FROM tessera_api_keys WHERE name = ?");
        let affected = on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(affected > 0)
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
        if let Some(name) = self.found.as_ref().and_then(|found| found.get(&hash)) {
            return Ok(Some(name));
        }
        let sql = self.db.dialect(&format!(
            "SELECT {} FROM tessera_api_keys WHERE key_hash = ?",
            self.db.text("name")
        ));
        let name: Option<String> = on_pool!(&self.db, pool => sqlx::query_scalar(&sql)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(pool)
            .await?);
        if let (Some(found), Some(name)) = (&self.found, &name) {
            found.insert(hash, name.clone());
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

        assert!(keys.revoke("backend").await.unwrap());
        assert_eq!(keys.verify(key.expose()).await.unwrap(), None);
        assert!(!keys.revoke("backend").await.unwrap());
    }

    #[tokio::test]
    async fn a_remembered_key_is_refused_once_its_time_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let db = crate::db::open(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        // The server's default `cache_max_staleness`; long enough that the
        // steps below fit in it on a loaded machine.
        let ttl = Duration::from_secs(1);
        let keys = ApiKeys::new(db.clone()).cached(ttl);
        // Another process's view of the table (the CLI revoking).
        let admin = ApiKeys::new(db);
        let key = keys.create("backend").await.unwrap();
        assert!(keys.verify("tsk_junk").await.unwrap().is_none());

        assert_eq!(
            keys.verify(key.expose()).await.unwrap().as_deref(),
            Some("backend")
        );
        assert!(admin.revoke("backend").await.unwrap());
        // Within the bound the remembered key still works here...
        assert_eq!(
            keys.verify(key.expose()).await.unwrap().as_deref(),
            Some("backend")
        );
        // ...and not after it.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        assert_eq!(keys.verify(key.expose()).await.unwrap(), None);
        // A key created meanwhile is found in the database.
        let later = admin.create("later").await.unwrap();
        assert_eq!(
            keys.verify(later.expose()).await.unwrap().as_deref(),
            Some("later")
        );
    }
}
