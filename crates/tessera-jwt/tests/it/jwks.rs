//! JWKS publication and reading, and that private key material appears in
//! no output: not in the JWKS, not in `Debug`, not in log lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::pkcs8::DecodePrivateKey as _;
use serde_json::json;
use tessera::record::SessionHandle;
use tessera::time::Clock as _;
use tessera_jwt::{Algorithm, KeyError, KeyStore, PublicKeySet, VerifyError};

use crate::common::*;

/// Every spelling of the private key bytes we can think of: the PEM body,
/// the raw secret in base64, base64url and hex.
fn private_spellings(alg: Algorithm, pem: &str) -> Vec<String> {
    let raw: Vec<u8> = match alg {
        Algorithm::EdDSA => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .unwrap()
            .to_bytes()
            .to_vec(),
        _ => p256::SecretKey::from_pkcs8_pem(pem)
            .unwrap()
            .to_bytes()
            .to_vec(),
    };
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        body,
        STANDARD.encode(&raw),
        URL_SAFE_NO_PAD.encode(&raw),
        hex,
    ];
    // Also a distinctive 16-char slice of each, in case of re-wrapping.
    let slices: Vec<String> = out.iter().map(|s| s[4..20].to_string()).collect();
    out.extend(slices);
    out
}

fn assert_no_private(alg: Algorithm, pem: &str, text: &str, what: &str) {
    for secret in private_spellings(alg, pem) {
        assert!(!text.contains(&secret), "{what} leaks private key material");
    }
}

#[test]
fn jwks_holds_public_members_only() {
    for alg in [Algorithm::EdDSA, Algorithm::Es256] {
        let f = Fixture::new(alg);
        let json = serde_json::to_value(f.store.key_set().jwks(f.clock.now())).unwrap();
        let expected_members: &[&str] = match alg {
            Algorithm::EdDSA => &["alg", "crv", "kid", "kty", "use", "x"],
            _ => &["alg", "crv", "kid", "kty", "use", "x", "y"],
        };
        let jwk = json["keys"][0].as_object().unwrap();
        let mut members: Vec<&str> = jwk.keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, expected_members);
        assert_eq!(jwk["kid"], f.kid().as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], alg.name());
        match alg {
            Algorithm::EdDSA => {
                assert_eq!(
                    (&jwk["kty"], &jwk["crv"]),
                    (&json!("OKP"), &json!("Ed25519"))
                );
            }
            _ => assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256"))),
        }
        assert_no_private(alg, &f.pem(), &json.to_string(), "JWKS");
    }
}

#[test]
fn tokens_verify_against_the_published_jwks() {
    for alg in [Algorithm::EdDSA, Algorithm::Es256] {
        let f = Fixture::new(alg);
        let token = f
            .issuer()
            .issue("u", &SessionHandle::generate().unwrap())
            .unwrap();
        let text = serde_json::to_string(&f.store.key_set().jwks(f.clock.now())).unwrap();
        let keys = PublicKeySet::from_json(&text).unwrap();
        let verifier = tessera_jwt::Verifier::new(f.verifier_config(), keys, f.clock());
        assert_eq!(
            verifier.verify(token.as_str()).unwrap().claims,
            token.claims
        );
    }
}

#[test]
fn jwks_with_private_material_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut json = serde_json::to_value(f.store.key_set().jwks(f.clock.now())).unwrap();
    json["keys"][0]["d"] = json!("c2VjcmV0");
    let err = PublicKeySet::from_json(&json.to_string()).unwrap_err();
    assert!(matches!(err, KeyError::Jwks(_)));
    assert!(
        !format!("{err} {err:?}").contains("c2VjcmV0"),
        "error does not echo d"
    );
}

