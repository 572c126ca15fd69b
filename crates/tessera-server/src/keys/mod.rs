//! The access-token signing keys of the server, and `tessera keys …`.
//!
//! **Where they live** (decided at start-up, logged):
//!
//! | configuration | keys |
//! |---|---|
//! | `keys_dir` set | that directory ([`tessera_jwt::KeyStore`]: 0700, one PKCS#8 file 0600 per key, a JSON manifest); instances on several machines must share it |
//! | SQLite store | `tessera-keys` beside the database ([`Config::keys_path`]) |
//! | PostgreSQL or MySQL store | the server database (the store's own by default), sealed ([`shared`]) |
//! | Redis or Redis Cluster store | the store's Redis, sealed ([`shared`]) |
//! | `memory://` store | this process's memory; they die with it, like the sessions |
//!
//! In the shared store every instance signs with the same key and
//! publishes the same JWKS with no shared disk; the private keys are
//! encrypted under a key-encryption key the instances are configured with
//! (`TESSERA_KEY_ENCRYPTION_KEY` or `key_encryption_key_file`), and the
//! server refuses to start without one rather than store them in clear.
//! With a PostgreSQL or MySQL store whose `database` is set to SQLite, the
//! keys stay in the local directory (with a warning), as users do.
//!
//! **Seeing a change made elsewhere** (`tessera keys rotate` in another
//! process, on any machine). An instance compares what identifies the
//! version it loaded — for a directory the manifest's inode, size and
//! modification time (one `stat`, no read; rotations replace the manifest
//! by atomic rename, a new inode), for the shared store the set's version
//! number (one single-value read) — and reloads when it differs. When it
//! compares depends on the use:
//!
//! - **Signing** compares before every token. A timer would leave a window
//!   in which an instance keeps signing with a key another instance already
//!   retired (tokens whose `iat` is after their key's retirement are
//!   refused, RFC 8725 spirit: a retired key no longer signs). Signing is
//!   rare next to verifying (once per token grant or refresh, which write
//!   to the store anyway), so the check costs nothing that matters there.
//! - **Verifying** is the hot path (forward auth with access tokens, every
//!   proxied request) and does no I/O per request. It compares when a token
//!   names a `kid` the loaded set does not hold — so a token signed with a
//!   key rotated in by another instance verifies at once — and otherwise at
//!   most once per [`RECHECK_INTERVAL`] (1 s of the server clock, the
//!   default `cache_max_staleness`). **Bound:** a key taken out (`tessera
//!   keys prune`, or a compromised key deleted with [`KeyStore::remove`])
//!   stops verifying on every instance at most 1 s after the change. An
//!   unknown `kid` costs one `stat`, or on the shared store one version
//!   read, and concurrent ones share a single read: no more than the
//!   session lookup every request pays, so forged `kid`s buy an attacker
//!   nothing.
//! - **The JWKS** compares on every request. It is fetched rarely
//!   (verifiers cache it), and it must never lag behind the signers: a
//!   verifier that fetched a JWKS without a key another instance already
//!   signs with typically will not refetch for its cool-down (often 30 s
//!   or more), and refuses those tokens all that time.
//!
//! A failed reload keeps the keys already loaded and logs a warning.
//!
//! Retired keys stay published for the access-token lifetime plus the
//! verifier's leeway, so every token they signed can still be verified
//! until it expires; `tessera keys prune` then deletes them.
//!
//! Private keys are never logged or printed: log lines and CLI output carry
//! the key id and algorithm only.

pub mod cli;
pub mod shared;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tessera::record::SessionHandle;
use tessera::time::{Clock, Timestamp};
use tessera_jwt::{
    AccessToken, Algorithm, DEFAULT_LEEWAY, IssueError, Issuer, IssuerConfig, Jwks,
    KeyEncryptionKey, KeyError, KeySet, KeyStore, VerifiedToken, Verifier, VerifierConfig,
    VerifyError,
};

use crate::config::Config;
use crate::db::Db;
use crate::server_error::ServerError;
use crate::store_url::StoreKind;
use shared::{Repo, Shared};

