//! [`Store::modify`]: read-modify-write of one record, and concurrent
//! writers that must lose nothing.

use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use super::{HOUR, create, live, now};
use crate::record::SessionRecord;
use crate::store::{Modify, Store};
use crate::testkit::unique_user;
use crate::time::Timestamp;

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
