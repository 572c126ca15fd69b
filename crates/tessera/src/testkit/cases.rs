//! The store conformance cases. Each takes the store under test.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

pub use super::not_before_cases::{
    global_not_before_refuses_everyone, not_before_never_moves_backward,
    user_not_before_refuses_that_users_older_sessions_only,
};
pub use super::patch_cases::*;
use super::{record_at, unique_user};
use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::manager::SessionManager;
use crate::policy::{ExpiryReason, SessionCap, SessionLimitAction};
use crate::record::{ClientMeta, Data};
use crate::record::{SessionHandle, SessionRecord};
use crate::store::{Capped, CasOutcome, Modify, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::SessionToken;
use crate::{Access, SessionError};

type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The one list of the store conformance cases, in the order they
/// run: calls back `$callback! { ($($args)*) [case, ...] }` with their
/// names. [`run_all`](super::run_all) and
/// [`store_conformance!`](crate::store_conformance) both expand it, so a case
/// cannot be added to one and forgotten in the other.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    (($($callback:tt)*) $($args:tt)*) => {
        $($callback)*! { ($($args)*) [
            ping_answers,
            created_record_loads_identically,
            duplicate_create_is_refused,
            unknown_hash_loads_nothing,
            update_with_expected_version_applies,
            update_with_stale_version_conflicts,
            update_of_deleted_record_is_missing_and_does_not_resurrect,
            update_of_expired_record_is_missing,
            rotate_moves_the_record_atomically,
            rotate_with_stale_version_changes_nothing,
            rotate_of_missing_or_expired_changes_nothing,
            delete_reports_existence,
            delete_by_handle_respects_owner,
            list_by_user_returns_live_sessions_oldest_first,
            delete_by_user_can_keep_one,
            user_index_follows_rotation,
            sign_in_rotation_retires_the_old_handle,
            ended_sessions_leave_a_tombstone_saying_why,
            a_refused_token_reports_why_its_session_ended,
            purge_removes_expired_records_in_bounded_batches,
            purge_of_an_idle_expired_session_leaves_expired_idle,
            modify_applies_and_bumps_version,
            modify_keep_writes_nothing,
            modify_of_missing_or_expired_is_none,
            concurrent_increments_lose_nothing,
            concurrent_changes_to_different_keys_both_survive,
            racing_rotations_leave_one_token,
            revoke_all_racing_rotation_leaves_no_live_session,
            capped_creation_evicts_the_oldest_with_a_tombstone,
            capped_creation_refuses_at_the_cap_and_writes_nothing,
            racing_capped_creations_leave_exactly_the_cap,
            racing_refused_creations_admit_exactly_the_cap,
            remember_class_survives_round_trips_touches_and_rotation,
            unconfigured_remember_class_is_refused_and_stores_nothing,
            patch_sets_removes_and_increments_in_one_write,
            patch_refusals_write_nothing,
            patch_of_missing_or_expired_is_missing_and_resurrects_nothing,
            patch_activity_moves_the_idle_deadline_by_class,
            concurrent_patch_increments_lose_nothing,
            user_not_before_refuses_that_users_older_sessions_only,
            not_before_never_moves_backward,
            // Sets the store-wide switch (in the past; see the case).
            global_not_before_refuses_everyone,
            // Last: it empties the store (within its prefix or database).
            delete_all_ends_every_session_and_the_store_keeps_working,
        ] }
    };
}

/// Every case with its name, in order.
pub(super) fn all() -> Vec<(&'static str, Case)> {
    macro_rules! table {
        (() [$($name:ident),* $(,)?]) => {
            vec![$((stringify!($name), (|s| Box::pin($name(s))) as Case)),*]
        };
    }
    crate::__store_cases!((table))
}

fn now() -> Timestamp {
    SystemClock.now()
}

const HOUR: i64 = 3_600_000;

async fn create(store: &Arc<dyn Store>, user: Option<&str>) -> (SessionToken, SessionRecord) {
    let (token, record) = record_at(user, now(), HOUR);
    store.create(&record).await.expect("create");
    (token, record)
}

