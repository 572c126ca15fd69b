//! Redis-specific refresh-token behaviour: every key expires with its
//! tokens (nothing accumulates without a sweeper), a losing rotation leaves
//! no key behind, and a rotation racing a family revocation leaves no
//! token — on a standalone Redis and on a 3-master cluster.

use crate::common;

use std::sync::Arc;

use fred::prelude::*;
use tessera::record::SessionHandle;
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::time::{Clock, SystemClock, Timestamp};
use tessera::token::RefreshToken;
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

fn token(family: &SessionHandle, expires_at: Timestamp) -> (RefreshToken, RefreshRecord) {
    let token = RefreshToken::generate().unwrap();
    let record = RefreshRecord {
        hash: token.hash(),
        family: family.clone(),
        user_id: Some("alice".into()),
        issued_at: SystemClock.now(),
        expires_at,
        used: None,
    };
    (token, record)
}

async fn expire_time(client: &Client, key: &str) -> i64 {
    client.pexpire_time(key).await.unwrap()
}

async fn exists(client: &Client, key: &str) -> bool {
    client.exists::<i64, _>(key).await.unwrap() == 1
}

async fn refresh_keys_expire_with_their_tokens(store: RedisStore, client: Client) {
    let now = SystemClock.now();
    let deadline = Timestamp::from_millis(now.as_millis() + 3_600_000);
    let family = SessionHandle::generate().unwrap();
    let family_key = store.refresh_family_key(&family);
    let (parent, record) = token(&family, deadline);
    store.insert_refresh(&record).await.unwrap();
    // Both keys of a fresh token expire exactly at its deadline.
    assert_eq!(
        expire_time(&client, &store.refresh_key(&parent.hash())).await,
        deadline.as_millis()
    );
    assert_eq!(
        expire_time(&client, &family_key).await,
        deadline.as_millis()
    );

    // A child that lives longer extends the family, never shortens it.
    let later = Timestamp::from_millis(deadline.as_millis() + 60_000);
    let (child, child_record) = token(&family, later);
    assert_eq!(
        store
            .use_refresh(
                &parent.hash(),
                &child_record,
                &parent.seal_child(&child),
                now
            )
            .await
            .unwrap(),
        RefreshUse::Rotated
    );
    assert_eq!(
        expire_time(&client, &store.refresh_key(&child.hash())).await,
        later.as_millis()
    );
    assert_eq!(expire_time(&client, &family_key).await, later.as_millis());

    // A losing exchange leaves no key for its child.
    let (loser, loser_record) = token(&family, deadline);
    assert!(matches!(
        store
            .use_refresh(
                &parent.hash(),
                &loser_record,
                &parent.seal_child(&loser),
                now
            )
            .await
            .unwrap(),
        RefreshUse::AlreadyUsed(_)
    ));
    assert!(!exists(&client, &store.refresh_key(&loser.hash())).await);

    // A token already past its deadline is not kept at all.
    let past = Timestamp::from_millis(now.as_millis() - 1_000);
    let other = SessionHandle::generate().unwrap();
    let (dead, dead_record) = token(&other, past);
    store.insert_refresh(&dead_record).await.unwrap();
    assert!(store.load_refresh(&dead.hash()).await.unwrap().is_none());
    assert!(!exists(&client, &store.refresh_key(&dead.hash())).await);
    assert!(!exists(&client, &store.refresh_family_key(&other)).await);

    // Revoking the family removes every key of it.
    assert_eq!(store.delete_refresh_family(&family).await.unwrap(), 2);
    assert!(!exists(&client, &family_key).await);
    for t in [&parent, &child] {
        assert!(!exists(&client, &store.refresh_key(&t.hash())).await);
        assert!(store.load_refresh(&t.hash()).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn standalone_refresh_keys_expire_with_their_tokens() {
    refresh_keys_expire_with_their_tokens(
        common::standalone("rttl").await,
        raw("TESSERA_TEST_REDIS_URL").await,
    )
    .await;
}

#[tokio::test]
async fn cluster_refresh_keys_expire_with_their_tokens() {
    refresh_keys_expire_with_their_tokens(
        common::cluster("rttl").await,
        raw("TESSERA_TEST_REDIS_CLUSTER_URL").await,
    )
    .await;
}

/// Whatever the interleaving of one rotation and one revocation of its
/// family, once both returned no token of the family loads.
async fn rotation_racing_revocation_leaves_no_token(store: RedisStore) {
    let store = Arc::new(store);
    let deadline = Timestamp::from_millis(SystemClock.now().as_millis() + 3_600_000);
    let mut rotated = 0;
    for i in 0..40u64 {
        let family = SessionHandle::generate().unwrap();
        let (parent, record) = token(&family, deadline);
        store.insert_refresh(&record).await.unwrap();
        let (child, child_record) = token(&family, deadline);
        let using = {
            let (store, parent, child) = (store.clone(), parent.clone(), child.clone());
            tokio::spawn(async move {
                store
                    .use_refresh(
                        &parent.hash(),
                        &child_record,
                        &parent.seal_child(&child),
                        SystemClock.now(),
                    )
                    .await
            })
        };
        let revoking = {
            let (store, family) = (store.clone(), family.clone());
            tokio::spawn(async move {
                // Vary the start by 0 to 4 round trips (the rotation takes
                // 3), so the revocation lands before, between and after
                // the rotation's steps.
                for _ in 0..(i % 5) {
                    tessera::store::Store::ping(store.as_ref()).await.unwrap();
                }
                store.delete_refresh_family(&family).await
            })
        };
        match using.await.unwrap().unwrap() {
            RefreshUse::Rotated => rotated += 1,
            RefreshUse::Unknown => {}
            other => panic!("iteration {i}: unexpected {other:?}"),
        }
        revoking.await.unwrap().unwrap();
        for t in [&parent, &child] {
            assert!(
                store.load_refresh(&t.hash()).await.unwrap().is_none(),
                "iteration {i}: a token survived the revocation of its family"
            );
        }
    }
    eprintln!("rotations that won the race: {rotated}/40");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_rotation_racing_revocation_leaves_no_token() {
    rotation_racing_revocation_leaves_no_token(common::standalone("rrace").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_rotation_racing_revocation_leaves_no_token() {
    rotation_racing_revocation_leaves_no_token(common::cluster("rrace").await).await;
}