#[test]
fn jwks_keys_without_alg_or_off_curve_are_refused_and_foreign_ones_skipped() {
    let f = Fixture::new(Algorithm::Es256);
    let good = serde_json::to_value(&f.store.key_set().jwks(f.clock.now()).keys[0]).unwrap();

    let mut no_alg = good.clone();
    no_alg.as_object_mut().unwrap().remove("alg");
    assert!(PublicKeySet::from_json(&json!({"keys": [no_alg]}).to_string()).is_err());

    let mut off_curve = good.clone();
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert!(PublicKeySet::from_json(&json!({"keys": [off_curve]}).to_string()).is_err());

    // Ed25519 identity point: small order, would accept forged signatures.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(identity),
                      "kid": "weak", "alg": "EdDSA", "use": "sig"});
    assert!(PublicKeySet::from_json(&json!({"keys": [weak]}).to_string()).is_err());

    let duplicate = json!({"keys": [good.clone(), good.clone()]});
    assert!(PublicKeySet::from_json(&duplicate.to_string()).is_err());

    let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r1", "alg": "RS256"});
    let enc = json!({"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "e1", "alg": "ECDH-ES", "use": "enc"});
    let keys = PublicKeySet::from_json(&json!({"keys": [rsa, enc, good]}).to_string()).unwrap();
    assert_eq!(keys.len(), 1);
}

#[test]
fn symmetric_key_in_a_jwks_is_refused_and_hs256_stays_off() {
    // A symmetric ("oct") key is a secret: publishing one is refused, so no
    // JWKS can smuggle an HMAC key into a verifier.
    let f = Fixture::new(Algorithm::EdDSA);
    let mut jwks = serde_json::to_value(f.store.key_set().jwks(f.clock.now())).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}));
    assert!(matches!(
        PublicKeySet::from_json(&jwks.to_string()),
        Err(KeyError::Jwks(_))
    ));
    // And an HS256 token naming it is refused for its algorithm, before any
    // key lookup.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "hmac"});
    let token = format!(
        "{}.{}",
        signing_input(&header, &f.claims()),
        b64(&[0u8; 32])
    );
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::AlgorithmNotAllowed)
    ));
}

#[test]
fn debug_output_never_shows_private_keys_or_tokens() {
    for alg in [Algorithm::EdDSA, Algorithm::Es256] {
        let f = Fixture::new(alg);
        let issuer = f.issuer();
        let token = issuer
            .issue("u", &SessionHandle::generate().unwrap())
            .unwrap();
        let debug = format!(
            "{:?} {:#?} {:?} {:?} {:?} {:?}",
            f.store,
            f.store.key_set(),
            issuer,
            token,
            f.verifier(),
            f.store.key_set().public_keys()
        );
        assert_no_private(alg, &f.pem(), &debug, "Debug");
        assert!(debug.contains("<redacted>"));
        let signature = token.as_str().rsplit('.').next().unwrap();
        assert!(
            !debug.contains(signature),
            "Debug of AccessToken shows the token"
        );
    }
}

/// Collects everything written by the `tracing` subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_lines_name_keys_by_kid_only() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let now = tessera::time::Timestamp::from_millis(T0);
    let (pems, kids) = tracing::subscriber::with_default(subscriber, || {
        let mut store = KeyStore::open_or_create(
            dir.path().join("k"),
            Algorithm::EdDSA,
            tessera_jwt::DEFAULT_RETENTION,
            now,
        )
        .unwrap();
        let first = store.key_set().current().unwrap().kid.clone();
        let pem =
            std::fs::read_to_string(dir.path().join("k").join(format!("{first}.pem"))).unwrap();
        let second = store.rotate(Algorithm::EdDSA, now).unwrap();
        store.prune(now + tessera_jwt::DEFAULT_RETENTION).unwrap();
        (vec![pem], vec![first, second])
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for kid in &kids {
        assert!(logs.contains(kid.as_str()), "log names the kid: {logs}");
    }
    for pem in &pems {
        assert_no_private(Algorithm::EdDSA, pem, &logs, "log output");
    }
}
