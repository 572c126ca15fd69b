//! Redis-specific behaviour: TTLs at the next deadline, revoke-all across
//! cluster slots, and revoke-all racing rotation without a second pass.

use crate::common;

use std::sync::Arc;

use fred::prelude::*;
use tessera::store::{CasOutcome, Store};
use tessera::testkit::{sample_record, unique_user};
use tessera::time::{Clock, SystemClock, Timestamp};
use tessera::token::SessionToken;
use tessera_redis::RedisStore;

/// A plain client on the same deployment, to inspect keys.
async fn raw(var: &str) -> Client {
    let url = common::url(var);
    let config = if let Some(rest) = url.strip_prefix("redis-cluster://") {
        let hosts = rest
            .split(',')
            .map(|n| {
                let (h, p) = n.rsplit_once(':').unwrap();
                (h.to_owned(), p.parse::<u16>().unwrap())
            })
            .collect();
        Config {
            server: ServerConfig::new_clustered(hosts),
            ..Config::default()
        }
    } else {
        Config::from_url(&url).unwrap()
    };
    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    client
}

async fn expire_time(client: &Client, key: &str) -> i64 {
    client.pexpire_time(key).await.unwrap()
}

async fn ttl_follows_the_next_deadline(store: RedisStore, client: Client) {
    let (_, mut record) = sample_record(Some(&unique_user("ttl")));
    // Idle deadline earlier than absolute: the key expires at idle.
    let key = store.session_key(&record.hash);
    store.create(&record).await.unwrap();
    assert_eq!(
        expire_time(&client, &key).await,
        record.deadlines.next().as_millis()
    );
    assert_eq!(record.deadlines.next(), record.deadlines.idle);
    // Activity moves the idle deadline: the expiry follows.
    let mut next = record.clone();
    next.version += 1;
    next.deadlines.idle = Timestamp::from_millis(record.deadlines.idle.as_millis() + 60_000);
    assert_eq!(
        store
            .update(record.version, &next, SystemClock.now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        expire_time(&client, &key).await,
        next.deadlines.idle.as_millis()
    );
    // Past the absolute deadline the idle one no longer matters.
    record = next.clone();
    next.version += 1;
    next.deadlines.idle = Timestamp::from_millis(record.deadlines.absolute.as_millis() + 60_000);
    assert_eq!(
        store
            .update(record.version, &next, SystemClock.now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        expire_time(&client, &key).await,
        next.deadlines.absolute.as_millis()
    );
    // The handle record lives as long as the session can.
    let handle_expiry = expire_time(&client, &store.handle_key(&record.handle)).await;
    assert_eq!(handle_expiry, next.deadlines.absolute.as_millis());
    // Rotation: the new key expires at its own next deadline, the old is gone.
    let mut rotated = next.clone();
    rotated.hash = SessionToken::generate().unwrap().hash();
    rotated.version += 1;
    rotated.deadlines.idle = Timestamp::from_millis(SystemClock.now().as_millis() + 5_000);
    assert_eq!(
        store
            .rotate(&next.hash, next.version, &rotated, SystemClock.now())
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        expire_time(&client, &store.session_key(&rotated.hash)).await,
        rotated.deadlines.idle.as_millis()
    );
    assert_eq!(
        expire_time(&client, &key).await,
        -2,
        "the old key must be gone"
    );
}

#[tokio::test]
async fn standalone_ttl_is_the_next_deadline() {
    let store = common::standalone("ttl").await;
    ttl_follows_the_next_deadline(store, raw("TESSERA_TEST_REDIS_URL").await).await;
}

#[tokio::test]
async fn cluster_ttl_is_the_next_deadline() {
    let store = common::cluster("ttl").await;
    ttl_follows_the_next_deadline(store, raw("TESSERA_TEST_REDIS_CLUSTER_URL").await).await;
}

#[tokio::test]
async fn cluster_revoke_all_spans_every_slot() {
    let store = common::cluster("revoke").await;
    let client = raw("TESSERA_TEST_REDIS_CLUSTER_URL").await;
    let user = unique_user("many");
    let mut records = Vec::new();
    for _ in 0..30 {
        let (_, r) = sample_record(Some(&user));
        store.create(&r).await.unwrap();
        records.push(r);
    }
    // The sessions really are spread over the three masters.
    let mut slots = std::collections::HashSet::new();
    for r in &records {
        let slot = fred::util::redis_keyslot(store.session_key(&r.hash).as_bytes());
        slots.insert(slot / 5462);
    }
    assert_eq!(slots.len(), 3, "30 random keys land on all 3 masters");
    let keep = records[0].handle.clone();
    assert_eq!(
        store
            .delete_by_user(&user, Some(&keep), tessera::Revocation::Other)
            .await
            .unwrap(),
        29
    );
    for r in &records[1..] {
        assert!(store.load(&r.hash).await.unwrap().is_none());
        // Only the tombstone is left on the key: the reason, no record.
        let left: String = client.get(store.session_key(&r.hash)).await.unwrap();
        let expected = format!("t{},revoked:", r.deadlines.absolute.as_millis());
        assert!(left.starts_with(&expected), "{left}");
    }
    assert!(store.load(&records[0].hash).await.unwrap().is_some());
    let listed = store.list_by_user(&user, SystemClock.now()).await.unwrap();
    assert_eq!(listed, vec![records[0].clone()]);
}

/// Stronger than the core case: no second revoke pass. Whatever the
/// interleaving of one rotation and one revoke-all, once both returned no
/// session of the user may work.
async fn revoke_racing_rotation_needs_no_second_pass(store: RedisStore) {
    let store = Arc::new(store);
    let mut applied = 0;
    for i in 0..60u64 {
        let user = unique_user("race");
        let (_, old) = sample_record(Some(&user));
        store.create(&old).await.unwrap();
        let mut new = old.clone();
        new.hash = SessionToken::generate().unwrap().hash();
        new.version += 1;
        let rotating = {
            let (store, old, new) = (store.clone(), old.clone(), new.clone());
            tokio::spawn(async move {
                store
                    .rotate(&old.hash, old.version, &new, SystemClock.now())
                    .await
            })
        };
        let revoking = {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move {
                // Vary the start so every interleaving gets exercised.
                for _ in 0..(i % 6) {
                    tokio::task::yield_now().await;
                }
                store
                    .delete_by_user(&user, None, tessera::Revocation::Other)
                    .await
            })
        };
        if rotating.await.unwrap().unwrap() == CasOutcome::Applied {
            applied += 1;
        }
        revoking.await.unwrap().unwrap();
        let now = SystemClock.now();
        for r in [&old, &new] {
            let live = store
                .load(&r.hash)
                .await
                .unwrap()
                .is_some_and(|r| r.is_valid_at(now));
            assert!(!live, "iteration {i}: a session survived revoke-all");
        }
        assert!(store.list_by_user(&user, now).await.unwrap().is_empty());
    }
    eprintln!("rotations that won the race: {applied}/60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_revoke_racing_rotation_needs_no_second_pass() {
    revoke_racing_rotation_needs_no_second_pass(common::standalone("race").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_revoke_racing_rotation_needs_no_second_pass() {
    revoke_racing_rotation_needs_no_second_pass(common::cluster("race").await).await;
}

#[tokio::test]
async fn a_failed_rotation_leaves_the_old_session_intact_and_no_new_key() {
    let store = common::cluster("fail").await;
    let (_, old) = sample_record(Some(&unique_user("fail")));
    store.create(&old).await.unwrap();
    let mut new = old.clone();
    new.hash = SessionToken::generate().unwrap().hash();
    new.version += 1;
    // Stale version: conflict, nothing changes.
    assert_eq!(
        store
            .rotate(&old.hash, old.version + 1, &new, SystemClock.now())
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(store.load(&old.hash).await.unwrap(), Some(old.clone()));
    assert!(store.load(&new.hash).await.unwrap().is_none());
    // A failed sign-in rotation (new handle, stale version) changes nothing
    // either: the new handle answers to nothing.
    let mut other = new.clone();
    other.handle = tessera::record::SessionHandle::generate().unwrap();
    assert_eq!(
        store
            .rotate(&old.hash, old.version + 1, &other, SystemClock.now())
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(store.load(&old.hash).await.unwrap(), Some(old.clone()));
    assert!(store.load(&other.hash).await.unwrap().is_none());
    assert!(
        tessera::refresh::RefreshStore::load_session_by_handle(&store, &other.handle)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        tessera::refresh::RefreshStore::load_session_by_handle(&store, &old.handle)
            .await
            .unwrap(),
        Some(old.clone())
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_store_error() {
    // A port nothing listens on: the connect fails within the timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = tessera_redis::RedisOptions::default()
        .with_connect_timeout(std::time::Duration::from_millis(500));
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(
            err,
            tessera::error::StoreError::Unavailable(_) | tessera::error::StoreError::Timeout
        ),
        "got {err:?}"
    );
}

/// `delete_all` (ASVS 5.0 V7.4.5) stays inside its key prefix, even when
/// the prefix holds `SCAN MATCH` glob characters: a store whose prefix the
/// pattern would match unescaped (`…[1]*:` matches `…1x:`) keeps its
/// sessions.
async fn delete_all_stays_inside_its_prefix(var: &str) {
    let base = common::unique_prefix("wipe");
    let url = common::url(var);
    let connect = |prefix: String| {
        let url = url.clone();
        async move {
            RedisStore::connect(
                &url,
                tessera_redis::RedisOptions::default().with_key_prefix(prefix),
            )
            .await
            .unwrap()
        }
    };
    let wiped = connect(format!("{base}t[1]*:")).await;
    let neighbour = connect(format!("{base}t1x:")).await;
    let (_, mine) = sample_record(Some(&unique_user("wipe")));
    let (_, theirs) = sample_record(Some(&unique_user("keep")));
    wiped.create(&mine).await.unwrap();
    neighbour.create(&theirs).await.unwrap();

    assert_eq!(wiped.delete_all().await.unwrap(), 1);
    assert!(wiped.load(&mine.hash).await.unwrap().is_none());
    assert!(
        neighbour.load(&theirs.hash).await.unwrap().is_some(),
        "another prefix's session must survive"
    );
    assert_eq!(neighbour.delete_all().await.unwrap(), 1);
}

#[tokio::test]
async fn standalone_delete_all_stays_inside_its_prefix() {
    delete_all_stays_inside_its_prefix("TESSERA_TEST_REDIS_URL").await;
}

#[tokio::test]
async fn cluster_delete_all_stays_inside_its_prefix() {
    delete_all_stays_inside_its_prefix("TESSERA_TEST_REDIS_CLUSTER_URL").await;
}
