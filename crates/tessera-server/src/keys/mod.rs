//! The access-token signing keys of the server, and `tessera keys …`.
//!
//! Keys live in a directory ([`tessera_jwt::KeyStore`]: directory 0700,
//! one PKCS#8 file 0600 per key, a JSON manifest), by default
//! `tessera-keys` beside the SQLite database ([`Config::keys_path`]). The
//! first start creates it with one key. With the `memory://` store and no
//! `keys_dir`, keys are generated in memory and die with the process, like
//! the sessions.
//!
//! **Several instances, one directory.** Every instance that issues tokens
//! for one issuer points at the same directory (a shared volume). An
//! instance notices a change by comparing the manifest's inode, size and
//! modification time with what it loaded — one `stat`, no read — and
//! reloads when they differ. `tessera keys rotate` in any process writes the
//! manifest by atomic rename (a new inode), so the check never misses it.
//! When it checks depends on the use:
//!
//! - **Signing** checks before every token. A timer would leave a window in
//!   which an instance keeps signing with a key another instance already
//!   retired (tokens whose `iat` is after their key's retirement are
//!   refused, RFC 8725 spirit: a retired key no longer signs). Signing is
//!   rare next to verifying (once per token grant or refresh, which write
//!   to the store anyway), so the stat costs nothing that matters there.
//! - **Verifying** is the hot path (forward auth with access tokens, every
//!   proxied request) and does no file I/O per request. It checks when a
//!   token names a `kid` the loaded set does not hold — so a token signed
//!   with a key rotated in by another instance verifies at once — and
//!   otherwise at most once per [`RECHECK_INTERVAL`] (1 s of the server
//!   clock). **Bound:** a key taken out of the directory (`tessera keys
//!   prune`, or a compromised key deleted with [`KeyStore::remove`]) stops
//!   verifying on this instance at most 1 s after the change. An unknown
//!   `kid` costs one `stat` (no read unless the manifest changed) — no more
//!   than every request paid before, so forged `kid`s buy an attacker
//!   nothing.
//! - **The JWKS** checks on every request. It is fetched rarely (verifiers
//!   cache it), and it must never lag behind the signers: a verifier that
//!   fetched a JWKS without a key another instance already signs with
//!   typically will not refetch for its cool-down (often 30 s or more), and
//!   refuses those tokens all that time.
//!
//! A failed reload keeps the keys already loaded and logs a warning.
//!
//! Retired keys stay published for the access-token lifetime plus the
//! verifier's leeway, so every token they signed can still be verified
//! until it expires; `tessera keys prune` then deletes them.
//!
//! Private keys are never logged or printed: log lines and CLI output carry
//! the key id and algorithm only.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tessera::record::SessionHandle;
use tessera::time::{Clock, Timestamp};
use tessera_jwt::{
    AccessToken, Algorithm, DEFAULT_LEEWAY, IssueError, Issuer, IssuerConfig, Jwks, KeyError,
    KeySet, KeyStore, VerifiedToken, Verifier, VerifierConfig, VerifyError,
};

use crate::cli::KeysCommand;
use crate::config::Config;
use crate::server::ServerError;
use crate::store::{ServerClock, StoreKind};

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

struct Loaded {
    fingerprint: Option<Fingerprint>,
    keys: KeySet,
    /// `None` when the set has no active key (every key removed).
    issuer: Option<Issuer>,
    verifier: Verifier,
}

