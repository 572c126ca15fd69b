//! The in-memory [`KeySet`] of an issuer with its rotation rules, and the
//! default lifetimes. One key's algorithm, id and material are in
//! `crate::key`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera::time::Timestamp;

use crate::error::KeyError;
use crate::jwks::{Jwk, Jwks, PublicEntry, PublicKeySet};
use crate::key::{Algorithm, Kid, PrivateKey};

/// Default access-token lifetime: 10 minutes. Short, because an issued
/// access token cannot be recalled (see the crate docs on revocation).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Default clock-skew leeway of the verifier: 30 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Default time a retired key stays published: the default token lifetime
/// plus the default leeway, so every token it signed has expired everywhere
/// before verifiers forget the key.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(10 * 60 + 30);

/// What is known about one key: its id, algorithm and life cycle. This is
/// also one entry of the key store's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key id, sent in each token header.
    pub kid: Kid,
    /// The one algorithm this key signs and verifies with.
    pub algorithm: Algorithm,
    /// When the key was generated (milliseconds since the epoch).
    pub created_at: Timestamp,
    /// When the key stopped signing (milliseconds since the epoch); `None`
    /// while it is the active signing key.
    pub retired_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub(crate) info: KeyInfo,
    pub(crate) private: PrivateKey,
}

/// The signing keys of an issuer: at most one active key that signs, plus
/// retired keys that are still published until every token they signed has
/// expired.
///
/// [`KeySet::rotate`] adds a new active key and retires the previous one.
/// A retired key stays in [`KeySet::jwks`] and [`KeySet::public_keys`] for
/// [`KeySet::retention`] after its retirement (token lifetime + leeway), and
/// is then dropped. Use [`KeyStore`](crate::KeyStore) to keep a key set on
/// disk.
///
/// ```
/// use tessera::time::Timestamp;
/// use tessera_jwt::{Algorithm, KeySet};
///
/// let t0 = Timestamp::from_millis(1_700_000_000_000);
/// let mut keys = KeySet::generate(Algorithm::EdDSA, t0)?;
/// let first = keys.current().ok_or("no active key")?.kid.clone();
/// let second = keys.rotate(Algorithm::EdDSA, t0)?;
/// assert_eq!(keys.current().ok_or("no active key")?.kid, second);
/// // The retired key is still published, so tokens it signed still verify.
/// assert_eq!(keys.jwks(t0).keys.len(), 2);
/// // After the retention period it is gone.
/// let later = t0 + keys.retention();
/// assert_eq!(keys.jwks(later).keys.len(), 1);
/// assert_eq!(keys.prune(later), vec![first]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeySet {
    entries: Vec<KeyEntry>,
    retention: Duration,
}

impl KeySet {
    /// An empty key set whose retired keys stay published for `retention`.
    /// `retention` must be at least the longest token lifetime an
    /// [`Issuer`](crate::Issuer) uses with this set (enforced there).
    pub fn new(retention: Duration) -> Self {
        Self {
            entries: Vec::new(),
            retention,
        }
    }

    /// A key set with one fresh active key and [`DEFAULT_RETENTION`].
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] if the OS CSPRNG fails.
    pub fn generate(alg: Algorithm, now: Timestamp) -> Result<Self, KeyError> {
        let mut set = Self::new(DEFAULT_RETENTION);
        set.rotate(alg, now)?;
        Ok(set)
    }

    /// How long a retired key stays published.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Adds a freshly generated active key of algorithm `alg` and retires
    /// the previous active key (it stops signing now but stays published for
    /// [`KeySet::retention`]). Returns the new key's id.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] if the OS CSPRNG fails; the set is unchanged.
    pub fn rotate(&mut self, alg: Algorithm, now: Timestamp) -> Result<Kid, KeyError> {
        let private = PrivateKey::generate(alg)?;
        let kid = Kid::generate()?;
        self.install(
            KeyEntry {
                info: KeyInfo {
                    kid: kid.clone(),
                    algorithm: alg,
                    created_at: now,
                    retired_at: None,
                },
                private,
            },
            now,
        );
        Ok(kid)
    }

    /// Retires the active key (if any) at `now` and makes `entry` active.
    pub(crate) fn install(&mut self, entry: KeyEntry, now: Timestamp) {
        for e in &mut self.entries {
            if e.info.retired_at.is_none() {
                e.info.retired_at = Some(now);
            }
        }
        self.entries.push(entry);
    }

    pub(crate) fn from_entries(entries: Vec<KeyEntry>, retention: Duration) -> Self {
        Self { entries, retention }
    }

    pub(crate) fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The active signing key, if there is one.
    pub fn current(&self) -> Option<&KeyInfo> {
        self.current_entry().map(|e| &e.info)
    }

    pub(crate) fn current_entry(&self) -> Option<&KeyEntry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.info.retired_at.is_none())
    }

    /// Every key in the set, oldest first, including retired keys whose
    /// retention is over but that have not been pruned yet.
    pub fn keys(&self) -> impl Iterator<Item = &KeyInfo> {
        self.entries.iter().map(|e| &e.info)
    }

    /// The end of a key's publication: `retired_at + retention`, or `None`
    /// while it is active.
    pub fn published_until(&self, info: &KeyInfo) -> Option<Timestamp> {
        info.retired_at.map(|r| r + self.retention)
    }

    /// Whether a key is still published (and accepted) at `now`.
    pub fn is_published(&self, info: &KeyInfo, now: Timestamp) -> bool {
        self.published_until(info).is_none_or(|end| now < end)
    }

    /// Drops the keys whose publication ended at or before `now`; returns
    /// their ids.
    pub fn prune(&mut self, now: Timestamp) -> Vec<Kid> {
        let retention = self.retention;
        let mut removed = Vec::new();
        self.entries.retain(|e| {
            let keep = e.info.retired_at.is_none_or(|r| now < r + retention);
            if !keep {
                removed.push(e.info.kid.clone());
            }
            keep
        });
        removed
    }

    /// Removes a key at once, whatever its state: for a key that is known or
    /// suspected to be compromised. Tokens it signed stop verifying
    /// immediately. Returns whether the key was present. If it was the
    /// active key, the set has no signing key until the next
    /// [`KeySet::rotate`].
    pub fn remove(&mut self, kid: &Kid) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| &e.info.kid != kid);
        self.entries.len() != before
    }

    /// The RFC 7517 JWK Set of the keys published at `now`: public members
    /// only, never private material.
    pub fn jwks(&self, now: Timestamp) -> Jwks {
        Jwks {
            keys: self
                .entries
                .iter()
                .filter(|e| self.is_published(&e.info, now))
                .map(|e| Jwk::of_public_key(&e.private.public(), &e.info.kid))
                .collect(),
        }
    }

    /// The public keys for a local [`Verifier`](crate::Verifier), each
    /// with its publication window, so a retired key stops verifying at
    /// the same moment it leaves the JWKS.
    pub fn public_keys(&self) -> PublicKeySet {
        PublicKeySet::from_parts(
            self.entries
                .iter()
                .map(|e| PublicEntry {
                    kid: e.info.kid.clone(),
                    key: e.private.public(),
                    retired_at: e.info.retired_at,
                    published_until: self.published_until(&e.info),
                })
                .collect(),
        )
    }
}
