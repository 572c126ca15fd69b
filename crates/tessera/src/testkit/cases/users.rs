//! The per-user index and session handles: listing, ending by handle or
//! by user, and rotation (a refresh or a sign-in) moving the index.

use std::sync::Arc;

use super::{HOUR, create, live, now};
use crate::ended::Revocation;
use crate::record::SessionHandle;
use crate::store::{CasOutcome, Store};
use crate::testkit::{record_at, unique_user};
use crate::time::Timestamp;
use crate::token::SessionToken;

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
