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
mod placement;
mod reload;
mod settings;
pub mod shared;
mod version;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tessera::record::SessionHandle;
use tessera::time::{Clock, Timestamp};
use tessera_jwt::{
    AccessToken, Algorithm, IssueError, Issuer, IssuerConfig, Jwks, KeyEncryptionKey, KeySet,
    KeyStore, VerifiedToken, Verifier, VerifierConfig, VerifyError,
};

use crate::config::Config;
use crate::db::Db;
use crate::server_error::ServerError;
use crate::store_url::StoreKind;
pub use placement::Placement;
use placement::{Source, process_kek, shared_source};
pub use settings::{DEFAULT_ISSUER, algorithm, issuer_and_audience, retention};
use settings::{configured_algorithm, key_error};
pub use version::RECHECK_INTERVAL;
use version::{Fingerprint, Seen};

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
