//! One signing key: its algorithm, its key id, and its private and public
//! halves. The set of keys an issuer holds, with its rotation rules, is
//! [`KeySet`](crate::KeySet).
//!
//! Every key is bound to exactly one algorithm when it is made; the
//! verifier takes the algorithm from the key named by `kid`, never from the
//! token alone (RFC 8725 §3.1). Private keys are only ever shown as
//! `<redacted>` in `Debug` output and are zeroed when dropped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// A JWS signature algorithm tessera signs and verifies with.
///
/// Only asymmetric algorithms exist here: there is no `none` and no HMAC
/// variant, so neither can be configured by mistake (RFC 8725 §3.1-3.2).
///
/// ```
/// use tessera_jwt::Algorithm;
/// assert_eq!(Algorithm::default(), Algorithm::EdDSA);
/// assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::Es256));
/// assert_eq!(Algorithm::from_name("none"), None);
/// assert_eq!(Algorithm::from_name("HS256"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Algorithm {
    /// EdDSA over Ed25519 (RFC 8037). The default: small keys, fast,
    /// deterministic, no nonce to get wrong.
    #[default]
    #[serde(rename = "EdDSA")]
    EdDSA,
    /// ECDSA over P-256 with SHA-256 (RFC 7518 §3.4), for clients whose
    /// libraries lack EdDSA.
    #[serde(rename = "ES256")]
    Es256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }

    /// Parses a JOSE `alg` name. Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Algorithm::EdDSA),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// Length of a raw signature: 64 bytes for both (Ed25519 `R||S`,
    /// ECDSA `r||s` as fixed-width big-endian integers, RFC 7518 §3.4).
    pub(crate) const fn signature_len(self) -> usize {
        64
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key id (`kid`): 128 random bits, base64url.
///
/// Parsed kids are limited to 1-64 characters of `[A-Za-z0-9_-]`, so a kid
/// can safely name a file and never needs escaping in logs.
///
/// ```
/// use tessera_jwt::Kid;
/// let kid = Kid::generate()?;
/// assert_eq!(Kid::parse(kid.as_str()), Some(kid));
/// assert_eq!(Kid::parse("../../etc/passwd"), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Kid(String);

impl Kid {
    const MAX_LEN: usize = 64;

    /// A new random key id.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] if the OS CSPRNG fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| KeyError::Random)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Validates a key id from input (a token header, a manifest, a JWKS).
    pub fn parse(input: &str) -> Option<Self> {
        let ok = !input.is_empty()
            && input.len() <= Self::MAX_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(input.to_owned()))
    }

    /// The key id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Kid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Kid::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid kid"))
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Private key material. Never printed; zeroed on drop by the underlying
/// crates (`ZeroizeOnDrop`).
#[derive(Clone)]
pub(crate) enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PrivateKey {
    /// A fresh key from the OS CSPRNG.
    pub(crate) fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        match alg {
            Algorithm::EdDSA => {
                getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
                Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            Algorithm::Es256 => {
                // A uniformly random 32-byte string is a valid P-256 scalar
                // unless it is zero or >= n (probability ~2^-32); draw again
                // in that case rather than reduce, which would bias the key.
                for _ in 0..16 {
                    getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
                    if let Ok(secret) = p256::SecretKey::from_slice(seed.as_ref()) {
                        return Ok(Self::Es256(p256::ecdsa::SigningKey::from(secret)));
                    }
                }
                Err(KeyError::Random)
            }
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Es256(_) => Algorithm::Es256,
        }
    }

    pub(crate) fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            Self::Es256(k) => PublicKey::Es256(*k.verifying_key()),
        }
    }

    /// Raw JWS signature over `msg` (Ed25519 is deterministic; ECDSA uses
    /// RFC 6979 deterministic nonces, so no per-signature randomness can
    /// leak the key).
    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                // Low-S form, so each ES256 token has one valid signature
                // (the verifier refuses the (r, n - s) twin).
                sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
            }
        }
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), in zeroed-on-drop memory.
    pub(crate) fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        match self {
            Self::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            Self::Es256(k) => p256::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|_| KeyError::Encoding)
    }

    /// Parses PKCS#8 PEM of the given algorithm; a key of another algorithm
    /// is refused.
    pub(crate) fn from_pkcs8_pem(alg: Algorithm, pem: &str) -> Option<Self> {
        match alg {
            Algorithm::EdDSA => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .ok()
                .map(Self::Ed25519),
            Algorithm::Es256 => p256::SecretKey::from_pkcs8_pem(pem)
                .ok()
                .map(|s| Self::Es256(p256::ecdsa::SigningKey::from(s))),
        }
    }
}

/// Public key material, bound to its algorithm by its variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Es256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Es256(_) => Algorithm::Es256,
        }
    }

    /// Verifies a raw JWS signature. Ed25519 uses `verify_strict`, which
    /// also refuses non-canonical and small-order encodings; ES256 requires
    /// low S. Either way a valid token has exactly one valid signature.
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => {
                let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
                    return false;
                };
                let sig = ed25519_dalek::Signature::from_bytes(&bytes);
                k.verify_strict(msg, &sig).is_ok()
            }
            Self::Es256(k) => {
                // `from_slice` refuses r or s of zero or >= n. A high S is
                // refused too: (r, s) and (r, n - s) both verify, and a
                // token must have exactly one accepted spelling.
                let Ok(sig) = p256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                sig.normalize_s().is_none() && k.verify(msg, &sig).is_ok()
            }
        }
    }
}
