//! The MySQL / MariaDB store against a real server, in a fresh database that is
//! dropped afterwards. Set `TESSERA_TEST_MYSQL_URL` (an account allowed
//! to create databases); the default is the local service. An unreachable
//! server fails the test: it is never skipped.

use crate::common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_passes_conformance_suite_and_concurrency_scenarios() {
    common::conformance_on_server(&ADMIN, "mysql").await;
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
