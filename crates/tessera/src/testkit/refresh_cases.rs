//! Conformance cases for [`RefreshStore`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{record_at, unique_user};
use crate::error::StoreError;
use crate::record::SessionHandle;
use crate::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use crate::store::{CasOutcome, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{RefreshToken, SessionToken};

type Stores = (Arc<dyn Store>, Arc<dyn RefreshStore>);
type Case = fn(Stores) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|s| Box::pin($name(s))) as Case)),*]
    };
}

pub(super) fn all() -> Vec<(&'static str, Case)> {
    cases![
        refresh_record_round_trips_and_duplicates_are_refused,
        a_refresh_token_rotates_exactly_once,
        unknown_or_expired_refresh_tokens_change_nothing,
        concurrent_uses_of_one_token_have_one_winner,
        deleting_a_family_deletes_only_its_tokens,
        sessions_load_by_handle_across_rotation,
        // Last: it empties the store.
        delete_all_removes_refresh_families,
    ]
}

const HOUR: i64 = 3_600_000;

fn now() -> Timestamp {
    SystemClock.now()
}

fn family() -> SessionHandle {
    SessionHandle::generate().unwrap()
}

fn token_record(family: &SessionHandle, ttl_ms: i64) -> (RefreshToken, RefreshRecord) {
    let token = RefreshToken::generate().unwrap();
    let now = now();
    let record = RefreshRecord {
        hash: token.hash(),
        family: family.clone(),
        user_id: Some(unique_user("rt")),
        issued_at: now,
        expires_at: Timestamp::from_millis(now.as_millis() + ttl_ms),
        used: None,
    };
    (token, record)
}

async fn refresh_record_round_trips_and_duplicates_are_refused((_, store): Stores) {
    let (_, record) = token_record(&family(), HOUR);
    store.insert_refresh(&record).await.unwrap();
    assert_eq!(
        store.load_refresh(&record.hash).await.unwrap(),
        Some(record.clone())
    );
    match store.insert_refresh(&record).await {
        Err(StoreError::Duplicate) => {}
        other => panic!("a second insert must be Duplicate, got {other:?}"),
    }
    let unknown = RefreshToken::generate().unwrap().hash();
    assert!(store.load_refresh(&unknown).await.unwrap().is_none());
}

async fn a_refresh_token_rotates_exactly_once((_, store): Stores) {
    let fam = family();
    let (parent, record) = token_record(&fam, HOUR);
    store.insert_refresh(&record).await.unwrap();
    let (child, child_record) = token_record(&fam, HOUR);
    let sealed = parent.seal_child(&child);
    let at = now();
    assert_eq!(
        store
            .use_refresh(&record.hash, &child_record, &sealed, at)
            .await
            .unwrap(),
        RefreshUse::Rotated
    );
    let parent_now = store.load_refresh(&record.hash).await.unwrap().unwrap();
    let used = parent_now.used.expect("the parent is marked used");
    assert_eq!(used.child, child.hash());
    assert_eq!(used.sealed_child, sealed);
    assert_eq!(used.at, at);
    assert_eq!(
        store.load_refresh(&child.hash()).await.unwrap(),
        Some(child_record)
    );
    // A second exchange of the same parent changes nothing.
    let (other, other_record) = token_record(&fam, HOUR);
    match store
        .use_refresh(
            &record.hash,
            &other_record,
            &parent.seal_child(&other),
            now(),
        )
        .await
        .unwrap()
    {
        RefreshUse::AlreadyUsed(again) => assert_eq!(again.child, child.hash()),
        out => panic!("a used token must report AlreadyUsed, got {out:?}"),
    }
    assert!(store.load_refresh(&other.hash()).await.unwrap().is_none());
}

