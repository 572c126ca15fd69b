//! Setting values that other modules share with the configuration: leaf
//! types and constants, so that the configuration depends on no module
//! above it.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The environment variable holding the key-encryption key of signing keys
/// kept in a shared store (base64 of 32 bytes; see `crate::keys`).
pub const KEK_ENV: &str = "TESSERA_KEY_ENCRYPTION_KEY";

/// Default `login_limiter_memory`: 16 MiB of sign-in failure counters
/// when they live in this process.
pub const DEFAULT_LOGIN_LIMITER_MEMORY: u64 = 16 * 1024 * 1024;

/// Shortest accepted `cache_max_staleness`.
pub const MIN_STALENESS: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest accepted `cache_max_staleness`: it is how long a revocation may
/// go unseen when its invalidation is lost, so it must stay short.
pub const MAX_STALENESS: std::time::Duration = std::time::Duration::from_secs(600);
/// Smallest accepted `cache_max_bytes`.
pub const MIN_BYTES: u64 = 64 * 1024;

/// The `cache` setting.
///
/// ```
/// use tessera_server::cache::CacheMode;
/// assert_eq!(CacheMode::default(), CacheMode::Off);
/// assert!(CacheMode::On.is_on());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CacheMode {
    /// Every load asks the store (default).
    #[default]
    Off,
    /// Verified sessions are cached in this process.
    On,
}

impl CacheMode {
    /// True for [`CacheMode::On`].
    pub fn is_on(self) -> bool {
        self == Self::On
    }
}

/// The bearer token of `/metrics` (`metrics_token`). Its `Debug` never
/// shows the value.
///
/// ```
/// use tessera_server::ops::MetricsToken;
/// let token = MetricsToken::new("0123456789abcdef0123456789abcdef");
/// assert!(token.matches("0123456789abcdef0123456789abcdef"));
/// assert!(!token.matches("0123456789abcdef0123456789abcdeX"));
/// assert_eq!(format!("{token:?}"), "MetricsToken(***)");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// Shortest accepted token (a token is a password for the metrics).
    pub const MIN_LEN: usize = 32;

    /// A token with this value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// True when it has at least [`Self::MIN_LEN`] bytes.
    pub fn is_long_enough(&self) -> bool {
        self.0.len() >= Self::MIN_LEN
    }

    /// True for an empty value, which means "no token" (so that
    /// `TESSERA_METRICS_TOKEN=` can switch a file's token off).
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares `presented` with the token in constant time (over SHA-256
    /// digests, so neither content nor length leaks through timing).
    pub fn matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        bool::from(expected.ct_eq(&presented))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}
