//! [`Store::delete_all`]: the administrator's end of every session.

use std::sync::Arc;

use super::{create, live, now};
use crate::store::{CasOutcome, Store};
use crate::testkit::unique_user;
use crate::token::SessionToken;

/// ASVS 5.0 V7.4.5: an administrator can end every session at once. Every
/// session goes (with and without a user, rotated or not, and one whose
/// rotation races the deletion), nothing can write one back, and the store
/// keeps working afterwards.
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