/// How often, at most, verifying re-checks the key directory when every
/// presented `kid` is known: the bound on how long a key removed on disk
/// keeps verifying here (see the [module docs](self)).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The issuer used when neither `token_issuer` nor `public_url` is set.
pub const DEFAULT_ISSUER: &str = "tessera";

/// The signing algorithm named by the `token_algorithm` setting.
///
/// ```
/// use tessera_jwt::Algorithm;
/// assert_eq!(tessera_server::keys::algorithm("eddsa"), Some(Algorithm::EdDSA));
/// assert_eq!(tessera_server::keys::algorithm("ES256"), Some(Algorithm::Es256));
/// assert_eq!(tessera_server::keys::algorithm("HS256"), None);
/// ```
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name.to_ascii_lowercase().as_str() {
        "eddsa" => Some(Algorithm::EdDSA),
        "es256" => Some(Algorithm::Es256),
        _ => None,
    }
}

/// How long a retired key stays published: the token lifetime plus the
/// verifier's clock-skew leeway, after which every token it signed has
/// expired everywhere.
///
/// ```
/// use std::time::Duration;
/// let config = tessera_server::config::Config::default();
/// assert_eq!(tessera_server::keys::retention(&config), Duration::from_secs(630));
/// ```
pub fn retention(config: &Config) -> Duration {
    config.access_token_lifetime + DEFAULT_LEEWAY
}

/// `iss` and `aud` of access tokens: the settings, else the public URL
/// (without a trailing `/`), else [`DEFAULT_ISSUER`].
///
/// ```
/// let mut config = tessera_server::config::Config::default();
/// assert_eq!(tessera_server::keys::issuer_and_audience(&config),
///            ("tessera".to_owned(), "tessera".to_owned()));
/// config.public_url = Some("https://auth.example/".into());
/// config.token_audience = Some("https://api.example".into());
/// assert_eq!(tessera_server::keys::issuer_and_audience(&config),
///            ("https://auth.example".to_owned(), "https://api.example".to_owned()));
/// ```
pub fn issuer_and_audience(config: &Config) -> (String, String) {
    let public = config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
    (
        config
            .token_issuer
            .clone()
            .unwrap_or_else(|| public.clone()),
        config.token_audience.clone().unwrap_or(public),
    )
}

/// What identifies one version of the manifest on disk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    fn of(dir: &std::path::Path) -> Option<Self> {
        let meta = std::fs::metadata(dir.join("manifest.json")).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// Which version of the keys is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// In memory only: never changes.
    Fixed,
    /// The directory's manifest (`None`: it could not be inspected).
    File(Option<Fingerprint>),
    /// The shared store's version number.
    Version(u64),
}

