//! What the verifier accepts and, one test each, what it refuses.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tessera::record::SessionHandle;
use tessera::time::Clock as _;
use tessera_jwt::{Algorithm, KeySet, Part, Verifier, VerifierConfig, VerifyError};

use crate::common::*;

const BOTH: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::Es256];

#[test]
fn issued_tokens_verify_with_both_algorithms() {
    for alg in BOTH {
        let f = Fixture::new(alg);
        let sid = SessionHandle::generate().unwrap();
        let token = f.issuer().issue("user-7", &sid).unwrap();
        let v = f.verifier().verify(token.as_str()).unwrap();
        assert_eq!(v.claims, token.claims);
        assert_eq!(v.claims.sub, "user-7");
        assert_eq!(v.session(), &sid);
        assert_eq!(v.kid, f.kid());
        assert_eq!(v.algorithm, alg);
        assert_eq!(v.claims.exp - v.claims.iat, 600, "default lifetime 10 min");
        assert_eq!(v.claims.jti.len(), 22, "128-bit jti, base64url");
    }
}

#[test]
fn header_has_kid_and_at_jwt_type() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let header = token.as_str().split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.kid().as_str()})
    );
}

#[test]
fn jti_is_unique_per_token() {
    let f = Fixture::new(Algorithm::EdDSA);
    let issuer = f.issuer();
    let sid = SessionHandle::generate().unwrap();
    let a = issuer.issue("u", &sid).unwrap();
    let b = issuer.issue("u", &sid).unwrap();
    assert_ne!(a.claims.jti, b.claims.jti);
    assert_ne!(a.as_str(), b.as_str());
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": f.kid().as_str()});
    let unsigned = format!("{}.", signing_input(&header, &f.claims()));
    assert!(matches!(
        f.verifier().verify(&unsigned),
        Err(VerifyError::AlgorithmNotAllowed)
    ));
    // Also with a genuine signature attached, and in any letter case.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": f.kid().as_str()});
        let token = f.sign(&header, &f.claims());
        assert!(matches!(
            f.verifier().verify(&token),
            Err(VerifyError::AlgorithmNotAllowed)
        ));
    }
}

fn hs256(secret: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = signing_input(header, claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    for alg in BOTH {
        let f = Fixture::new(alg);
        let jwks = f.store.key_set().jwks(f.clock.now());
        let jwk = &jwks.keys[0];
        let x = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &jwk.x)
            .unwrap();
        let mut secrets: Vec<Vec<u8>> = vec![
            x.clone(),
            jwk.x.as_bytes().to_vec(),
            serde_json::to_vec(jwk).unwrap(),
            serde_json::to_vec(&jwks).unwrap(),
        ];
        if let Some(y) = &jwk.y {
            let y = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, y)
                .unwrap();
            let mut sec1 = vec![4u8];
            sec1.extend(&x);
            sec1.extend(&y);
            secrets.push(sec1);
        }
        // Even a verifier that enables every algorithm there is refuses.
        let verifier = f.verifier_with(VerifierConfig::new(ISS, AUD).algorithms(BOTH));
        for secret in &secrets {
            let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": f.kid().as_str()});
            let token = hs256(secret, &header, &f.claims());
            assert!(
                matches!(
                    verifier.verify(&token),
                    Err(VerifyError::AlgorithmNotAllowed)
                ),
                "{alg}: HS256 with public-key secret"
            );
        }
    }
}

#[test]
fn algorithm_not_bound_to_the_key_is_refused() {
    // ES256 enabled, but the kid names an Ed25519 key.
    let f = Fixture::new(Algorithm::EdDSA);
    let verifier = f.verifier_with(VerifierConfig::new(ISS, AUD).algorithms(BOTH));
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": f.kid().as_str()});
    let token = f.sign(&header, &f.claims());
    assert!(matches!(
        verifier.verify(&token),
        Err(VerifyError::AlgorithmMismatch)
    ));
}

#[test]
fn algorithm_not_configured_is_refused() {
    // The default configuration accepts EdDSA only.
    let f = Fixture::new(Algorithm::Es256);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let verifier = f.verifier_with(VerifierConfig::new(ISS, AUD));
    assert!(matches!(
        verifier.verify(token.as_str()),
        Err(VerifyError::AlgorithmNotAllowed)
    ));
}

