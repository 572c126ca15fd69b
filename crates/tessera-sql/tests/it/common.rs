//! Shared helpers: fresh databases on real servers, and scenarios every
//! backend runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tessera::record::{ClientMeta, Data, DataChanges, SessionHandle};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::store::Store;
use tessera::time::Timestamp;
use tessera::token::RefreshToken;
use tessera::{Access, SessionManager};
use tessera_sql::SqlStore;
use tokio::sync::{Barrier, Semaphore, SemaphorePermit};

/// A name no other test, in this run or another, uses: tests run in
/// parallel, so the clock alone could repeat.
pub fn unique_name(prefix: &str) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A boxed future, for [`Admin::exec`].
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// How to administer one kind of database server in the tests.
pub struct Admin {
    /// The variable naming an account allowed to create databases.
    pub env: &'static str,
    /// The admin URL when the variable is not set (the local service).
    pub default_url: &'static str,
    /// The server's name, for the message when it is unreachable.
    pub server: &'static str,
    /// What follows `DROP DATABASE IF EXISTS name` on this server.
    pub drop_options: &'static str,
    /// Runs one statement on a new connection to the URL.
    pub exec: fn(String, String) -> BoxFuture<Result<(), sqlx::Error>>,
}

/// Server tests that may hold a database at once, in this process. Each
/// test's store has a pool of up to 10 connections and a server accepts a
/// bounded number (PostgreSQL's default is 100): the harness runs one test
/// per core, and every conformance case is a test with a database of its
/// own, so on a many-core machine they would exhaust the server.
static SLOTS: Semaphore = Semaphore::const_new(4);

/// A database created for one test and dropped when this goes out of
/// scope, even if the test panics.
pub struct TestDatabase {
    admin: &'static Admin,
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
    /// Released after `drop` dropped the database.
    _slot: SemaphorePermit<'static>,
}

