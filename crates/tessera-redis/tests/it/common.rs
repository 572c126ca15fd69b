//! Shared test helpers: connecting to the throw-away Redis instances that
//! `scripts/services.sh` starts.

use tessera::token::SessionToken;
use tessera_redis::{RedisOptions, RedisStore};

/// The URL in `var`; fails (never skips) when it is unset.
pub(crate) fn url(var: &str) -> String {
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
pub(crate) fn unique_prefix(tag: &str) -> String {
    let token = SessionToken::generate().unwrap();
    format!("tessera-test:{tag}:{}:", token.hash().fingerprint())
}

pub(crate) async fn connect(var: &str, tag: &str) -> RedisStore {
    connect_to(&url(var), tag).await
}

/// A store on the Redis (or Cluster) at `url`, under a fresh key prefix.
pub(crate) async fn connect_to(url: &str, tag: &str) -> RedisStore {
    RedisStore::connect(
        url,
        RedisOptions::default().with_key_prefix(unique_prefix(tag)),
    )
    .await
    .expect("connect to the test Redis")
}

pub(crate) async fn standalone(tag: &str) -> RedisStore {
    connect("TESSERA_TEST_REDIS_URL", tag).await
}

pub(crate) async fn cluster(tag: &str) -> RedisStore {
    let store = connect("TESSERA_TEST_REDIS_CLUSTER_URL", tag).await;
    assert!(store.is_cluster());
    store
}

/// The `host:port` of every node named by a `redis://` or
/// `redis-cluster://` URL.
pub(crate) fn nodes(url: &str) -> Vec<String> {
    let rest = url
        .strip_prefix("redis-cluster://")
        .or_else(|| url.strip_prefix("redis://"))
        .unwrap();
    rest.trim_end_matches('/')
        .split(',')
        .map(|n| n.split('/').next().unwrap().to_owned())
        .collect()
}
