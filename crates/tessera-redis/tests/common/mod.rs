//! Shared test helpers: connecting to the throw-away Redis instances that
//! `scripts/services.sh` starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::sync::Arc;

use tessera::token::SessionToken;
use tessera_redis::{RedisOptions, RedisStore};

/// The URL in `var`; fails (never skips) when it is unset.
pub fn url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: run the store tests through the test script \
             (it starts throw-away Redis instances: `source scripts/services.sh` \
             or `eval \"$(scripts/services.sh start)\"`)"
        ),
    }
}

/// A key prefix unique to this test run, so runs never clobber each other.
pub fn unique_prefix(tag: &str) -> String {
    let token = SessionToken::generate().unwrap();
    format!("tessera-test:{tag}:{}:", token.hash().fingerprint())
}

pub async fn connect(var: &str, tag: &str) -> RedisStore {
    RedisStore::connect(
        &url(var),
        RedisOptions::default().with_key_prefix(unique_prefix(tag)),
    )
    .await
    .expect("connect to the test Redis")
}

pub async fn standalone(tag: &str) -> RedisStore {
    connect("TESSERA_TEST_REDIS_URL", tag).await
}

pub async fn cluster(tag: &str) -> RedisStore {
    let store = connect("TESSERA_TEST_REDIS_CLUSTER_URL", tag).await;
    assert!(store.is_cluster());
    store
}

pub fn dyn_store(store: RedisStore) -> Arc<dyn tessera::store::Store> {
    Arc::new(store)
}

/// The `host:port` of every node named by a `redis://` or
/// `redis-cluster://` URL.
pub fn nodes(url: &str) -> Vec<String> {
    let rest = url
        .strip_prefix("redis-cluster://")
        .or_else(|| url.strip_prefix("redis://"))
        .unwrap();
    rest.trim_end_matches('/')
        .split(',')
        .map(|n| n.split('/').next().unwrap().to_owned())
        .collect()
}
