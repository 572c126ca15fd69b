//! Per-user session caps ([`Store::create_capped`]): eviction of the
//! oldest, refusal at the cap, and racing creations.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{HOUR, live, now};
use crate::ended::{Ended, Revocation};
use crate::policy::{SessionCap, SessionLimitAction};
use crate::record::{SessionHandle, SessionRecord};
use crate::store::{Capped, Store};
use crate::testkit::{record_at, unique_user};
use crate::time::Timestamp;

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
