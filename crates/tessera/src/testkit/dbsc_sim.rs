//! The device side of DBSC without a browser: a P-256 key that signs
//! `dbsc+jwt` proofs exactly as a browser does (W3C DBSC "session
//! registration / refresh JWT"). Chromium exercises DBSC only with a TPM,
//! so tests — and anyone checking a DBSC server — use this instead.
//!
//! ```
//! use tessera::testkit::dbsc_sim::DeviceKey;
//! let key = DeviceKey::generate();
//! let proof = key.registration_proof("challenge-1");
//! assert_eq!(proof.split('.').count(), 3);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

/// A device key (ES256), as a TPM would hold it.
#[derive(Clone)]
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey").finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A new random key.
    ///
    /// # Panics
    ///
    /// If the OS CSPRNG fails.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        loop {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).expect("OS CSPRNG");
            // A random 256-bit string is a valid scalar except with
            // probability ~2^-32; retry then.
            if let Ok(key) = SigningKey::from_bytes(&raw.into()) {
                return Self { key };
            }
        }
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`).
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let b64 = |b: Option<&p256::FieldBytes>| b.map(|b| URL_SAFE_NO_PAD.encode(b));
        json!({"kty": "EC", "crv": "P-256", "x": b64(point.x()), "y": b64(point.y())})
    }

    /// A registration proof: `jwk` in the header, `jti` = `challenge`.
    pub fn registration_proof(&self, challenge: &str) -> String {
        self.sign(
            json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": self.jwk()}),
            json!({"jti": challenge}),
        )
    }

    /// A refresh proof: no `jwk`, `jti` = `challenge`.
    pub fn refresh_proof(&self, challenge: &str) -> String {
        self.sign(
            json!({"typ": "dbsc+jwt", "alg": "ES256"}),
            json!({"jti": challenge}),
        )
    }

    /// Signs any header and claims (for hostile tests: wrong `typ`,
    /// `alg`, extra claims).
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{p}");
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

/// The `Secure-Session-Response` value for a proof (an sf-string).
pub fn response_field(jwt: &str) -> String {
    format!("\"{jwt}\"")
}

/// The challenge in a `Secure-Session-Registration` or
/// `Secure-Session-Challenge` value.
pub fn challenge_of(field: &str) -> Option<String> {
    // Registration: `(ES256 RS256);path="…";challenge="…"`;
    // challenge: `"…";id="…"`.
    if let Some(rest) = field.split(";challenge=\"").nth(1) {
        return rest.split('"').next().map(str::to_owned);
    }
    field
        .strip_prefix('"')?
        .split('"')
        .next()
        .map(str::to_owned)
}
