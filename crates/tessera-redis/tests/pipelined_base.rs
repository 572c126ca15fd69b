//! A write pipelined behind another write of the same process is computed
//! from a record that was never stored if the write ahead of it fails.
//! Another process may meanwhile have stored a record with the same
//! version, deadlines, handle and user but other data: the pipelined write
//! must not be applied on top of it (its data lacks the other process's
//! change). Real Redis and Redis Cluster.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use serde_json::json;
use tessera::policy::SessionPolicy;
use tessera::record::{ClientMeta, SessionRecord};
use tessera::store::{Modify, Store};
use tessera::time::{Clock, SystemClock, Timestamp};
use tessera::token::SessionToken;
use tessera_redis::{RedisOptions, RedisStore};

fn now() -> Timestamp {
    SystemClock.now()
}

fn set(key: &'static str) -> impl Fn(&mut SessionRecord) -> Modify + Send + Sync {
    move |r: &mut SessionRecord| {
        r.data.insert(key.into(), json!(true));
        Modify::Write
    }
}

async fn a_failed_write_never_becomes_the_base_of_a_later_one(var: &str) {
    let prefix = common::unique_prefix("pipelined");
    let connect = || async {
        RedisStore::connect(
            &common::url(var),
            RedisOptions::default().with_key_prefix(prefix.clone()),
        )
        .await
        .expect("connect to the test Redis")
    };
    let (p, q) = (connect().await, connect().await);
    let at = now();
    let loaded = SessionRecord::new(
        SessionToken::generate().unwrap().hash(),
        Some("alice".into()),
        at,
        SessionPolicy::default().deadlines_at(at),
        ClientMeta::default(),
    )
    .unwrap();
    p.create(&loaded).await.unwrap();

    // Process Q writes first, from the same version, without moving the
    // deadlines: its record has the same header as the one P computes.
    let (set_q, set_p1, set_p2) = (set("q"), set("p1"), set("p2"));
    q.modify_loaded(&loaded, now(), &set_q)
        .await
        .unwrap()
        .unwrap();

    // Process P: two requests that loaded the (now stale) version write at
    // once; the second may be computed from the first, which fails.
    let (first, second) = tokio::join!(
        p.modify_loaded(&loaded, now(), &set_p1),
        p.modify_loaded(&loaded, now(), &set_p2),
    );
    first.unwrap().unwrap();
    second.unwrap().unwrap();

    let stored = p.load(&loaded.hash).await.unwrap().unwrap();
    for key in ["q", "p1", "p2"] {
        assert_eq!(
            stored.data.get(key),
            Some(&json!(true)),
            "the write of {key} was lost: {:?}",
            stored.data
        );
    }
}

#[tokio::test]
async fn a_failed_write_never_becomes_the_base_of_a_later_one_on_redis() {
    for _ in 0..20 {
        a_failed_write_never_becomes_the_base_of_a_later_one("TESSERA_TEST_REDIS_URL").await;
    }
}

#[tokio::test]
async fn a_failed_write_never_becomes_the_base_of_a_later_one_on_redis_cluster() {
    for _ in 0..20 {
        a_failed_write_never_becomes_the_base_of_a_later_one("TESSERA_TEST_REDIS_CLUSTER_URL")
            .await;
    }
}
