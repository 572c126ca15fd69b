//! CSRF protection (docs/design.md, invariant 7): session-bound synchronizer tokens
//! and a Fetch-Metadata / `Origin` check.
//!
//! # Tokens
//!
//! Each session holds a random [`CsrfSecret`] (replaced whenever the session
//! token rotates, so a new session means a new CSRF token — OWASP CSRF Cheat
//! Sheet). Pages do not embed the secret itself but a **masked** form,
//! `base64url(mask ‖ secret ⊕ mask)` with a fresh random mask per render, so
//! the bytes differ on every response and a compression side channel
//! (BREACH) cannot recover the secret. Verification unmasks and compares in
//! constant time, so response timing does not reveal how much of a guess was
//! right.
//!
//! # Origin check
//!
//! [`OriginCheck`] implements the Fetch-Metadata rules of the OWASP CSRF
//! Cheat Sheet and Go 1.25's `CrossOriginProtection`: unsafe requests with
//! `Sec-Fetch-Site: cross-site` are refused; `same-site` is refused unless
//! the request's `Origin` is explicitly trusted (sibling subdomains are not
//! us); without Fetch Metadata, a present `Origin` must match the request's
//! own host or a trusted origin. This check runs on **every** unsafe request,
//! with or without a session, which is what blocks login CSRF: the login
//! form cannot be posted from another site by any browser that sends either
//! header (all current browsers send both).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::random::RandomError;

const SECRET_LEN: usize = 32;
/// Length of a masked token in characters (64 bytes in base64url).
pub const MASKED_LEN: usize = 86;

/// The per-session CSRF secret. Never sent to the client as is.
///
/// Equality is constant-time (`subtle`): comparing secrets must not tell
/// through its timing how many leading bytes matched.
///
/// ```
/// use tessera::csrf::CsrfSecret;
/// let a = CsrfSecret::generate()?;
/// let b = CsrfSecret::generate()?;
/// assert_eq!(a, a.clone());
/// assert_ne!(a, b);
/// # Ok::<(), tessera::error::RandomError>(())
/// ```
#[derive(Clone)]
pub struct CsrfSecret([u8; SECRET_LEN]);

impl PartialEq for CsrfSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for CsrfSecret {}

impl CsrfSecret {
    /// A new secret from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`RandomError`] if the OS CSPRNG fails.
    ///
    /// ```
    /// let secret = tessera::csrf::CsrfSecret::generate()?;
    /// let token = secret.masked_token()?;
    /// assert!(secret.verify(&token));
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = [0u8; SECRET_LEN];
        crate::random::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for stores.
    pub const fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// A token for one render: fresh mask, same secret.
    ///
    /// # Errors
    ///
    /// [`RandomError`] if the OS CSPRNG fails.
    ///
    /// ```
    /// let secret = tessera::csrf::CsrfSecret::generate()?;
    /// assert_ne!(secret.masked_token()?, secret.masked_token()?);
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn masked_token(&self) -> Result<String, RandomError> {
        let mut mask = [0u8; SECRET_LEN];
        crate::random::fill(&mut mask)?;
        let mut out = [0u8; 2 * SECRET_LEN];
        let (head, tail) = out.split_at_mut(SECRET_LEN);
        head.copy_from_slice(&mask);
        for ((slot, s), m) in tail.iter_mut().zip(self.0).zip(mask) {
            *slot = s ^ m;
        }
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Whether `presented` is a masked form of this secret. Constant-time in
    /// the secret; the length and alphabet checks before it depend only on
    /// public input.
    pub fn verify(&self, presented: &str) -> bool {
        if presented.len() != MASKED_LEN {
            return false;
        }
        let mut raw = [0u8; 2 * SECRET_LEN];
        match URL_SAFE_NO_PAD.decode_slice(presented, &mut raw) {
            Ok(n) if n == raw.len() => {}
            _ => return false,
        }
        let (mask, masked) = raw.split_at(SECRET_LEN);
        let mut unmasked = [0u8; SECRET_LEN];
        for ((slot, m), x) in unmasked.iter_mut().zip(mask).zip(masked) {
            *slot = m ^ x;
        }
        unmasked.ct_eq(&self.0).into()
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret(<redacted>)")
    }
}

impl serde::Serialize for CsrfSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for CsrfSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; SECRET_LEN];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut out) {
            Ok(n) if n == SECRET_LEN => Ok(Self(out)),
            _ => Err(serde::de::Error::custom("invalid csrf secret")),
        }
    }
}

/// Whether a method changes state and so needs CSRF protection.
///
/// ```
/// assert!(!tessera::csrf::is_unsafe_method("GET"));
/// assert!(tessera::csrf::is_unsafe_method("DELETE"));
/// ```
pub fn is_unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Why a request was refused by the CSRF guard. All map to 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// `Sec-Fetch-Site: cross-site`.
    #[error("cross-site request refused")]
    CrossSite,
    /// `Sec-Fetch-Site: same-site` from an origin that is not trusted.
    #[error("same-site request from an untrusted origin refused")]
    UntrustedSameSite,
    /// An `Origin` header naming another origin (or `null`).
    #[error("request from a foreign origin refused")]
    ForeignOrigin,
    /// No CSRF token where one is required.
    #[error("missing CSRF token")]
    MissingToken,
    /// A CSRF token that does not belong to this session.
    #[error("invalid CSRF token")]
    InvalidToken,
}

