//! Signing keys kept in the shared store, for instances on several
//! machines with no shared disk.
//!
//! Where: in the server database when the session store is PostgreSQL or
//! MySQL (table `tessera_signing_keys`, the store's own database unless
//! `database` says otherwise), in Redis (the hash `<store_key_prefix>doc:signing-keys`)
//! when the store is Redis or Redis Cluster. What: one document, the whole
//! key set, whose private keys are sealed under the key-encryption key
//! ([`tessera_jwt::KeyEncryptionKey`], AES-256-GCM): a database backup, a
//! replica or an operator with read access sees key ids and public keys,
//! never a key that signs. How: a version number that every change
//! compares and raises (compare-and-set), so two instances rotating at once
//! cannot both win, and a one-value read tells an instance whether its
//! loaded set is current.
//!
//! The key-encryption key comes from `TESSERA_KEY_ENCRYPTION_KEY` (its
//! base64 text) or the file named by `key_encryption_key_file` (mode 0600
//! or stricter, like a key directory's files), never from the
//! configuration file itself. Without one the server refuses to start
//! rather than store private keys in clear.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use tessera::time::Timestamp;
use tessera_jwt::{Algorithm, KeyEncryptionKey, KeySet};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::db::{Db, on_pool};
use crate::server_error::ServerError;

/// The environment variable holding the key-encryption key (base64 of 32
/// random bytes).
pub use crate::config::values::KEK_ENV;

/// The name of the document in Redis.
const REDIS_DOCUMENT: &str = "signing-keys";

/// How often a change retries when another instance changed the key set
/// between its read and its write.
const MAX_ATTEMPTS: u32 = 8;

/// Where the shared key set lives.
#[derive(Clone)]
pub(super) enum Repo {
    /// `tessera_signing_keys` in the server database (PostgreSQL, MySQL).
    Db(Db),
    /// A document in the Redis (Cluster) deployment of the store.
    Redis(tessera_redis::RedisStore),
}

impl Repo {
    /// For logs: where the keys are.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Self::Db(Db::Postgres(_)) => "PostgreSQL (tessera_signing_keys)",
            Self::Db(Db::MySql(_)) => "MySQL (tessera_signing_keys)",
            Self::Db(Db::Sqlite(_)) => "SQLite (tessera_signing_keys)",
            Self::Redis(_) => "Redis (doc:signing-keys)",
        }
    }

    /// The current version; 0 when no key set is stored yet.
    pub(super) async fn version(&self) -> Result<u64, String> {
        match self {
            Self::Redis(store) => store
                .document_version(REDIS_DOCUMENT)
                .await
                .map_err(|e| e.to_string()),
            Self::Db(db) => {
                let sql = db.dialect("SELECT version FROM tessera_signing_keys WHERE id = 1");
                let v: Option<i64> = on_pool!(db, pool => sqlx::query_scalar(&sql)
                    .fetch_optional(pool)
                    .await)
                .map_err(|e| e.to_string())?;
                Ok(v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
            }
        }
    }

    /// The stored document and its version.
    pub(super) async fn get(&self) -> Result<Option<(u64, String)>, String> {
        match self {
            Self::Redis(store) => store
                .document_get(REDIS_DOCUMENT)
                .await
                .map_err(|e| e.to_string()),
            Self::Db(db) => {
                let sql =
                    db.dialect("SELECT version, document FROM tessera_signing_keys WHERE id = 1");
                let row: Option<(i64, String)> = on_pool!(db, pool => sqlx::query_as(&sql)
                    .fetch_optional(pool)
                    .await)
                .map_err(|e| e.to_string())?;
                Ok(row.map(|(v, doc)| (u64::try_from(v).unwrap_or(0), doc)))
            }
        }
    }

    /// Writes `document` if the version is still `expected` (0: nothing
    /// stored yet). The new version, or `None` if another instance wrote
    /// first.
    pub(super) async fn replace(
        &self,
        expected: u64,
        document: &str,
    ) -> Result<Option<u64>, String> {
        match self {
            Self::Redis(store) => store
                .document_replace(REDIS_DOCUMENT, expected, document)
                .await
                .map_err(|e| e.to_string()),
            Self::Db(db) if expected == 0 => {
                let sql = db.dialect(
                    "INSERT INTO tessera_signing_keys (id, version, document) VALUES (1, 1, ?)",
                );
                let done = on_pool!(db, pool => sqlx::query(&sql)
                    .bind(document)
                    .execute(pool)
                    .await
                    .map(drop));
                match done {
                    Ok(_) => Ok(Some(1)),
                    // Another instance created it first.
                    Err(e) if crate::db::is_duplicate(&e) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
            Self::Db(db) => {
                let sql = db.dialect(
                    "UPDATE tessera_signing_keys SET version = version + 1, document = ? \
                     WHERE id = 1 AND version = ?",
                );
                let expected_i = i64::try_from(expected).map_err(|e| e.to_string())?;
                let changed = on_pool!(db, pool => sqlx::query(&sql)
                    .bind(document)
                    .bind(expected_i)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected()))
                .map_err(|e| e.to_string())?;
                Ok((changed == 1).then_some(expected + 1))
            }
        }
    }
}

/// The shared key set: where it lives and the key that opens it.
pub(super) struct Shared {
    pub(super) repo: Repo,
    pub(super) kek: KeyEncryptionKey,
}

impl Shared {
    /// The stored key set and its version, `None` when none is stored.
    pub(super) async fn load(
        &self,
        retention: std::time::Duration,
    ) -> Result<Option<(u64, KeySet)>, String> {
        let Some((version, document)) = self.repo.get().await? else {
            return Ok(None);
        };
        let set = KeySet::unseal(&document, &self.kek, retention).map_err(|e| e.to_string())?;
        Ok(Some((version, set)))
    }

    /// Applies `change` to the stored key set (an empty one when none is
    /// stored) and writes it back, retrying from a fresh read when another
    /// instance changed it in between. Returns the new version, the new
    /// set, and what `change` returned. `change` may run more than once.
    pub(super) async fn update<T>(
        &self,
        retention: std::time::Duration,
        mut change: impl FnMut(&mut KeySet) -> Result<T, String>,
    ) -> Result<(u64, KeySet, T), String> {
        for _ in 0..MAX_ATTEMPTS {
            let (version, mut set) = self
                .load(retention)
                .await?
                .unwrap_or_else(|| (0, KeySet::new(retention)));
            let out = change(&mut set)?;
            let document = set.seal(&self.kek).map_err(|e| e.to_string())?;
            if let Some(new) = self.repo.replace(version, &document).await? {
                return Ok((new, set, out));
            }
        }
        Err(format!(
            "the signing keys kept changing under this update ({MAX_ATTEMPTS} attempts); try again"
        ))
    }

    /// The stored key set, creating it with one key of `alg` if none is
    /// stored yet (the first instance to start creates it; the others read
    /// it).
    pub(super) async fn open_or_create(
        &self,
        alg: Algorithm,
        retention: std::time::Duration,
        now: Timestamp,
    ) -> Result<(u64, KeySet), String> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(found) = self.load(retention).await? {
                return Ok(found);
            }
            let mut set = KeySet::new(retention);
            let kid = set.rotate(alg, now).map_err(|e| e.to_string())?;
            let document = set.seal(&self.kek).map_err(|e| e.to_string())?;
            // Version 0: only if nothing is stored. Another instance that
            // starts at the same moment may win; then read its set.
            if let Some(version) = self.repo.replace(0, &document).await? {
                tracing::info!(kid = %kid, alg = %alg, "created the shared signing key set");
                return Ok((version, set));
            }
        }
        Err(format!(
            "the shared signing keys could not be created or read ({MAX_ATTEMPTS} attempts)"
        ))
    }
}

