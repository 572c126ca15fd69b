//! JSON Web Key Sets (RFC 7517): publishing public keys and reading them
//! back into a [`PublicKeySet`] for verifiers in other services.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::FromEncodedPoint as _;
use serde::{Deserialize, Serialize};
use tessera::time::Timestamp;

use crate::error::KeyError;
use crate::key::{Algorithm, Kid, PublicKey};

/// A JWK Set: the body of `GET /.well-known/jwks.json`.
///
/// Serve it with a short `Cache-Control: max-age` (a few minutes, well under
/// the key retention), so verifiers that cache it see a new key soon after a
/// rotation.
///
/// ```
/// use tessera::time::Timestamp;
/// use tessera_jwt::{Algorithm, KeySet};
///
/// let now = Timestamp::from_millis(1_700_000_000_000);
/// let keys = KeySet::generate(Algorithm::EdDSA, now)?;
/// let json = serde_json::to_value(keys.jwks(now))?;
/// let jwk = &json["keys"][0];
/// assert_eq!(jwk["kty"], "OKP");
/// assert_eq!(jwk["crv"], "Ed25519");
/// assert_eq!(jwk["alg"], "EdDSA");
/// assert_eq!(jwk["use"], "sig");
/// assert!(jwk.get("d").is_none()); // never private material
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One public JSON Web Key (RFC 7517 §4, RFC 7518 §6.2, RFC 8037 §2).
///
/// The type has no field for private members: a [`Jwk`] built by tessera
/// cannot carry a private key, and [`PublicKeySet::from_jwks`] refuses a set
/// in which someone published one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    pub crv: String,
    /// The public key (Ed25519) or the x coordinate (P-256), base64url.
    pub x: String,
    /// The y coordinate (P-256 only), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key id.
    pub kid: String,
    /// The one algorithm the key is for. Required when reading: a key
    /// without `alg` could be tried with any algorithm (RFC 8725 §3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; tessera publishes `sig` and ignores keys for other uses.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JWK as read from a foreign JWKS: every member optional (RSA and
/// symmetric keys lack `crv` and `x`), plus markers for private members.
#[derive(Deserialize)]
struct WireJwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    /// Private members: `d` (EC, OKP, RSA; RFC 7518 §6.2.2, RFC 8037 §2),
    /// `k` (symmetric; RFC 7518 §6.4.1), `p` (RSA; RFC 7518 §6.3.2.2).
    #[serde(default)]
    d: Option<PrivateMember>,
    #[serde(default)]
    k: Option<PrivateMember>,
    #[serde(default)]
    p: Option<PrivateMember>,
}

#[derive(Deserialize)]
struct WireJwks {
    keys: Vec<WireJwk>,
}

impl From<&Jwk> for WireJwk {
    fn from(j: &Jwk) -> Self {
        Self {
            kty: j.kty.clone(),
            crv: Some(j.crv.clone()),
            x: Some(j.x.clone()),
            y: j.y.clone(),
            kid: Some(j.kid.clone()),
            alg: j.alg.clone(),
            use_: j.use_.clone(),
            d: None,
            k: None,
            p: None,
        }
    }
}

/// Marks that a JWK had a `d` member, without keeping (or printing) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PrivateMember;

impl<'de> Deserialize<'de> for PrivateMember {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(PrivateMember)
    }
}

impl Jwk {
    /// The RFC 7517 JWK of a public key (public members only).
    pub(crate) fn of_public_key(key: &PublicKey, kid: &Kid) -> Self {
        match key {
            PublicKey::Ed25519(k) => Self::okp_ed25519(URL_SAFE_NO_PAD.encode(k.as_bytes()), kid),
            PublicKey::Es256(k) => {
                let point = k.to_encoded_point(false);
                let x = point.x().map(|x| URL_SAFE_NO_PAD.encode(x));
                let y = point.y().map(|y| URL_SAFE_NO_PAD.encode(y));
                // An uncompressed SEC1 point of a valid key always has both
                // coordinates; the identity point cannot be a public key.
                Self::ec_p256(x.unwrap_or_default(), y.unwrap_or_default(), kid)
            }
        }
    }

    fn okp_ed25519(x: String, kid: &Kid) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            y: None,
            kid: kid.as_str().into(),
            alg: Some(Algorithm::EdDSA.name().into()),
            use_: Some("sig".into()),
        }
    }

    fn ec_p256(x: String, y: String, kid: &Kid) -> Self {
        Self {
            kty: "EC".into(),
            crv: "P-256".into(),
            x,
            y: Some(y),
            kid: kid.as_str().into(),
            alg: Some(Algorithm::Es256.name().into()),
            use_: Some("sig".into()),
        }
    }
}