#[test]
fn unknown_kid_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "AAAAAAAAAAAAAAAAAAAAAA"});
    let token = f.sign(&header, &f.claims());
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::UnknownKid)
    ));
}

#[test]
fn missing_kid_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt"});
    let token = f.sign(&header, &f.claims());
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::MissingKid)
    ));
}

#[test]
fn expired_token_is_refused_after_the_leeway() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let verifier = f.verifier();
    // Ten minutes plus 29 s: still inside the 30 s leeway.
    f.clock.advance(Duration::from_secs(600 + 29));
    assert!(verifier.verify(token.as_str()).is_ok());
    f.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        verifier.verify(token.as_str()),
        Err(VerifyError::Expired)
    ));
    // Zero leeway refuses at exp exactly.
    let strict = f.verifier_with(f.verifier_config().leeway(Duration::ZERO));
    f.clock
        .set(tessera::time::Timestamp::from_millis(T0 + 600_000));
    assert!(matches!(
        strict.verify(token.as_str()),
        Err(VerifyError::Expired)
    ));
}

#[test]
fn not_yet_valid_token_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut claims = f.claims();
    claims["nbf"] = json!(f.now_secs() + 31);
    let token = f.sign(&f.header(), &claims);
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::NotYetValid)
    ));
    // Within the leeway it is accepted.
    claims["nbf"] = json!(f.now_secs() + 30);
    let token = f.sign(&f.header(), &claims);
    assert!(f.verifier().verify(&token).is_ok());
}

#[test]
fn token_issued_in_the_future_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut claims = f.claims();
    claims["iat"] = json!(f.now_secs() + 120);
    let token = f.sign(&f.header(), &claims);
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::IssuedInFuture)
    ));
}

#[test]
fn lifetime_beyond_the_maximum_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut claims = f.claims();
    claims["exp"] = json!(f.now_secs() + 86_400);
    let token = f.sign(&f.header(), &claims);
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::LifetimeOutOfBounds)
    ));
    let long = f.verifier_with(
        f.verifier_config()
            .max_lifetime(Duration::from_secs(86_400)),
    );
    assert!(long.verify(&token).is_ok());
}

#[test]
fn wrong_issuer_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let other = f.verifier_with(VerifierConfig::new("https://evil.example", AUD));
    assert!(matches!(
        other.verify(token.as_str()),
        Err(VerifyError::WrongIssuer)
    ));
}

#[test]
fn wrong_audience_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let other = f.verifier_with(VerifierConfig::new(ISS, "https://other-api.example"));
    assert!(matches!(
        other.verify(token.as_str()),
        Err(VerifyError::WrongAudience)
    ));
}

#[test]
fn audience_array_containing_the_audience_is_accepted() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut claims = f.claims();
    claims["aud"] = json!(["https://x.example", AUD]);
    assert!(f.verifier().verify(f.sign(&f.header(), &claims)).is_ok());
    claims["aud"] = json!(["https://x.example"]);
    assert!(matches!(
        f.verifier().verify(f.sign(&f.header(), &claims)),
        Err(VerifyError::WrongAudience)
    ));
}

#[test]
fn wrong_type_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let kid = f.kid();
    for header in [
        json!({"alg": "EdDSA", "kid": kid.as_str()}),
        json!({"alg": "EdDSA", "typ": "JWT", "kid": kid.as_str()}),
        json!({"alg": "EdDSA", "typ": "id_token+jwt", "kid": kid.as_str()}),
    ] {
        let token = f.sign(&header, &f.claims());
        assert!(matches!(
            f.verifier().verify(&token),
            Err(VerifyError::WrongType)
        ));
    }
    let header = json!({"alg": "EdDSA", "typ": "application/AT+JWT", "kid": kid.as_str()});
    assert!(f.verifier().verify(f.sign(&header, &f.claims())).is_ok());
}

#[test]
fn tampered_payload_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f
        .issuer()
        .issue("alice", &SessionHandle::generate().unwrap())
        .unwrap();
    let parts: Vec<&str> = token.as_str().split('.').collect();
    let mut claims = serde_json::to_value(&token.claims).unwrap();
    claims["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert!(matches!(
        f.verifier().verify(&forged),
        Err(VerifyError::BadSignature)
    ));
}