/// The key-encryption key from `env_value` (the value of
/// [`KEK_ENV`], if set) or `config.key_encryption_key_file`; `None` when
/// neither is set.
///
/// ```
/// use tessera_server::config::Config;
/// use tessera_server::keys::shared::key_encryption_key;
///
/// let config = Config::default();
/// assert!(key_encryption_key(&config, None)?.is_none());
/// let kek = key_encryption_key(&config, Some("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="))?;
/// assert!(kek.is_some());
/// let err = key_encryption_key(&config, Some("short")).unwrap_err().to_string();
/// assert!(err.contains("key-encryption key") && !err.contains("short"));
/// # Ok::<(), tessera_server::server::ServerError>(())
/// ```
///
/// # Errors
///
/// A message when both are set, the file is missing, readable by group or
/// others, or either is not base64 of 32 bytes. Messages never contain the
/// key.
pub fn key_encryption_key(
    config: &Config,
    env_value: Option<&str>,
) -> Result<Option<KeyEncryptionKey>, ServerError> {
    let file = config.key_encryption_key_file.as_deref();
    let text = match (env_value, file) {
        (Some(_), Some(_)) => {
            return Err(ServerError::Message(format!(
                "both {KEK_ENV} and key_encryption_key_file are set: set one"
            )));
        }
        (Some(v), None) => Zeroizing::new(v.to_owned()),
        (None, Some(path)) => read_private(Path::new(path))?,
        (None, None) => return Ok(None),
    };
    KeyEncryptionKey::from_base64(&text)
        .map(Some)
        .map_err(|e| ServerError::Message(e.to_string()))
}

/// Reads a secret file, refusing one that group or others can read (as
/// for a key directory's files: the key may already have leaked).
fn read_private(path: &Path) -> Result<Zeroizing<String>, ServerError> {
    let fail = |what: String| {
        ServerError::Message(format!(
            "key_encryption_key_file {}: {what}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_file() || mode & 0o077 != 0 {
        return Err(fail(format!(
            "must be a file that only its owner can access (mode 0600 or 0400, found {mode:o})"
        )));
    }
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| fail(e.to_string()))?;
    Ok(text)
}