/// Loads and requires a record valid at `at`.
async fn live(store: &Arc<dyn Store>, record: &SessionRecord, at: Timestamp) -> bool {
    match store.load(&record.hash).await.expect("load") {
        Some(r) => r.is_valid_at(at),
        None => false,
    }
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

pub async fn created_record_loads_identically(store: Arc<dyn Store>) {
    let user = unique_user("load");
    let (_, record) = create(&store, Some(&user)).await;
    let loaded = store.load(&record.hash).await.unwrap().expect("record");
    assert_eq!(loaded, record, "a record must load exactly as created");
    let (_, anonymous) = create(&store, None).await;
    let loaded = store.load(&anonymous.hash).await.unwrap().expect("record");
    assert_eq!(loaded, anonymous);
}

pub async fn duplicate_create_is_refused(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let mut again = record.clone();
    again.data.insert("evil".into(), json!(true));
    match store.create(&again).await {
        Err(StoreError::Duplicate) => {}
        other => panic!("creating an existing key must be Duplicate, got {other:?}"),
    }
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(loaded, record, "a refused create must change nothing");
}

pub async fn unknown_hash_loads_nothing(store: Arc<dyn Store>) {
    let token = SessionToken::generate().unwrap();
    assert!(store.load(&token.hash()).await.unwrap().is_none());
}

pub async fn update_with_expected_version_applies(store: Arc<dyn Store>) {
    let (_, record) = create(&store, Some(&unique_user("upd"))).await;
    let mut next = record.clone();
    next.version = record.version + 1;
    next.data.insert("x".into(), json!(42));
    next.deadlines.idle = Timestamp::from_millis(record.deadlines.idle.as_millis() + 1000);
    let out = store.update(record.version, &next, now()).await.unwrap();
    assert_eq!(out, CasOutcome::Applied);
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(loaded, next);
}

pub async fn update_with_stale_version_conflicts(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let mut first = record.clone();
    first.version += 1;
    first.data.insert("winner".into(), json!(1));
    assert_eq!(
        store.update(record.version, &first, now()).await.unwrap(),
        CasOutcome::Applied
    );
    let mut stale = record.clone();
    stale.version += 1;
    stale.data.insert("loser".into(), json!(1));
    assert_eq!(
        store.update(record.version, &stale, now()).await.unwrap(),
        CasOutcome::Conflict,
        "a write based on an old version must conflict"
    );
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(loaded, first, "a conflicting write must change nothing");
}

pub async fn update_of_deleted_record_is_missing_and_does_not_resurrect(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    assert!(store.delete(&record.hash).await.unwrap());
    let mut next = record.clone();
    next.version += 1;
    assert_eq!(
        store.update(record.version, &next, now()).await.unwrap(),
        CasOutcome::Missing
    );
    assert!(store.load(&record.hash).await.unwrap().is_none());
}

pub async fn update_of_expired_record_is_missing(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let later = Timestamp::from_millis(record.deadlines.idle.as_millis() + 1);
    let mut next = record.clone();
    next.version += 1;
    // A late write that would move the idle deadline past `later`.
    next.deadlines.idle = Timestamp::from_millis(later.as_millis() + HOUR);
    assert_eq!(
        store.update(record.version, &next, later).await.unwrap(),
        CasOutcome::Missing,
        "a write after expiry must not resurrect the session"
    );
    assert!(!live(&store, &record, later).await);
}

pub async fn rotate_moves_the_record_atomically(store: Arc<dyn Store>) {
    let user = unique_user("rot");
    let (_, old) = create(&store, Some(&user)).await;
    let token = SessionToken::generate().unwrap();
    let mut new = old.clone();
    new.hash = token.hash();
    new.version = old.version + 1;
    assert_eq!(
        store
            .rotate(&old.hash, old.version, &new, now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert!(
        store.load(&old.hash).await.unwrap().is_none(),
        "old token must be dead"
    );
    let loaded = store.load(&new.hash).await.unwrap().expect("new record");
    assert_eq!(loaded, new);
    assert_eq!(loaded.handle, old.handle, "the handle survives rotation");
}

pub async fn rotate_with_stale_version_changes_nothing(store: Arc<dyn Store>) {
    let (_, old) = create(&store, None).await;
    let mut new = old.clone();
    new.hash = SessionToken::generate().unwrap().hash();
    new.version = old.version + 1;
    assert_eq!(
        store
            .rotate(&old.hash, old.version + 7, &new, now())
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(store.load(&old.hash).await.unwrap(), Some(old));
    assert!(store.load(&new.hash).await.unwrap().is_none());
}

pub async fn rotate_of_missing_or_expired_changes_nothing(store: Arc<dyn Store>) {
    let (_, old) = create(&store, None).await;
    let mut new = old.clone();
    new.hash = SessionToken::generate().unwrap().hash();
    new.version = old.version + 1;
    let later = Timestamp::from_millis(old.deadlines.absolute.as_millis() + 1);
    assert_eq!(
        store
            .rotate(&old.hash, old.version, &new, later)
            .await
            .unwrap(),
        CasOutcome::Missing,
        "an expired session must not be rotated back to life"
    );
    assert!(store.load(&new.hash).await.unwrap().is_none());
    assert!(store.delete(&old.hash).await.unwrap());
    assert_eq!(
        store
            .rotate(&old.hash, old.version, &new, now())
            .await
            .unwrap(),
        CasOutcome::Missing
    );
    assert!(store.load(&new.hash).await.unwrap().is_none());
}

pub async fn delete_reports_existence(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    assert!(store.delete(&record.hash).await.unwrap());
    assert!(!store.delete(&record.hash).await.unwrap());
    assert!(store.load(&record.hash).await.unwrap().is_none());
}

pub async fn delete_by_handle_respects_owner(store: Arc<dyn Store>) {
    let alice = unique_user("alice");
    let (_, record) = create(&store, Some(&alice)).await;
    assert!(
        !store
            .delete_by_handle(&record.handle, Some("mallory"), Revocation::Other)
            .await
            .unwrap(),
        "another user's handle must not be revocable"
    );
    assert!(live(&store, &record, now()).await);
    assert!(
        store
            .delete_by_handle(&record.handle, Some(&alice), Revocation::Other)
            .await
            .unwrap()
    );
    assert!(store.load(&record.hash).await.unwrap().is_none());
    assert!(
        !store
            .delete_by_handle(&record.handle, None, Revocation::Other)
            .await
            .unwrap()
    );
    let (_, other) = create(&store, Some(&alice)).await;
    assert!(
        store
            .delete_by_handle(&other.handle, None, Revocation::Other)
            .await
            .unwrap()
    );
    assert!(store.load(&other.hash).await.unwrap().is_none());
}

pub async fn list_by_user_returns_live_sessions_oldest_first(store: Arc<dyn Store>) {
    let user = unique_user("list");
    let base = now();
    let (_, a) = record_at(
        Some(&user),
        Timestamp::from_millis(base.as_millis() - 2000),
        HOUR,
    );
    let (_, b) = record_at(
        Some(&user),
        Timestamp::from_millis(base.as_millis() - 1000),
        HOUR,
    );
    store.create(&b).await.unwrap();
    store.create(&a).await.unwrap();
    let (_, _other) = create(&store, Some(&unique_user("other"))).await;
    let (_, _anon) = create(&store, None).await;
    let listed = store.list_by_user(&user, base).await.unwrap();
    assert_eq!(
        listed,
        vec![a.clone(), b.clone()],
        "oldest first, only this user's"
    );
    // A session expired at the query time is not listed.
    let after_a = Timestamp::from_millis(a.deadlines.idle.as_millis());
    let listed = store.list_by_user(&user, after_a).await.unwrap();
    assert!(listed.iter().all(|r| r.handle != a.handle));
    assert!(
        store
            .list_by_user(&unique_user("nobody"), base)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn delete_by_user_can_keep_one(store: Arc<dyn Store>) {
    let user = unique_user("revoke");
    let (_, keep) = create(&store, Some(&user)).await;
    let (_, a) = create(&store, Some(&user)).await;
    let (_, b) = create(&store, Some(&user)).await;
    let (_, bystander) = create(&store, Some(&unique_user("bystander"))).await;
    assert_eq!(
        store
            .delete_by_user(&user, Some(&keep.handle), Revocation::Other)
            .await
            .unwrap(),
        2
    );
    assert!(live(&store, &keep, now()).await);
    assert!(store.load(&a.hash).await.unwrap().is_none());
    assert!(store.load(&b.hash).await.unwrap().is_none());
    assert!(live(&store, &bystander, now()).await);
    assert_eq!(
        store
            .delete_by_user(&user, None, Revocation::Other)
            .await
            .unwrap(),
        1
    );
    assert!(store.load(&keep.hash).await.unwrap().is_none());
    assert!(store.list_by_user(&user, now()).await.unwrap().is_empty());
}

pub async fn user_index_follows_rotation(store: Arc<dyn Store>) {
    let user = unique_user("idx");
    let (_, old) = create(&store, Some(&user)).await;
    let mut new = old.clone();
    new.hash = SessionToken::generate().unwrap().hash();
    new.version += 1;
    assert_eq!(
        store
            .rotate(&old.hash, old.version, &new, now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    let listed = store.list_by_user(&user, now()).await.unwrap();
    assert_eq!(listed, vec![new.clone()]);
    // An anonymous session signing in: rotation adds it to the user index.
    let (_, anon) = create(&store, None).await;
    let mut signed_in = anon.clone();
    signed_in.hash = SessionToken::generate().unwrap().hash();
    signed_in.version += 1;
    signed_in.user_id = Some(user.clone());
    assert_eq!(
        store
            .rotate(&anon.hash, anon.version, &signed_in, now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(store.list_by_user(&user, now()).await.unwrap().len(), 2);
    assert_eq!(
        store
            .delete_by_user(&user, None, Revocation::Other)
            .await
            .unwrap(),
        2
    );
    assert!(store.load(&new.hash).await.unwrap().is_none());
    assert!(store.load(&signed_in.hash).await.unwrap().is_none());
}

/// A sign-in is a new session identity: `rotate` to a record with a new
/// handle (and another user) retires the old handle in the same step, so
/// nothing can be listed or revoked under it any more, and the old user's
/// index no longer holds the session.
pub async fn sign_in_rotation_retires_the_old_handle(store: Arc<dyn Store>) {
    let mallory = unique_user("fix-m");
    let alice = unique_user("fix-a");
    let (_, old) = create(&store, Some(&mallory)).await;
    let mut new = old.clone();
    new.hash = SessionToken::generate().unwrap().hash();
    new.handle = SessionHandle::generate().unwrap();
    new.user_id = Some(alice.clone());
    new.version = old.version + 1;
    assert_eq!(
        store
            .rotate(&old.hash, old.version, &new, now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert!(store.load(&old.hash).await.unwrap().is_none());
    assert_eq!(store.load(&new.hash).await.unwrap(), Some(new.clone()));
    assert!(
        store
            .list_by_user(&mallory, now())
            .await
            .unwrap()
            .is_empty(),
        "the old user must not see the session any more"
    );
    assert_eq!(
        store.list_by_user(&alice, now()).await.unwrap(),
        vec![new.clone()]
    );
    assert!(
        !store
            .delete_by_handle(&old.handle, None, Revocation::Other)
            .await
            .unwrap(),
        "nothing answers to the old handle"
    );
    assert_eq!(
        store
            .delete_by_user(&mallory, None, Revocation::Other)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.load(&new.hash).await.unwrap(), Some(new.clone()));
    assert!(
        store
            .delete_by_handle(&new.handle, Some(&alice), Revocation::Other)
            .await
            .unwrap()
    );
    assert!(store.load(&new.hash).await.unwrap().is_none());
}

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

pub async fn purge_removes_expired_records_in_bounded_batches(store: Arc<dyn Store>) {
    // Records that ended ten hours ago, far from anything another test uses.
    let past = Timestamp::from_millis(now().as_millis() - 10 * HOUR);
    let user = unique_user("purge");
    let mut expired = Vec::new();
    for _ in 0..5 {
        let (_, r) = record_at(Some(&user), past, 1000);
        store.create(&r).await.unwrap();
        expired.push(r);
    }
    let (_, alive) = create(&store, Some(&user)).await;
    let purge_at = Timestamp::from_millis(past.as_millis() + 10_000);
    let first = store.purge_expired(purge_at, 2).await.unwrap();
    assert!(
        first <= 2,
        "a batch must respect its limit, deleted {first}"
    );
    let mut total = first;
    for _ in 0..10 {
        let n = store.purge_expired(purge_at, 2).await.unwrap();
        assert!(n <= 2);
        total += n;
        if n == 0 {
            break;
        }
    }
    for r in &expired {
        assert!(
            !live(&store, r, purge_at).await,
            "an expired record must never load as valid"
        );
    }
    if total > 0 {
        for r in &expired {
            assert!(
                store.load(&r.hash).await.unwrap().is_none(),
                "a store that purges must purge every expired record"
            );
        }
    }
    assert!(
        live(&store, &alive, now()).await,
        "purge must keep live records"
    );
    let listed = store.list_by_user(&user, now()).await.unwrap();
    assert_eq!(listed, vec![alive]);
}

/// A store that purges expired records (the SQL sweeper, the memory
/// store's purge) replaces an idle-expired one by an `expired_idle`
/// tombstone in the same step, kept until the session's absolute deadline:
/// a person back after a long pause is told "signed out because of
/// inactivity", not "no session", even when nobody loaded the session
/// between its expiry and the sweep. A session past its absolute deadline
/// needs none: its tombstone would already be over. (Redis drops a key at
/// its idle deadline by itself and purges nothing: it reports an expiry
/// while the key exists; see `tessera-redis`'s README.)
pub async fn purge_of_an_idle_expired_session_leaves_expired_idle(store: Arc<dyn Store>) {
    // Twenty hours ago: a range no other case uses, so the purge below
    // takes only these records.
    let past = Timestamp::from_millis(now().as_millis() - 20 * HOUR);
    let user = unique_user("idle-sweep");
    // Idle deadline past + 10 s, absolute past + 20 s.
    let (_, idle) = record_at(Some(&user), past, 10_000);
    // Both deadlines (past + 1 s, past + 2 s) before the purge.
    let (_, over) = record_at(Some(&user), past, 1_000);
    store.create(&idle).await.unwrap();
    store.create(&over).await.unwrap();
    let purge_at = Timestamp::from_millis(past.as_millis() + 15_000);
    let mut purged = 0;
    loop {
        let n = store.purge_expired(purge_at, 100).await.unwrap();
        purged += n;
        if n == 0 {
            break;
        }
    }
    if purged == 0 {
        // A store that relies on its own expiry (Redis TTLs).
        return;
    }
    assert!(store.load(&idle.hash).await.unwrap().is_none());
    assert!(store.load(&over.hash).await.unwrap().is_none());
    assert_eq!(
        store.ended(&idle.hash, purge_at).await.unwrap(),
        Some(Ended::Expired(ExpiryReason::Idle)),
        "the sweep must leave the idle expiry's tombstone"
    );
    // Kept until the absolute deadline, and not after.
    let after = Timestamp::from_millis(idle.deadlines.absolute.as_millis() + 1);
    assert_eq!(store.ended(&idle.hash, after).await.unwrap(), None);
    assert_eq!(store.ended(&over.hash, purge_at).await.unwrap(), None);
    // The purge that follows the absolute deadline takes the tombstone.
    while store.purge_expired(after, 100).await.unwrap() > 0 {}
    assert_eq!(store.ended(&idle.hash, purge_at).await.unwrap(), None);
}

pub async fn modify_applies_and_bumps_version(store: Arc<dyn Store>) {
    let (_, record) = create(&store, Some(&unique_user("mod"))).await;
    let out = store
        .modify(&record.hash, now(), &|r: &mut SessionRecord| {
            r.data.insert("m".into(), json!("yes"));
            Modify::Write
        })
        .await
        .unwrap()
        .expect("record");
    assert_eq!(out.version, record.version + 1);
    assert_eq!(out.data.get("m"), Some(&json!("yes")));
    assert_eq!(out.handle, record.handle);
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(loaded, out);
}

pub async fn modify_keep_writes_nothing(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let out = store
        .modify(&record.hash, now(), &|r: &mut SessionRecord| {
            r.data.insert("discarded".into(), json!(1));
            Modify::Keep
        })
        .await
        .unwrap();
    assert_eq!(
        out.as_ref(),
        Some(&record),
        "Keep returns the record as stored, not the closure's copy"
    );
    assert_eq!(store.load(&record.hash).await.unwrap(), Some(record));
}

pub async fn modify_of_missing_or_expired_is_none(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let later = Timestamp::from_millis(record.deadlines.absolute.as_millis() + 1);
    let out = store
        .modify(&record.hash, later, &|r: &mut SessionRecord| {
            r.deadlines.idle = Timestamp::from_millis(later.as_millis() + HOUR);
            r.deadlines.absolute = Timestamp::from_millis(later.as_millis() + HOUR);
            Modify::Write
        })
        .await
        .unwrap();
    assert!(out.is_none(), "modify must not resurrect an expired record");
    assert!(!live(&store, &record, later).await);
    store.delete(&record.hash).await.unwrap();
    let out = store
        .modify(&record.hash, now(), &|_: &mut SessionRecord| Modify::Write)
        .await
        .unwrap();
    assert!(out.is_none());
    assert!(store.load(&record.hash).await.unwrap().is_none());
}

pub async fn concurrent_increments_lose_nothing(store: Arc<dyn Store>) {
    const N: u64 = 200;
    let (_, record) = create(&store, None).await;
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let store = store.clone();
        let hash = record.hash;
        tasks.spawn(async move {
            store
                .modify(&hash, now(), &|r: &mut SessionRecord| {
                    let n = r.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
                    r.data.insert("n".into(), json!(n + 1));
                    Modify::Write
                })
                .await
                .expect("modify")
                .expect("record");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(
        loaded.data.get("n"),
        Some(&json!(N)),
        "every increment kept"
    );
    assert_eq!(loaded.version, record.version + N);
}

pub async fn concurrent_changes_to_different_keys_both_survive(store: Arc<dyn Store>) {
    let (_, record) = create(&store, None).await;
    let mut tasks = JoinSet::new();
    for i in 0..20u32 {
        let store = store.clone();
        let hash = record.hash;
        tasks.spawn(async move {
            let key = format!("key{i}");
            store
                .modify(&hash, now(), &|r: &mut SessionRecord| {
                    r.data.insert(key.clone(), json!(i));
                    Modify::Write
                })
                .await
                .expect("modify")
                .expect("record");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let loaded = store.load(&record.hash).await.unwrap().unwrap();
    for i in 0..20u32 {
        assert_eq!(loaded.data.get(&format!("key{i}")), Some(&json!(i)));
    }
}

pub async fn racing_rotations_leave_one_token(store: Arc<dyn Store>) {
    for _ in 0..10 {
        let user = unique_user("race");
        let (_, old) = create(&store, Some(&user)).await;
        let mut tasks = JoinSet::new();
        for _ in 0..4 {
            let store = store.clone();
            let old = old.clone();
            tasks.spawn(async move {
                let mut new = old.clone();
                new.hash = SessionToken::generate().unwrap().hash();
                new.version = old.version + 1;
                let out = store.rotate(&old.hash, old.version, &new, now()).await;
                (out.expect("rotate"), new)
            });
        }
        let mut applied = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (out, new) = done.expect("task");
            match out {
                CasOutcome::Applied => applied.push(new),
                CasOutcome::Conflict | CasOutcome::Missing => {
                    assert!(store.load(&new.hash).await.unwrap().is_none());
                }
            }
        }
        assert_eq!(applied.len(), 1, "exactly one rotation may win");
        assert!(store.load(&old.hash).await.unwrap().is_none());
        assert_eq!(store.list_by_user(&user, now()).await.unwrap().len(), 1);
    }
}

pub async fn revoke_all_racing_rotation_leaves_no_live_session(store: Arc<dyn Store>) {
    for _ in 0..10 {
        let user = unique_user("revrace");
        let (_, old) = create(&store, Some(&user)).await;
        let (_, other) = create(&store, Some(&user)).await;
        let mut new = old.clone();
        new.hash = SessionToken::generate().unwrap().hash();
        new.version += 1;
        let rotating = {
            let store = store.clone();
            let (old, new) = (old.clone(), new.clone());
            tokio::spawn(async move { store.rotate(&old.hash, old.version, &new, now()).await })
        };
        let revoking = {
            let store = store.clone();
            let user = user.clone();
            tokio::spawn(async move { store.delete_by_user(&user, None, Revocation::Other).await })
        };
        let _outcome: CasOutcome = rotating.await.expect("task").expect("rotate");
        revoking.await.expect("task").expect("revoke");
        // Whatever the interleaving (rotation first, revocation first, or
        // both at once), once revoke-all has returned no session of the
        // user may work: not the old token, not a token the racing
        // rotation minted.
        for r in [&old, &new, &other] {
            assert!(
                !live(&store, r, now()).await,
                "no session of a revoked user may survive"
            );
        }
    }
}

/// ASVS 5.0 V7.4.5: an administrator can end every session at once. Every
/// session goes (with and without a user, rotated or not, and one whose
/// rotation races the deletion), nothing can write one back, and the store
/// keeps working afterwards.
/// Timeouts of the lifetime-class cases: the remember class lives far
/// longer than the default one, so every deadline shows which class set it.
fn class_policy() -> crate::policy::SessionPolicy {
    use std::time::Duration;
    crate::policy::SessionPolicy::default()
        .with_idle_timeout(Duration::from_secs(10 * 60))
        .with_absolute_timeout(Duration::from_secs(3600))
        .with_touch_step(Duration::from_secs(60))
        .with_remember(
            Duration::from_secs(2 * 3600),
            Duration::from_secs(24 * 3600),
        )
}

pub async fn remember_class_survives_round_trips_touches_and_rotation(store: Arc<dyn Store>) {
    use std::time::Duration;

    use crate::manager::Renewal;
    use crate::policy::SessionClass;
    use crate::record::DataChanges;

    let min = |n: u64| Duration::from_secs(n * 60);
    let clock = crate::time::ManualClock::new(now());
    let manager = SessionManager::builder_from_arc(store.clone())
        .policy(class_policy())
        .clock(clock.clone())
        .build()
        .unwrap();
    let user = unique_user("remember");
    let start = clock.now();
    let issued = manager
        .create_with_class(
            Some(user.clone()),
            Data::new(),
            ClientMeta::default(),
            SessionClass::Remember,
        )
        .await
        .unwrap();
    assert_eq!(issued.record.class, SessionClass::Remember);
    assert_eq!(issued.record.deadlines.idle, start + min(120));
    assert_eq!(issued.record.deadlines.absolute, start + min(24 * 60));
    assert_eq!(issued.max_age(start), min(24 * 60));
    let stored = store
        .load(&issued.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, issued.record, "the class must be stored");

    // Past the default idle timeout, not past the remember one: alive, and
    // the touch moves the idle deadline by the remember idle timeout.
    clock.advance(min(30));
    let touched = manager
        .load(issued.token.expose(), Access::Activity)
        .await
        .expect("a remember session outlives the default idle timeout");
    assert_eq!(touched.class, SessionClass::Remember);
    assert_eq!(touched.deadlines.idle, clock.now() + min(120));
    assert_eq!(touched.deadlines.absolute, start + min(24 * 60));
    let stored = store.load(&touched.hash).await.unwrap().expect("record");
    assert_eq!(stored, touched);

    // A data change counts as activity under the same class.
    clock.advance(min(5));
    let mut changes = DataChanges::default();
    changes.set("theme", json!("dark"));
    let changed = manager
        .modify(&touched.hash, &changes, Access::Activity)
        .await
        .unwrap();
    assert_eq!(changed.class, SessionClass::Remember);
    assert_eq!(changed.deadlines.idle, clock.now() + min(120));

    // A plain rotation keeps the class and the absolute deadline.
    clock.advance(min(5));
    let rotated = manager
        .rotate(&changed.hash, Renewal::Rotate, &DataChanges::default())
        .await
        .unwrap();
    assert_eq!(rotated.record.class, SessionClass::Remember);
    assert_eq!(rotated.record.deadlines.idle, clock.now() + min(120));
    assert_eq!(rotated.record.deadlines.absolute, start + min(24 * 60));
    let stored = store
        .load(&rotated.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, rotated.record);

    // Step-up keeps the class and starts fresh deadlines of it.
    clock.advance(min(5));
    let stepped = manager
        .rotate(
            &rotated.record.hash,
            Renewal::Reauthenticate,
            &DataChanges::default(),
        )
        .await
        .unwrap();
    assert_eq!(stepped.record.class, SessionClass::Remember);
    assert_eq!(
        stepped.record.deadlines.absolute,
        clock.now() + min(24 * 60)
    );
    assert_eq!(stepped.record.authenticated_at, Some(clock.now()));

    // A sign-in sets the class the caller asks for: here back to default,
    // with default deadlines, stored as such.
    let login = Renewal::Login {
        user_id: user.clone(),
    };
    let plain = manager
        .rotate_with_class(
            &stepped.record.hash,
            login.clone(),
            &DataChanges::default(),
            Some(SessionClass::Default),
        )
        .await
        .unwrap();
    assert_eq!(plain.record.class, SessionClass::Default);
    assert_eq!(plain.record.deadlines.idle, clock.now() + min(10));
    assert_eq!(plain.record.deadlines.absolute, clock.now() + min(60));
    let stored = store
        .load(&plain.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, plain.record);

    // ... and from default to remember.
    let remembered = manager
        .rotate_with_class(
            &plain.record.hash,
            login,
            &DataChanges::default(),
            Some(SessionClass::Remember),
        )
        .await
        .unwrap();
    assert_eq!(remembered.record.class, SessionClass::Remember);
    assert_eq!(remembered.record.deadlines.idle, clock.now() + min(120));
    let stored = store
        .load(&remembered.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, remembered.record);
    let listed = manager.list_user(&user).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].class, SessionClass::Remember);

    // A plain rotation cannot change the class.
    let refused = manager
        .rotate_with_class(
            &remembered.record.hash,
            Renewal::Rotate,
            &DataChanges::default(),
            Some(SessionClass::Default),
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));

    // The remember session does end at its own idle timeout.
    clock.advance(min(120));
    match manager
        .load(remembered.token.expose(), Access::Status)
        .await
    {
        Err(SessionError::Expired {
            reason: ExpiryReason::Idle,
        }) => {}
        other => panic!("expected expired_idle, got {other:?}"),
    }
}

pub async fn unconfigured_remember_class_is_refused_and_stores_nothing(store: Arc<dyn Store>) {
    use crate::policy::SessionClass;

    let manager = SessionManager::builder_from_arc(store.clone())
        .build()
        .unwrap();
    let user = unique_user("no-remember");
    let refused = manager
        .create_with_class(
            Some(user.clone()),
            Data::new(),
            ClientMeta::default(),
            SessionClass::Remember,
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));
    assert!(manager.list_user(&user).await.unwrap().is_empty());
    // Nor can a sign-in switch an existing session to it.
    let issued = manager
        .create(Some(user.clone()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let refused = manager
        .rotate_with_class(
            &issued.record.hash,
            crate::manager::Renewal::Login {
                user_id: user.clone(),
            },
            &crate::record::DataChanges::default(),
            Some(SessionClass::Remember),
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));
    let stored = store
        .load(&issued.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, issued.record, "a refused sign-in changes nothing");
}

pub async fn delete_all_ends_every_session_and_the_store_keeps_working(store: Arc<dyn Store>) {
    let (alice, bob) = (unique_user("everyone-a"), unique_user("everyone-b"));
    let mut records = Vec::new();
    for user in [
        Some(alice.as_str()),
        Some(alice.as_str()),
        Some(bob.as_str()),
        None,
    ] {
        records.push(create(&store, user).await.1);
    }
    // One that was rotated before, so its key is not the one it was created
    // under.
    let (_, before) = create(&store, Some(&bob)).await;
    let mut rotated = before.clone();
    rotated.hash = SessionToken::generate().unwrap().hash();
    rotated.version += 1;
    assert_eq!(
        store
            .rotate(&before.hash, before.version, &rotated, now())
            .await
            .expect("rotate"),
        CasOutcome::Applied
    );
    records.push(rotated);
    // One whose rotation races the deletion.
    let (_, racing) = create(&store, Some(&alice)).await;
    let mut minted = racing.clone();
    minted.hash = SessionToken::generate().unwrap().hash();
    minted.version += 1;
    let rotating = {
        let (store, racing, minted) = (store.clone(), racing.clone(), minted.clone());
        tokio::spawn(async move {
            store
                .rotate(&racing.hash, racing.version, &minted, now())
                .await
        })
    };
    let deleted = store.delete_all().await.expect("delete_all");
    let _outcome: CasOutcome = rotating.await.expect("task").expect("rotate");
    records.push(racing);
    records.push(minted);

    // At least the five sessions no rotation touched (a store may also hold
    // what earlier cases left behind). The racing pair counts 0 or 1: a
    // rotation caught between taking the old key and writing the new one
    // has neither in place when the store counts, and its new session is
    // ended all the same (checked below).
    assert!(deleted >= 5, "delete_all reported {deleted} sessions");
    for r in &records {
        assert!(
            store.load(&r.hash).await.expect("load").is_none(),
            "no session may survive delete_all"
        );
        let mut late = r.clone();
        late.version += 1;
        assert_eq!(
            store.update(r.version, &late, now()).await.expect("update"),
            CasOutcome::Missing,
            "a late write must not bring a session back"
        );
    }
    for user in [&alice, &bob] {
        assert!(
            store
                .list_by_user(user, now())
                .await
                .expect("list")
                .is_empty(),
            "the user index must be empty"
        );
    }
    // Nothing left to delete, and the store still takes new sessions.
    assert_eq!(store.delete_all().await.expect("delete_all again"), 0);
    let (_, fresh) = create(&store, Some(&alice)).await;
    assert!(live(&store, &fresh, now()).await);
    assert_eq!(
        store.list_by_user(&alice, now()).await.expect("list").len(),
        1
    );
    assert_eq!(store.delete_all().await.expect("delete_all fresh"), 1);
}

const EVICT3: SessionCap = SessionCap {
    max: 3,
    action: SessionLimitAction::EvictOldest,
};
const REFUSE3: SessionCap = SessionCap {
    max: 3,
    action: SessionLimitAction::RefuseNew,
};

/// A record for `user` created `age_ms` before now (so creation order is
/// explicit), live for an hour.
fn aged(user: &str, age_ms: i64) -> SessionRecord {
    record_at(
        Some(user),
        Timestamp::from_millis(now().as_millis() - age_ms),
        HOUR,
    )
    .1
}

pub async fn capped_creation_evicts_the_oldest_with_a_tombstone(store: Arc<dyn Store>) {
    let user = unique_user("cap-evict");
    let other = unique_user("cap-other");
    let bystander = aged(&other, 50);
    store.create(&bystander).await.unwrap();
    let olds: Vec<SessionRecord> = (0..3).map(|i| aged(&user, 40 - i * 10)).collect();
    for r in &olds {
        let out = store.create_capped(r, EVICT3, now()).await.unwrap();
        assert_eq!(out, Capped::Created { evicted: vec![] }, "under the cap");
    }
    let newest = aged(&user, 0);
    let out = store.create_capped(&newest, EVICT3, now()).await.unwrap();
    assert_eq!(
        out,
        Capped::Created {
            evicted: vec![olds[0].handle.clone()]
        },
        "the oldest is evicted"
    );
    assert!(store.load(&olds[0].hash).await.unwrap().is_none());
    assert_eq!(
        store.ended(&olds[0].hash, now()).await.unwrap(),
        Some(Ended::Revoked(Revocation::SessionLimit)),
        "eviction leaves the same tombstone as a revocation"
    );
    let listed: Vec<SessionHandle> = store
        .list_by_user(&user, now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.handle)
        .collect();
    assert_eq!(
        listed,
        vec![
            olds[1].handle.clone(),
            olds[2].handle.clone(),
            newest.handle.clone()
        ]
    );
    assert!(
        live(&store, &bystander, now()).await,
        "other users untouched"
    );
}

pub async fn capped_creation_refuses_at_the_cap_and_writes_nothing(store: Arc<dyn Store>) {
    let user = unique_user("cap-refuse");
    let olds: Vec<SessionRecord> = (0..3).map(|i| aged(&user, 30 - i * 10)).collect();
    for r in &olds {
        let out = store.create_capped(r, REFUSE3, now()).await.unwrap();
        assert_eq!(out, Capped::Created { evicted: vec![] });
    }
    let refused = aged(&user, 0);
    let out = store.create_capped(&refused, REFUSE3, now()).await.unwrap();
    assert_eq!(out, Capped::Refused);
    assert!(
        store.load(&refused.hash).await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(store.ended(&refused.hash, now()).await.unwrap(), None);
    for r in &olds {
        assert!(live(&store, r, now()).await, "existing sessions untouched");
    }
    assert_eq!(store.list_by_user(&user, now()).await.unwrap().len(), 3);
    // An expired session does not count against the cap.
    let user2 = unique_user("cap-expired");
    let (_, mut gone) = record_at(
        Some(&user2),
        Timestamp::from_millis(now().as_millis() - 3 * HOUR),
        HOUR,
    );
    gone.deadlines.idle = Timestamp::from_millis(now().as_millis() - HOUR);
    store.create(&gone).await.unwrap();
    for i in 0..3 {
        let out = store
            .create_capped(&aged(&user2, 30 - i * 10), REFUSE3, now())
            .await
            .unwrap();
        assert_eq!(
            out,
            Capped::Created { evicted: vec![] },
            "expired ones do not count"
        );
    }
}

/// Creates `n` sessions for one user at once through `create_capped`.
async fn race_capped(store: &Arc<dyn Store>, user: &str, n: usize, cap: SessionCap) -> Vec<Capped> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let store = store.clone();
        let record = aged(user, 0);
        set.spawn(async move { store.create_capped(&record, cap, now()).await });
    }
    let mut outs = Vec::new();
    while let Some(joined) = set.join_next().await {
        outs.push(joined.unwrap().expect("create_capped"));
    }
    outs
}

pub async fn racing_capped_creations_leave_exactly_the_cap(store: Arc<dyn Store>) {
    let user = unique_user("cap-race");
    let outs = race_capped(&store, &user, 30, EVICT3).await;
    let evicted: Vec<SessionHandle> = outs
        .into_iter()
        .flat_map(|o| match o {
            Capped::Created { evicted } => evicted,
            Capped::Refused => panic!("evict_oldest never refuses"),
        })
        .collect();
    let listed = store.list_by_user(&user, now()).await.unwrap();
    assert_eq!(
        listed.len(),
        3,
        "exactly the cap survives 30 racing creations"
    );
    assert_eq!(
        evicted.len(),
        27,
        "every other session was evicted exactly once"
    );
    for r in &listed {
        assert!(
            !evicted.contains(&r.handle),
            "a survivor was reported evicted"
        );
    }
}

pub async fn racing_refused_creations_admit_exactly_the_cap(store: Arc<dyn Store>) {
    let user = unique_user("cap-race-refuse");
    let outs = race_capped(&store, &user, 30, REFUSE3).await;
    let created = outs
        .iter()
        .filter(|o| matches!(o, Capped::Created { .. }))
        .count();
    assert_eq!(created, 3, "exactly the cap of 30 racing creations succeed");
    assert!(outs.iter().all(|o| match o {
        Capped::Created { evicted } => evicted.is_empty(),
        Capped::Refused => true,
    }));
    assert_eq!(store.list_by_user(&user, now()).await.unwrap().len(), 3);
}