impl TestDatabase {
    /// Creates a fresh database; an unreachable server fails the test.
    pub async fn create(admin: &'static Admin) -> Self {
        let slot = SLOTS.acquire().await.unwrap();
        let env = admin.env;
        let admin_url = std::env::var(env).unwrap_or_else(|_| admin.default_url.to_owned());
        let name = unique_name("tessera_test");
        (admin.exec)(admin_url.clone(), format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} is unreachable ({e}); set {env} to a server URL (scripts/services.sh starts one)",
                    admin.server
                )
            });
        let url = with_database(&admin_url, &name);
        Self {
            admin,
            admin_url,
            name,
            url,
            _slot: slot,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop = (self.admin.exec)(
            self.admin_url.clone(),
            format!(
                "DROP DATABASE IF EXISTS {}{}",
                self.name, self.admin.drop_options
            ),
        );
        // Drop runs outside async; use a runtime of its own on a thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A store on a fresh database of a server backend, with the database,
/// which is dropped after the store: the fixture of the conformance
/// tests and of the scenarios below, one database per test.
pub async fn server_fixture(admin: &'static Admin) -> (Arc<SqlStore>, TestDatabase) {
    let db = TestDatabase::create(admin).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    (Arc::new(store), db)
}

/// The store names its backend, and a second instance on the same
/// database migrates idempotently and sees the first one's sessions.
pub async fn second_instance_migrates_idempotently(admin: &'static Admin, backend: &str) {
    let (store, db) = server_fixture(admin).await;
    assert_eq!(store.backend(), backend);
    let (_, record) = tessera::testkit::sample_record(Some("alice"));
    store.create(&record).await.unwrap();
    let second = SqlStore::connect(&db.url).await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(second.load(&record.hash).await.unwrap(), Some(record));
    second.close().await;
    store.close().await;
}

/// A server that does not answer (`url` points at port 1 on loopback,
/// where nothing listens) is `Unavailable`, not a hang or a panic.
pub async fn unreachable_is_unavailable(url: &str) {
    let options =
        tessera_sql::SqlOptions::default().with_acquire_timeout(std::time::Duration::from_secs(2));
    let err = SqlStore::connect_with(url, options).await.unwrap_err();
    assert!(
        matches!(err, tessera::StoreError::Unavailable(_)),
        "{err:?}"
    );
}

/// `url` with its database path replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// 1,000 increments of one key through `SessionManager::update_value`, 50
/// in flight at a time: the count must end at exactly 1,000, and no call may
/// fail (a "database is locked" or a contention error would).
pub async fn thousand_concurrent_increments(store: Arc<dyn Store>) {
    let manager = Arc::new(SessionManager::builder_from_arc(store).build().unwrap());
    let issued = manager
        .create(None, Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let hash = issued.token.hash();
    let in_flight = Arc::new(Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let manager = manager.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            let _permit = in_flight.acquire_owned().await.unwrap();
            manager
                .update_value::<u64, _>(&hash, "n", |n| n.unwrap_or(0) + 1)
                .await
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "increments failed: {failures:?}");
    let record = manager.load_hash(&hash).await.unwrap();
    assert_eq!(record.data.get("n"), Some(&json!(1000)));
    assert_eq!(record.version, 1001, "one version per increment");
}

/// Two `modify` calls released together, each setting its own key: both
/// keys survive, every round.
pub async fn concurrent_modifies_keep_both_keys(store: Arc<dyn Store>) {
    let manager = Arc::new(SessionManager::builder_from_arc(store).build().unwrap());
    let issued = manager
        .create(None, Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let hash = issued.token.hash();
    for round in 0..20 {
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |key: String| {
            let manager = manager.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut changes = DataChanges::default();
                changes.set(key, json!(round));
                barrier.wait().await;
                manager.modify(&hash, &changes, Access::Activity).await
            })
        };
        let a = spawn(format!("a{round}"));
        let b = spawn(format!("b{round}"));
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    }
    let record = manager.load_hash(&hash).await.unwrap();
    for round in 0..20 {
        assert_eq!(record.data.get(&format!("a{round}")), Some(&json!(round)));
        assert_eq!(record.data.get(&format!("b{round}")), Some(&json!(round)));
    }
    assert_eq!(record.version, 41);
}

/// 25 expired and 5 live records: a purge with a limit deletes at most that
/// many, oldest first, and never a live record.
pub async fn purge_is_bounded(store: Arc<dyn Store>) {
    let user = tessera::testkit::unique_user("purge");
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    // Far in the past, so records other tests left behind are not among
    // the ones counted here (they expire around the real current time).
    let past = Timestamp::from_millis(1_000_000);
    let mut expired = Vec::new();
    for i in 0..25 {
        let (_, mut record) = tessera::testkit::sample_record(Some(&user));
        record.created_at = past;
        record.deadlines.idle = past + Duration::from_millis(i);
        record.deadlines.absolute = past + Duration::from_secs(60);
        store.create(&record).await.unwrap();
        expired.push(record.hash);
    }
    let mut live = Vec::new();
    for _ in 0..5 {
        let (_, record) = tessera::testkit::sample_record(Some(&user));
        store.create(&record).await.unwrap();
        live.push(record.hash);
    }
    // `now` for the purge: after every expired deadline, but only the
    // ones of this test (past + 1 minute), so the counts are exact.
    let cut = past + Duration::from_secs(60);
    assert_eq!(store.purge_expired(cut, 10).await.unwrap(), 10);
    // The oldest deadlines went first.
    for hash in &expired[..10] {
        assert!(store.load(hash).await.unwrap().is_none());
    }
    assert!(store.load(&expired[10]).await.unwrap().is_some());
    assert_eq!(store.purge_expired(cut, 10).await.unwrap(), 10);
    assert_eq!(store.purge_expired(cut, 10).await.unwrap(), 5);
    assert_eq!(store.purge_expired(cut, 10).await.unwrap(), 0);
    assert_eq!(store.purge_expired(cut, 0).await.unwrap(), 0);
    for hash in &live {
        assert!(
            store.load(hash).await.unwrap().is_some(),
            "live record purged"
        );
    }
    assert_eq!(store.list_by_user(&user, now).await.unwrap().len(), 5);
    store
        .delete_by_user(&user, None, tessera::Revocation::Other)
        .await
        .unwrap();
}

/// The sweeper, driven by a manual clock, deletes expired records in
/// batches and reports it; no sleeping: the test waits for the sweeper's
/// own "run finished" signal.
pub async fn sweeper_purges_in_batches(store: Arc<dyn Store>) {
    let user = tessera::testkit::unique_user("sweep");
    let past = Timestamp::from_millis(2_000_000);
    for _ in 0..23 {
        let (_, mut record) = tessera::testkit::sample_record(Some(&user));
        record.created_at = past;
        record.deadlines.idle = past + Duration::from_secs(1);
        record.deadlines.absolute = past + Duration::from_secs(2);
        store.create(&record).await.unwrap();
    }
    let clock = tessera::time::ManualClock::new(past + Duration::from_secs(3));
    let config = tessera_sql::SweeperConfig::new(Duration::from_secs(3600), 5).with_max_batches(3);
    let sweeper = tessera_sql::Sweeper::spawn(store.clone(), Arc::new(clock), config);
    let mut stats = sweeper.subscribe();
    stats.wait_for(|s| s.runs >= 1).await.unwrap();
    // One run: at most 3 batches of 5.
    assert_eq!(sweeper.stats().purged, 15);
    assert_eq!(sweeper.stats().failures, 0);
    // The rest goes in one direct sweep.
    let rest = tessera_sql::sweep_once(store.as_ref(), past + Duration::from_secs(3), 5, 100)
        .await
        .unwrap();
    assert_eq!(rest, 8);
    sweeper.stop();
}

/// Expired refresh tokens do not accumulate: `purge_expired` deletes them
/// after the expired sessions, in the same bounded batches (the limit is
/// shared, sessions first), oldest expiry first, used or not, and never a
/// live token.
pub async fn refresh_purge_is_bounded(store: Arc<SqlStore>) {
    let past = Timestamp::from_millis(3_000_000);
    let user = tessera::testkit::unique_user("rpurge");
    let mut sessions = Vec::new();
    for i in 0..3 {
        let (_, mut record) = tessera::testkit::sample_record(Some(&user));
        record.created_at = past;
        record.deadlines.idle = past + Duration::from_millis(i);
        record.deadlines.absolute = past + Duration::from_secs(60);
        store.create(&record).await.unwrap();
        sessions.push(record.hash);
    }
    let family = SessionHandle::generate().unwrap();
    let token = |expires_at: Timestamp| {
        let token = RefreshToken::generate().unwrap();
        let record = RefreshRecord {
            hash: token.hash(),
            family: family.clone(),
            user_id: Some(user.clone()),
            issued_at: past,
            expires_at,
            used: None,
        };
        (token, record)
    };
    let mut expired = Vec::new();
    for i in 0..5 {
        let (t, record) = token(past + Duration::from_millis(10_000 + i));
        store.insert_refresh(&record).await.unwrap();
        expired.push(t);
    }
    // A used parent and its child, both expired: used rows go too.
    let (child, child_record) = token(past + Duration::from_millis(10_005));
    let sealed = expired[0].seal_child(&child);
    assert_eq!(
        store
            .use_refresh(
                &expired[0].hash(),
                &child_record,
                &sealed,
                past + Duration::from_millis(1)
            )
            .await
            .unwrap(),
        RefreshUse::Rotated
    );
    expired.push(child);
    let live_at =
        tessera::time::Clock::now(&tessera::time::SystemClock) + Duration::from_secs(3600);
    let mut live = Vec::new();
    for _ in 0..2 {
        let (t, record) = token(live_at);
        store.insert_refresh(&record).await.unwrap();
        live.push(t);
    }
    let cut = past + Duration::from_secs(60);
    // 3 sessions, then the 2 oldest tokens: 5 in all.
    assert_eq!(store.purge_expired(cut, 5).await.unwrap(), 5);
    for hash in &sessions {
        assert!(store.load(hash).await.unwrap().is_none(), "session first");
    }
    for t in &expired[..2] {
        assert!(store.load_refresh(&t.hash()).await.unwrap().is_none());
    }
    assert!(
        store
            .load_refresh(&expired[2].hash())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.purge_expired(cut, 5).await.unwrap(), 4);
    assert_eq!(store.purge_expired(cut, 5).await.unwrap(), 0);
    for t in &expired {
        assert!(store.load_refresh(&t.hash()).await.unwrap().is_none());
    }
    for t in &live {
        assert!(
            store.load_refresh(&t.hash()).await.unwrap().is_some(),
            "live refresh token purged"
        );
    }
    assert_eq!(store.delete_refresh_family(&family).await.unwrap(), 2);
}

/// `purge_expired_dbsc` deletes expired DBSC rows and nothing live.
pub async fn dbsc_purge_removes_only_expired_rows(store: &SqlStore) {
    use tessera::dbsc::{DbscStore, Secret, digest};
    use tessera::record::SessionHandle;
    use tessera::time::{Clock, SystemClock, Timestamp};
    let now = SystemClock.now();
    let later = |ms: i64| Timestamp::from_millis(now.as_millis() + ms);
    let h = SessionHandle::generate().unwrap();
    store
        .put_secret(&h, Secret::Cookie, &digest("old"), later(1_000))
        .await
        .unwrap();
    store
        .put_secret(&h, Secret::Cookie, &digest("new"), later(60_000))
        .await
        .unwrap();
    let purged = store.purge_expired_dbsc(later(2_000)).await.unwrap();
    assert!(purged >= 1, "the expired cookie row is purged");
    assert!(store.cookie_is_live(&h, &digest("new"), now).await.unwrap());
    assert!(!store.cookie_is_live(&h, &digest("old"), now).await.unwrap());
}
