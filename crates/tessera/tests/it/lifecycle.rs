//! Session lifecycle through the manager and the per-request `Session`,
//! with an injected clock (no sleeps).

use std::time::Duration;

use serde_json::json;
use std::sync::Arc;
use tessera::cookie::Presented;
use tessera::policy::ExpiryReason;
use tessera::record::ClientMeta;
use tessera::session::{CookieAction, EndReason};
use tessera::store::{MemoryStore, Store};
use tessera::testkit::{CountingStore, FailingStore};
use tessera::time::{ManualClock, Timestamp};
use tessera::token::SessionToken;
use tessera::{Access, Session, SessionError, SessionManager, SessionPolicy};

const MIN: Duration = Duration::from_secs(60);

fn policy() -> SessionPolicy {
    SessionPolicy::default()
        .with_idle_timeout(30 * MIN)
        .with_absolute_timeout(12 * 60 * MIN)
        .with_touch_step(MIN)
}

fn setup() -> (SessionManager, CountingStore<MemoryStore>, ManualClock) {
    let store = CountingStore::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let manager = SessionManager::builder(store.clone())
        .policy(policy())
        .clock(clock.clone())
        .build()
        .unwrap();
    (manager, store, clock)
}

fn request(manager: &SessionManager, token: Option<&SessionToken>) -> Session {
    let presented = token.map_or(Presented::Absent, |t| Presented::Token(t.clone()));
    Session::new(manager.clone(), presented, ClientMeta::default())
}

async fn sign_in(manager: &SessionManager, user: &str) -> SessionToken {
    let session = request(manager, None);
    session.login(user).await.unwrap();
    match session.commit().await.unwrap() {
        CookieAction::Set { token, .. } => token,
        other => panic!("sign-in must set a cookie, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_tokens_cost_no_store_call() {
    let (manager, store, _) = setup();
    let long = "x".repeat(100_000);
    for bad in ["", "tss_", "garbage", long.as_str(), "tss_AAAA"] {
        let err = manager.load(bad, Access::Activity).await.unwrap_err();
        assert!(matches!(err, SessionError::Malformed(_)), "{err:?}");
    }
    let good = SessionToken::generate().unwrap();
    let mut forged = good.expose().as_bytes().to_vec();
    forged[20] ^= 0x01;
    let forged = String::from_utf8_lossy(&forged).into_owned();
    assert!(manager.load(&forged, Access::Activity).await.is_err());
    assert_eq!(
        store.counts().total,
        0,
        "no store call for malformed tokens"
    );
}

#[tokio::test]
async fn an_untouched_session_costs_no_store_call() {
    let (manager, store, _) = setup();
    let token = sign_in(&manager, "alice").await;
    store.reset();
    let session = request(&manager, Some(&token));
    assert_eq!(session.commit().await.unwrap(), CookieAction::Keep);
    assert_eq!(store.counts().total, 0);
}

#[tokio::test]
async fn reads_inside_the_touch_step_write_nothing() {
    let (manager, store, clock) = setup();
    let token = sign_in(&manager, "alice").await;
    store.reset();
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        let session = request(&manager, Some(&token));
        assert_eq!(session.user_id().await.unwrap().as_deref(), Some("alice"));
        session.commit().await.unwrap();
    }
    assert_eq!(store.counts().loads, 5);
    assert_eq!(
        store.counts().writes,
        0,
        "50 s of reads stay inside the 60 s step"
    );
    clock.advance(Duration::from_secs(20));
    let session = request(&manager, Some(&token));
    session.user_id().await.unwrap();
    session.commit().await.unwrap();
    assert_eq!(
        store.counts().writes,
        1,
        "past the step, one write moves the idle deadline"
    );
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_absolute_deadline() {
    let (manager, _, clock) = setup();
    let token = sign_in(&manager, "alice").await;
    // Active every 20 minutes for 11h40m: idle never fires.
    for _ in 0..35 {
        clock.advance(20 * MIN);
        let record = manager
            .load(token.expose(), Access::Activity)
            .await
            .unwrap();
        assert_eq!(record.user_id.as_deref(), Some("alice"));
    }
    clock.advance(20 * MIN);
    let err = manager
        .load(token.expose(), Access::Activity)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Expired {
                reason: ExpiryReason::Absolute
            }
        ),
        "{err:?}"
    );
    // Gone, not merely refused.
    let err = manager
        .load(token.expose(), Access::Activity)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::NotFound), "{err:?}");
}

