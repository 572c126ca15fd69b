//! A directory-backed key store.
//!
//! Layout (the directory is mode 0700, every file 0600):
//!
//! ```text
//! keys/
//!   manifest.json     {"version":1,"keys":[{"kid","algorithm","created_at","retired_at"}]}
//!   <kid>.pem         PKCS#8 private key, one per manifest entry
//!   .lock             advisory lock serialising changes between processes
//! ```
//!
//! Files are created with mode 0600 from the first byte (`O_CREAT|O_EXCL`
//! with the mode), never created wider and narrowed later. On opening, a
//! directory or file that group or others can access, or a symlink, is
//! refused rather than fixed: the key may already have leaked (ASVS 5.0
//! V13.3, OWASP Key Management Cheat Sheet). Changes are crash-safe: a new
//! key file is written and synced before the manifest that names it; the
//! manifest is replaced by an atomic rename; a pruned key leaves the
//! manifest before its file is deleted.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera::time::Timestamp;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::key::{Algorithm, Kid, PrivateKey};
use crate::keys::{KeyEntry, KeyInfo, KeySet};

const MANIFEST: &str = "manifest.json";
const MANIFEST_TMP: &str = "manifest.json.tmp";
const LOCK: &str = ".lock";
const MANIFEST_VERSION: u32 = 1;
/// Bound on what is read from disk: a PKCS#8 PEM key is under 300 bytes.
const MAX_KEY_FILE: u64 = 16 * 1024;
const MAX_MANIFEST: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    keys: Vec<KeyInfo>,
}

/// Signing keys kept in a directory, with rotation and pruning.
///
/// ```
/// use tessera::time::Timestamp;
/// use tessera_jwt::{Algorithm, DEFAULT_RETENTION, KeyStore};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("keys");
/// let t0 = Timestamp::from_millis(1_700_000_000_000);
///
/// let mut store = KeyStore::open_or_create(&path, Algorithm::EdDSA, DEFAULT_RETENTION, t0)?;
/// let old = store.key_set().current().ok_or("no active key")?.kid.clone();
/// let new = store.rotate(Algorithm::EdDSA, t0)?;
///
/// // Another process (the server) sees the rotation.
/// let reopened = KeyStore::open(&path, DEFAULT_RETENTION)?;
/// assert_eq!(reopened.key_set().current().ok_or("no active key")?.kid, new);
/// assert_eq!(reopened.key_set().jwks(t0).keys.len(), 2);
///
/// // Once every token of the old key has expired, pruning deletes it.
/// assert_eq!(store.prune(t0 + DEFAULT_RETENTION)?, vec![old]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    set: KeySet,
}

