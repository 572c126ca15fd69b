//! Conformance cases for [`RefreshStore`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{record_at, unique_user};
use crate::error::StoreError;
use crate::manager::{Renewal, SessionManager};
use crate::record::{ClientMeta, Data, DataChanges, SessionHandle};
use crate::refresh::{RefreshError, RefreshRecord, RefreshStore, RefreshUse};
use crate::store::{CasOutcome, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{RefreshToken, SessionToken};

/// What a refresh case takes: the store under test, as a session store and
/// as a refresh-token store (normally one backend object).
pub type Stores = (Arc<dyn Store>, Arc<dyn RefreshStore>);
type Case = fn(Stores) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The one list of the refresh-token conformance cases, in the order they
/// run: calls back `$callback! { ($($args)*) [case, ...] }` with their
/// names. [`run_refresh_all`](super::run_refresh_all) and
/// [`refresh_conformance!`](crate::refresh_conformance) both expand it, so a case
/// cannot be added to one and forgotten in the other.
#[doc(hidden)]
#[macro_export]
macro_rules! __refresh_cases {
    (($($callback:tt)*) $($args:tt)*) => {
        $($callback)*! { ($($args)*) [
            refresh_record_round_trips_and_duplicates_are_refused,
            a_refresh_token_rotates_exactly_once,
            unknown_or_expired_refresh_tokens_change_nothing,
            concurrent_uses_of_one_token_have_one_winner,
            deleting_a_family_deletes_only_its_tokens,
            sessions_load_by_handle_across_rotation,
            a_sign_in_kills_refresh_tokens_issued_before_it,
            a_refresh_family_of_another_user_is_refused,
            // Last: it empties the store.
            delete_all_removes_refresh_families,
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
    crate::__refresh_cases!((table))
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

pub async fn refresh_record_round_trips_and_duplicates_are_refused((_, store): Stores) {
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

pub async fn a_refresh_token_rotates_exactly_once((_, store): Stores) {
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

pub async fn unknown_or_expired_refresh_tokens_change_nothing((_, store): Stores) {
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

pub async fn concurrent_uses_of_one_token_have_one_winner((_, store): Stores) {
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

pub async fn deleting_a_family_deletes_only_its_tokens((_, store): Stores) {
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

pub async fn sessions_load_by_handle_across_rotation((sessions, store): Stores) {
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

fn manager((sessions, store): &Stores) -> SessionManager {
    SessionManager::builder_from_arc(sessions.clone())
        .refresh_store(store.clone())
        .build()
        .unwrap()
}

/// Session fixation moved to the refresh token: Mallory holds a session
/// with a refresh token, plants the session on Alice's browser, Alice signs
/// in on it. Mallory's refresh token must not mint tokens for Alice.
pub async fn a_sign_in_kills_refresh_tokens_issued_before_it(stores: Stores) {
    let manager = manager(&stores);
    let mallory = unique_user("fix-m");
    let alice = unique_user("fix-a");
    let planted = manager
        .create(Some(mallory.clone()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let old_refresh = manager.issue_refresh(&planted.record).await.unwrap();
    let signed_in = manager
        .rotate(
            &planted.record.hash,
            Renewal::Login {
                user_id: alice.clone(),
            },
            &DataChanges::default(),
        )
        .await
        .unwrap();
    assert!(
        manager
            .introspect_refresh(old_refresh.expose())
            .await
            .unwrap()
            .is_none(),
        "a refresh token from before the sign-in must not introspect as active"
    );
    match manager.refresh(old_refresh.expose()).await {
        Err(RefreshError::Invalid) => {}
        other => panic!("a refresh token from before the sign-in must be refused, got {other:?}"),
    }
    assert_ne!(
        signed_in.record.handle, planted.record.handle,
        "a sign-in mints a new handle"
    );
    assert!(
        stores
            .1
            .load_refresh(&old_refresh.hash())
            .await
            .unwrap()
            .is_none(),
        "the old family is gone"
    );
    // Alice's session is untouched, and her own refresh tokens work.
    let hers = manager.issue_refresh(&signed_in.record).await.unwrap();
    let refreshed = manager.refresh(hers.expose()).await.unwrap();
    assert_eq!(refreshed.session.user_id.as_deref(), Some(alice.as_str()));
    assert_eq!(refreshed.session.handle, signed_in.record.handle);

    // The same user signing in again is a new identity too.
    let again = manager
        .rotate(
            &signed_in.record.hash,
            Renewal::Login {
                user_id: alice.clone(),
            },
            &DataChanges::default(),
        )
        .await
        .unwrap();
    assert_ne!(again.record.handle, signed_in.record.handle);
    assert!(matches!(
        manager.refresh(refreshed.token.expose()).await,
        Err(RefreshError::Invalid)
    ));
    manager.load_hash(&again.record.hash).await.unwrap();
}

/// A family whose user is not the session's user is refused (and not
/// introspected as active), whatever put it there; revoking it audits the
/// session's real owner.
pub async fn a_refresh_family_of_another_user_is_refused(stores: Stores) {
    let manager = manager(&stores);
    let alice = unique_user("own-a");
    let issued = manager
        .create(Some(alice.clone()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = RefreshToken::generate().unwrap();
    let forged = RefreshRecord {
        hash: token.hash(),
        family: issued.record.handle.clone(),
        user_id: Some(unique_user("own-m")),
        issued_at: now(),
        expires_at: issued.record.deadlines.absolute,
        used: None,
    };
    stores.1.insert_refresh(&forged).await.unwrap();
    assert!(
        manager
            .introspect_refresh(token.expose())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        manager.refresh(token.expose()).await,
        Err(RefreshError::Invalid)
    ));
    let after = manager.load_hash(&issued.record.hash).await.unwrap();
    assert_eq!(after, issued.record, "a refused refresh changes nothing");
    assert!(
        stores
            .1
            .load_refresh(&token.hash())
            .await
            .unwrap()
            .is_none()
    );
}

/// `Store::delete_all` (ASVS 5.0 V7.4.5) takes refresh-token families with
/// the sessions: no refresh token, used or unused, is left to load.
pub async fn delete_all_removes_refresh_families((sessions, store): Stores) {
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
