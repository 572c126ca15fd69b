//! The PostgreSQL store against a real server, in a fresh database that is
//! dropped afterwards. Set `TESSERA_TEST_POSTGRES_URL` (an account allowed
//! to create databases); the default is the local service. An unreachable
//! server fails the test: it is never skipped.

use crate::common;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tessera_sql::SqlStore;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_conformance_suite_and_concurrency_scenarios() {
    common::conformance_on_server(&ADMIN, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_indexes_serve_user_and_deadline_lookups() {
    let db = common::TestDatabase::create(&ADMIN).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // Make sequential scans unattractive so the planner shows whether an
    // index *can* serve the query (on a tiny table it would rightly scan).
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    for (query, index) in [
        (
            "EXPLAIN SELECT hash FROM tessera_sessions WHERE user_id = 'u' AND next_deadline > 0 ORDER BY created_at",
            "tessera_sessions_user",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_sessions WHERE next_deadline <= 0 ORDER BY next_deadline LIMIT 10",
            "tessera_sessions_next_deadline",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_sessions WHERE handle = 'h'",
            "tessera_sessions_handle_key",
        ),
        (
            "EXPLAIN SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= 0 ORDER BY expires_at LIMIT 10",
            "tessera_refresh_tokens_expires_at",
        ),
        (
            "EXPLAIN DELETE FROM tessera_refresh_tokens WHERE family = 'f'",
            "tessera_refresh_tokens_family",
        ),
        (
            "EXPLAIN UPDATE tessera_refresh_tokens SET used_at = 1 WHERE hash = '\\x00' AND used_at IS NULL AND expires_at > 0",
            "tessera_refresh_tokens_pkey",
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(query)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{query}:\n{plan}");
    }
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    common::unreachable_is_unavailable("postgres://nobody@127.0.0.1:1/none").await;
}
