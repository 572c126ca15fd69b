//! Rotations racing each other and racing a revocation.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{create, live, now};
use crate::ended::Revocation;
use crate::store::{CasOutcome, Store};
use crate::testkit::unique_user;
use crate::token::SessionToken;

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
