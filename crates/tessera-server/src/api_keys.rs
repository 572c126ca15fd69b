//! API keys for the `/v1` API: generated as [`ApiKeyToken`]s (`tsk_…`),
//! printed once, stored only as their SHA-256 hash and looked up by it.
//!
//! A plain hash suffices because a key carries 256 bits of entropy (the same
//! reasoning as for session tokens in `tessera::token`), and looking a key
//! up by its hash means the comparison never touches the secret itself.

use tessera::token::ApiKeyToken;

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
}

impl ApiKeys {
    /// Wraps the server database (any backend: a [`Db`] or a SQLite pool).
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
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
        let sql = self.db.dialect(&format!(
            "SELECT {} FROM tessera_api_keys WHERE key_hash = ?",
            self.db.text("name")
        ));
        Ok(on_pool!(&self.db, pool => sqlx::query_scalar(&sql)
            .bind(key.hash().as_bytes().as_slice())
            .fetch_optional(pool)
            .await?))
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
}
