//! `tessera::cache` on Redis: the conformance suite through a cached
//! store, and two nodes (each its own connections and cache) hearing each
//! other's revocations over pub/sub, on standalone Redis and on Cluster.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::CustomCommand;
use tessera::cache::{CacheConfig, CachedStore};
use tessera::record::{ClientMeta, Data};
use tessera::{Access, Revocation, SessionError, SessionManager};
use tessera_redis::{RedisChannel, RedisOptions, RedisStore};

/// Far longer than any test waits: only a message can evict in time.
fn long_lived() -> CacheConfig {
    CacheConfig {
        max_staleness: Duration::from_secs(60),
        ..CacheConfig::default()
    }
}

struct Node {
    manager: SessionManager,
    cache: CachedStore<RedisStore>,
}

async fn node(var: &str, prefix: &str) -> Node {
    let store = RedisStore::connect(
        &common::url(var),
        RedisOptions::default().with_key_prefix(prefix),
    )
    .await
    .unwrap();
    let channel = Arc::new(RedisChannel::new(&store));
    let cache = CachedStore::new(store, long_lived(), channel);
    let manager = SessionManager::builder(cache.clone()).build().unwrap();
    let node = Node { manager, cache };
    wait_live(&node).await;
    node
}

async fn wait_live(node: &Node) {
    for _ in 0..1000 {
        if node.cache.stats().live {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the invalidation subscription never came up");
}

async fn refused_by(node: &Node, token: &str) -> SessionError {
    for _ in 0..500 {
        match node.manager.load(token, Access::Status).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => return e,
        }
    }
    panic!("node B kept serving a session revoked on node A");
}

async fn cached_on(node: &Node, token: &str) {
    node.manager.load(token, Access::Status).await.unwrap();
    let before = node.cache.stats().hits;
    node.manager.load(token, Access::Status).await.unwrap();
    assert_eq!(
        node.cache.stats().hits,
        before + 1,
        "the second load must hit"
    );
}

async fn revocation_reaches_the_other_node(var: &str) {
    let prefix = common::unique_prefix("cache-nodes");
    let a = node(var, &prefix).await;
    let b = node(var, &prefix).await;
    for _ in 0..20 {
        let issued = a
            .manager
            .create(Some("alice".into()), Data::new(), ClientMeta::default())
            .await
            .unwrap();
        let token = issued.token.expose();
        cached_on(&b, token).await;
        a.manager
            .revoke(&issued.record.handle, None, Revocation::Admin)
            .await
            .unwrap();
        assert!(matches!(
            refused_by(&b, token).await,
            SessionError::Revoked {
                by: Revocation::Admin
            }
        ));
    }
    let issued = a
        .manager
        .create(Some("bob".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, issued.token.expose()).await;
    a.manager
        .revoke_user("bob", None, Revocation::PasswordChanged)
        .await
        .unwrap();
    refused_by(&b, issued.token.expose()).await;
    assert!(b.cache.stats().invalidations_received >= 21);
}

/// A data write through A: A's next load is a hit showing it (the record
/// the write stored replaced A's copy), A skips its own message when it
/// comes back over pub/sub, and B, which held the old copy, reads the
/// new data.
async fn a_write_is_read_on_both_nodes(var: &str) {
    let prefix = common::unique_prefix("cache-write");
    let a = node(var, &prefix).await;
    let b = node(var, &prefix).await;
    let issued = a
        .manager
        .create(Some("carol".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&a, token).await;
    cached_on(&b, token).await;
    let mut changes = tessera::record::DataChanges::default();
    changes.set("role", serde_json::json!("admin"));
    a.manager
        .modify(&issued.record.hash, &changes, Access::Status)
        .await
        .unwrap();
    let hits = a.cache.stats().hits;
    let record = a.manager.load(token, Access::Status).await.unwrap();
    assert_eq!(a.cache.stats().hits, hits + 1, "A's next load missed");
    assert_eq!(record.data.get("role"), Some(&serde_json::json!("admin")));
    for _ in 0..500 {
        if a.cache.stats().own_messages_skipped >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.cache.stats().own_messages_skipped >= 1);
    assert_eq!(a.cache.stats().invalidations_received, 0);
    let hits = a.cache.stats().hits;
    a.manager.load(token, Access::Status).await.unwrap();
    assert_eq!(a.cache.stats().hits, hits + 1, "A's own message evicted");
    for _ in 0..500 {
        let record = b.manager.load(token, Access::Status).await.unwrap();
        if record.data.get("role") == Some(&serde_json::json!("admin")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("node B kept serving the data from before node A's write");
}

#[tokio::test]
async fn a_write_is_read_on_both_nodes_standalone() {
    a_write_is_read_on_both_nodes("TESSERA_TEST_REDIS_URL").await;
}

#[tokio::test]
async fn a_write_is_read_on_both_nodes_cluster() {
    a_write_is_read_on_both_nodes("TESSERA_TEST_REDIS_CLUSTER_URL").await;
}

#[tokio::test]
async fn revocation_on_a_is_refused_on_b_standalone() {
    revocation_reaches_the_other_node("TESSERA_TEST_REDIS_URL").await;
}

#[tokio::test]
async fn revocation_on_a_is_refused_on_b_cluster() {
    revocation_reaches_the_other_node("TESSERA_TEST_REDIS_CLUSTER_URL").await;
}

#[tokio::test]
async fn conformance_suite_passes_through_the_cache_standalone() {
    let store = common::standalone("cache-conformance").await;
    let channel = Arc::new(RedisChannel::new(&store));
    let cached = Arc::new(CachedStore::new(store, CacheConfig::default(), channel));
    tessera::testkit::run_all(cached.clone()).await;
    tessera::testkit::run_refresh_all(cached.clone(), cached).await;
}

#[tokio::test]
async fn conformance_suite_passes_through_the_cache_cluster() {
    let store = common::cluster("cache-conformance").await;
    let channel = Arc::new(RedisChannel::new(&store));
    let cached = Arc::new(CachedStore::new(store, CacheConfig::default(), channel));
    tessera::testkit::run_all(cached.clone()).await;
    tessera::testkit::run_refresh_all(cached.clone(), cached).await;
}

/// Kills every pub/sub connection on the standalone server.
async fn kill_subscriptions() {
    let config = Config::from_url(&common::url("TESSERA_TEST_REDIS_URL")).unwrap();
    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    let killed: i64 = client
        .custom(
            CustomCommand::new_static("CLIENT", None, false),
            vec!["KILL", "TYPE", "pubsub"],
        )
        .await
        .unwrap();
    assert!(killed >= 1, "no subscription to kill");
    client.quit().await.unwrap();
}

#[tokio::test]
async fn a_killed_subscription_bypasses_then_flushes_and_recovers() {
    let prefix = common::unique_prefix("cache-kill");
    let a = node("TESSERA_TEST_REDIS_URL", &prefix).await;
    let b = node("TESSERA_TEST_REDIS_URL", &prefix).await;
    let issued = a
        .manager
        .create(Some("carol".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&b, token).await;
    let flushes = b.cache.stats().flushes;

    kill_subscriptions().await;
    // Revoked while B's subscription is down or being re-established: the
    // message may be lost, yet B must refuse (it bypasses its cache while
    // down and flushes it on reconnection).
    a.manager
        .revoke(&issued.record.handle, None, Revocation::Admin)
        .await
        .unwrap();
    refused_by(&b, token).await;
    wait_live(&b).await;
    assert!(
        b.cache.stats().flushes > flushes,
        "a reconnection must flush"
    );

    // Recovered: B caches again and hears revocations again.
    wait_live(&a).await;
    let again = a
        .manager
        .create(Some("carol".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, again.token.expose()).await;
    a.manager
        .revoke(&again.record.handle, None, Revocation::Admin)
        .await
        .unwrap();
    refused_by(&b, again.token.expose()).await;
}

/// A burst of other nodes' messages, as a busy fleet sends them, is
/// applied one by one: the subscriber keeps up without flushing (a flush
/// is the answer to messages it could not read, and would empty the cache
/// under every write-heavy load). Runs on one thread, as a server pinned to
/// one CPU does, so the whole burst is read before the listener runs. On
/// the Cluster, whose subscriptions no other test kills.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_messages_is_applied_without_a_flush() {
    use tessera::cache::{Invalidate, Origin};

    const BURST: u64 = 2_000;
    let prefix = common::unique_prefix("cache-burst");
    let b = node("TESSERA_TEST_REDIS_CLUSTER_URL", &prefix).await;
    let before = b.cache.stats();

    // One node of the Cluster: a plain PUBLISH reaches every node's
    // subscribers.
    let nodes = common::url("TESSERA_TEST_REDIS_CLUSTER_URL");
    let first = nodes
        .split("://")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let config = Config::from_url(&format!("redis://{first}")).unwrap();
    let publisher = Builder::from_config(config).build().unwrap();
    publisher.init().await.unwrap();
    let channel = format!("{prefix}invalidate");
    let other = Origin::from_u64(0x5eed);
    let pipeline = publisher.pipeline();
    for _ in 0..BURST {
        let hash = tessera::token::SessionToken::generate().unwrap().hash();
        let _: () = pipeline
            .publish(&channel, Invalidate::Session(hash).encode_from(other))
            .await
            .unwrap();
    }
    let _: Vec<i64> = pipeline.all().await.unwrap();

    for _ in 0..500 {
        if b.cache.stats().invalidations_received >= before.invalidations_received + BURST {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = b.cache.stats();
    assert_eq!(
        after.invalidations_received - before.invalidations_received,
        BURST,
        "every message of the burst is applied"
    );
    assert_eq!(
        after.flushes, before.flushes,
        "no flush: nothing was missed"
    );
    assert!(after.live);
    publisher.quit().await.unwrap();
}
