//! The MySQL / MariaDB store against a real server, in a fresh database that is
//! dropped afterwards. Set `TESSERA_TEST_MYSQL_URL` (an account allowed
//! to create databases); the default is the local service. An unreachable
//! server fails the test: it is never skipped.

use crate::common;

use std::sync::Arc;

use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use tessera_sql::SqlStore;

static ADMIN: common::Admin = common::Admin {
    env: "TESSERA_TEST_MYSQL_URL",
    default_url: "mysql://root@127.0.0.1:3306/test",
    server: "MySQL/MariaDB",
    drop_options: "",
    exec,
};

fn exec(url: String, statement: String) -> common::BoxFuture<Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut admin = MySqlConnection::connect(&url).await?;
        sqlx::query(&statement).execute(&mut admin).await?;
        admin.close().await
    })
}

/// A store on a database of its own, dropped after the test.
async fn fixture() -> (Arc<SqlStore>, common::TestDatabase) {
    common::server_fixture(&ADMIN).await
}

/// The store conformance suite, one test per case:
/// `cargo test -p tessera-sql --test it mysql::conformance::<case>`.
mod conformance {
    tessera::store_conformance!(super::fixture());
}

/// The refresh-token conformance suite, one test per case.
mod refresh_conformance {
    tessera::refresh_conformance!(super::fixture());
}

/// The DBSC conformance suite, one test per case.
mod dbsc_conformance {
    tessera::dbsc_conformance!(super::fixture());
}

#[tokio::test]
async fn a_second_instance_migrates_idempotently() {
    common::second_instance_migrates_idempotently(&ADMIN, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_increments_end_at_exactly_1000() {
    let (store, _db) = fixture().await;
    common::thousand_concurrent_increments(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_modifies_of_different_keys_both_survive() {
    let (store, _db) = fixture().await;
    common::concurrent_modifies_keep_both_keys(store).await;
}

#[tokio::test]
async fn purge_deletes_at_most_the_limit() {
    let (store, _db) = fixture().await;
    common::purge_is_bounded(store).await;
}

#[tokio::test]
async fn purge_deletes_expired_refresh_tokens_after_sessions_within_the_limit() {
    let (store, _db) = fixture().await;
    common::refresh_purge_is_bounded(store).await;
}

#[tokio::test]
async fn sweeper_deletes_expired_in_bounded_batches() {
    let (store, _db) = fixture().await;
    common::sweeper_purges_in_batches(store).await;
}

#[tokio::test]
async fn dbsc_purge_removes_only_expired_rows() {
    let (store, _db) = fixture().await;
    common::dbsc_purge_removes_only_expired_rows(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_indexes_serve_user_and_deadline_lookups() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    let mut conn = MySqlConnection::connect(&db.url).await.unwrap();
    for (query, index) in [
        (
            "EXPLAIN SELECT hash FROM tessera_sessions FORCE INDEX (tessera_sessions_user) WHERE user_id = 'u' AND next_deadline > 0 ORDER BY created_at",
            "tessera_sessions_user",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_sessions WHERE next_deadline <= 0 ORDER BY next_deadline LIMIT 10",
            "tessera_sessions_next_deadline",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= 0 ORDER BY expires_at LIMIT 10",
            "tessera_refresh_tokens_expires_at",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_refresh_tokens FORCE INDEX (tessera_refresh_tokens_family) WHERE family = 'f'",
            "tessera_refresh_tokens_family",
        ),
    ] {
        let rows = sqlx::query(query).fetch_all(&mut conn).await.unwrap();
        let keys: Vec<Option<String>> = rows
            .iter()
            .map(|r| sqlx::Row::try_get::<Option<String>, _>(r, "key").unwrap())
            .collect();
        assert!(
            keys.iter().any(|k| k.as_deref() == Some(index)),
            "{query}: {keys:?}"
        );
    }
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn unreachable_mysql_is_unavailable() {
    common::unreachable_is_unavailable("mysql://nobody@127.0.0.1:1/none").await;
}
