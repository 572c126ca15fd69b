//! A real key store in a temporary directory, an issuer and a verifier on a
//! manual clock, and a way to sign arbitrary headers and claims with the
//! store's private key as read back from disk (how an attacker who stole
//! nothing but crafted JSON, or an issuer gone wrong, would make tokens).

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use serde_json::{Value, json};
use tessera::record::SessionHandle;
use tessera::time::{Clock, ManualClock, Timestamp};
use tessera_jwt::{
    Algorithm, DEFAULT_RETENTION, Issuer, IssuerConfig, KeyStore, Kid, Verifier, VerifierConfig,
};

pub const ISS: &str = "https://auth.example";
pub const AUD: &str = "https://api.example";
pub const T0: i64 = 1_700_000_000_000;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: KeyStore,
    pub clock: ManualClock,
    pub alg: Algorithm,
}

impl Fixture {
    pub fn new(alg: Algorithm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let store =
            KeyStore::open_or_create(dir.path().join("keys"), alg, DEFAULT_RETENTION, clock.now())
                .unwrap();
        Self {
            dir,
            store,
            clock,
            alg,
        }
    }

    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    pub fn kid(&self) -> Kid {
        self.store.key_set().current().unwrap().kid.clone()
    }

    pub fn issuer(&self) -> Issuer {
        Issuer::new(
            IssuerConfig::new(ISS, AUD),
            self.store.key_set(),
            self.clock(),
        )
        .unwrap()
    }

    pub fn verifier_config(&self) -> VerifierConfig {
        VerifierConfig::new(ISS, AUD).algorithms([self.alg])
    }

    pub fn verifier(&self) -> Verifier {
        self.verifier_with(self.verifier_config())
    }

    pub fn verifier_with(&self, config: VerifierConfig) -> Verifier {
        Verifier::new(config, self.store.key_set().public_keys(), self.clock())
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().as_secs()
    }

    /// The claims tessera would issue now.
    pub fn claims(&self) -> Value {
        let now = self.now_secs();
        json!({
            "iss": ISS, "sub": "user-1", "aud": AUD,
            "sid": SessionHandle::generate().unwrap().as_str(),
            "iat": now, "nbf": now, "exp": now + 600, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        })
    }

    pub fn header(&self) -> Value {
        json!({"alg": self.alg.name(), "typ": "at+jwt", "kid": self.kid().as_str()})
    }

    /// The PEM of the active key, as stored on disk.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.key_dir().join(format!("{}.pem", self.kid()))).unwrap()
    }

    /// Signs header and claims with the active key read from disk.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_with_pem(self.alg, &self.pem(), header, claims)
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

pub fn sign_with_pem(alg: Algorithm, pem: &str, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = match alg {
        Algorithm::EdDSA => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).unwrap();
            key.sign(input.as_bytes()).to_bytes().to_vec()
        }
        Algorithm::Es256 => {
            let key = p256::ecdsa::SigningKey::from(p256::SecretKey::from_pkcs8_pem(pem).unwrap());
            let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        _ => unreachable!("no other algorithm exists"),
    };
    format!("{input}.{}", b64(&sig))
}

/// A PEM of a fresh key that is not in any store.
pub fn foreign_pem(alg: Algorithm) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_or_create(
        dir.path().join("k"),
        alg,
        DEFAULT_RETENTION,
        Timestamp::from_millis(T0),
    )
    .unwrap();
    let kid = store.key_set().current().unwrap().kid.clone();
    std::fs::read_to_string(dir.path().join("k").join(format!("{kid}.pem"))).unwrap()
}