#[tokio::test]
async fn inactivity_ends_a_session_and_the_reason_reaches_the_request() {
    let (manager, _, clock) = setup();
    let token = sign_in(&manager, "alice").await;
    clock.advance(30 * MIN);
    let session = request(&manager, Some(&token));
    assert_eq!(session.user_id().await.unwrap(), None);
    assert_eq!(
        session.end_reason().await.unwrap(),
        Some(EndReason::Expired(ExpiryReason::Idle))
    );
    assert_eq!(
        session.commit().await.unwrap(),
        CookieAction::Clear { logout: false },
        "a dead cookie is cleared"
    );
}

#[tokio::test]
async fn status_queries_do_not_keep_a_session_alive() {
    let (manager, store, clock) = setup();
    let token = sign_in(&manager, "alice").await;
    store.reset();
    for _ in 0..5 {
        clock.advance(5 * MIN);
        let session = request(&manager, Some(&token));
        session.mark_status_query();
        assert!(session.record().await.unwrap().is_some());
        session.commit().await.unwrap();
    }
    assert_eq!(store.counts().writes, 0);
    clock.advance(5 * MIN);
    let err = manager
        .load(token.expose(), Access::Status)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SessionError::Expired {
            reason: ExpiryReason::Idle
        }
    ));
}

#[tokio::test]
async fn login_issues_a_new_token_and_kills_the_presented_one() {
    let (manager, _, _) = setup();
    // An anonymous session with data, e.g. a cart.
    let session = request(&manager, None);
    session.insert("cart", json!([1, 2])).await.unwrap();
    let CookieAction::Set { token: anon, .. } = session.commit().await.unwrap() else {
        panic!("anonymous session expected");
    };
    let session = request(&manager, Some(&anon));
    let before = session.csrf_token().await.unwrap().unwrap();
    session.login("alice").await.unwrap();
    let CookieAction::Set {
        token: fresh,
        max_age,
    } = session.commit().await.unwrap()
    else {
        panic!("login must set a new cookie");
    };
    assert_ne!(fresh, anon);
    assert_eq!(
        max_age,
        12 * 60 * MIN,
        "Max-Age is the remaining absolute lifetime"
    );
    assert!(matches!(
        manager.load(anon.expose(), Access::Activity).await,
        Err(SessionError::NotFound)
    ));
    let next = request(&manager, Some(&fresh));
    assert_eq!(
        next.get::<Vec<u32>>("cart").await.unwrap(),
        Some(vec![1, 2])
    );
    assert!(
        !next.verify_csrf(&before).await.unwrap(),
        "CSRF token changes with the session"
    );
    let record = next.record().await.unwrap().unwrap();
    assert!(record.authenticated_at.is_some());
}