impl KeyStore {
    /// Opens an existing key store.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] if there is no manifest;
    /// [`KeyError::InsecurePermissions`], [`KeyError::Manifest`],
    /// [`KeyError::InvalidKeyFile`] or [`KeyError::Io`] otherwise.
    pub fn open(dir: impl AsRef<Path>, retention: Duration) -> Result<Self, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        check_private(&dir, true)?;
        let lock = lock_file(&dir)?;
        lock.lock_shared()
            .map_err(|e| KeyError::io("lock", &dir.join(LOCK), e))?;
        let set = load(&dir, retention)?;
        Ok(Self { dir, set })
    }

    /// Opens the key store at `dir`, creating it (directory 0700) with one
    /// fresh key of algorithm `alg` if it does not exist yet.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::open`]; [`KeyError::Random`] if key generation fails.
    pub fn open_or_create(
        dir: impl AsRef<Path>,
        alg: Algorithm,
        retention: Duration,
        now: Timestamp,
    ) -> Result<Self, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| KeyError::io("create directory", &dir, e))?;
        }
        check_private(&dir, true)?;
        let lock = lock_file(&dir)?;
        lock.lock()
            .map_err(|e| KeyError::io("lock", &dir.join(LOCK), e))?;
        if !dir.join(MANIFEST).exists() {
            let mut set = KeySet::new(retention);
            let entry = new_entry(alg, now)?;
            write_key(&dir, &entry)?;
            set.install(entry, now);
            write_manifest(&dir, &set)?;
            tracing::info!(kid = %set.current().map(|k| k.kid.as_str()).unwrap_or(""), alg = %alg, "created signing key store");
        }
        let set = load(&dir, retention)?;
        Ok(Self { dir, set })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keys as last loaded or changed by this handle.
    pub fn key_set(&self) -> &KeySet {
        &self.set
    }

    /// Re-reads the directory (e.g. after `tessera keys rotate` ran in
    /// another process).
    ///
    /// # Errors
    ///
    /// As [`KeyStore::open`]; on error the loaded keys are unchanged.
    pub fn reload(&mut self) -> Result<(), KeyError> {
        let lock = lock_file(&self.dir)?;
        lock.lock_shared()
            .map_err(|e| KeyError::io("lock", &self.dir.join(LOCK), e))?;
        self.set = load(&self.dir, self.set.retention())?;
        Ok(())
    }

    /// Generates a new active key, retires the previous one (it stops
    /// signing now and stays published for the retention), and saves both.
    /// Returns the new key id.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] or [`KeyError::Io`]; on error the manifest on
    /// disk is unchanged.
    pub fn rotate(&mut self, alg: Algorithm, now: Timestamp) -> Result<Kid, KeyError> {
        let lock = lock_file(&self.dir)?;
        lock.lock()
            .map_err(|e| KeyError::io("lock", &self.dir.join(LOCK), e))?;
        // Start from the directory, not from memory, so a rotation made by
        // another process in the meantime is kept.
        let mut set = load(&self.dir, self.set.retention())?;
        let entry = new_entry(alg, now)?;
        let kid = entry.info.kid.clone();
        write_key(&self.dir, &entry)?;
        set.install(entry, now);
        write_manifest(&self.dir, &set)?;
        tracing::info!(kid = %kid, alg = %alg, "rotated signing key");
        self.set = set;
        Ok(kid)
    }

    /// Removes the keys whose publication is over at `now` from the
    /// manifest, then deletes their files. Returns their ids.
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`]; a key file that cannot be deleted after the
    /// manifest was updated is left behind (it is no longer used).
    pub fn prune(&mut self, now: Timestamp) -> Result<Vec<Kid>, KeyError> {
        let lock = lock_file(&self.dir)?;
        lock.lock()
            .map_err(|e| KeyError::io("lock", &self.dir.join(LOCK), e))?;
        let mut set = load(&self.dir, self.set.retention())?;
        let removed = set.prune(now);
        if removed.is_empty() {
            self.set = set;
            return Ok(removed);
        }
        write_manifest(&self.dir, &set)?;
        self.set = set;
        for kid in &removed {
            let path = key_path(&self.dir, kid);
            fs::remove_file(&path).map_err(|e| KeyError::io("delete", &path, e))?;
            tracing::info!(kid = %kid, "deleted expired signing key");
        }
        Ok(removed)
    }

    /// Removes one key at once, whatever its state, and deletes its file:
    /// for a compromised key. Tokens it signed stop verifying at the next
    /// reload. Returns whether it was present.
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`].
    pub fn remove(&mut self, kid: &Kid) -> Result<bool, KeyError> {
        let lock = lock_file(&self.dir)?;
        lock.lock()
            .map_err(|e| KeyError::io("lock", &self.dir.join(LOCK), e))?;
        let mut set = load(&self.dir, self.set.retention())?;
        let present = set.remove(kid);
        if present {
            write_manifest(&self.dir, &set)?;
            let path = key_path(&self.dir, kid);
            fs::remove_file(&path).map_err(|e| KeyError::io("delete", &path, e))?;
            tracing::warn!(kid = %kid, "removed signing key before its expiry");
        }
        self.set = set;
        Ok(present)
    }
}

