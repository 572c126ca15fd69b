use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::record::DataChanges;
use crate::store::MemoryStore;
use crate::testkit::dbsc_sim::{DeviceKey, challenge_of, response_field};
use crate::time::ManualClock;
use crate::{Renewal, SessionPolicy};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

struct Fixture {
    manager: SessionManager,
    clock: ManualClock,
    dbsc: Dbsc,
    store: MemoryDbscStore,
}

fn fixture(mode: DbscMode) -> TestResult<Fixture> {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let manager = SessionManager::builder(MemoryStore::new())
        .policy(SessionPolicy::default())
        .clock(clock.clone())
        .build()?;
    let store = MemoryDbscStore::new();
    let config = DbscConfig {
        mode,
        ..DbscConfig::default()
    };
    let dbsc = Dbsc::new(config, Arc::new(store.clone()));
    Ok(Fixture {
        manager,
        clock,
        dbsc,
        store,
    })
}

impl Fixture {
    async fn session(&self) -> TestResult<SessionRecord> {
        Ok(self
            .manager
            .create(Some("alice".into()), Default::default(), Default::default())
            .await?
            .record)
    }

    async fn challenge(&self, s: &SessionRecord) -> TestResult<String> {
        let h = self
            .dbsc
            .registration_header(&self.manager, s)
            .await?
            .ok_or("no registration header for an unbound session")?;
        Ok(challenge_of(&h).ok_or("no challenge in the registration header")?)
    }

    async fn registered(&self, key: &DeviceKey) -> TestResult<(SessionRecord, Registered)> {
        let s = self.session().await?;
        let c = self.challenge(&s).await?;
        let r = self
            .dbsc
            .register(
                &self.manager,
                &s,
                &response_field(&key.registration_proof(&c)),
            )
            .await?;
        Ok((s, r))
    }

