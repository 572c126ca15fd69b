//! The directory-backed key store: permissions, manifest, rotation,
//! pruning, reloading, refusal of insecure files.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use tessera::record::SessionHandle;
use tessera::time::{Clock as _, Timestamp};
use tessera_jwt::{
    Algorithm, DEFAULT_RETENTION, IssueError, Issuer, IssuerConfig, KeyError, KeySet, KeyStore,
    VerifierConfig, VerifyError,
};

use crate::common::*;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn directory_is_0700_and_every_file_0600() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    f.store.rotate(Algorithm::Es256, f.clock.now()).unwrap();
    let dir = f.key_dir();
    assert_eq!(mode(&dir), 0o700);
    let mut pems = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        if path.extension().is_some_and(|e| e == "pem") {
            pems += 1;
            let text = fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("-----BEGIN PRIVATE KEY-----"),
                "PKCS#8 PEM"
            );
        }
    }
    assert_eq!(pems, 2);
}

#[test]
fn manifest_lists_kid_algorithm_created_and_retired() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let first = f.kid();
    f.clock.advance(Duration::from_secs(5));
    let second = f.store.rotate(Algorithm::Es256, f.clock.now()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(f.key_dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({"version": 1, "keys": [
            {"kid": first.as_str(), "algorithm": "EdDSA", "created_at": T0, "retired_at": T0 + 5000},
            {"kid": second.as_str(), "algorithm": "ES256", "created_at": T0 + 5000, "retired_at": null},
        ]})
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let old_kid = f.kid();
    let old_token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    f.clock.advance(Duration::from_secs(60));
    let new_kid = f.store.rotate(Algorithm::EdDSA, f.clock.now()).unwrap();
    assert_ne!(old_kid, new_kid);

    let new_token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    assert_eq!(new_token.kid(), &new_kid);
    let verifier = f.verifier();
    assert!(verifier.verify(old_token.as_str()).is_ok());
    assert!(verifier.verify(new_token.as_str()).is_ok());

    let published: Vec<String> = f
        .store
        .key_set()
        .jwks(f.clock.now())
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(published, vec![old_kid.to_string(), new_kid.to_string()]);
}

#[test]
fn retired_key_leaves_the_jwks_when_its_last_token_has_expired_and_prune_deletes_it() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let old_kid = f.kid();
    let old_token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let retired_at = f.clock.now();
    f.store.rotate(Algorithm::EdDSA, retired_at).unwrap();

    // Just before retirement + retention: still published, nothing pruned.
    f.clock
        .set(retired_at + DEFAULT_RETENTION - Duration::from_millis(1));
    assert_eq!(f.store.key_set().jwks(f.clock.now()).keys.len(), 2);
    assert!(f.store.prune(f.clock.now()).unwrap().is_empty());
    assert!(f.key_dir().join(format!("{old_kid}.pem")).exists());
    // Its last token is still inside exp + leeway, so it must still verify.
    assert!(f.verifier().verify(old_token.as_str()).is_ok());

    // At retirement + retention the token is dead anyway and the key goes.
    f.clock.set(retired_at + DEFAULT_RETENTION);
    assert_eq!(f.store.key_set().jwks(f.clock.now()).keys.len(), 1);
    let fresh = tessera_jwt::Verifier::new(
        VerifierConfig::new(ISS, AUD).leeway(Duration::ZERO),
        f.store.key_set().public_keys(),
        f.clock(),
    );
    assert!(matches!(
        fresh.verify(old_token.as_str()),
        Err(VerifyError::RetiredKey)
    ));
    assert_eq!(f.store.prune(f.clock.now()).unwrap(), vec![old_kid.clone()]);
    assert!(!f.key_dir().join(format!("{old_kid}.pem")).exists());
    let reopened = KeyStore::open(f.key_dir(), DEFAULT_RETENTION).unwrap();
    assert_eq!(reopened.key_set().keys().count(), 1);
}

#[test]
fn reopened_store_verifies_tokens_issued_before() {
    let f = Fixture::new(Algorithm::Es256);
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    let reopened = KeyStore::open(f.key_dir(), DEFAULT_RETENTION).unwrap();
    let verifier = tessera_jwt::Verifier::new(
        f.verifier_config(),
        reopened.key_set().public_keys(),
        f.clock(),
    );
    assert!(verifier.verify(token.as_str()).is_ok());
    // And open_or_create on an existing store does not add a key.
    let again = KeyStore::open_or_create(
        f.key_dir(),
        Algorithm::EdDSA,
        DEFAULT_RETENTION,
        f.clock.now(),
    )
    .unwrap();
    assert_eq!(again.key_set().keys().count(), 1);
    assert_eq!(
        again.key_set().current().unwrap().algorithm,
        Algorithm::Es256
    );
}

