//! Purges of expired records: bounded batches, and the `expired_idle`
//! tombstone a purge leaves.

use std::sync::Arc;

use super::{HOUR, create, live, now};
use crate::ended::Ended;
use crate::policy::ExpiryReason;
use crate::store::Store;
use crate::testkit::{record_at, unique_user};
use crate::time::Timestamp;

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