fn new_entry(alg: Algorithm, now: Timestamp) -> Result<KeyEntry, KeyError> {
    Ok(KeyEntry {
        info: KeyInfo {
            kid: Kid::generate()?,
            algorithm: alg,
            created_at: now,
            retired_at: None,
        },
        private: PrivateKey::generate(alg)?,
    })
}

fn key_path(dir: &Path, kid: &Kid) -> PathBuf {
    // `Kid` admits only [A-Za-z0-9_-], so this cannot leave the directory.
    dir.join(format!("{}.pem", kid.as_str()))
}

/// Refuses symlinks and anything group or others can access.
fn check_private(path: &Path, is_dir: bool) -> Result<(), KeyError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_dir => {
            return Err(KeyError::NotFound(path.to_path_buf()));
        }
        Err(e) => return Err(KeyError::io("inspect", path, e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    let right_kind = if is_dir {
        meta.is_dir()
    } else {
        meta.is_file()
    };
    if !right_kind || mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates a file that never exists with wider permissions than 0600.
fn create_private(path: &Path) -> Result<File, KeyError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KeyError::io("create", path, e))
}

fn lock_file(dir: &Path) -> Result<File, KeyError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| KeyError::io("open", &path, e))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyError::io("sync", dir, e))
}

fn write_key(dir: &Path, entry: &KeyEntry) -> Result<(), KeyError> {
    let pem = entry.private.to_pkcs8_pem()?;
    let path = key_path(dir, &entry.info.kid);
    let mut file = create_private(&path)?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::io("write", &path, e))?;
    sync_dir(dir)
}

fn write_manifest(dir: &Path, set: &KeySet) -> Result<(), KeyError> {
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        keys: set.keys().cloned().collect(),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| KeyError::Manifest(e.to_string()))?;
    let tmp = dir.join(MANIFEST_TMP);
    // A leftover from a crash could have any mode; never reuse it.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(KeyError::io("delete", &tmp, e)),
    }
    let mut file = create_private(&tmp)?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::io("write", &tmp, e))?;
    let path = dir.join(MANIFEST);
    fs::rename(&tmp, &path).map_err(|e| KeyError::io("rename", &path, e))?;
    sync_dir(dir)
}

fn read_private(path: &Path, max: u64) -> Result<Zeroizing<String>, KeyError> {
    check_private(path, false)?;
    let file = File::open(path).map_err(|e| KeyError::io("open", path, e))?;
    let mut text = Zeroizing::new(String::new());
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| KeyError::io("read", path, e))?;
    if text.len() as u64 > max {
        return Err(KeyError::io(
            "read",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large"),
        ));
    }
    Ok(text)
}

fn load(dir: &Path, retention: Duration) -> Result<KeySet, KeyError> {
    check_private(dir, true)?;
    let manifest_path = dir.join(MANIFEST);
    if !manifest_path.exists() {
        return Err(KeyError::NotFound(dir.to_path_buf()));
    }
    let text = read_private(&manifest_path, MAX_MANIFEST)?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| KeyError::Manifest(e.to_string()))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(KeyError::Manifest(format!(
            "unsupported version {}",
            manifest.version
        )));
    }
    let active = manifest
        .keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .count();
    if active > 1 {
        return Err(KeyError::Manifest("more than one active key".into()));
    }
    let mut entries: Vec<KeyEntry> = Vec::with_capacity(manifest.keys.len());
    for info in manifest.keys {
        if entries.iter().any(|e| e.info.kid == info.kid) {
            return Err(KeyError::Manifest(format!("duplicate kid {}", info.kid)));
        }
        let pem = read_private(&key_path(dir, &info.kid), MAX_KEY_FILE)?;
        let private = PrivateKey::from_pkcs8_pem(info.algorithm, &pem).ok_or_else(|| {
            KeyError::InvalidKeyFile {
                kid: info.kid.as_str().to_owned(),
            }
        })?;
        entries.push(KeyEntry { info, private });
    }
    Ok(KeySet::from_entries(entries, retention))
}
