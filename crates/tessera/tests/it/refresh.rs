//! Refresh-token rotation and theft detection through the manager
//! (RFC 9700 §4.14.2), with an injected clock.

use std::sync::Arc;
use std::time::Duration;

use tessera::record::ClientMeta;
use tessera::refresh::RefreshError;
use tessera::store::MemoryStore;
use tessera::time::{ManualClock, Timestamp};
use tessera::token::RefreshToken;
use tessera::{Access, Issued, SessionManager, SessionPolicy};

fn setup() -> (SessionManager, ManualClock) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let manager = SessionManager::builder_from_arc(store.clone())
        .refresh_store(store)
        .policy(SessionPolicy::default().with_refresh_grace(Duration::from_secs(10)))
        .clock(clock.clone())
        .build()
        .unwrap();
    (manager, clock)
}

async fn sign_in(manager: &SessionManager) -> (Issued, RefreshToken) {
    let issued = manager
        .create(
            Some("alice".into()),
            Default::default(),
            ClientMeta::default(),
        )
        .await
        .unwrap();
    let rt = manager.issue_refresh(&issued.record).await.unwrap();
    (issued, rt)
}

#[tokio::test]
async fn every_refresh_returns_a_new_token_and_kills_the_old_one() {
    let (manager, clock) = setup();
    let (_, rt1) = sign_in(&manager).await;
    let r2 = manager.refresh(rt1.expose()).await.unwrap();
    assert_ne!(r2.token, rt1);
    assert!(!r2.retried);
    clock.advance(Duration::from_secs(60));
    let r3 = manager.refresh(r2.token.expose()).await.unwrap();
    assert_ne!(r3.token, r2.token);
    assert!(
        manager
            .introspect_refresh(rt1.expose())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        manager
            .introspect_refresh(r2.token.expose())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        manager
            .introspect_refresh(r3.token.expose())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_refresh_counts_as_activity() {
    let (manager, clock) = setup();
    let (issued, rt) = sign_in(&manager).await;
    clock.advance(Duration::from_secs(20 * 60));
    let refreshed = manager.refresh(rt.expose()).await.unwrap();
    assert!(refreshed.session.deadlines.idle > issued.record.deadlines.idle);
}

#[tokio::test]
async fn reuse_after_the_grace_period_revokes_the_family_and_the_session() {
    let (manager, clock) = setup();
    let (issued, stolen) = sign_in(&manager).await;
    // The victim refreshes; later the thief replays the old token.
    let victim = manager.refresh(stolen.expose()).await.unwrap();
    clock.advance(Duration::from_secs(11));
    assert!(matches!(
        manager.refresh(stolen.expose()).await,
        Err(RefreshError::ReuseDetected { .. })
    ));
    // Both are logged out: the victim's token and the session are dead.
    assert!(matches!(
        manager.refresh(victim.token.expose()).await,
        Err(RefreshError::Invalid)
    ));
    assert!(
        manager
            .load(issued.token.expose(), Access::Status)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_retry_within_the_grace_period_gets_the_same_child() {
    let (manager, clock) = setup();
    let (_, rt) = sign_in(&manager).await;
    let first = manager.refresh(rt.expose()).await.unwrap();
    clock.advance(Duration::from_secs(3));
    let retry = manager.refresh(rt.expose()).await.unwrap();
    assert!(retry.retried);
    assert_eq!(retry.token, first.token, "one lineage, not two");
    // The lineage goes on normally.
    assert!(manager.refresh(first.token.expose()).await.is_ok());
}

#[tokio::test]
async fn a_retry_after_the_child_was_used_is_theft() {
    let (manager, _) = setup();
    let (issued, rt) = sign_in(&manager).await;
    let child = manager.refresh(rt.expose()).await.unwrap();
    let _grandchild = manager.refresh(child.token.expose()).await.unwrap();
    assert!(matches!(
        manager.refresh(rt.expose()).await,
        Err(RefreshError::ReuseDetected { .. })
    ));
    assert!(
        manager
            .load(issued.token.expose(), Access::Status)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn concurrent_refreshes_leave_one_lineage() {
    let (manager, _) = setup();
    let (_, rt) = sign_in(&manager).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let manager = manager.clone();
        let rt = rt.clone();
        tasks.spawn(async move { manager.refresh(rt.expose()).await });
    }
    let mut children = Vec::new();
    while let Some(done) = tasks.join_next().await {
        children.push(done.unwrap().unwrap().token);
    }
    children.dedup_by(|a, b| a == b);
    assert!(
        children.windows(2).all(|w| w[0] == w[1]),
        "every caller got the same child"
    );
}

#[tokio::test]
async fn revoking_the_session_kills_its_refresh_tokens_at_once() {
    let (manager, _) = setup();
    let (issued, rt) = sign_in(&manager).await;
    manager
        .revoke_user("alice", None, tessera::Revocation::Other)
        .await
        .unwrap();
    assert!(matches!(
        manager.refresh(rt.expose()).await,
        Err(RefreshError::Invalid)
    ));
    let _ = issued;
}

#[tokio::test]
async fn refresh_tokens_end_with_the_absolute_deadline() {
    let (manager, clock) = setup();
    let (_, mut rt) = sign_in(&manager).await;
    // Active every 20 minutes: the idle deadline never passes...
    for _ in 0..35 {
        clock.advance(Duration::from_secs(20 * 60));
        rt = manager.refresh(rt.expose()).await.unwrap().token;
    }
    // ...but 12 hours after sign-in it is over.
    clock.advance(Duration::from_secs(20 * 60));
    assert!(matches!(
        manager.refresh(rt.expose()).await,
        Err(RefreshError::Invalid)
    ));
}

#[tokio::test]
async fn malformed_refresh_tokens_are_refused_and_revocation_is_idempotent() {
    let (manager, _) = setup();
    assert!(matches!(
        manager.refresh("tsr_nope").await,
        Err(RefreshError::Malformed)
    ));
    assert!(!manager.revoke_refresh("junk").await.unwrap());
    let (issued, rt) = sign_in(&manager).await;
    assert!(manager.revoke_refresh(rt.expose()).await.unwrap());
    assert!(
        manager
            .load(issued.token.expose(), Access::Status)
            .await
            .is_err()
    );
    assert!(!manager.revoke_refresh(rt.expose()).await.unwrap());
}