/// Where the keys come from (see the [module docs](self)).
enum Source {
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
async fn shared_source(
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
fn process_kek(config: &Config) -> Result<Option<KeyEncryptionKey>, ServerError> {
    // Empty counts as unset (a variable cleared in a deployment file).
    let env = std::env::var(shared::KEK_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    shared::key_encryption_key(config, env.as_deref())
}

struct Loaded {
    seen: Seen,
    keys: KeySet,
    /// `None` when the set has no active key (every key removed).
    issuer: Option<Issuer>,
    verifier: Verifier,
}

struct Inner {
    source: Source,
    retention: Duration,
    issuer_config: IssuerConfig,
    verifier_config: VerifierConfig,
    clock: Arc<dyn Clock>,
    loaded: RwLock<Loaded>,
    /// When the source was last compared (server clock, ms), for
    /// [`RECHECK_INTERVAL`].
    checked_at: AtomicI64,
    /// Checks started because of an unknown `kid`, numbered.
    unknown_kid_checks: AtomicU64,
    /// The number of the last such check that finished: one at a time, and
    /// a request that waited for one that began after it arrived uses its
    /// result instead of reading again.
    unknown_kid_done: tokio::sync::Mutex<u64>,
}

/// The server's signing keys: an [`Issuer`] for new access tokens, a
/// [`Verifier`] for presented ones, and the JWKS. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use tessera::record::SessionHandle;
/// use tessera::time::SystemClock;
/// use tessera_server::config::Config;
/// use tessera_server::keys::SigningKeys;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let config = Config {
///     keys_dir: Some(dir.path().join("keys").display().to_string()),
///     ..Config::default()
/// };
/// let db = tessera_server::db::open("memory://", 1, config.store_timeout).await?;
/// let keys = SigningKeys::open(&config, Arc::new(SystemClock), &db).await?;
/// let sid = SessionHandle::generate()?;
/// let token = keys.issue("alice", &sid).await?;
/// assert_eq!(keys.verify(token.as_str()).await?.claims.sub, "alice");
/// assert_eq!(keys.jwks().await.keys.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.inner.source {
            Source::Memory => "memory".to_owned(),
            Source::Dir(dir) => dir.display().to_string(),
            Source::Shared(shared) => shared.repo.describe().to_owned(),
        };
        f.debug_struct("SigningKeys")
            .field("source", &source)
            .field("issuer", &self.inner.issuer_config.issuer)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Opens the signing keys where `config` keeps them (see the [module
    /// docs](self)), creating the first key on first use. `db` is the
    /// server database; the key-encryption key of a shared placement comes
    /// from [`shared::KEK_ENV`] or `key_encryption_key_file`.
    ///
    /// # Errors
    ///
    /// [`ServerError`] if the keys cannot be created or read (a directory
    /// accessible to group or others, an unreachable store, a set sealed
    /// under another key-encryption key), if a shared placement has no
    /// key-encryption key, or if the issuer settings are unusable.
    pub async fn open(
        config: &Config,
        clock: Arc<dyn Clock>,
        db: &Db,
    ) -> Result<Self, ServerError> {
        Self::open_with_kek(config, clock, db, process_kek(config)?).await
    }

    /// [`SigningKeys::open`] with the key-encryption key given rather than
    /// read from the environment or a file.
    ///
    /// # Errors
    ///
    /// As [`SigningKeys::open`].
    pub async fn open_with_kek(
        config: &Config,
        clock: Arc<dyn Clock>,
        db: &Db,
        kek: Option<KeyEncryptionKey>,
    ) -> Result<Self, ServerError> {
        let alg = configured_algorithm(config)?;
        let retention = retention(config);
        let placement = Placement::of(config, db.backend());
        let now = clock.now();
        let (source, keys, seen) = match placement {
            Placement::Memory => {
                let mut keys = KeySet::new(retention);
                keys.rotate(alg, now).map_err(key_error)?;
                (Source::Memory, keys, Seen::Fixed)
            }
            Placement::Dir => {
                let dir = config.keys_path();
                if config.keys_dir.is_none()
                    && !matches!(StoreKind::of(&config.store), Some(StoreKind::Sqlite))
                {
                    // A shared store suggests several machines; each would
                    // otherwise make keys of its own, and a token signed on
                    // one would be unknown to the JWKS of the others.
                    tracing::warn!(
                        dir = %dir.display(),
                        "access-token signing keys are kept in a local directory because the \
                         server database is SQLite: instances on other machines must share it \
                         (set keys_dir to a shared volume, or database to the shared SQL store)"
                    );
                }
                let store =
                    KeyStore::open_or_create(&dir, alg, retention, now).map_err(key_error)?;
                let seen = Seen::File(Fingerprint::of(&dir));
                (Source::Dir(dir), store.key_set().clone(), seen)
            }
            Placement::Database | Placement::Redis => {
                let shared = shared_source(config, placement, db, kek).await?;
                let (version, keys) = shared
                    .open_or_create(alg, retention, now)
                    .await
                    .map_err(|e| ServerError::Message(format!("signing keys: {e}")))?;
                tracing::info!(
                    store = shared.repo.describe(),
                    kek = shared.kek.id(),
                    "access-token signing keys are kept in the shared store, sealed"
                );
                (
                    Source::Shared(Box::new(shared)),
                    keys,
                    Seen::Version(version),
                )
            }
        };
        Self::assemble(config, clock, source, &keys, seen)
    }

    /// The keys `keys` (version `seen`) from `source`, with the issuer and
    /// verifier settings of `config`.
    fn assemble(
        config: &Config,
        clock: Arc<dyn Clock>,
        source: Source,
        keys: &KeySet,
        seen: Seen,
    ) -> Result<Self, ServerError> {
        let now = clock.now();
        let retention = retention(config);
        let (issuer, audience) = issuer_and_audience(config);
        // RFC 9068 §2.2: an access token names the client it was issued to.
        let issuer_config = IssuerConfig::new(issuer.clone(), audience.clone())
            .client_id(config.token_client_id.clone())
            .lifetime(config.access_token_lifetime);
        // Both algorithms: a key is bound to one for life, so accepting both
        // opens no confusion, and tokens signed before an operator switched
        // `token_algorithm` (and rotated) keep verifying until they expire.
        let verifier_config = VerifierConfig::new(issuer, audience)
            .algorithms([Algorithm::EdDSA, Algorithm::Es256])
            .max_lifetime(config.access_token_lifetime);
        let loaded = build(keys, seen, &issuer_config, &verifier_config, &clock)?;
        if let Some(key) = keys.current() {
            tracing::info!(kid = %key.kid, alg = %key.algorithm, "access-token signing key loaded");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                retention,
                issuer_config,
                verifier_config,
                checked_at: AtomicI64::new(now.as_millis()),
                clock,
                loaded: RwLock::new(loaded),
                unknown_kid_checks: AtomicU64::new(0),
                unknown_kid_done: tokio::sync::Mutex::new(0),
            }),
        })
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer_config.issuer
    }