struct Inner {
    dir: Option<PathBuf>,
    retention: Duration,
    issuer_config: IssuerConfig,
    verifier_config: VerifierConfig,
    clock: Arc<dyn Clock>,
    loaded: RwLock<Loaded>,
    /// When the manifest was last compared (server clock, ms), for
    /// [`RECHECK_INTERVAL`].
    checked_at: AtomicI64,
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
/// let dir = tempfile::tempdir()?;
/// let config = Config {
///     keys_dir: Some(dir.path().join("keys").display().to_string()),
///     ..Config::default()
/// };
/// let keys = SigningKeys::open(&config, Arc::new(SystemClock))?;
/// let sid = SessionHandle::generate()?;
/// let token = keys.issue("alice", &sid)?;
/// assert_eq!(keys.verify(token.as_str())?.claims.sub, "alice");
/// assert_eq!(keys.jwks().keys.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("dir", &self.inner.dir)
            .field("issuer", &self.inner.issuer_config.issuer)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Opens (creating on first use) the key directory of `config`, or
    /// generates in-memory keys for the `memory://` store without a
    /// `keys_dir`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] if the directory cannot be created or read, or is
    /// accessible to group or others; [`IssueError`] (as a message) if the
    /// issuer settings are unusable.
    pub fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ServerError> {
        let alg = algorithm(&config.token_algorithm).ok_or_else(|| {
            ServerError::Message(format!(
                "token_algorithm {:?} must be eddsa or es256",
                config.token_algorithm
            ))
        })?;
        let retention = retention(config);
        let in_memory =
            config.keys_dir.is_none() && StoreKind::of(&config.store) == Some(StoreKind::Memory);
        let (dir, keys) = if in_memory {
            let mut keys = KeySet::new(retention);
            keys.rotate(alg, clock.now()).map_err(key_error)?;
            (None, keys)
        } else {
            let dir = config.keys_path();
            if config.keys_dir.is_none()
                && !matches!(StoreKind::of(&config.store), Some(StoreKind::Sqlite))
            {
                // A shared store suggests several machines; each would
                // otherwise make keys of its own, and a token signed on one
                // would be unknown to the JWKS of the others.
                tracing::warn!(
                    dir = %dir.display(),
                    "access-token signing keys are kept in a local directory: instances on other \
                     machines must share it (set keys_dir to a shared volume)"
                );
            }
            let store =
                KeyStore::open_or_create(&dir, alg, retention, clock.now()).map_err(key_error)?;
            (Some(dir), store.key_set().clone())
        };
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
        let fingerprint = dir.as_deref().and_then(Fingerprint::of);
        let loaded = build(&keys, fingerprint, &issuer_config, &verifier_config, &clock)?;
        if let Some(key) = keys.current() {
            tracing::info!(kid = %key.kid, alg = %key.algorithm, "access-token signing key loaded");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                retention,
                issuer_config,
                verifier_config,
                checked_at: AtomicI64::new(clock.now().as_millis()),
                clock,
                loaded: RwLock::new(loaded),
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

    /// Reloads the key directory if its manifest changed since the last
    /// load (see the [module docs](self)). True when it reloaded.
    fn sync(&self) -> bool {
        let Some(dir) = &self.inner.dir else {
            return false;
        };
        self.inner
            .checked_at
            .store(self.inner.clock.now().as_millis(), Ordering::Relaxed);
        let now = Fingerprint::of(dir);
        let current = self
            .inner
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprint;
        if now.is_none() || now == current {
            return false;
        }
        let reloaded = KeyStore::open(dir, self.inner.retention)
            .map_err(key_error)
            .and_then(|store| {
                build(
                    store.key_set(),
                    now,
                    &self.inner.issuer_config,
                    &self.inner.verifier_config,
                    &self.inner.clock,
                )
            });
        match reloaded {
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
    fn sync_if_due(&self) {
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
            self.sync();
        }
    }

    /// Signs an access token for user `sub` in session `sid`.
    ///
    /// # Errors
    ///
    /// [`IssueError::NoSigningKey`] when every key was removed;
    /// [`IssueError`] for a bad subject or a failed CSPRNG.
    pub fn issue(&self, sub: &str, sid: &SessionHandle) -> Result<AccessToken, IssueError> {
        self.sync();
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
    pub fn issue_until(
        &self,
        sub: &str,
        sid: &SessionHandle,
        not_after: Timestamp,
    ) -> Result<AccessToken, IssueError> {
        self.sync();
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .issuer
            .as_ref()
            .ok_or(IssueError::NoSigningKey)?
            .issue_until(sub, sid, not_after)
    }

    /// Verifies an access token: signature, algorithm, `kid`, times,
    /// issuer, audience. No store call (see the crate docs of
    /// `tessera_jwt` on what that means for revocation), and no file I/O
    /// unless the `kid` is unknown or the last look at the key directory
    /// is [`RECHECK_INTERVAL`] old (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`VerifyError`].
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        self.sync_if_due();
        match self.verify_loaded(token) {
            // A key this instance has not loaded yet, e.g. rotated in by
            // another instance a moment ago: look at the directory now
            // rather than refuse a good token for up to a second. The
            // verifier refuses an unknown `kid` before any signature work.
            Err(VerifyError::UnknownKid) if self.sync() => self.verify_loaded(token),
            result => result,
        }
    }

    fn verify_loaded(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.verifier.verify(token)
    }

    /// The JWK Set to publish now: the active key and every retired key
    /// still inside its retention. Public members only.
    pub fn jwks(&self) -> Jwks {
        self.sync();
        let loaded = self.inner.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.keys.jwks(self.inner.clock.now())
    }
}

fn key_error(e: KeyError) -> ServerError {
    ServerError::Message(format!("signing keys: {e}"))
}

fn build(
    keys: &KeySet,
    fingerprint: Option<Fingerprint>,
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
        fingerprint,
        keys: keys.clone(),
        issuer,
        verifier: Verifier::new(verifier_config.clone(), keys.public_keys(), clock.clone()),
    })
}

/// `tessera keys …`: rotate, list and prune the signing keys in the
/// configured directory. Prints key ids, algorithms and dates, never key
/// material.
///
/// # Errors
///
/// [`ServerError`] naming what failed.
pub fn command(config: &Config, command: KeysCommand) -> Result<(), ServerError> {
    let alg = algorithm(&config.token_algorithm).ok_or_else(|| {
        ServerError::Message(format!(
            "token_algorithm {:?} must be eddsa or es256",
            config.token_algorithm
        ))
    })?;
    let clock = ServerClock::from_env();
    let now = clock.now();
    let dir = config.keys_path();
    let retention = retention(config);
    let mut store = KeyStore::open_or_create(&dir, alg, retention, now).map_err(key_error)?;
    match command {
        KeysCommand::Rotate => {
            let previous = store.key_set().current().map(|k| k.kid.clone());
            let kid = store.rotate(alg, now).map_err(key_error)?;
            println!("new signing key {kid} ({alg}) in {}", dir.display());
            if let Some(old) = previous {
                println!(
                    "key {old} stopped signing; it stays published until {} (when every token it signed has expired)",
                    (now + retention).to_rfc3339()
                );
            }
            tracing::info!(target: tessera::audit::TARGET, event = "signing_key_rotated", kid = %kid, alg = %alg);
        }
        KeysCommand::List => {
            println!("KID\tALGORITHM\tCREATED\tSTATE\tPUBLISHED UNTIL");
            let set = store.key_set();
            for key in set.keys() {
                let until = set.published_until(key);
                let state = match until {
                    None => "active",
                    Some(end) if now < end => "retired",
                    Some(_) => "expired (prune)",
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    key.kid,
                    key.algorithm,
                    key.created_at.to_rfc3339(),
                    state,
                    until.map_or_else(|| String::from("-"), Timestamp::to_rfc3339)
                );
            }
        }
        KeysCommand::Prune => {
            let removed = store.prune(now).map_err(key_error)?;
            for kid in &removed {
                println!("deleted key {kid}");
            }
            println!("pruned {} key(s)", removed.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use tessera::time::ManualClock;

    use super::*;

    fn config_in(dir: &std::path::Path) -> Config {
        Config {
            keys_dir: Some(dir.join("keys").display().to_string()),
            ..Config::default()
        }
    }

    /// Keys in a fresh directory on a clock that moves only when told.
    struct Fixture {
        _dir: tempfile::TempDir,
        config: Config,
        clock: Arc<ManualClock>,
        keys: SigningKeys,
        sid: SessionHandle,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let config = config_in(dir.path());
            let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
            let keys = SigningKeys::open(&config, clock.clone()).unwrap();
            Self {
                _dir: dir,
                config,
                clock,
                keys,
                sid: SessionHandle::generate().unwrap(),
            }
        }
    }

    /// The key directory of `config` as another process ("tessera keys
    /// …") sees it: its own handle.
    fn elsewhere(config: &Config) -> KeyStore {
        KeyStore::open(config.keys_path(), retention(config)).unwrap()
    }

    #[test]
    fn a_rotation_by_another_process_is_picked_up_at_the_next_use() {
        let Fixture {
            _dir,
            config,
            clock,
            keys,
            sid,
        } = Fixture::new();
        let before = keys.issue("alice", &sid).unwrap();

        // "tessera keys rotate" elsewhere.
        let new_kid = elsewhere(&config)
            .rotate(Algorithm::EdDSA, clock.now())
            .unwrap();

        let after = keys.issue("alice", &sid).unwrap();
        assert_eq!(after.kid(), &new_kid, "signs with the new key at once");
        assert_ne!(before.kid(), after.kid());
        assert_eq!(keys.jwks().keys.len(), 2, "old key still published");
        keys.verify(before.as_str()).unwrap();
        keys.verify(after.as_str()).unwrap();

        // After the retention the old key leaves the JWKS.
        clock.advance(retention(&config));
        assert_eq!(keys.jwks().keys.len(), 1);
    }

    #[test]
    fn verifying_rereads_the_directory_for_an_unknown_kid_and_once_a_second() {
        let Fixture {
            _dir,
            config,
            clock,
            keys,
            sid,
        } = Fixture::new();
        let old = keys.issue("alice", &sid).unwrap();

        // Another instance rotates and signs with the new key; the clock
        // stands still, so only the unknown kid can make this one look.
        let other = SigningKeys::open(&config, clock.clone()).unwrap();
        elsewhere(&config)
            .rotate(Algorithm::EdDSA, clock.now())
            .unwrap();
        let new = other.issue("alice", &sid).unwrap();
        assert_ne!(new.kid(), old.kid());
        assert_eq!(keys.verify(new.as_str()).unwrap().claims.sub, "alice");

        // The old key is deleted on disk (say it leaked). Within the
        // second the loaded set still holds it — verifying reads no file
        // per token — and one interval later it is refused.
        elsewhere(&config).remove(old.kid()).unwrap();
        keys.verify(old.as_str()).unwrap();
        clock.advance(RECHECK_INTERVAL);
        assert!(matches!(
            keys.verify(old.as_str()),
            Err(VerifyError::UnknownKid)
        ));
        keys.verify(new.as_str()).unwrap();
    }

    #[test]
    fn memory_store_keys_need_no_directory() {
        let config = Config {
            store: "memory://".into(),
            ..Config::default()
        };
        let keys = SigningKeys::open(&config, Arc::new(tessera::time::SystemClock)).unwrap();
        assert!(keys.inner.dir.is_none());
        assert_eq!(keys.jwks().keys.len(), 1);
    }
}
