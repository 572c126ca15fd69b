//! Records one at a time: create, load, compare-and-set update, atomic
//! rotation, delete.

use std::sync::Arc;

use serde_json::json;

use super::{HOUR, create, live, now};
use crate::error::StoreError;
use crate::store::{CasOutcome, Store};
use crate::testkit::unique_user;
use crate::time::Timestamp;
use crate::token::SessionToken;

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