    /// The `aud` of issued tokens.
    pub fn audience(&self) -> &str {
        &self.inner.issuer_config.audience
    }

    /// The configured access-token lifetime.
    pub fn lifetime(&self) -> Duration {
        self.inner.issuer_config.lifetime
    }

    fn seen(&self) -> Seen {
        self.inner
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .seen
    }

    /// Reloads the keys if their source changed since the last load (see
    /// the [module docs](self)). True when it reloaded.
    async fn sync(&self) -> bool {
        self.inner
            .checked_at
            .store(self.inner.clock.now().as_millis(), Ordering::Relaxed);
        let reloaded = match &self.inner.source {
            Source::Memory => return false,
            Source::Dir(dir) => {
                let now = Fingerprint::of(dir);
                if now.is_none() || Seen::File(now) == self.seen() {
                    return false;
                }
                KeyStore::open(dir, self.inner.retention)
                    .map_err(|e| e.to_string())
                    .map(|store| (Seen::File(now), store.key_set().clone()))
            }
            Source::Shared(shared) => {
                let version = match shared.repo.version().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "checking the shared signing keys failed; keeping the loaded keys");
                        return false;
                    }
                };
                // 0: the set was deleted from the store; keep what is
                // loaded rather than sign with nothing.
                if version == 0 || Seen::Version(version) == self.seen() {
                    return false;
                }
                match shared.load(self.inner.retention).await {
                    Ok(Some((version, keys))) => Ok((Seen::Version(version), keys)),
                    Ok(None) => return false,
                    Err(e) => Err(e),
                }
            }
        };
        let built = reloaded.and_then(|(seen, keys)| {
            build(
                &keys,
                seen,
                &self.inner.issuer_config,
                &self.inner.verifier_config,
                &self.inner.clock,
            )
            .map_err(|e| e.to_string())
        });
        match built {
            Ok(loaded) => {
                if let Some(key) = loaded.keys.current() {
                    tracing::info!(kid = %key.kid, alg = %key.algorithm, "signing keys reloaded");
                }
                *self.inner.loaded.write().unwrap_or_else(|e| e.into_inner()) = loaded;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading the signing keys failed; keeping the loaded keys");
                false
            }
        }
    }

    /// [`sync`](Self::sync) if the last check is [`RECHECK_INTERVAL`] old
    /// (or in the future: a clock set back must not stop the checks).
    async fn sync_if_due(&self) {
        let now = self.inner.clock.now().as_millis();
        let last = self.inner.checked_at.load(Ordering::Relaxed);
        let interval = i64::try_from(RECHECK_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        let due = now < last || now.saturating_sub(last) >= interval;
        // One request of many arriving together does the check; the others
        // go on with the loaded keys, which are at most one interval old.
        if due
            && self
                .inner
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sync().await;
        }
    }

    /// The check made for a token whose `kid` is not loaded. True when the
    /// token is worth verifying again: the keys were reloaded, or another
    /// request's check that began after this one arrived has finished
    /// (concurrent unknown `kid`s, forged or not, share one read).
    async fn sync_for_unknown_kid(&self) -> bool {
        if matches!(self.inner.source, Source::Dir(_)) {
            // A `stat`: cheaper than any coordination.
            return self.sync().await;
        }
        let arrived = self.inner.unknown_kid_checks.load(Ordering::SeqCst);
        let mut done = self.inner.unknown_kid_done.lock().await;
        if *done > arrived {
            return true;
        }
        let number = self.inner.unknown_kid_checks.fetch_add(1, Ordering::SeqCst) + 1;
        let reloaded = self.sync().await;
        *done = number;
        reloaded
    }

    /// Signs an access token for user `sub` in session `sid`.
    ///
    /// # Errors
    ///
    /// [`IssueError::NoSigningKey`] when every key was removed;
    /// [`IssueError`] for a bad subject or a failed CSPRNG.
    pub async fn issue(&self, sub: &str, sid: &SessionHandle) -> Result<AccessToken, IssueError> {
        self.sync().await;
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .issuer
            .as_ref()
            .ok_or(IssueError::NoSigningKey)?
            .issue(sub, sid)
    }

    /// Signs an access token like [`issue`](Self::issue), but never valid
    /// past `not_after` — the session's absolute deadline, so the token
    /// cannot outlive its session (ASVS 5.0 V7.3.2).
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue), and [`IssueError::AlreadyEnded`] when
    /// `not_after` is not in the future.
    pub async fn issue_until(
        &self,
        sub: &str,
        sid: &SessionHandle,
        not_after: Timestamp,
    ) -> Result<AccessToken, IssueError> {
        self.sync().await;
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .issuer
            .as_ref()
            .ok_or(IssueError::NoSigningKey)?
            .issue_until(sub, sid, not_after)
    }

    /// Verifies an access token: signature, algorithm, `kid`, times,
    /// issuer, audience. No store call for the session (see the crate docs
    /// of `tessera_jwt` on what that means for revocation), and no I/O
    /// unless the `kid` is unknown or the last look at the keys is
    /// [`RECHECK_INTERVAL`] old (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`VerifyError`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        self.sync_if_due().await;
        match self.verify_loaded(token) {
            // A key this instance has not loaded yet, e.g. rotated in by
            // another instance a moment ago: look now rather than refuse a
            // good token for up to a second. The verifier refuses an
            // unknown `kid` before any signature work.
            Err(VerifyError::UnknownKid) if self.sync_for_unknown_kid().await => {
                self.verify_loaded(token)
            }
            result => result,
        }
    }

    fn verify_loaded(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.verifier.verify(token)
    }

    /// The JWK Set to publish now: the active key and every retired key
    /// still inside its retention. Public members only.
    pub async fn jwks(&self) -> Jwks {
        self.sync().await;
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.keys.jwks(self.inner.clock.now())
    }
}

/// The `token_algorithm` of `config`.
fn configured_algorithm(config: &Config) -> Result<Algorithm, ServerError> {
    algorithm(&config.token_algorithm).ok_or_else(|| {
        ServerError::Message(format!(
            "token_algorithm {:?} must be eddsa or es256",
            config.token_algorithm
        ))
    })
}

fn key_error(e: KeyError) -> ServerError {
    ServerError::Message(format!("signing keys: {e}"))
}

fn build(
    keys: &KeySet,
    seen: Seen,
    issuer_config: &IssuerConfig,
    verifier_config: &VerifierConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Loaded, ServerError> {
    let issuer = match Issuer::new(issuer_config.clone(), keys, clock.clone()) {
        Ok(issuer) => Some(issuer),
        Err(IssueError::NoSigningKey) => {
            tracing::warn!("the key set has no active signing key: run `tessera keys rotate`");
            None
        }
        Err(e) => return Err(ServerError::Message(format!("access-token issuer: {e}"))),
    };
    Ok(Loaded {
        seen,
        keys: keys.clone(),
        issuer,
        verifier: Verifier::new(verifier_config.clone(), keys.public_keys(), clock.clone()),
    })
}

#[cfg(test)]
mod tests;
