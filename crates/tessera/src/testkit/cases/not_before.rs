//! Conformance cases for the kill switches ([`crate::not_before`]).

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::ended::{Ended, Revocation};
use crate::not_before::{NotBefore, Scope};
use crate::record::SessionRecord;
use crate::store::Store;
use crate::testkit::{record_at, unique_user};
use crate::time::{Clock, SystemClock, Timestamp};

const HOUR: i64 = 3_600_000;

/// A live session of `user` created `ago_ms` before now.
async fn created_ago(store: &Arc<dyn Store>, user: Option<&str>, ago_ms: i64) -> SessionRecord {
    let at = Timestamp::from_millis(SystemClock.now().as_millis() - ago_ms);
    let (_, record) = record_at(user, at, HOUR + ago_ms);
    store.create(&record).await.expect("create");
    record
}

fn after(record: &SessionRecord, ms: i64) -> Timestamp {
    Timestamp::from_millis(record.created_at.as_millis() + ms)
}

async fn refused_with(store: &Arc<dyn Store>, record: &SessionRecord, why: Revocation) {
    assert!(
        store.load(&record.hash).await.expect("load").is_none(),
        "a session created before the not-before must not load"
    );
    assert_eq!(
        store
            .ended(&record.hash, SystemClock.now())
            .await
            .expect("ended"),
        Some(Ended::Revoked(why)),
        "a refused session answers revoked with its cause"
    );
}

async fn loads(store: &Arc<dyn Store>, record: &SessionRecord) {
    assert_eq!(
        store.load(&record.hash).await.expect("load").as_ref(),
        Some(record),
        "a session the not-before does not cover must load unchanged"
    );
    assert_eq!(
        store
            .ended(&record.hash, SystemClock.now())
            .await
            .expect("ended"),
        None
    );
}

pub async fn user_not_before_refuses_that_users_older_sessions_only(store: Arc<dyn Store>) {
    let (alice, bob) = (unique_user("nb-a"), unique_user("nb-b"));
    let a1 = created_ago(&store, Some(&alice), 2_000).await;
    let a2 = created_ago(&store, Some(&alice), 1_000).await;
    let b = created_ago(&store, Some(&bob), 2_000).await;
    let anonymous = created_ago(&store, None, 2_000).await;
    let at = after(&a2, 1);
    let set = store
        .raise_not_before(
            Scope::User(&alice),
            NotBefore::new(at, Revocation::PasswordChanged),
        )
        .await
        .expect("raise");
    assert_eq!(set, NotBefore::new(at, Revocation::PasswordChanged));
    refused_with(&store, &a1, Revocation::PasswordChanged).await;
    refused_with(&store, &a2, Revocation::PasswordChanged).await;
    loads(&store, &b).await;
    loads(&store, &anonymous).await;
    assert!(
        store
            .list_by_user(&alice, SystemClock.now())
            .await
            .expect("list")
            .is_empty(),
        "refused sessions are not listed"
    );
    assert_eq!(
        store
            .list_by_user(&bob, SystemClock.now())
            .await
            .expect("list"),
        vec![b.clone()]
    );
    // A sign-in at or after the not-before works.
    let (_, fresh) = record_at(Some(&alice), at, HOUR);
    store.create(&fresh).await.expect("create");
    loads(&store, &fresh).await;
    assert_eq!(
        store.not_before(Scope::User(&alice)).await.expect("read"),
        Some(set)
    );
    assert_eq!(
        store.not_before(Scope::User(&bob)).await.expect("read"),
        None
    );
}

