//! DBSC proofs: the `dbsc+jwt` JWTs a browser signs with its session key
//! (W3C DBSC, "Session registration / refresh JWT").
//!
//! Verification is deliberately narrow: compact JWS only, `typ` exactly
//! `dbsc+jwt`, `alg` from an allow-list (ES256, RS256 — the algorithms
//! tessera advertises in `Secure-Session-Registration`), never `none`, never
//! an HMAC, and never a key chosen by the token except on registration,
//! where the embedded `jwk` *is* what is being registered. Extra header
//! members and claims are tolerated (the spec lets browsers add them).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A proof JWT longer than this is refused before any decoding: a real one
/// with an RSA-4096 JWK is under 2 KiB.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Smallest RSA modulus accepted (NIST SP 800-131A: 2048 bits).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: bounds the verification cost an attacker
/// can make the server pay.
const MAX_RSA_BITS: usize = 4096;

/// A signature algorithm a DBSC key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofAlg {
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    RS256,
}

impl ProofAlg {
    /// The JOSE name.
    ///
    /// ```
    /// assert_eq!(tessera::dbsc::ProofAlg::ES256.as_str(), "ES256");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// Parses a JOSE name; `None` for anything outside the allow-list.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// Why a proof was refused. Every variant means "no fresh proof": the
/// caller answers with a new challenge, except [`ProofError::KeyMismatch`]
/// which the protocol layer treats as theft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Not a compact JWS, bad base64url or JSON, or too long.
    #[error("malformed proof")]
    Malformed,
    /// `typ` is not `dbsc+jwt`.
    #[error("proof typ is not dbsc+jwt")]
    WrongType,
    /// `alg` is not ES256 or RS256.
    #[error("proof alg not allowed")]
    AlgNotAllowed,
    /// Registration proof without a usable public `jwk` (or with private
    /// key members, or an RSA key outside 2048–4096 bits).
    #[error("proof carries no usable public key")]
    BadKey,
    /// The signature does not verify.
    #[error("bad proof signature")]
    BadSignature,
    /// The proof verifies, but under a key other than the one the session
    /// is bound to.
    #[error("proof signed by another key")]
    KeyMismatch,
    /// `jti` names no live challenge: wrong, already used (replay) or
    /// expired.
    #[error("proof answers no live challenge")]
    UnknownChallenge,
}

/// A public key as registered: the JWK's required members only (RFC 7638
/// §3.2), which is all that is stored and all that verification needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum PublicJwk {
    /// An elliptic-curve key (`crv` is always `P-256`).
    #[serde(rename = "EC")]
    Ec {
        /// Curve name.
        crv: String,
        /// X coordinate, base64url.
        x: String,
        /// Y coordinate, base64url.
        y: String,
    },
    /// An RSA key.
    #[serde(rename = "RSA")]
    Rsa {
        /// Modulus, base64url.
        n: String,
        /// Public exponent, base64url.
        e: String,
    },
}

impl PublicJwk {
    /// Reads the required members of a JWK object, refusing private keys
    /// (a JWK with `d` would mean the key left its hardware) and keys the
    /// allow-list cannot verify.
    ///
    /// # Errors
    ///
    /// [`ProofError::BadKey`].
    pub fn from_value(jwk: &Value) -> Result<Self, ProofError> {
        let obj = jwk.as_object().ok_or(ProofError::BadKey)?;
        if obj.contains_key("d") || obj.contains_key("p") {
            return Err(ProofError::BadKey);
        }
        let text = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(ProofError::BadKey)
        };
        let key = match obj.get("kty").and_then(Value::as_str) {
            Some("EC") if obj.get("crv").and_then(Value::as_str) == Some("P-256") => Self::Ec {
                crv: "P-256".to_owned(),
                x: text("x")?,
                y: text("y")?,
            },
            Some("RSA") => Self::Rsa {
                n: text("n")?,
                e: text("e")?,
            },
            _ => return Err(ProofError::BadKey),
        };
        // Decode once now so a bad key is refused at registration, not at
        // the first refresh.
        key.verifier()?;
        Ok(key)
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> ProofAlg {
        match self {
            Self::Ec { .. } => ProofAlg::ES256,
            Self::Rsa { .. } => ProofAlg::RS256,
        }
    }

    /// The canonical JSON of the required members, lexicographic, no
    /// whitespace (RFC 7638 §3). Also the stored form.
    pub fn canonical_json(&self) -> String {
        // Member values are base64url or "P-256": no character needs JSON
        // escaping, but serde_json escapes anyway should that ever change.
        let s = |v: &str| Value::String(v.to_owned()).to_string();
        match self {
            Self::Ec { crv, x, y } => {
                format!(
                    r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                    s(crv),
                    s(x),
                    s(y)
                )
            }
            Self::Rsa { n, e } => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(e), s(n)),
        }
    }

    /// The JWK SHA-256 thumbprint, base64url (RFC 7638 §3.1): what a
    /// session is bound to.
    ///
    /// ```
    /// use tessera::dbsc::PublicJwk;
    /// // RFC 7638 §3.1 example.
    /// let jwk = serde_json::json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    ///     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
    /// let key = PublicJwk::from_value(&jwk)?;
    /// assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    /// # Ok::<(), tessera::dbsc::ProofError>(())
    /// ```
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    fn verifier(&self) -> Result<KeyVerifier, ProofError> {
        let b64 = |v: &str| URL_SAFE_NO_PAD.decode(v).map_err(|_| ProofError::BadKey);
        match self {
            Self::Ec { x, y, .. } => {
                let (x, y) = (b64(x)?, b64(y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(ProofError::BadKey);
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(&x),
                    p256::FieldBytes::from_slice(&y),
                    false,
                );
                // Rejects points not on the curve and the identity.
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map_err(|_| ProofError::BadKey)?;
                Ok(KeyVerifier::Es256(key))
            }
            Self::Rsa { n, e } => {
                let n = rsa::BigUint::from_bytes_be(&b64(n)?);
                let e = rsa::BigUint::from_bytes_be(&b64(e)?);
                let bits = n.bits();
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(ProofError::BadKey);
                }
                let key = rsa::RsaPublicKey::new(n, e).map_err(|_| ProofError::BadKey)?;
                Ok(KeyVerifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)))
            }
        }
    }
}

