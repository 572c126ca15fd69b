//! The MySQL / MariaDB store against a real server, in a fresh database that is
//! dropped afterwards. Set `TESSERA_TEST_MYSQL_URL` (an account allowed
//! to create databases); the default is the local service. An unreachable
//! server fails the test: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use tessera_sql::SqlStore;

const ENV: &str = "TESSERA_TEST_MYSQL_URL";
const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A database created for one test and dropped when this goes out of
/// scope, even if the test panics.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> Self {
        let admin_url = std::env::var(ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let mut admin = MySqlConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("MySQL/MariaDB is unreachable ({e}); set {ENV} to a server URL (scripts/services.sh starts one)")
        });
        let name = common::unique_name("tessera_test");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = common::with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async; use a runtime of its own on a thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut admin = MySqlConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut admin)
                        .await
                        .map(|_| ())
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_passes_conformance_suite_and_concurrency_scenarios() {
    let db = TestDatabase::create().await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_eq!(store.backend(), "mysql");
    // A second instance on the same database migrates idempotently.
    let second = SqlStore::connect(&db.url).await.unwrap();
    common::run_scenarios(Arc::new(store.clone())).await;
    second.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_indexes_serve_user_and_deadline_lookups() {
    let db = TestDatabase::create().await;
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
    let options =
        tessera_sql::SqlOptions::default().with_acquire_timeout(std::time::Duration::from_secs(2));
    // Port 1 on loopback: nothing listens there.
    let err = SqlStore::connect_with("mysql://nobody@127.0.0.1:1/none", options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, tessera::StoreError::Unavailable(_)),
        "{err:?}"
    );
}
