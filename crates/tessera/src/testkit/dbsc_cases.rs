//! Conformance cases for [`DbscStore`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::dbsc::{DbscBinding, DbscStore, PublicJwk, Secret, digest};
use crate::record::SessionHandle;
use crate::testkit::dbsc_sim::DeviceKey;
use crate::time::{Clock, SystemClock, Timestamp};

type Case = fn(Arc<dyn DbscStore>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The one list of the DBSC conformance cases, in the order they
/// run: calls back `$callback! { ($($args)*) [case, ...] }` with their
/// names. [`run_dbsc_all`](super::run_dbsc_all) and
/// [`dbsc_conformance!`](crate::dbsc_conformance) both expand it, so a case
/// cannot be added to one and forgotten in the other.
#[doc(hidden)]
#[macro_export]
macro_rules! __dbsc_cases {
    (($($callback:tt)*) $($args:tt)*) => {
        $($callback)*! { ($($args)*) [
            binding_round_trips_and_binds_once,
            expired_binding_is_gone_and_can_be_replaced,
            a_challenge_is_consumed_once,
            concurrent_consumers_of_one_challenge_have_one_winner,
            expired_or_foreign_challenges_are_refused,
            bound_cookies_live_until_their_expiry,
            delete_removes_binding_challenges_and_cookies,
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
    crate::__dbsc_cases!((table))
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn at(ms_from_now: i64) -> Timestamp {
    Timestamp::from_millis(now().as_millis() + ms_from_now)
}

fn handle() -> SessionHandle {
    SessionHandle::generate().unwrap()
}

fn binding(handle: &SessionHandle, expires_at: Timestamp) -> DbscBinding {
    let jwk = PublicJwk::from_value(&DeviceKey::generate().jwk()).unwrap();
    DbscBinding {
        handle: handle.clone(),
        session_id: format!("sid-{}", handle.as_str()),
        thumbprint: jwk.thumbprint(),
        jwk,
        bound_at: now(),
        expires_at,
    }
}

pub async fn binding_round_trips_and_binds_once(store: Arc<dyn DbscStore>) {
    let h = handle();
    assert_eq!(store.load_binding(&h, now()).await.unwrap(), None);
    let first = binding(&h, at(3_600_000));
    assert!(store.bind(&first, now()).await.unwrap());
    assert_eq!(
        store.load_binding(&h, now()).await.unwrap(),
        Some(first.clone())
    );
    // A second key for the same live session is refused, the first kept.
    let other = binding(&h, at(3_600_000));
    assert!(!store.bind(&other, now()).await.unwrap());
    assert_eq!(store.load_binding(&h, now()).await.unwrap(), Some(first));
}

pub async fn expired_binding_is_gone_and_can_be_replaced(store: Arc<dyn DbscStore>) {
    let h = handle();
    let b = binding(&h, at(60_000));
    assert!(store.bind(&b, now()).await.unwrap());
    let later = at(120_000);
    assert_eq!(store.load_binding(&h, later).await.unwrap(), None);
    let fresh = binding(&h, at(3_600_000));
    assert!(store.bind(&fresh, later).await.unwrap());
    assert_eq!(store.load_binding(&h, later).await.unwrap(), Some(fresh));
}

pub async fn a_challenge_is_consumed_once(store: Arc<dyn DbscStore>) {
    let h = handle();
    let (c1, c2) = (digest("c1"), digest("c2"));
    store
        .put_secret(&h, Secret::Challenge, &c1, at(60_000))
        .await
        .unwrap();
    store
        .put_secret(&h, Secret::Challenge, &c2, at(60_000))
        .await
        .unwrap();
    // The older one is still answerable after a newer one was issued.
    assert!(store.consume_challenge(&h, &c1, now()).await.unwrap());
    assert!(!store.consume_challenge(&h, &c1, now()).await.unwrap());
    assert!(store.consume_challenge(&h, &c2, now()).await.unwrap());
    // A challenge is not a cookie.
    store
        .put_secret(&h, Secret::Challenge, &c1, at(60_000))
        .await
        .unwrap();
    assert!(!store.cookie_is_live(&h, &c1, now()).await.unwrap());
}

pub async fn concurrent_consumers_of_one_challenge_have_one_winner(store: Arc<dyn DbscStore>) {
    for round in 0..5 {
        let h = handle();
        let c = digest(&format!("race-{round}"));
        store
            .put_secret(&h, Secret::Challenge, &c, at(60_000))
            .await
            .unwrap();
        let mut set = JoinSet::new();
        for _ in 0..16 {
            let (store, h, c) = (store.clone(), h.clone(), c.clone());
            set.spawn(async move { store.consume_challenge(&h, &c, now()).await.unwrap() });
        }
        let wins = set.join_all().await.into_iter().filter(|w| *w).count();
        assert_eq!(wins, 1, "exactly one consumer of a challenge wins");
    }
}

pub async fn expired_or_foreign_challenges_are_refused(store: Arc<dyn DbscStore>) {
    let (h, other) = (handle(), handle());
    let c = digest("c");
    store
        .put_secret(&h, Secret::Challenge, &c, at(60_000))
        .await
        .unwrap();
    assert!(!store.consume_challenge(&other, &c, now()).await.unwrap());
    assert!(!store.consume_challenge(&h, &c, at(120_000)).await.unwrap());
    assert!(
        !store
            .consume_challenge(&h, &digest("never"), now())
            .await
            .unwrap()
    );
}

pub async fn bound_cookies_live_until_their_expiry(store: Arc<dyn DbscStore>) {
    let h = handle();
    let k = digest("cookie");
    store
        .put_secret(&h, Secret::Cookie, &k, at(60_000))
        .await
        .unwrap();
    // Checking does not consume.
    assert!(store.cookie_is_live(&h, &k, now()).await.unwrap());
    assert!(store.cookie_is_live(&h, &k, now()).await.unwrap());
    assert!(!store.cookie_is_live(&h, &k, at(61_000)).await.unwrap());
    assert!(!store.cookie_is_live(&handle(), &k, now()).await.unwrap());
    // A cookie is not a challenge.
    assert!(!store.consume_challenge(&h, &k, now()).await.unwrap());
    assert!(store.cookie_is_live(&h, &k, now()).await.unwrap());
}

pub async fn delete_removes_binding_challenges_and_cookies(store: Arc<dyn DbscStore>) {
    let (h, keep) = (handle(), handle());
    for x in [&h, &keep] {
        assert!(store.bind(&binding(x, at(3_600_000)), now()).await.unwrap());
        store
            .put_secret(x, Secret::Challenge, &digest("c"), at(60_000))
            .await
            .unwrap();
        store
            .put_secret(x, Secret::Cookie, &digest("k"), at(60_000))
            .await
            .unwrap();
    }
    store.delete_dbsc(&h).await.unwrap();
    assert_eq!(store.load_binding(&h, now()).await.unwrap(), None);
    assert!(
        !store
            .consume_challenge(&h, &digest("c"), now())
            .await
            .unwrap()
    );
    assert!(!store.cookie_is_live(&h, &digest("k"), now()).await.unwrap());
    // Another session's state is untouched.
    assert!(store.load_binding(&keep, now()).await.unwrap().is_some());
    assert!(
        store
            .cookie_is_live(&keep, &digest("k"), now())
            .await
            .unwrap()
    );
    assert!(
        store
            .consume_challenge(&keep, &digest("c"), now())
            .await
            .unwrap()
    );
}
