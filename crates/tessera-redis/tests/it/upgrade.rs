//! Sessions stored by the earlier layout keep working after an upgrade: a
//! session key that is a hash (the record in field `c`, a tombstone in
//! field `t`), a handle record naming the session by the hex of its hash,
//! and a user index tagged with the whole SHA-256 of the user id in hex.
//! The test builds that layout from sessions the store created (the
//! record's bytes are the same in both layouts), then uses every operation
//! on them, on standalone Redis and on the cluster.

use crate::common;

use std::time::Duration;

use fred::prelude::*;
use sha2::{Digest, Sha256};
use tessera::ended::Ended;
use tessera::policy::{SessionCap, SessionLimitAction};
use tessera::record::SessionRecord;
use tessera::store::{Activity, Capped, CasOutcome, Patch, PatchOp, PatchOutcome, Store};
use tessera::testkit::{sample_record, unique_user};
use tessera::time::{Clock, SystemClock};
use tessera::token::SessionToken;
use tessera_redis::RedisStore;

/// A plain client on the same deployment.
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

async fn key_type(client: &Client, key: &str) -> String {
    client
        .custom(fred::cmd!("TYPE"), vec![key.to_owned()])
        .await
        .unwrap()
}

/// Rewrites a session's keys as the earlier layout stored them: the
/// session key becomes a hash (`c` = the record, or `t` = the tombstone
/// without its `t` marker) with the same expiry, and the handle record
/// names the session by the hex of its hash.
async fn downgrade(store: &RedisStore, client: &Client, record: &SessionRecord) {
    let key = store.session_key(&record.hash);
    let value: Vec<u8> = client.get(&key).await.unwrap();
    let at = client.pexpire_time::<i64, _>(&key).await.unwrap();
    let _: i64 = client.del(&key).await.unwrap();
    let field = if value.first() == Some(&b't') {
        ("t", value[1..].to_vec())
    } else {
        ("c", value)
    };
    let _: i64 = client.hset(&key, field).await.unwrap();
    let _: bool = client.pexpire_at(&key, at, None).await.unwrap();
    assert_eq!(key_type(client, &key).await, "hash");
    let handle = store.handle_key(&record.handle);
    let fields: Vec<String> = client.hkeys(&handle).await.unwrap();
    let hex = record.hash.to_hex();
    for f in fields.iter().filter(|f| f.len() == 43) {
        let _: i64 = client.hdel(&handle, f.as_str()).await.unwrap();
        let _: i64 = client.hset(&handle, (hex.as_str(), "1")).await.unwrap();
    }
}