async fn unknown_or_expired_refresh_tokens_change_nothing((_, store): Stores) {
    let fam = family();
    let (parent, record) = token_record(&fam, HOUR);
    store.insert_refresh(&record).await.unwrap();
    let (child, child_record) = token_record(&fam, HOUR);
    let late = Timestamp::from_millis(record.expires_at.as_millis());
    assert_eq!(
        store
            .use_refresh(
                &record.hash,
                &child_record,
                &parent.seal_child(&child),
                late
            )
            .await
            .unwrap(),
        RefreshUse::Unknown,
        "an expired token must not rotate"
    );
    assert!(store.load_refresh(&child.hash()).await.unwrap().is_none());
    assert_eq!(
        store.load_refresh(&record.hash).await.unwrap(),
        Some(record)
    );
    let stranger = RefreshToken::generate().unwrap();
    assert_eq!(
        store
            .use_refresh(
                &stranger.hash(),
                &child_record,
                &stranger.seal_child(&child),
                now()
            )
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    assert!(store.load_refresh(&child.hash()).await.unwrap().is_none());
}

async fn concurrent_uses_of_one_token_have_one_winner((_, store): Stores) {
    for _ in 0..5 {
        let fam = family();
        let (parent, record) = token_record(&fam, HOUR);
        store.insert_refresh(&record).await.unwrap();
        let mut tasks = JoinSet::new();
        for _ in 0..6 {
            let store = store.clone();
            let parent = parent.clone();
            let fam = fam.clone();
            tasks.spawn(async move {
                let (child, child_record) = token_record(&fam, HOUR);
                let sealed = parent.seal_child(&child);
                let out = store
                    .use_refresh(&parent.hash(), &child_record, &sealed, now())
                    .await
                    .expect("use_refresh");
                (out, child)
            });
        }
        let mut winners = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (out, child) = done.expect("task");
            match out {
                RefreshUse::Rotated => winners.push(child),
                RefreshUse::AlreadyUsed(_) => {
                    assert!(store.load_refresh(&child.hash()).await.unwrap().is_none());
                }
                RefreshUse::Unknown => panic!("a live token cannot be unknown"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one exchange may win");
        let used = store
            .load_refresh(&parent.hash())
            .await
            .unwrap()
            .unwrap()
            .used
            .unwrap();
        assert_eq!(used.child, winners[0].hash());
    }
}

async fn deleting_a_family_deletes_only_its_tokens((_, store): Stores) {
    let fam = family();
    let (parent, record) = token_record(&fam, HOUR);
    store.insert_refresh(&record).await.unwrap();
    let (child, child_record) = token_record(&fam, HOUR);
    let _ = store
        .use_refresh(
            &record.hash,
            &child_record,
            &parent.seal_child(&child),
            now(),
        )
        .await
        .unwrap();
    let (_, bystander) = token_record(&family(), HOUR);
    store.insert_refresh(&bystander).await.unwrap();
    assert_eq!(store.delete_refresh_family(&fam).await.unwrap(), 2);
    assert!(store.load_refresh(&record.hash).await.unwrap().is_none());
    assert!(store.load_refresh(&child.hash()).await.unwrap().is_none());
    assert!(store.load_refresh(&bystander.hash).await.unwrap().is_some());
    assert_eq!(store.delete_refresh_family(&fam).await.unwrap(), 0);
}

async fn sessions_load_by_handle_across_rotation((sessions, store): Stores) {
    let user = unique_user("byhandle");
    let (_, record) = record_at(Some(&user), now(), HOUR);
    sessions.create(&record).await.unwrap();
    let found = store.load_session_by_handle(&record.handle).await.unwrap();
    assert_eq!(found, Some(record.clone()));
    let mut next = record.clone();
    next.hash = SessionToken::generate().unwrap().hash();
    next.version += 1;
    assert_eq!(
        sessions
            .rotate(&record.hash, record.version, &next, now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        store.load_session_by_handle(&record.handle).await.unwrap(),
        Some(next.clone())
    );
    sessions.delete(&next.hash).await.unwrap();
    assert!(
        store
            .load_session_by_handle(&record.handle)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .load_session_by_handle(&family())
            .await
            .unwrap()
            .is_none()
    );
}

/// `Store::delete_all` (ASVS 5.0 V7.4.5) takes refresh-token families with
/// the sessions: no refresh token, used or unused, is left to load.
async fn delete_all_removes_refresh_families((sessions, store): Stores) {
    let fam = family();
    let (parent, record) = token_record(&fam, HOUR);
    store.insert_refresh(&record).await.unwrap();
    let (child, child_record) = token_record(&fam, HOUR);
    let sealed = parent.seal_child(&child);
    assert_eq!(
        store
            .use_refresh(&record.hash, &child_record, &sealed, now())
            .await
            .unwrap(),
        RefreshUse::Rotated
    );
    let (_, other) = token_record(&family(), HOUR);
    store.insert_refresh(&other).await.unwrap();
    sessions.delete_all().await.unwrap();
    for hash in [record.hash, child_record.hash, other.hash] {
        assert!(
            store.load_refresh(&hash).await.unwrap().is_none(),
            "delete_all must remove every refresh token"
        );
    }
}