#[test]
fn rotation_by_another_process_is_seen_on_reload_and_not_lost() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let mut other = KeyStore::open(f.key_dir(), DEFAULT_RETENTION).unwrap();
    let by_other = other.rotate(Algorithm::EdDSA, f.clock.now()).unwrap();
    // `f.store` still has the old view; its own rotation starts from disk.
    let by_us = f.store.rotate(Algorithm::EdDSA, f.clock.now()).unwrap();
    let kids: Vec<_> = f.store.key_set().keys().map(|k| k.kid.clone()).collect();
    assert_eq!(kids.len(), 3);
    assert!(kids.contains(&by_other));
    assert_eq!(f.store.key_set().current().unwrap().kid, by_us);
    other.reload().unwrap();
    assert_eq!(other.key_set().current().unwrap().kid, by_us);
}

#[test]
fn group_readable_key_file_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let pem = f.key_dir().join(format!("{}.pem", f.kid()));
    fs::set_permissions(&pem, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::InsecurePermissions { mode: 0o640, .. })
    ));
}

#[test]
fn world_readable_directory_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    fs::set_permissions(f.key_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::InsecurePermissions { mode: 0o755, .. })
    ));
    // Creating into an existing too-open directory is refused as well.
    let open_dir = f.dir.path().join("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        KeyStore::open_or_create(
            &open_dir,
            Algorithm::EdDSA,
            DEFAULT_RETENTION,
            f.clock.now()
        ),
        Err(KeyError::InsecurePermissions { .. })
    ));
    assert_eq!(
        fs::read_dir(&open_dir).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn symlinked_key_file_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let pem = f.key_dir().join(format!("{}.pem", f.kid()));
    let elsewhere = f.dir.path().join("elsewhere.pem");
    fs::rename(&pem, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &pem).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::InsecurePermissions { .. })
    ));
}

#[test]
fn missing_store_and_corrupt_files_are_reported() {
    let f = Fixture::new(Algorithm::EdDSA);
    assert!(matches!(
        KeyStore::open(f.dir.path().join("absent"), DEFAULT_RETENTION),
        Err(KeyError::NotFound(_))
    ));
    // A key file of the wrong algorithm for its manifest entry.
    let pem = f.key_dir().join(format!("{}.pem", f.kid()));
    fs::write(&pem, foreign_pem(Algorithm::Es256)).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::InvalidKeyFile { .. })
    ));
    // A manifest with two active keys.
    let manifest = f.key_dir().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    let first = m["keys"][0].clone();
    m["keys"].as_array_mut().unwrap().push(first);
    fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::Manifest(_))
    ));
    // A kid that would leave the directory.
    m["keys"] = serde_json::json!([{"kid": "../x", "algorithm": "EdDSA", "created_at": 0, "retired_at": null}]);
    fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(
        KeyStore::open(f.key_dir(), DEFAULT_RETENTION),
        Err(KeyError::Manifest(_))
    ));
}

#[test]
fn stale_temporary_manifest_is_never_reused() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let tmp = f.key_dir().join("manifest.json.tmp");
    fs::write(&tmp, b"junk").unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).unwrap();
    f.store.rotate(Algorithm::EdDSA, f.clock.now()).unwrap();
    assert!(!tmp.exists());
    assert_eq!(mode(&f.key_dir().join("manifest.json")), 0o600);
}

#[test]
fn removed_key_is_deleted_from_disk() {
    let mut f = Fixture::new(Algorithm::EdDSA);
    let compromised = f.kid();
    let token = f
        .issuer()
        .issue("u", &SessionHandle::generate().unwrap())
        .unwrap();
    f.store.rotate(Algorithm::EdDSA, f.clock.now()).unwrap();
    assert!(f.store.remove(&compromised).unwrap());
    assert!(!f.key_dir().join(format!("{compromised}.pem")).exists());
    assert!(matches!(
        f.verifier().verify(token.as_str()),
        Err(VerifyError::UnknownKid)
    ));
    assert!(!f.store.remove(&compromised).unwrap());
}

#[test]
fn issuer_refuses_a_lifetime_longer_than_the_retention() {
    let now = Timestamp::from_millis(T0);
    let keys = KeySet::generate(Algorithm::EdDSA, now).unwrap();
    let clock: std::sync::Arc<dyn tessera::time::Clock> =
        std::sync::Arc::new(tessera::time::ManualClock::new(now));
    let too_long = IssuerConfig::new(ISS, AUD).lifetime(keys.retention() + Duration::from_secs(1));
    assert!(matches!(
        Issuer::new(too_long, &keys, clock.clone()),
        Err(IssueError::LifetimeOutOfBounds)
    ));
    let zero = IssuerConfig::new(ISS, AUD).lifetime(Duration::from_millis(500));
    assert!(matches!(
        Issuer::new(zero, &keys, clock.clone()),
        Err(IssueError::LifetimeOutOfBounds)
    ));
    assert!(matches!(
        Issuer::new(IssuerConfig::new("", AUD), &keys, clock.clone()),
        Err(IssueError::InvalidClaim("issuer"))
    ));
    let issuer = Issuer::new(IssuerConfig::new(ISS, AUD), &keys, clock).unwrap();
    let sid = SessionHandle::generate().unwrap();
    assert!(matches!(
        issuer.issue("", &sid),
        Err(IssueError::InvalidClaim("subject"))
    ));
    assert!(matches!(
        issuer.issue(&"x".repeat(257), &sid),
        Err(IssueError::InvalidClaim("subject"))
    ));
}