#[test]
fn tampered_signature_is_refused() {
    for alg in BOTH {
        let f = Fixture::new(alg);
        let token = f
            .issuer()
            .issue("u", &SessionHandle::generate().unwrap())
            .unwrap();
        let (input, sig) = token.as_str().rsplit_once('.').unwrap();
        let mut sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        sig[10] ^= 0x01;
        let forged = format!("{input}.{}", b64(&sig));
        assert!(matches!(
            f.verifier().verify(&forged),
            Err(VerifyError::BadSignature)
        ));
    }
}

#[test]
fn token_signed_by_another_key_with_a_known_kid_is_refused() {
    for alg in BOTH {
        let f = Fixture::new(alg);
        let token = sign_with_pem(alg, &foreign_pem(alg), &f.header(), &f.claims());
        assert!(matches!(
            f.verifier().verify(&token),
            Err(VerifyError::BadSignature)
        ));
    }
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let f = Fixture::new(Algorithm::EdDSA);
    let big = "a".repeat(tessera_jwt::MAX_TOKEN_LEN + 1);
    assert!(matches!(
        f.verifier().verify(&big),
        Err(VerifyError::TooLarge { len, max }) if len == big.len() && max == 8192
    ));
    // At the limit it is looked at (and refused for what it is).
    let at_limit = "a".repeat(tessera_jwt::MAX_TOKEN_LEN);
    assert!(matches!(
        f.verifier().verify(&at_limit),
        Err(VerifyError::Malformed(Part::Structure))
    ));
}

#[test]
fn malformed_input_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let v = f.verifier();
    let valid = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let parts: Vec<&str> = valid.as_str().split('.').collect();
    let cases: Vec<(String, Part)> = vec![
        (String::new(), Part::Structure),
        ("a.b".into(), Part::Structure),
        (
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
            Part::Structure,
        ),
        (format!(".{}.{}", parts[1], parts[2]), Part::Structure),
        (format!("{}..{}", parts[0], parts[2]), Part::Structure),
        (
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            Part::Header,
        ),
        (format!("!!!.{}.{}", parts[1], parts[2]), Part::Header),
        (
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
            Part::Header,
        ),
        (
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            Part::Header,
        ),
        (format!("{}.{}.", parts[0], parts[1]), Part::Signature),
        (
            format!("{}.{}.{}", parts[0], parts[1], b64(&[0u8; 63])),
            Part::Signature,
        ),
        (
            format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
            Part::Signature,
        ),
    ];
    for (input, part) in cases {
        let got = v.verify(&input);
        assert!(
            matches!(got, Err(VerifyError::Malformed(p)) if p == part),
            "{input:?}: expected Malformed({part}), got {got:?}"
        );
    }
    // Invalid UTF-8 and control bytes.
    assert!(v.verify([0xffu8, 0xfe, b'.', b'.', 0]).is_err());
}

#[test]
fn header_with_extra_members_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let kid = f.kid();
    let jwk = serde_json::to_value(&f.store.key_set().jwks(f.clock.now()).keys[0]).unwrap();
    for header in [
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid.as_str(), "crit": ["exp"]}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid.as_str(), "jwk": jwk}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid.as_str(), "jku": "https://evil.example/k"}),
    ] {
        let token = f.sign(&header, &f.claims());
        assert!(matches!(
            f.verifier().verify(&token),
            Err(VerifyError::Malformed(Part::Header))
        ));
    }
    // Duplicate members: a parser differential waiting to happen.
    let dup = format!(
        r#"{{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#,
        kid.as_str()
    );
    let claims = b64(&serde_json::to_vec(&f.claims()).unwrap());
    let token = format!("{}.{claims}.{}", b64(dup.as_bytes()), b64(&[0u8; 64]));
    assert!(matches!(
        f.verifier().verify(&token),
        Err(VerifyError::Malformed(Part::Header))
    ));
}

#[test]
fn signed_but_invalid_claims_are_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let mut bad_sid = f.claims();
    bad_sid["sid"] = json!("../../etc/passwd");
    let mut no_exp = f.claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut string_exp = f.claims();
    string_exp["exp"] = json!("tomorrow");
    for claims in [bad_sid, no_exp, string_exp] {
        let token = f.sign(&f.header(), &claims);
        assert!(matches!(
            f.verifier().verify(&token),
            Err(VerifyError::Malformed(Part::Claims))
        ));
    }
}