/// Moves a user's index to the key the earlier layout used.
async fn downgrade_index(store: &RedisStore, client: &Client, user: &str) {
    let key = store.user_key(user);
    let (prefix, _) = key.rsplit_once("u:{").unwrap();
    let hex: String = Sha256::digest(user.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let legacy = format!("{prefix}u:{{{hex}}}");
    let members: Vec<(String, f64)> = client
        .zrange(&key, 0, -1, None, false, None, true)
        .await
        .unwrap();
    assert!(!members.is_empty());
    let at = client.pexpire_time::<i64, _>(&key).await.unwrap();
    let _: i64 = client.del(&key).await.unwrap();
    for (member, score) in members {
        let _: i64 = client
            .zadd(&legacy, None, None, false, false, (score, member))
            .await
            .unwrap();
    }
    let _: bool = client.pexpire_at(&legacy, at, None).await.unwrap();
}

async fn earlier_layout_keeps_working(store: RedisStore, client: Client) {
    let user = unique_user("upgrade");
    let (_, a) = sample_record(Some(&user));
    let (_, b) = sample_record(Some(&user));
    let (_, c) = sample_record(Some(&user));
    let (_, ended) = sample_record(Some(&user));
    for r in [&a, &b, &c, &ended] {
        store.create(r).await.unwrap();
    }
    assert!(store.end(&ended.hash, Ended::SignedOut).await.unwrap());
    for r in [&a, &b, &c, &ended] {
        downgrade(&store, &client, r).await;
    }
    downgrade_index(&store, &client, &user).await;
    let now = SystemClock.now();

    // The session cap counts the sessions indexed by the earlier layout.
    let (_, d) = sample_record(Some(&user));
    let cap = SessionCap {
        max: 3,
        action: SessionLimitAction::RefuseNew,
    };
    assert_eq!(
        store.create_capped(&d, cap, now).await.unwrap(),
        Capped::Refused
    );

    // Reads: the session, its user's list, its handle, its tombstone.
    assert_eq!(store.load(&a.hash).await.unwrap(), Some(a.clone()));
    let listed = store.list_by_user(&user, now).await.unwrap();
    assert_eq!(listed.len(), 3, "a, b and c are listed");
    assert_eq!(
        tessera::refresh::RefreshStore::load_session_by_handle(&store, &b.handle)
            .await
            .unwrap(),
        Some(b.clone())
    );
    assert!(store.load(&ended.hash).await.unwrap().is_none());
    assert_eq!(
        store.ended(&ended.hash, now).await.unwrap(),
        Some(Ended::SignedOut)
    );
    assert!(
        store.create(&ended).await.is_err(),
        "a hash is never reused"
    );

    // A patch applies to the old record and stores it as a string.
    let patch = Patch {
        activity: Some(Activity {
            idle: Duration::from_secs(60),
            remember_idle: Duration::from_secs(60),
        }),
        ..Patch::new(vec![PatchOp::Increment {
            key: "counter".into(),
            by: 1,
        }])
    };
    let PatchOutcome::Applied(patched) = store.patch(&a.hash, None, &patch, now).await.unwrap()
    else {
        panic!("the patch applies");
    };
    assert_eq!(patched.data.get("counter"), Some(&1.into()));
    assert_eq!(patched.version, a.version + 1);
    let key = store.session_key(&a.hash);
    assert_eq!(key_type(&client, &key).await, "string");
    assert_eq!(store.load(&a.hash).await.unwrap(), Some(patched.clone()));

    // A rotation takes the old key and forgets its hex name.
    let mut rotated = b.clone();
    rotated.hash = SessionToken::generate().unwrap().hash();
    rotated.version += 1;
    assert_eq!(
        store
            .rotate(&b.hash, b.version, &rotated, now)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert!(store.load(&b.hash).await.unwrap().is_none());
    assert_eq!(
        store.load(&rotated.hash).await.unwrap(),
        Some(rotated.clone())
    );
    let fields: Vec<String> = client.hkeys(store.handle_key(&b.handle)).await.unwrap();
    assert_eq!(
        fields.len(),
        1,
        "only the new hash is registered: {fields:?}"
    );
    assert_eq!(fields[0].len(), 43);

    // Revoking the user ends the converted, rotated and untouched sessions.
    assert_eq!(
        store
            .delete_by_user(&user, None, tessera::Revocation::Other)
            .await
            .unwrap(),
        3
    );
    for hash in [&a.hash, &rotated.hash, &c.hash] {
        assert!(store.load(hash).await.unwrap().is_none());
        assert!(
            store
                .ended(hash, SystemClock.now())
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(
        store
            .list_by_user(&user, SystemClock.now())
            .await
            .unwrap()
            .is_empty()
    );

    // A user's kill switch keeps its key (tagged with the hex SHA-256), so
    // a switch set before the upgrade is still read after it.
    let to = tessera::not_before::NotBefore::new(SystemClock.now(), tessera::Revocation::Other);
    store
        .raise_not_before(tessera::not_before::Scope::User(&user), to)
        .await
        .unwrap();
    let key = store.user_key(&user);
    let (prefix, _) = key.rsplit_once("u:{").unwrap();
    let hex: String = Sha256::digest(user.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let at: Option<String> = client
        .hget(format!("{prefix}n:{{{hex}}}"), "at")
        .await
        .unwrap();
    assert_eq!(at, Some(to.at.as_millis().to_string()));
}

#[tokio::test]
async fn standalone_sessions_of_the_earlier_layout_keep_working() {
    let store = common::standalone("upgrade").await;
    earlier_layout_keeps_working(store, raw("TESSERA_TEST_REDIS_URL").await).await;
}

#[tokio::test]
async fn cluster_sessions_of_the_earlier_layout_keep_working() {
    let store = common::cluster("upgrade").await;
    earlier_layout_keeps_working(store, raw("TESSERA_TEST_REDIS_CLUSTER_URL").await).await;
}