pub async fn not_before_never_moves_backward(store: Arc<dyn Store>) {
    let user = unique_user("nb-max");
    let old = created_ago(&store, Some(&user), 10_000).await;
    let t2 = after(&old, 5_000);
    let scope = Scope::User(&user);
    let disabled = NotBefore::new(t2, Revocation::Disabled);
    assert_eq!(
        store
            .raise_not_before(scope, disabled)
            .await
            .expect("raise"),
        disabled
    );
    // Earlier: nothing changes, the cause included.
    let earlier = NotBefore::new(after(&old, 1), Revocation::Admin);
    assert_eq!(
        store.raise_not_before(scope, earlier).await.expect("raise"),
        disabled
    );
    // The same time again: idempotent, the first cause stays.
    let same = NotBefore::new(t2, Revocation::Admin);
    assert_eq!(
        store.raise_not_before(scope, same).await.expect("raise"),
        disabled
    );
    assert_eq!(store.not_before(scope).await.expect("read"), Some(disabled));
    refused_with(&store, &old, Revocation::Disabled).await;
    // A session created between the earlier time and the stored one is
    // still refused: the stored time did not move back.
    let (_, between) = record_at(Some(&user), after(&old, 2_000), HOUR);
    store.create(&between).await.expect("create");
    refused_with(&store, &between, Revocation::Disabled).await;

    // Concurrent raises converge on the latest, whatever the order.
    let mut tasks = JoinSet::new();
    for i in 0..16_i64 {
        let (store, user) = (store.clone(), user.clone());
        let at = after(&old, 6_000 + (i * 7) % 16);
        tasks.spawn(async move {
            store
                .raise_not_before(Scope::User(&user), NotBefore::new(at, Revocation::Admin))
                .await
                .expect("raise")
        });
    }
    while let Some(done) = tasks.join_next().await {
        let in_force = done.expect("task");
        assert!(in_force.at >= after(&old, 6_000), "never below a value set");
    }
    let latest = store.not_before(scope).await.expect("read").expect("set");
    assert_eq!(
        latest,
        NotBefore::new(after(&old, 6_015), Revocation::Admin)
    );
}

/// Sets the global not-before. It applies to the whole store and never
/// moves back, so this case works at the very start of the epoch: its
/// sessions are created in the first second of 1970 (live until an hour
/// from now) and the switch is set at 1970-01-01T00:00:01Z. Sessions other
/// cases and tests create, even ones dated "far in the past", are later
/// and stay usable.
pub async fn global_not_before_refuses_everyone(store: Arc<dyn Store>) {
    let (alice, bob) = (unique_user("nb-all-a"), unique_user("nb-all-b"));
    let epoch = |user: Option<&str>, ms: i64| {
        let (_, record) = record_at(
            user,
            Timestamp::from_millis(ms),
            SystemClock.now().as_millis() + HOUR,
        );
        record
    };
    let a = epoch(Some(&alice), 100);
    let b = epoch(Some(&bob), 200);
    let anonymous = epoch(None, 300);
    for record in [&a, &b, &anonymous] {
        store.create(record).await.expect("create");
        loads(&store, record).await;
    }
    // Alice also has a per-user not-before, older than the global one.
    store
        .raise_not_before(
            Scope::User(&alice),
            NotBefore::new(after(&a, 1), Revocation::PasswordChanged),
        )
        .await
        .expect("raise user");
    let before = store.not_before(Scope::Everyone).await.expect("read");
    let at = Timestamp::from_millis(1_000);
    let everyone = NotBefore::new(at, Revocation::Everyone);
    let in_force = store
        .raise_not_before(Scope::Everyone, everyone)
        .await
        .expect("raise everyone");
    assert_eq!(in_force, before.map_or(everyone, |b| b.max(everyone)));
    // The later switch gives the cause.
    refused_with(&store, &a, in_force.why).await;
    refused_with(&store, &b, in_force.why).await;
    refused_with(&store, &anonymous, in_force.why).await;
    // A session created now is not refused.
    let fresh = created_ago(&store, Some(&bob), 0).await;
    loads(&store, &fresh).await;
    let fresh_anonymous = created_ago(&store, None, 0).await;
    loads(&store, &fresh_anonymous).await;
    // Never backward for the global switch either.
    let earlier = NotBefore::new(after(&a, 1), Revocation::Admin);
    assert_eq!(
        store
            .raise_not_before(Scope::Everyone, earlier)
            .await
            .expect("raise"),
        in_force
    );
    assert_eq!(
        store.not_before(Scope::Everyone).await.expect("read"),
        Some(in_force)
    );
}
