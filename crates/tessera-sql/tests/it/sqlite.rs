//! The SQLite store against real database files.

use crate::common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tessera::SessionManager;
use tessera::record::{ClientMeta, Data};
use tessera::store::Store;
use tessera_sql::{SqlOptions, SqlStore};

async fn file_store(dir: &tempfile::TempDir) -> SqlStore {
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    SqlStore::connect(&url).await.unwrap()
}

/// A store on a database file of its own, in a directory deleted after
/// the test.
async fn fixture() -> (Arc<SqlStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir).await;
    assert_eq!(store.backend(), "sqlite");
    (Arc::new(store), dir)
}

/// The store conformance suite, one test per case:
/// `cargo test -p tessera-sql --test it sqlite::conformance::<case>`.
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
async fn dbsc_purge_removes_only_expired_rows() {
    let (store, _dir) = fixture().await;
    common::dbsc_purge_removes_only_expired_rows(&store).await;
}

/// `sqlite::memory:` is one database per connection: the store must keep
/// it to one. The suites run here in one test, on one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory_passes_conformance_suite() {
    let store = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    tessera::testkit::run_all(store.clone()).await;
    tessera::testkit::run_refresh_all(store.clone(), store.clone()).await;
}

#[tokio::test]
async fn purge_deletes_expired_refresh_tokens_after_sessions_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    common::refresh_purge_is_bounded(Arc::new(file_store(&dir).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_increments_end_at_exactly_1000() {
    let dir = tempfile::tempdir().unwrap();
    common::thousand_concurrent_increments(Arc::new(file_store(&dir).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_modifies_of_different_keys_both_survive() {
    let dir = tempfile::tempdir().unwrap();
    common::concurrent_modifies_keep_both_keys(Arc::new(file_store(&dir).await)).await;
}

#[tokio::test]
async fn purge_deletes_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    common::purge_is_bounded(Arc::new(file_store(&dir).await)).await;
}

#[tokio::test]
async fn sweeper_deletes_expired_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    common::sweeper_purges_in_batches(Arc::new(file_store(&dir).await)).await;
}

/// docs/design.md, invariant 2: a full copy of the database files (main file, WAL
/// and shared memory) holds no token, no token body and no raw token
/// secret, only hashes.
#[tokio::test]
async fn database_files_hold_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir).await;
    let manager = SessionManager::builder(store.clone()).build().unwrap();
    let mut issued = Vec::new();
    for i in 0..5 {
        let mut data = Data::new();
        data.insert("i".into(), json!(i));
        issued.push(
            manager
                .create(Some(format!("user{i}")), data, ClientMeta::default())
                .await
                .unwrap(),
        );
    }
    // Read the files both before and after the WAL is checkpointed into
    // the main file (closing the last connection does that).
    let mut dumps = vec![read_all(dir.path())];
    store.close().await;
    dumps.push(read_all(dir.path()));
    for dump in &dumps {
        for session in &issued {
            let token = session.token.expose();
            let body = token.strip_prefix("tss_").unwrap();
            let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
            let secret = &raw[..32];
            assert!(!contains(dump, token.as_bytes()), "token at rest");
            assert!(!contains(dump, body.as_bytes()), "token body at rest");
            assert!(!contains(dump, secret), "raw token secret at rest");
        }
    }
    // The check above must be able to fail: the hashes are there.
    let last = dumps.last().unwrap();
    for session in &issued {
        assert!(
            contains(last, session.record.hash.as_bytes()),
            "hash missing"
        );
    }
}

/// docs/design.md, invariant 2 for refresh tokens: after issuing and rotating
/// refresh tokens, the database files hold their hashes but no refresh
/// token, token body or raw secret, neither of the parent nor of the child
/// kept (sealed) for retries.
#[tokio::test]
async fn database_files_hold_no_refresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(file_store(&dir).await);
    let manager = SessionManager::builder_from_arc(store.clone())
        .refresh_store(store.clone())
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..3 {
        let issued = manager
            .create(Some(format!("user{i}")), Data::new(), ClientMeta::default())
            .await
            .unwrap();
        let first = manager.issue_refresh(&issued.record).await.unwrap();
        let second = manager.refresh(first.expose()).await.unwrap().token;
        let third = manager.refresh(second.expose()).await.unwrap().token;
        tokens.extend([first, second, third]);
    }
    let mut dumps = vec![read_all(dir.path())];
    store.close().await;
    dumps.push(read_all(dir.path()));
    for dump in &dumps {
        for token in &tokens {
            let text = token.expose();
            let body = text.strip_prefix("tsr_").unwrap();
            let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
            let secret = &raw[..32];
            assert!(!contains(dump, text.as_bytes()), "refresh token at rest");
            assert!(!contains(dump, body.as_bytes()), "token body at rest");
            assert!(!contains(dump, secret), "raw refresh secret at rest");
        }
    }
    // The check above must be able to fail: every hash is there.
    let last = dumps.last().unwrap();
    for token in &tokens {
        assert!(contains(last, token.hash().as_bytes()), "hash missing");
    }
}

fn read_all(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!all.is_empty());
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn database_file_is_created_with_wal_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested.db");
    let store = SqlStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
    // Migrations are idempotent.
    store.migrate().await.unwrap();
    let (_, record) = tessera::testkit::sample_record(None);
    store.create(&record).await.unwrap();
    assert!(dir.path().join("nested.db-wal").exists(), "WAL mode is on");
}

#[tokio::test]
async fn unknown_scheme_is_refused_without_echoing_the_url() {
    let err = SqlStore::connect("redis://:hunter2@localhost")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("redis"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn unreachable_file_is_unavailable() {
    let options = SqlOptions::default().with_acquire_timeout(std::time::Duration::from_secs(1));
    let err = SqlStore::connect_with("sqlite:///nonexistent-dir/x/y/sessions.db", options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, tessera::StoreError::Unavailable(_)),
        "{err:?}"
    );
}