    async fn refresh_challenge(&self, s: &SessionRecord, id: &str) -> TestResult<String> {
        match self
            .dbsc
            .refresh(&self.manager, s, Some(&format!("\"{id}\"")), None)
            .await?
        {
            RefreshOutcome::Challenge {
                header,
                refused: None,
            } => Ok(challenge_of(&header).ok_or("no challenge in the refresh header")?),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn registration_binds_the_key_and_sets_a_bound_cookie() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let key = DeviceKey::generate();
    let (s, r) = f.registered(&key).await?;
    let jwk = PublicJwk::from_value(&key.jwk())?;
    assert_eq!(r.binding.thumbprint, jwk.thumbprint());
    assert_eq!(r.cookie.max_age, Duration::from_secs(600));
    assert_eq!(
        r.config["credentials"][0]["attributes"],
        json!(r.cookie.attributes)
    );
    assert_eq!(r.config["session_identifier"], json!(r.binding.session_id));
    let state = f.dbsc.check(&f.manager, &s, Some(&r.cookie.value)).await?;
    assert_eq!(state, BoundState::Bound);
    assert_eq!(f.dbsc.check(&f.manager, &s, None).await?, BoundState::Stale);
    assert!(!f.dbsc.admits(BoundState::Stale));
    // No second registration header for a bound session.
    assert_eq!(f.dbsc.registration_header(&f.manager, &s).await?, None);
    Ok(())
}

#[tokio::test]
async fn registration_refuses_bad_proofs_and_stores_nothing() -> TestResult {
    let f = fixture(DbscMode::Additive)?;
    let key = DeviceKey::generate();
    let s = f.session().await?;
    let c = f.challenge(&s).await?;
    // One bit of the signature flipped. (Replacing its last base64url
    // character is not enough: that character carries only two bits of
    // the signature, and the replacement can leave them unchanged.)
    let bad_sig = {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let proof = key.registration_proof(&c);
        let (signed, sig) = proof.rsplit_once('.').ok_or("no signature in the proof")?;
        let mut sig = URL_SAFE_NO_PAD.decode(sig)?;
        sig[10] ^= 1;
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let hs256 = key.sign(
        json!({"typ": "dbsc+jwt", "alg": "HS256", "jwk": key.jwk()}),
        json!({"jti": c}),
    );
    let none = key.sign(
        json!({"typ": "dbsc+jwt", "alg": "none", "jwk": key.jwk()}),
        json!({"jti": c}),
    );
    let wrong_typ = key.sign(
        json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk()}),
        json!({"jti": c}),
    );
    let no_jwk = key.refresh_proof(&c);
    for (proof, want) in [
        (bad_sig, ProofError::BadSignature),
        (hs256, ProofError::AlgNotAllowed),
        (none, ProofError::AlgNotAllowed),
        (wrong_typ, ProofError::WrongType),
        (no_jwk, ProofError::BadKey),
        ("not.a.jwt".to_owned(), ProofError::Malformed),
    ] {
        match f
            .dbsc
            .register(&f.manager, &s, &response_field(&proof))
            .await
        {
            Err(DbscError::Refused(e)) => assert_eq!(e, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    assert_eq!(
        f.store.load_binding(&s.handle, f.manager.now()).await?,
        None
    );
    // The challenge was not spent by the refused proofs.
    f.dbsc
        .register(&f.manager, &s, &response_field(&key.registration_proof(&c)))
        .await?;
    Ok(())
}

#[tokio::test]
async fn registration_challenges_are_single_use_and_expire() -> TestResult {
    let f = fixture(DbscMode::Additive)?;
    let key = DeviceKey::generate();
    let s = f.session().await?;
    let wrong = key.registration_proof("made-up");
    assert!(matches!(
        f.dbsc
            .register(&f.manager, &s, &response_field(&wrong))
            .await,
        Err(DbscError::StaleChallenge)
    ));
    let c = f.challenge(&s).await?;
    f.clock.advance(Duration::from_secs(301));
    let stale = key.registration_proof(&c);
    assert!(matches!(
        f.dbsc
            .register(&f.manager, &s, &response_field(&stale))
            .await,
        Err(DbscError::StaleChallenge)
    ));
    Ok(())
}

#[tokio::test]
async fn a_thief_cannot_register_a_bound_session_again() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let (s, r) = f.registered(&DeviceKey::generate()).await?;
    let thief = DeviceKey::generate();
    // The thief obtains a challenge through the refresh endpoint.
    let c = f.refresh_challenge(&s, &r.binding.session_id).await?;
    let proof = response_field(&thief.registration_proof(&c));
    assert!(matches!(
        f.dbsc.register(&f.manager, &s, &proof).await,
        Err(DbscError::AlreadyBound)
    ));
    let kept = f
        .store
        .load_binding(&s.handle, f.manager.now())
        .await?
        .ok_or("the binding was not kept")?;
    assert_eq!(kept.thumbprint, r.binding.thumbprint);
    Ok(())
}

#[tokio::test]
async fn refresh_without_proof_challenges_then_succeeds() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let key = DeviceKey::generate();
    let (s, r) = f.registered(&key).await?;
    f.clock.advance(Duration::from_secs(601));
    assert_eq!(
        f.dbsc.check(&f.manager, &s, Some(&r.cookie.value)).await?,
        BoundState::Stale,
        "the bound cookie's lifetime is enforced by the server"
    );
    let id = r.binding.session_id.clone();
    let c = f.refresh_challenge(&s, &id).await?;
    let proof = response_field(&key.refresh_proof(&c));
    let RefreshOutcome::Refreshed { cookie, .. } = f
        .dbsc
        .refresh(&f.manager, &s, Some(&format!("\"{id}\"")), Some(&proof))
        .await?
    else {
        panic!("expected a refresh");
    };
    assert_eq!(
        f.dbsc.check(&f.manager, &s, Some(&cookie.value)).await?,
        BoundState::Bound
    );
    // Replaying the same proof earns a challenge, not a cookie.
    match f.dbsc.refresh(&f.manager, &s, None, Some(&proof)).await? {
        RefreshOutcome::Challenge { refused, .. } => {
            assert_eq!(refused, Some(ProofError::UnknownChallenge));
        }
        other => panic!("replay got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_older_live_challenge_still_counts() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let key = DeviceKey::generate();
    let (s, r) = f.registered(&key).await?;
    let id = r.binding.session_id.clone();
    let older = f.refresh_challenge(&s, &id).await?;
    let _newer = f.refresh_challenge(&s, &id).await?;
    let proof = response_field(&key.refresh_proof(&older));
    assert!(matches!(
        f.dbsc.refresh(&f.manager, &s, None, Some(&proof)).await?,
        RefreshOutcome::Refreshed { .. }
    ));
    Ok(())
}

#[tokio::test]
async fn a_proof_from_another_key_revokes_the_session() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let (s, r) = f.registered(&DeviceKey::generate()).await?;
    let c = f.refresh_challenge(&s, &r.binding.session_id).await?;
    let thief = DeviceKey::generate();
    // The thief's proof names its own key, as a registration proof would.
    let proof = response_field(&thief.registration_proof(&c));
    assert!(matches!(
        f.dbsc.refresh(&f.manager, &s, None, Some(&proof)).await,
        Err(DbscError::KeyMismatch)
    ));
    match f.manager.load_hash(&s.hash).await {
        Err(SessionError::Revoked { .. }) => {}
        other => panic!("expected revoked, got {other:?}"),
    }
    assert_eq!(
        f.store.load_binding(&s.handle, f.manager.now()).await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn refresh_of_an_unbound_or_renamed_session_ends_it() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let s = f.session().await?;
    assert!(matches!(
        f.dbsc.refresh(&f.manager, &s, Some("\"x\""), None).await,
        Err(DbscError::NotBound)
    ));
    let (s, _) = f.registered(&DeviceKey::generate()).await?;
    assert!(matches!(
        f.dbsc
            .refresh(&f.manager, &s, Some("\"other-id\""), None)
            .await,
        Err(DbscError::NotBound)
    ));
    Ok(())
}

#[tokio::test]
async fn a_sign_in_gives_a_new_identity_that_must_register_again() -> TestResult {
    let f = fixture(DbscMode::Required)?;
    let (s, r) = f.registered(&DeviceKey::generate()).await?;
    let login = Renewal::Login {
        user_id: "bob".into(),
    };
    let issued = f
        .manager
        .rotate(&s.hash, login, &DataChanges::default())
        .await?;
    assert_ne!(issued.record.handle, s.handle);
    assert_eq!(
        f.dbsc
            .check(&f.manager, &issued.record, Some(&r.cookie.value))
            .await?,
        BoundState::Unbound
    );
    // A plain rotation keeps the handle, so the binding follows it.
    let (s, r) = f.registered(&DeviceKey::generate()).await?;
    let rotated = f
        .manager
        .rotate(&s.hash, Renewal::Rotate, &DataChanges::default())
        .await?;
    assert_eq!(
        f.dbsc
            .check(&f.manager, &rotated.record, Some(&r.cookie.value))
            .await?,
        BoundState::Bound
    );
    Ok(())
}

#[test]
fn rsa_keys_verify_and_short_ones_are_refused() -> TestResult {
    // A 1024-bit modulus is refused at registration.
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
    let jwk = json!({"kty": "RSA", "n": n, "e": "AQAB"});
    assert_eq!(PublicJwk::from_value(&jwk), Err(ProofError::BadKey));
    let private = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"});
    assert_eq!(PublicJwk::from_value(&private), Err(ProofError::BadKey));
    Ok(())
}

#[test]
fn skipped_is_parsed() -> TestResult {
    let f = Dbsc::new(DbscConfig::default(), Arc::new(MemoryDbscStore::new()));
    let s = f
        .record_skipped(None, "unreachable")
        .ok_or("a skip reason was not parsed")?;
    assert_eq!(s.reason, "unreachable");
    assert_eq!(f.record_skipped(None, "\"not a token\""), None);
    Ok(())
}

/// The DBSC conformance suite, one test per case:
/// `cargo test -p tessera --lib dbsc::tests::dbsc_conformance::<case>`.
mod dbsc_conformance {
    use std::sync::Arc;

    use crate::dbsc::MemoryDbscStore;

    crate::dbsc_conformance!(async { Arc::new(MemoryDbscStore::new()) });
}