#[tokio::test]
async fn signing_in_as_another_user_drops_the_previous_users_data() {
    let (manager, _, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let session = request(&manager, Some(&token));
    session.insert("secret", "alice's").await.unwrap();
    session.commit().await.unwrap();
    let session = request(&manager, Some(&token));
    session.login("bob").await.unwrap();
    let CookieAction::Set { token: bob, .. } = session.commit().await.unwrap() else {
        panic!()
    };
    let next = request(&manager, Some(&bob));
    assert_eq!(next.get::<String>("secret").await.unwrap(), None);
}

#[tokio::test]
async fn rotation_keeps_data_and_handle_and_kills_the_old_token() {
    let (manager, _, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let session = request(&manager, Some(&token));
    session.insert("theme", "dark").await.unwrap();
    session.commit().await.unwrap();
    let handle = manager
        .load(token.expose(), Access::Status)
        .await
        .unwrap()
        .handle;
    let session = request(&manager, Some(&token));
    session.rotate().await.unwrap();
    let CookieAction::Set { token: rotated, .. } = session.commit().await.unwrap() else {
        panic!()
    };
    assert!(manager.load(token.expose(), Access::Status).await.is_err());
    let record = manager
        .load(rotated.expose(), Access::Status)
        .await
        .unwrap();
    assert_eq!(record.handle, handle);
    assert_eq!(record.data.get("theme"), Some(&json!("dark")));
}

#[tokio::test]
async fn failed_rotation_leaves_the_old_session_intact() {
    let store = FailingStore::new(MemoryStore::new());
    let manager = SessionManager::builder(store.clone()).build().unwrap();
    let issued = manager
        .create(
            Some("alice".into()),
            Default::default(),
            ClientMeta::default(),
        )
        .await
        .unwrap();
    store.set_failing(true);
    let err = manager
        .rotate(
            &issued.record.hash,
            tessera::Renewal::Rotate,
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    store.set_failing(false);
    let record = manager
        .load(issued.token.expose(), Access::Status)
        .await
        .unwrap();
    assert_eq!(record.handle, issued.record.handle);
}

#[tokio::test]
async fn store_errors_fail_closed() {
    let store = FailingStore::new(MemoryStore::new());
    let manager = SessionManager::builder(store.clone()).build().unwrap();
    let issued = manager
        .create(
            Some("alice".into()),
            Default::default(),
            ClientMeta::default(),
        )
        .await
        .unwrap();
    store.set_failing(true);
    let session = request(&manager, Some(&issued.token));
    let err = session.user_id().await.unwrap_err();
    assert!(
        err.is_unavailable(),
        "never anonymous, never authenticated: {err:?}"
    );
    store.set_failing(false);
    assert_eq!(session.user_id().await.unwrap().as_deref(), Some("alice"));
}

#[tokio::test]
async fn logout_deletes_the_record_and_clears_the_cookie() {
    let (manager, store, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let session = request(&manager, Some(&token));
    assert!(session.logout().await.unwrap());
    assert_eq!(
        session.commit().await.unwrap(),
        CookieAction::Clear { logout: true }
    );
    assert!(store.load(&token.hash()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_write_after_revocation_does_not_resurrect_the_session() {
    let (manager, store, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let session = request(&manager, Some(&token));
    assert!(session.user_id().await.unwrap().is_some());
    session.insert("late", true).await.unwrap();
    manager
        .revoke_user("alice", None, tessera::Revocation::Other)
        .await
        .unwrap();
    assert_eq!(
        session.commit().await.unwrap(),
        CookieAction::Clear { logout: false }
    );
    assert!(store.load(&token.hash()).await.unwrap().is_none());
}

#[tokio::test]
async fn devices_are_listed_and_revoked_per_user() {
    let (manager, _, _) = setup();
    let phone = sign_in(&manager, "alice").await;
    let laptop = sign_in(&manager, "alice").await;
    let _bob = sign_in(&manager, "bob").await;
    let sessions = manager.list_user("alice").await.unwrap();
    assert_eq!(sessions.len(), 2);
    let phone_handle = manager
        .load(phone.expose(), Access::Status)
        .await
        .unwrap()
        .handle;
    assert!(
        !manager
            .revoke(&phone_handle, Some("bob"), tessera::Revocation::Other)
            .await
            .unwrap(),
        "not bob's"
    );
    assert!(
        manager
            .revoke(&phone_handle, Some("alice"), tessera::Revocation::Other)
            .await
            .unwrap()
    );
    assert!(manager.load(phone.expose(), Access::Status).await.is_err());
    assert!(manager.load(laptop.expose(), Access::Status).await.is_ok());
    let laptop_handle = manager
        .load(laptop.expose(), Access::Status)
        .await
        .unwrap()
        .handle;
    let _tablet = sign_in(&manager, "alice").await;
    assert_eq!(
        manager
            .revoke_user("alice", Some(&laptop_handle), tessera::Revocation::Other)
            .await
            .unwrap(),
        1
    );
    assert_eq!(manager.list_user("alice").await.unwrap().len(), 1);
    assert_eq!(manager.list_user("bob").await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_session_limit_revokes_the_oldest() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let manager = SessionManager::builder(store)
        .policy(policy().with_max_sessions_per_user(Some(2)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = sign_in(&manager, "alice").await;
    clock.advance(MIN);
    let second = sign_in(&manager, "alice").await;
    clock.advance(MIN);
    let third = sign_in(&manager, "alice").await;
    assert!(manager.load(first.expose(), Access::Status).await.is_err());
    assert!(manager.load(second.expose(), Access::Status).await.is_ok());
    assert!(manager.load(third.expose(), Access::Status).await.is_ok());
}

#[tokio::test]
async fn refuse_new_refuses_a_fourth_sign_in_with_or_without_a_presented_session() {
    use tessera::policy::SessionLimitAction;
    let store = MemoryStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let manager = SessionManager::builder(store)
        .policy(
            policy()
                .with_max_sessions_per_user(Some(3))
                .with_session_limit_action(SessionLimitAction::RefuseNew),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(sign_in(&manager, "alice").await);
        clock.advance(MIN);
    }
    // Without a presented session: the creation is refused.
    let fresh = request(&manager, None);
    assert!(matches!(
        fresh.login("alice").await,
        Err(SessionError::SessionLimit)
    ));
    // On an anonymous session: the sign-in is refused and the anonymous
    // session is left as it was.
    let anonymous = manager
        .create(None, Default::default(), ClientMeta::default())
        .await
        .unwrap();
    let on_it = request(&manager, Some(&anonymous.token));
    assert!(matches!(
        on_it.login("alice").await,
        Err(SessionError::SessionLimit)
    ));
    let still = manager
        .load(anonymous.token.expose(), Access::Status)
        .await
        .unwrap();
    assert_eq!(still.user_id, None);
    assert_eq!(still.version, anonymous.record.version);
    // Re-signing in on one of the held sessions replaces it: allowed.
    let again = request(&manager, Some(&held[0]));
    again.login("alice").await.unwrap();
    again.commit().await.unwrap();
    assert_eq!(manager.list_user("alice").await.unwrap().len(), 3);
    for token in &held[1..] {
        assert!(manager.load(token.expose(), Access::Status).await.is_ok());
    }
}

#[tokio::test]
async fn concurrent_requests_changing_different_keys_both_survive() {
    let (manager, _, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let a = request(&manager, Some(&token));
    let b = request(&manager, Some(&token));
    // Both load the same version, then both write.
    a.user_id().await.unwrap();
    b.user_id().await.unwrap();
    a.insert("a", 1).await.unwrap();
    b.insert("b", 2).await.unwrap();
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let record = manager.load(token.expose(), Access::Status).await.unwrap();
    assert_eq!(record.data.get("a"), Some(&json!(1)));
    assert_eq!(record.data.get("b"), Some(&json!(2)));
}

#[tokio::test]
async fn concurrent_atomic_updates_lose_nothing() {
    let (manager, _, _) = setup();
    let token = sign_in(&manager, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let session = request(&manager, Some(&token));
        tasks.spawn(async move {
            session
                .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                .await
                .unwrap();
            session.commit().await.unwrap();
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let record = manager.load(token.expose(), Access::Status).await.unwrap();
    assert_eq!(record.data.get("n"), Some(&json!(1000)));
}

#[tokio::test]
async fn ambiguous_cookies_give_no_session() {
    let (manager, store, _) = setup();
    let session = Session::new(manager.clone(), Presented::Ambiguous, ClientMeta::default());
    assert_eq!(session.user_id().await.unwrap(), None);
    assert_eq!(
        session.end_reason().await.unwrap(),
        Some(EndReason::Ambiguous)
    );
    assert_eq!(store.counts().total, 0);
}

#[tokio::test]
async fn expired_records_are_purged() {
    let (manager, store, clock) = setup();
    for _ in 0..10 {
        sign_in(&manager, "alice").await;
    }
    clock.advance(31 * MIN);
    assert_eq!(manager.purge_expired(4).await.unwrap(), 4);
    assert_eq!(manager.purge_expired(100).await.unwrap(), 6);
    assert_eq!(store.counts().writes, 10 + 2);
}

#[tokio::test]
async fn a_swallowed_store_error_still_fails_the_commit() {
    let store = FailingStore::new(MemoryStore::new());
    let manager = SessionManager::builder(store.clone()).build().unwrap();
    let issued = manager
        .create(
            Some("alice".into()),
            Default::default(),
            ClientMeta::default(),
        )
        .await
        .unwrap();
    let session = request(&manager, Some(&issued.token));
    store.set_failing(true);
    // A careless handler treats the failure as "anonymous"...
    assert_eq!(session.user_id().await.unwrap_or(None), None);
    store.set_failing(false);
    // ...but the request still fails closed.
    assert!(session.commit().await.unwrap_err().is_unavailable());
}

#[tokio::test]
async fn session_data_over_the_policy_limit_is_refused_and_nothing_is_written() {
    let manager = SessionManager::builder(MemoryStore::new())
        .policy(policy().with_max_data_bytes(Some(64)))
        .build()
        .unwrap();
    let mut big = serde_json::Map::new();
    big.insert("blob".into(), json!("x".repeat(100)));
    assert!(matches!(
        manager.create(None, big, ClientMeta::default()).await,
        Err(SessionError::DataTooLarge { limit: 64 })
    ));
    let issued = manager
        .create(None, serde_json::Map::new(), ClientMeta::default())
        .await
        .unwrap();
    let hash = issued.token.hash();
    let mut small = tessera::record::DataChanges::default();
    small.set("a", json!("y".repeat(20)));
    manager
        .modify(&hash, &small, Access::Activity)
        .await
        .unwrap();
    // Fits alone, not merged onto what is stored.
    let mut more = tessera::record::DataChanges::default();
    more.set("b", json!("z".repeat(40)));
    assert!(matches!(
        manager.modify(&hash, &more, Access::Activity).await,
        Err(SessionError::DataTooLarge { .. })
    ));
    let record = manager
        .load(issued.token.expose(), Access::Status)
        .await
        .unwrap();
    assert_eq!(record.data.len(), 1);
    assert_eq!(record.version, 2, "the refused change wrote nothing");
}

#[tokio::test]
async fn keep_me_signed_in_sets_the_cookie_lifetime_and_turning_it_off_shortens_it() {
    use tessera::policy::SessionClass;

    let store = CountingStore::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let day = 24 * 60 * MIN;
    let offered = SessionManager::builder(store.clone())
        .policy(policy().with_remember(day, 30 * day))
        .clock(clock.clone())
        .build()
        .unwrap();
    let session = request(&offered, None);
    session
        .login_with_class("alice", SessionClass::Remember)
        .await
        .unwrap();
    let token = match session.commit().await.unwrap() {
        CookieAction::Set { token, max_age } => {
            assert_eq!(max_age, 30 * day, "Max-Age is the class's lifetime");
            token
        }
        other => panic!("sign-in must set a cookie, got {other:?}"),
    };

    // The operator turns the class off: the session is held to the
    // default absolute timeout (12 hours) from its sign-in, however active.
    let plain = SessionManager::builder(store.clone())
        .policy(policy())
        .clock(clock.clone())
        .build()
        .unwrap();
    for step in 1..=36 {
        clock.advance(20 * MIN);
        let loaded = plain.load(token.expose(), Access::Activity).await;
        if step < 36 {
            assert!(loaded.is_ok(), "step {step}: {loaded:?}");
        } else {
            assert!(
                matches!(
                    loaded,
                    Err(SessionError::Expired {
                        reason: ExpiryReason::Absolute
                    })
                ),
                "{loaded:?}"
            );
        }
    }
}

/// The library refuses the user ids the server refuses (empty, too long,
/// control characters), before anything is written: the presented
/// session is untouched and no session is created.
#[tokio::test]
async fn login_with_an_invalid_user_id_is_refused_and_writes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::builder_from_arc(store.clone())
        .build()
        .unwrap();
    let session = Session::new(manager.clone(), Presented::Absent, ClientMeta::default());
    for bad in ["", "alice\nadmin", "tab\there", &"x".repeat(257)] {
        let err = session.login(bad).await.unwrap_err();
        assert!(
            matches!(err, SessionError::InvalidUserId(_)),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(store.len(), 0, "nothing was created");
    // An existing session is not rotated by a refused sign-in.
    session.login("alice").await.unwrap();
    let before = session.record().await.unwrap().unwrap();
    assert!(matches!(
        session.login("").await,
        Err(SessionError::InvalidUserId(_))
    ));
    let after = session.record().await.unwrap().unwrap();
    assert_eq!(before.hash, after.hash);
    assert_eq!(after.user_id.as_deref(), Some("alice"));
    assert!(matches!(
        manager
            .create(
                Some("bob\r".into()),
                Default::default(),
                ClientMeta::default()
            )
            .await,
        Err(SessionError::InvalidUserId(_))
    ));
    assert_eq!(store.len(), 1);
}