impl CsrfRejection {
    /// Short code for JSON errors and audit events.
    ///
    /// ```
    /// assert_eq!(tessera::csrf::CsrfRejection::CrossSite.as_code(), "cross_site");
    /// ```
    pub const fn as_code(self) -> &'static str {
        match self {
            Self::CrossSite => "cross_site",
            Self::UntrustedSameSite => "untrusted_same_site",
            Self::ForeignOrigin => "foreign_origin",
            Self::MissingToken => "csrf_token_missing",
            Self::InvalidToken => "csrf_token_invalid",
        }
    }
}

/// Fetch-Metadata and `Origin` check for unsafe requests.
///
/// ```
/// use tessera::csrf::{CsrfRejection, OriginCheck};
///
/// let check = OriginCheck::new(["https://admin.example.com"]);
/// let host = Some("app.example.com");
/// // Same origin: fine.
/// assert_eq!(check.check(Some("same-origin"), Some("https://app.example.com"), host), Ok(()));
/// // Another site: refused whatever token it carries.
/// assert_eq!(check.check(Some("cross-site"), Some("https://evil.test"), host),
///            Err(CsrfRejection::CrossSite));
/// // A sibling subdomain is only accepted when trusted.
/// assert_eq!(check.check(Some("same-site"), Some("https://admin.example.com"), host), Ok(()));
/// assert_eq!(check.check(Some("same-site"), Some("https://blog.example.com"), host),
///            Err(CsrfRejection::UntrustedSameSite));
/// // Neither header: the CSRF token decides.
/// assert_eq!(check.check(None, None, host), Ok(()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OriginCheck {
    trusted: Vec<String>,
}

impl OriginCheck {
    /// A check trusting the given extra origins (`scheme://host[:port]`,
    /// compared exactly after lowercasing and removing a trailing slash).
    pub fn new<I, S>(trusted: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            trusted: trusted
                .into_iter()
                .map(|s| normalize_origin(s.as_ref()))
                .collect(),
        }
    }

    /// The trusted origins.
    pub fn trusted(&self) -> &[String] {
        &self.trusted
    }

    fn is_trusted(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        self.trusted.contains(&origin)
    }

    /// Checks an unsafe request given its `Sec-Fetch-Site`, `Origin` and
    /// `Host` headers. Call it only for unsafe methods.
    ///
    /// # Errors
    ///
    /// The [`CsrfRejection`] that applies.
    pub fn check(
        &self,
        sec_fetch_site: Option<&str>,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), CsrfRejection> {
        // Fetch Metadata first: when the browser says where the request
        // comes from, that is the most reliable signal.
        if let Some(site) = sec_fetch_site {
            return match site.trim().to_ascii_lowercase().as_str() {
                "same-origin" | "none" => Ok(()),
                "same-site" => match origin {
                    Some(o) if self.is_trusted(o) => Ok(()),
                    _ => Err(CsrfRejection::UntrustedSameSite),
                },
                // `cross-site` and anything unknown: a browser that sends the
                // header but not a value we know is not to be trusted.
                _ => match origin {
                    Some(o) if self.is_trusted(o) => Ok(()),
                    _ => Err(CsrfRejection::CrossSite),
                },
            };
        }
        // Fallback for browsers without Fetch Metadata (mandatory per the
        // OWASP CSRF Cheat Sheet): the Origin's host must be ours.
        match origin {
            None => Ok(()),
            Some(o) if self.is_trusted(o) => Ok(()),
            Some(o) => {
                let Some(origin_host) = origin_host(o) else {
                    // `null` (sandboxed or privacy-redirected) and junk.
                    return Err(CsrfRejection::ForeignOrigin);
                };
                match host {
                    Some(h) if origin_host.eq_ignore_ascii_case(h.trim()) => Ok(()),
                    _ => Err(CsrfRejection::ForeignOrigin),
                }
            }
        }
    }
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `host[:port]` of a serialized origin `scheme://host[:port]`.
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let host = rest.trim_end_matches('/');
    (!host.is_empty() && !host.contains('/')).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_of_another_session_is_refused() {
        let a = CsrfSecret::generate().unwrap();
        let b = CsrfSecret::generate().unwrap();
        assert!(!b.verify(&a.masked_token().unwrap()));
    }

    #[test]
    fn tampered_or_junk_tokens_are_refused() {
        let a = CsrfSecret::generate().unwrap();
        let token = a.masked_token().unwrap();
        let mut bytes = token.into_bytes();
        bytes[50] = if bytes[50] == b'A' { b'B' } else { b'A' };
        assert!(!a.verify(&String::from_utf8(bytes).unwrap()));
        assert!(!a.verify(""));
        assert!(!a.verify(&"A".repeat(MASKED_LEN)));
        assert!(!a.verify(&"!".repeat(MASKED_LEN)));
    }

    #[test]
    fn foreign_origin_without_fetch_metadata_is_refused() {
        let check = OriginCheck::default();
        assert_eq!(
            check.check(None, Some("http://evil.test"), Some("app.test")),
            Err(CsrfRejection::ForeignOrigin)
        );
        assert_eq!(
            check.check(None, Some("null"), Some("app.test")),
            Err(CsrfRejection::ForeignOrigin)
        );
        assert_eq!(
            check.check(None, Some("http://app.test:8080"), Some("app.test:8080")),
            Ok(())
        );
        // A different port is a different origin.
        assert_eq!(
            check.check(None, Some("http://app.test:9090"), Some("app.test:8080")),
            Err(CsrfRejection::ForeignOrigin)
        );
    }

    #[test]
    fn cross_site_is_refused_even_with_a_matching_host() {
        let check = OriginCheck::default();
        assert_eq!(
            check.check(
                Some("cross-site"),
                Some("http://app.test"),
                Some("app.test")
            ),
            Err(CsrfRejection::CrossSite)
        );
    }
}
