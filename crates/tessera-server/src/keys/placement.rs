//! Where the keys live: a directory, the shared store (sealed), or this
//! process's memory (see the [module docs](super)).

use std::path::PathBuf;

use tessera_jwt::KeyEncryptionKey;

use super::shared::{self, Repo, Shared};
use crate::config::Config;
use crate::db::Db;
use crate::server_error::ServerError;
use crate::store_url::StoreKind;

/// Where the keys come from (see the [module docs](super)).
pub(super) enum Source {
    Memory,
    Dir(PathBuf),
    Shared(Box<Shared>),
}

/// Where `config` keeps its signing keys, before any is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In this process only (`memory://` without `keys_dir`).
    Memory,
    /// In [`Config::keys_path`].
    Dir,
    /// Sealed, in the server database (PostgreSQL, MySQL).
    Database,
    /// Sealed, in the store's Redis (Cluster).
    Redis,
}

impl Placement {
    /// The placement for `config` whose server database is `db`.
    ///
    /// ```
    /// use tessera_server::config::Config;
    /// use tessera_server::keys::Placement;
    ///
    /// let on = |store: &str| Config { store: store.into(), ..Config::default() };
    /// assert_eq!(Placement::of(&on("sqlite://t.db"), "sqlite"), Placement::Dir);
    /// assert_eq!(Placement::of(&on("memory://"), "sqlite"), Placement::Memory);
    /// assert_eq!(Placement::of(&on("postgres://h/db"), "postgres"), Placement::Database);
    /// assert_eq!(Placement::of(&on("redis://h"), "sqlite"), Placement::Redis);
    /// // An explicit directory wins (a shared volume).
    /// let dir = Config { keys_dir: Some("/keys".into()), ..on("redis://h") };
    /// assert_eq!(Placement::of(&dir, "sqlite"), Placement::Dir);
    /// ```
    pub fn of(config: &Config, db_backend: &str) -> Self {
        if config.keys_dir.is_some() {
            return Self::Dir;
        }
        match StoreKind::of(&config.store) {
            Some(StoreKind::Memory) => Self::Memory,
            Some(StoreKind::Redis | StoreKind::RedisCluster) => Self::Redis,
            Some(StoreKind::Postgres | StoreKind::MySql) if db_backend != "sqlite" => {
                Self::Database
            }
            _ => Self::Dir,
        }
    }
}

/// The repository of a shared placement, with the key that opens it.
pub(super) async fn shared_source(
    config: &Config,
    placement: Placement,
    db: &Db,
    kek: Option<KeyEncryptionKey>,
) -> Result<Shared, ServerError> {
    let where_ = if placement == Placement::Redis {
        "Redis"
    } else {
        db.backend()
    };
    let Some(kek) = kek else {
        return Err(ServerError::Message(format!(
            "the access-token signing keys are kept in the shared store ({where_}) so that every \
             instance signs with the same keys, sealed with a key-encryption key, and none is \
             configured: set {} or key_encryption_key_file to 32 random bytes in base64 \
             (`openssl rand -base64 32`), the same on every instance; or set keys_dir to keep \
             the keys in a directory instead",
            shared::KEK_ENV
        )));
    };
    let repo = if placement == Placement::Redis {
        let store =
            tessera_redis::RedisStore::connect(&config.store, crate::store::redis_options(config))
                .await
                .map_err(|source| crate::store::StoreOpenError::Store {
                    url: crate::store_url::redact(&config.store),
                    source,
                })?;
        Repo::Redis(store)
    } else {
        Repo::Db(db.clone())
    };
    Ok(Shared { repo, kek })
}

/// The key-encryption key of this process: [`shared::KEK_ENV`] or
/// `key_encryption_key_file`.
pub(super) fn process_kek(config: &Config) -> Result<Option<KeyEncryptionKey>, ServerError> {
    // Empty counts as unset (a variable cleared in a deployment file).
    let env = std::env::var(shared::KEK_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    shared::key_encryption_key(config, env.as_deref())
}