// Only signature verification is done with `rsa`: RUSTSEC-2023-0071 (Marvin)
// concerns private-key operations, which tessera never performs.
enum KeyVerifier {
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

impl KeyVerifier {
    fn verify(&self, signing_input: &[u8], sig: &[u8]) -> Result<(), ProofError> {
        match self {
            Self::Es256(key) => {
                // JWS ES256 signatures are the raw 64-byte r||s (RFC 7518 §3.4).
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| ProofError::BadSignature)?;
                key.verify(signing_input, &sig)
                    .map_err(|_| ProofError::BadSignature)
            }
            Self::Rs256(key) => {
                let sig = rsa::pkcs1v15::Signature::try_from(sig)
                    .map_err(|_| ProofError::BadSignature)?;
                key.verify(signing_input, &sig)
                    .map_err(|_| ProofError::BadSignature)
            }
        }
    }
}

/// A proof whose header and claims parsed, signature not yet checked.
#[derive(Debug, Clone)]
pub struct Proof {
    alg: ProofAlg,
    jwk: Option<Value>,
    jti: Option<String>,
    authorization: Option<String>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Proof {
    /// Parses a compact JWS and checks `typ` and `alg`.
    ///
    /// # Errors
    ///
    /// [`ProofError::Malformed`], [`ProofError::WrongType`],
    /// [`ProofError::AlgNotAllowed`].
    pub fn parse(jwt: &str) -> Result<Self, ProofError> {
        if jwt.len() > MAX_PROOF_LEN {
            return Err(ProofError::Malformed);
        }
        let mut parts = jwt.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ProofError::Malformed);
        };
        let json = |part: &str| -> Result<serde_json::Map<String, Value>, ProofError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| ProofError::Malformed)?;
            serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed)
        };
        let header = json(h)?;
        let claims = json(p)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| ProofError::Malformed)?;
        if header.get("typ").and_then(Value::as_str) != Some("dbsc+jwt") {
            return Err(ProofError::WrongType);
        }
        // `crit` names extensions we would have to understand (RFC 7515
        // §4.1.11); we understand none.
        if header.contains_key("crit") {
            return Err(ProofError::Malformed);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(ProofAlg::parse)
            .ok_or(ProofError::AlgNotAllowed)?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            alg,
            jwk: header.get("jwk").cloned(),
            jti: text("jti"),
            authorization: text("authorization"),
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The `jti` claim: the challenge the proof answers.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// The `authorization` claim, if any.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// Registration: verifies the proof under its own embedded `jwk` and
    /// returns that key.
    ///
    /// # Errors
    ///
    /// [`ProofError::BadKey`] (no or unusable `jwk`, or a key whose type
    /// does not match `alg`), [`ProofError::BadSignature`].
    pub fn verify_registration(&self) -> Result<PublicJwk, ProofError> {
        let key = PublicJwk::from_value(self.jwk.as_ref().ok_or(ProofError::BadKey)?)?;
        if key.alg() != self.alg {
            return Err(ProofError::BadKey);
        }
        key.verifier()?
            .verify(self.signing_input.as_bytes(), &self.signature)?;
        Ok(key)
    }

    /// Refresh: verifies the proof under the key the session is bound to.
    /// An embedded `jwk` is ignored for verification (the spec sends it on
    /// registration only), but one that differs from the bound key is a
    /// mismatch, as is a signature that only the embedded key verifies.
    ///
    /// # Errors
    ///
    /// [`ProofError::KeyMismatch`] when the proof is valid under another
    /// key; [`ProofError::BadSignature`] otherwise.
    pub fn verify_refresh(&self, bound: &PublicJwk) -> Result<(), ProofError> {
        let own_key = self
            .jwk
            .as_ref()
            .and_then(|jwk| PublicJwk::from_value(jwk).ok());
        if self.alg == bound.alg() {
            let verified = bound
                .verifier()?
                .verify(self.signing_input.as_bytes(), &self.signature);
            if verified.is_ok() {
                return match own_key {
                    Some(own) if own.thumbprint() != bound.thumbprint() => {
                        Err(ProofError::KeyMismatch)
                    }
                    _ => Ok(()),
                };
            }
        }
        // The signature does not verify under the bound key. If it does
        // under a key the proof names itself, someone holding the session's
        // cookies signed with their own key: a mismatch, not a glitch.
        if let Some(own) = own_key {
            if own.alg() == self.alg
                && own
                    .verifier()
                    .and_then(|v| v.verify(self.signing_input.as_bytes(), &self.signature))
                    .is_ok()
            {
                return Err(ProofError::KeyMismatch);
            }
        }
        Err(ProofError::BadSignature)
    }
}