impl WireJwk {
    /// Decodes the key; `Ok(None)` for a key this crate does not use
    /// (another use, type or algorithm), so a JWKS may carry other keys.
    fn decode(&self) -> Result<Option<(Kid, PublicKey)>, KeyError> {
        if self.d.is_some() || self.k.is_some() || self.p.is_some() {
            return Err(KeyError::Jwks(format!(
                "key {} carries private material",
                self.kid_for_log()
            )));
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let ours = matches!(
            (self.kty.as_str(), self.crv.as_deref()),
            ("OKP", Some("Ed25519")) | ("EC", Some("P-256"))
        );
        let alg = match self.alg.as_deref() {
            Some(name) => match Algorithm::from_name(name) {
                Some(alg) => alg,
                None => return Ok(None),
            },
            // A key we could use but with no `alg` could be tried with any
            // algorithm (RFC 8725 §3.1): refuse rather than guess.
            None if ours => {
                return Err(KeyError::Jwks(format!(
                    "key {} has no alg",
                    self.kid_for_log()
                )));
            }
            None => return Ok(None),
        };
        let kid = self
            .kid
            .as_deref()
            .and_then(Kid::parse)
            .ok_or_else(|| KeyError::Jwks(format!("invalid kid {}", self.kid_for_log())))?;
        let bad = |what: &str| KeyError::Jwks(format!("key {kid}: {what}"));
        let key = match alg {
            Algorithm::EdDSA => {
                if self.kty != "OKP" || self.crv.as_deref() != Some("Ed25519") || self.y.is_some() {
                    return Err(bad("EdDSA key must be kty OKP, crv Ed25519"));
                }
                let x = self
                    .x
                    .as_deref()
                    .and_then(decode_32)
                    .ok_or_else(|| bad("x is not 32 bytes of base64url"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| bad("not an Ed25519 point"))?;
                // A small-order key would verify signatures on many messages.
                if key.is_weak() {
                    return Err(bad("weak Ed25519 key"));
                }
                PublicKey::Ed25519(key)
            }
            Algorithm::Es256 => {
                if self.kty != "EC" || self.crv.as_deref() != Some("P-256") {
                    return Err(bad("ES256 key must be kty EC, crv P-256"));
                }
                let x = self
                    .x
                    .as_deref()
                    .and_then(decode_32)
                    .ok_or_else(|| bad("x is not 32 bytes of base64url"))?;
                let y = self
                    .y
                    .as_deref()
                    .and_then(decode_32)
                    .ok_or_else(|| bad("y is not 32 bytes of base64url"))?;
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                // Refuses points not on the curve (invalid-curve attacks).
                let affine = Option::<p256::AffinePoint>::from(
                    p256::AffinePoint::from_encoded_point(&point),
                )
                .ok_or_else(|| bad("not a P-256 point"))?;
                let key = p256::ecdsa::VerifyingKey::from_affine(affine)
                    .map_err(|_| bad("not a P-256 public key"))?;
                PublicKey::Es256(key)
            }
        };
        Ok(Some((kid, key)))
    }

    /// The kid, shortened and stripped to safe characters for an error text.
    fn kid_for_log(&self) -> String {
        self.kid
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(64)
            .collect()
    }
}

fn decode_32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
}

pub(crate) struct PublicEntry {
    pub(crate) kid: Kid,
    pub(crate) key: PublicKey,
    pub(crate) retired_at: Option<Timestamp>,
    pub(crate) published_until: Option<Timestamp>,
}

/// The public keys a [`Verifier`](crate::Verifier) accepts, by `kid`.
///
/// Build it from a local [`KeySet`](crate::KeySet) with
/// [`KeySet::public_keys`](crate::KeySet::public_keys) (which also carries
/// each key's retirement), or from a published JWKS with
/// [`PublicKeySet::from_jwks`] in a service that holds no private key.
///
/// ```
/// use tessera::time::Timestamp;
/// use tessera_jwt::{Algorithm, KeySet, PublicKeySet};
///
/// let now = Timestamp::from_millis(1_700_000_000_000);
/// let keys = KeySet::generate(Algorithm::Es256, now)?;
/// let json = serde_json::to_string(&keys.jwks(now))?;
/// let remote = PublicKeySet::from_json(&json)?;
/// assert_eq!(remote.kids().collect::<Vec<_>>(), vec![&keys.current().ok_or("no active key")?.kid]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PublicKeySet {
    entries: Vec<PublicEntry>,
}

impl PublicKeySet {
    pub(crate) fn from_parts(entries: Vec<PublicEntry>) -> Self {
        Self { entries }
    }

    /// Reads the usable keys of a JWK Set. Keys for other uses or
    /// algorithms are skipped; a malformed EdDSA/ES256 key, a key without
    /// `alg`, a duplicate `kid` or any private member is an error.
    ///
    /// # Errors
    ///
    /// [`KeyError::Jwks`] as described.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        Self::from_wire(jwks.keys.iter().map(WireJwk::from))
    }

    /// Parses JWKS JSON text and reads it like [`PublicKeySet::from_jwks`];
    /// keys of other types (RSA, symmetric) are skipped, and any private
    /// member (`d`, `k`, `p`) in any key is an error.
    ///
    /// # Errors
    ///
    /// [`KeyError::Jwks`] if the text is not a JWK Set or a key is invalid.
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        let jwks: WireJwks =
            serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        Self::from_wire(jwks.keys.into_iter())
    }

    fn from_wire(keys: impl Iterator<Item = WireJwk>) -> Result<Self, KeyError> {
        let mut entries: Vec<PublicEntry> = Vec::new();
        for jwk in keys {
            if let Some((kid, key)) = jwk.decode()? {
                if entries.iter().any(|e| e.kid == kid) {
                    return Err(KeyError::Jwks(format!("duplicate kid {kid}")));
                }
                entries.push(PublicEntry {
                    kid,
                    key,
                    retired_at: None,
                    published_until: None,
                });
            }
        }
        Ok(Self { entries })
    }

    /// The key ids, in order.
    pub fn kids(&self) -> impl Iterator<Item = &Kid> {
        self.entries.iter().map(|e| &e.kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&PublicEntry> {
        self.entries.iter().find(|e| e.kid.as_str() == kid)
    }
}

impl fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| (e.kid.as_str(), e.key.algorithm().name())),
            )
            .finish()
    }
}