#[test]
fn retired_key_verifies_until_its_retention_ends() {
    let clock = tessera::time::ManualClock::new(tessera::time::Timestamp::from_millis(T0));
    let arc: std::sync::Arc<dyn tessera::time::Clock> = std::sync::Arc::new(clock.clone());
    let mut keys = KeySet::generate(Algorithm::EdDSA, tessera::time::Clock::now(&clock)).unwrap();
    let old_issuer =
        tessera_jwt::Issuer::new(tessera_jwt::IssuerConfig::new(ISS, AUD), &keys, arc.clone())
            .unwrap();
    let old_token = old_issuer
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();

    clock.advance(Duration::from_secs(60));
    keys.rotate(Algorithm::EdDSA, tessera::time::Clock::now(&clock))
        .unwrap();
    let verifier = Verifier::new(
        VerifierConfig::new(ISS, AUD),
        keys.public_keys(),
        arc.clone(),
    );
    assert!(
        verifier.verify(old_token.as_str()).is_ok(),
        "old token still valid"
    );

    // A token the retired key signs after its retirement is refused, even
    // though it is otherwise well-formed (only a stolen key could do that).
    clock.advance(Duration::from_secs(120));
    let late = old_issuer
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    assert!(matches!(
        verifier.verify(late.as_str()),
        Err(VerifyError::RetiredKey)
    ));

    // At retirement + retention the key is gone, like from the JWKS.
    clock.set(tessera::time::Timestamp::from_millis(T0 + 60_000) + keys.retention());
    assert!(matches!(
        verifier.verify(old_token.as_str()),
        Err(VerifyError::RetiredKey)
    ));
    assert_eq!(keys.jwks(tessera::time::Clock::now(&clock)).keys.len(), 1);
}

#[test]
fn removed_key_stops_verifying_at_once() {
    let now = tessera::time::Timestamp::from_millis(T0);
    let clock: std::sync::Arc<dyn tessera::time::Clock> =
        std::sync::Arc::new(tessera::time::ManualClock::new(now));
    let mut keys = KeySet::generate(Algorithm::EdDSA, now).unwrap();
    let issuer = tessera_jwt::Issuer::new(
        tessera_jwt::IssuerConfig::new(ISS, AUD),
        &keys,
        clock.clone(),
    )
    .unwrap();
    let token = issuer
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let kid = issuer.kid().clone();
    assert!(keys.remove(&kid));
    assert!(keys.current().is_none());
    let verifier = Verifier::new(
        VerifierConfig::new(ISS, AUD),
        keys.public_keys(),
        clock.clone(),
    );
    assert!(matches!(
        verifier.verify(token.as_str()),
        Err(VerifyError::UnknownKid)
    ));
    assert!(matches!(
        tessera_jwt::Issuer::new(tessera_jwt::IssuerConfig::new(ISS, AUD), &keys, clock),
        Err(tessera_jwt::IssueError::NoSigningKey)
    ));
}

#[test]
fn malleated_es256_signature_is_refused() {
    // (r, n - s) verifies under plain ECDSA; tessera signs low-S and
    // accepts only that, so a token has one valid spelling.
    let f = Fixture::new(Algorithm::Es256);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let (input, sig) = token.as_str().rsplit_once('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap(),
    )
    .unwrap();
    assert!(sig.normalize_s().is_none(), "issued signatures are low-S");
    let (r, s) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    // The twin is a valid ECDSA signature...
    let jwks = f.store.key_set().jwks(f.clock.now());
    let jwk = &jwks.keys[0];
    let point = p256::EncodedPoint::from_affine_coordinates(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &jwk.x)
            .unwrap()
            .as_slice()
            .into(),
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwk.y.as_ref().unwrap(),
        )
        .unwrap()
        .as_slice()
        .into(),
        false,
    );
    let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
    use p256::ecdsa::signature::Verifier as _;
    assert!(vk.verify(input.as_bytes(), &twin).is_ok());
    // ...that tessera refuses.
    let forged = format!("{input}.{}", b64(&twin.to_bytes()));
    assert!(matches!(
        f.verifier().verify(&forged),
        Err(VerifyError::BadSignature)
    ));
}
