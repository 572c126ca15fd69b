//! Tombstones: an ended session's token says why it ended, through the
//! store and through the manager.

use std::sync::Arc;

use super::{create, now};
use crate::ended::{Ended, Revocation};
use crate::manager::SessionManager;
use crate::policy::ExpiryReason;
use crate::record::{ClientMeta, Data};
use crate::store::{CasOutcome, Store};
use crate::testkit::{record_at, unique_user};
use crate::time::Timestamp;
use crate::token::SessionToken;
use crate::{Access, SessionError};

/// `end`, `delete_by_handle` and `delete_by_user` leave a tombstone keyed
/// by the token hash that says why, until the session's absolute deadline;
/// a live or unknown token has none, and ending nothing writes nothing.
pub async fn ended_sessions_leave_a_tombstone_saying_why(store: Arc<dyn Store>) {
    let user = unique_user("tomb");
    let (_, signed_out) = create(&store, Some(&user)).await;
    let (_, by_handle) = create(&store, Some(&user)).await;
    let (_, by_user) = create(&store, Some(&user)).await;
    let (_, kept) = create(&store, Some(&user)).await;
    let at = now();
    assert!(store.end(&signed_out.hash, Ended::SignedOut).await.unwrap());
    assert!(store.load(&signed_out.hash).await.unwrap().is_none());
    assert!(
        store
            .delete_by_handle(&by_handle.handle, Some(&user), Revocation::OtherDevice)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .delete_by_user(&user, Some(&kept.handle), Revocation::PasswordChanged)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.ended(&signed_out.hash, at).await.unwrap(),
        Some(Ended::SignedOut)
    );
    assert_eq!(
        store.ended(&by_handle.hash, at).await.unwrap(),
        Some(Ended::Revoked(Revocation::OtherDevice))
    );
    assert_eq!(
        store.ended(&by_user.hash, at).await.unwrap(),
        Some(Ended::Revoked(Revocation::PasswordChanged))
    );
    assert_eq!(store.ended(&kept.hash, at).await.unwrap(), None, "live");
    let unknown = SessionToken::generate().unwrap().hash();
    assert_eq!(store.ended(&unknown, at).await.unwrap(), None);
    assert!(!store.end(&unknown, Ended::SignedOut).await.unwrap());
    assert_eq!(store.ended(&unknown, at).await.unwrap(), None);
    // Bounded: a tombstone does not outlive its session's absolute deadline.
    let after = Timestamp::from_millis(signed_out.deadlines.absolute.as_millis() + 1);
    assert_eq!(store.ended(&signed_out.hash, after).await.unwrap(), None);
    // The token of a tombstone cannot be written back to life.
    let mut next = signed_out.clone();
    next.version += 1;
    assert_eq!(
        store.update(signed_out.version, &next, at).await.unwrap(),
        CasOutcome::Missing
    );
    assert!(store.load(&signed_out.hash).await.unwrap().is_none());
    assert_eq!(
        store.list_by_user(&user, at).await.unwrap(),
        vec![kept.clone()]
    );
    assert!(store.delete(&kept.hash).await.unwrap());
}

/// Through the manager: a refused token says `signed_out`, `revoked`,
/// `expired_idle` or `missing`, and keeps saying it.
pub async fn a_refused_token_reports_why_its_session_ended(store: Arc<dyn Store>) {
    let manager = SessionManager::builder_from_arc(store.clone())
        .build()
        .unwrap();
    let user = unique_user("why");
    let issue = || manager.create(Some(user.clone()), Data::new(), ClientMeta::default());
    let own = issue().await.unwrap();
    let other = issue().await.unwrap();
    let changed = issue().await.unwrap();
    manager.destroy(&own.record.hash).await.unwrap();
    manager
        .revoke(&other.record.handle, Some(&user), Revocation::OtherDevice)
        .await
        .unwrap();
    manager
        .revoke_user(&user, None, Revocation::PasswordChanged)
        .await
        .unwrap();
    for _ in 0..2 {
        let code = |token: &crate::token::SessionToken| {
            let manager = manager.clone();
            let token = token.expose().to_owned();
            async move {
                match manager.load(&token, Access::Status).await {
                    Ok(_) => panic!("an ended session must be refused"),
                    Err(e) => (e.reason_code(), e),
                }
            }
        };
        assert_eq!(code(&own.token).await.0, Some("signed_out"));
        let (reason, e) = code(&other.token).await;
        assert_eq!(reason, Some("revoked"));
        assert!(matches!(
            e,
            SessionError::Revoked {
                by: Revocation::OtherDevice
            }
        ));
        let (reason, e) = code(&changed.token).await;
        assert_eq!(reason, Some("revoked"));
        assert!(matches!(
            e,
            SessionError::Revoked {
                by: Revocation::PasswordChanged
            }
        ));
        let unknown = SessionToken::generate().unwrap();
        assert_eq!(code(&unknown).await.0, Some("missing"));
    }
    // Idle expiry, seen once by a load, is remembered after the record is
    // replaced by its tombstone. (The manager's clock runs ahead, so the
    // store's own expiry, a Redis TTL, has not removed the record yet.)
    let (token, idle) = record_at(Some(&user), now(), 15_000);
    store.create(&idle).await.unwrap();
    let clock = crate::time::ManualClock::new(now());
    clock.advance(std::time::Duration::from_secs(20));
    let manager = SessionManager::builder_from_arc(store.clone())
        .clock(clock)
        .build()
        .unwrap();
    for _ in 0..2 {
        match manager.load(token.expose(), Access::Status).await {
            Err(SessionError::Expired {
                reason: ExpiryReason::Idle,
            }) => {}
            other => panic!("expected expired_idle, got {other:?}"),
        }
    }
    assert!(store.load(&idle.hash).await.unwrap().is_none());
}
