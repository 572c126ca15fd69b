//! `tessera::cache` on PostgreSQL: the conformance suite through a cached
//! store, and two nodes (each its own pool, listener and cache) hearing
//! each other's revocations over `LISTEN/NOTIFY`, including after their
//! listener is killed with `pg_terminate_backend`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tessera::cache::{CacheConfig, CachedStore};
use tessera::record::{ClientMeta, Data};
use tessera::{Access, Revocation, SessionError, SessionManager};
use tessera_sql::{PgChannel, SqlStore};

static ADMIN: common::Admin = common::Admin {
    env: "TESSERA_TEST_POSTGRES_URL",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
    server: "PostgreSQL",
    drop_options: " WITH (FORCE)",
    exec,
};

fn exec(url: String, statement: String) -> common::BoxFuture<Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut admin = PgConnection::connect(&url).await?;
        sqlx::query(&statement).execute(&mut admin).await?;
        admin.close().await
    })
}

/// Far longer than any test waits: only a message can evict in time.
fn long_lived() -> CacheConfig {
    CacheConfig {
        max_staleness: Duration::from_secs(60),
        ..CacheConfig::default()
    }
}

struct Node {
    manager: SessionManager,
    cache: CachedStore<SqlStore>,
}

async fn node(url: &str) -> Node {
    let store = SqlStore::connect(url).await.unwrap();
    let channel = Arc::new(PgChannel::for_store(&store).unwrap());
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
    panic!("the invalidation listener never came up");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_the_cache() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    let channel = Arc::new(PgChannel::for_store(&store).unwrap());
    let cached = Arc::new(CachedStore::new(
        store.clone(),
        CacheConfig::default(),
        channel,
    ));
    tessera::testkit::run_all(cached.clone()).await;
    tessera::testkit::run_refresh_all(cached.clone(), cached).await;
    store.close().await;
}

/// A data write through A: A's next load is a hit showing it, A skips its
/// own notification when it comes back, and B reads the new data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_read_on_both_nodes() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
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
    let mut seen = false;
    for _ in 0..500 {
        let record = b.manager.load(token, Access::Status).await.unwrap();
        if record.data.get("role") == Some(&serde_json::json!("admin")) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen,
        "node B kept serving the data from before node A's write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_a_is_refused_on_b() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
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
    // The switch refuses sessions created *before* it: one created in its
    // own millisecond survives it (`tessera::not_before`), so let the
    // clock move on first.
    tokio::time::sleep(Duration::from_millis(3)).await;
    a.manager.revoke_everyone().await.unwrap();
    refused_by(&b, issued.token.expose()).await;
    assert!(b.cache.stats().invalidations_received >= 21);
}

/// Terminates every backend of `db_url`'s database that is listening.
async fn kill_listeners(db_url: &str) -> u64 {
    let mut conn = PgConnection::connect(db_url).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    killed.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_bypasses_then_flushes_and_recovers() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    let issued = a
        .manager
        .create(Some("carol".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&b, token).await;
    let flushes = b.cache.stats().flushes;

    assert!(kill_listeners(&db.url).await >= 2, "no listener to kill");
    // Revoked while B's listener is down or being re-established: the
    // notification may be lost, yet B must refuse.
    a.manager
        .revoke(&issued.record.handle, None, Revocation::Admin)
        .await
        .unwrap();
    refused_by(&b, token).await;
    for _ in 0..1000 {
        if b.cache.stats().flushes > flushes + 1 && b.cache.stats().live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Down (flush) and back up (flush again).
    assert!(b.cache.stats().flushes >= flushes + 2);
    wait_live(&b).await;

    // Recovered: B caches again and hears revocations again.
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

/// A revocation returns only once its `NOTIFY` came back through the
/// channel's own listener: by then PostgreSQL has signalled every
/// listening connection, so the caller does not answer while the
/// message still sits in the server (it used to, for about a millisecond).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_returns_after_its_message_came_back() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    for round in 0..20u64 {
        let issued = a
            .manager
            .create(Some("carol".into()), Data::new(), ClientMeta::default())
            .await
            .unwrap();
        let token = issued.token.expose();
        cached_on(&b, token).await;
        let own = a.cache.stats().own_messages_skipped;
        a.manager
            .revoke(&issued.record.handle, None, Revocation::Admin)
            .await
            .unwrap();
        assert_eq!(
            a.cache.stats().own_messages_skipped,
            own + 1,
            "round {round}: the revocation returned before its message came back"
        );
        refused_by(&b, token).await;
    }
}
