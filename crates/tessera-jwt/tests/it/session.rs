//! The optional per-session check, against a real tessera store.

use std::sync::Arc;

use async_trait::async_trait;
use tessera::SessionManager;
use tessera::record::{ClientMeta, Data};
use tessera::store::MemoryStore;
use tessera_jwt::{AccessClaims, BoxError, SessionCheck, StoreSessionCheck, VerifyError};

use crate::common::*;

#[tokio::test]
async fn revoked_session_keeps_its_access_token_until_exp_unless_checked() {
    let f = Fixture::new(tessera_jwt::Algorithm::EdDSA);
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::builder_from_arc(store.clone())
        .clock(f.clock.clone())
        .build()
        .unwrap();
    let issued = manager
        .create(Some("user-1".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = f.issuer().issue("user-1", &issued.record.handle).unwrap();
    let verifier = f.verifier();
    let check = StoreSessionCheck::new(store.clone(), f.clock());

    assert!(verifier.verify_with(token.as_str(), &check).await.is_ok());

    assert!(
        manager
            .revoke(&issued.record.handle, None, tessera::Revocation::Other)
            .await
            .unwrap()
    );
    // The store-free path cannot know: the token lives until exp.
    assert!(verifier.verify(token.as_str()).is_ok());
    // The checked path refuses at once.
    assert!(matches!(
        verifier.verify_with(token.as_str(), &check).await,
        Err(VerifyError::SessionRevoked)
    ));
}

#[tokio::test]
async fn session_of_another_user_does_not_count() {
    let f = Fixture::new(tessera_jwt::Algorithm::EdDSA);
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::builder_from_arc(store.clone())
        .clock(f.clock.clone())
        .build()
        .unwrap();
    let issued = manager
        .create(Some("user-1".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    // A token naming user-2 with user-1's session handle.
    let token = f.issuer().issue("user-2", &issued.record.handle).unwrap();
    let check = StoreSessionCheck::new(store, f.clock());
    assert!(matches!(
        f.verifier().verify_with(token.as_str(), &check).await,
        Err(VerifyError::SessionRevoked)
    ));
}

struct Broken;

#[async_trait]
impl SessionCheck for Broken {
    async fn is_active(&self, _: &AccessClaims) -> Result<bool, BoxError> {
        Err("store unreachable".into())
    }
}

#[tokio::test]
async fn failing_session_check_fails_closed() {
    let f = Fixture::new(tessera_jwt::Algorithm::EdDSA);
    let sid = tessera::record::SessionHandle::generate().unwrap();
    let token = f.issuer().issue("user-1", &sid).unwrap();
    assert!(matches!(
        f.verifier().verify_with(token.as_str(), &Broken).await,
        Err(VerifyError::SessionCheckFailed(_))
    ));
}

#[tokio::test]
async fn session_check_is_not_consulted_for_an_invalid_token() {
    let f = Fixture::new(tessera_jwt::Algorithm::EdDSA);
    let called = std::sync::atomic::AtomicBool::new(false);
    let check = |_: &AccessClaims| {
        called.store(true, std::sync::atomic::Ordering::SeqCst);
        true
    };
    assert!(f.verifier().verify_with("x.y.z", &check).await.is_err());
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
}
