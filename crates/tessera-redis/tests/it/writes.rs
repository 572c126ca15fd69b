//! The write path (`modify`, `modify_loaded`): compare-and-set against the
//! base record, and writes of one session pipelined within a process (see
//! `Stripe` in the crate), on a real Redis and a real Redis Cluster.

use crate::common;

use std::sync::Arc;

use serde_json::json;
use tessera::policy::SessionPolicy;
use tessera::record::{ClientMeta, SessionHandle, SessionRecord};
use tessera::store::{Modify, Store};
use tessera::time::{Clock, SystemClock, Timestamp};
use tessera::token::SessionToken;
use tessera_redis::{RedisOptions, RedisStore};
use tokio::task::JoinSet;

fn now() -> Timestamp {
    SystemClock.now()
}

/// Two stores on one prefix: two processes sharing the same sessions.
async fn two_processes(var: &str) -> (Arc<RedisStore>, Arc<RedisStore>) {
    let prefix = common::unique_prefix("writes");
    let connect = || async {
        RedisStore::connect(
            &common::url(var),
            RedisOptions::default().with_key_prefix(prefix.clone()),
        )
        .await
        .expect("connect to the test Redis")
    };
    (Arc::new(connect().await), Arc::new(connect().await))
}

async fn create(store: &RedisStore, user: Option<&str>) -> SessionRecord {
    let at = now();
    let record = SessionRecord::new(
        SessionToken::generate().unwrap().hash(),
        user.map(str::to_owned),
        at,
        SessionPolicy::default().deadlines_at(at),
        ClientMeta::default(),
    )
    .unwrap();
    store.create(&record).await.unwrap();
    record
}

fn increment(r: &mut SessionRecord) -> Modify {
    let n = r.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
    r.data.insert("n".into(), json!(n + 1));
    Modify::Write
}

/// Each process runs a burst of writes on one session, all from the same
/// (soon stale) loaded copy: the in-process pipeline chains them, the other
/// process's writes break those chains, and every increment must survive.
async fn bursts_from_two_processes_lose_nothing(var: &str) {
    const PER_PROCESS: u64 = 120;
    let (a, b) = two_processes(var).await;
    let record = create(&a, Some("alice")).await;
    let mut tasks = JoinSet::new();
    for i in 0..2 * PER_PROCESS {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let seed = record.clone();
        tasks.spawn(async move {
            let written = if i % 3 == 0 {
                store.modify(&seed.hash, now(), &increment).await
            } else {
                store.modify_loaded(&seed, now(), &increment).await
            };
            written.expect("modify").expect("record");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    for store in [&a, &b] {
        let loaded = store.load(&record.hash).await.unwrap().unwrap();
        assert_eq!(loaded.data.get("n"), Some(&json!(2 * PER_PROCESS)));
        assert_eq!(loaded.version, record.version + 2 * PER_PROCESS);
        assert_eq!(loaded.user_id.as_deref(), Some("alice"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_bursts_from_two_processes_lose_nothing() {
    bursts_from_two_processes_lose_nothing("TESSERA_TEST_REDIS_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_bursts_from_two_processes_lose_nothing() {
    bursts_from_two_processes_lose_nothing("TESSERA_TEST_REDIS_CLUSTER_URL").await;
}

/// A write pipelined behind another write of the same process is computed
/// from a record that was never stored if the write ahead of it fails.
/// Another process may meanwhile have stored a record with the same
/// version, deadlines, handle and user but other data: the pipelined write
/// must not be applied on top of it (its data lacks the other process's
/// change). With a version or header comparison it was; the `CAS` script
/// compares whole values.
async fn a_failed_write_never_becomes_the_base_of_a_later_one(var: &str) {
    fn set(key: &'static str) -> impl Fn(&mut SessionRecord) -> Modify + Send + Sync {
        move |r: &mut SessionRecord| {
            r.data.insert(key.into(), json!(true));
            Modify::Write
        }
    }
    let (p, q) = two_processes(var).await;
    for _ in 0..20 {
        let loaded = create(&p, Some("alice")).await;
        // Process Q writes first, from the same version, without moving the
        // deadlines: its record has the same header as the one P computes.
        let (set_q, set_p1, set_p2) = (set("q"), set("p1"), set("p2"));
        q.modify_loaded(&loaded, now(), &set_q)
            .await
            .unwrap()
            .unwrap();
        // Process P: two requests that loaded the (now stale) version write
        // at once; the second is computed from the first, which fails.
        let (first, second) = tokio::join!(
            p.modify_loaded(&loaded, now(), &set_p1),
            p.modify_loaded(&loaded, now(), &set_p2),
        );
        first.unwrap().unwrap();
        second.unwrap().unwrap();
        let stored = p.load(&loaded.hash).await.unwrap().unwrap();
        for key in ["q", "p1", "p2"] {
            assert_eq!(
                stored.data.get(key),
                Some(&json!(true)),
                "the write of {key} was lost: {:?}",
                stored.data
            );
        }
    }
}

#[tokio::test]
async fn standalone_a_failed_write_never_becomes_the_base_of_a_later_one() {
    a_failed_write_never_becomes_the_base_of_a_later_one("TESSERA_TEST_REDIS_URL").await;
}

#[tokio::test]
async fn cluster_a_failed_write_never_becomes_the_base_of_a_later_one() {
    a_failed_write_never_becomes_the_base_of_a_later_one("TESSERA_TEST_REDIS_CLUSTER_URL").await;
}

/// `modify_loaded` takes the caller's copy as the base; a copy with another
/// user or handle (a bug, or a forged record) must not change who the
/// session belongs to: the compare-and-set refuses it and the write is
/// computed again from the stored record.
async fn a_forged_base_cannot_change_the_owner(store: RedisStore) {
    let record = create(&store, Some("alice")).await;
    let mut forged_user = record.clone();
    forged_user.user_id = Some("mallory".into());
    let mut forged_handle = record.clone();
    forged_handle.handle = SessionHandle::generate().unwrap();
    let mut anonymous = record.clone();
    anonymous.user_id = None;
    for (i, forged) in [forged_user, forged_handle, anonymous].iter().enumerate() {
        let written = store
            .modify_loaded(forged, now(), &increment)
            .await
            .unwrap()
            .expect("the session is live");
        assert_eq!(written.user_id.as_deref(), Some("alice"));
        assert_eq!(written.handle, record.handle);
        let loaded = store.load(&record.hash).await.unwrap().unwrap();
        assert_eq!(loaded, written);
        assert_eq!(loaded.data.get("n"), Some(&json!(i + 1)));
    }
}

#[tokio::test]
async fn standalone_a_forged_base_cannot_change_the_owner() {
    a_forged_base_cannot_change_the_owner(common::standalone("forged").await).await;
}

#[tokio::test]
async fn cluster_a_forged_base_cannot_change_the_owner() {
    a_forged_base_cannot_change_the_owner(common::cluster("forged").await).await;
}

/// A caller's copy whose deadlines differ from the stored ones (the stored
/// idle deadline moved, or the copy was tampered with to look alive) is not
/// the base of a write: only the stored record's deadlines decide.
async fn the_stored_deadlines_decide(store: RedisStore) {
    let record = create(&store, None).await;
    let later = Timestamp::from_millis(record.deadlines.absolute.as_millis() + 1);
    // Stretched deadlines on the caller's copy do not make an ended session
    // writable at `later`.
    let mut stretched = record.clone();
    stretched.deadlines.idle = Timestamp::from_millis(later.as_millis() + 60_000);
    stretched.deadlines.absolute = Timestamp::from_millis(later.as_millis() + 60_000);
    let out = store
        .modify_loaded(&stretched, later, &increment)
        .await
        .unwrap();
    assert!(out.is_none(), "an ended session is not resurrected");
    assert_eq!(
        store.load(&record.hash).await.unwrap(),
        Some(record.clone())
    );
    // A copy that looks expired while the stored record is live is written
    // from the stored record.
    let mut shrunk = record.clone();
    shrunk.deadlines.idle = Timestamp::from_millis(record.created_at.as_millis());
    let out = store
        .modify_loaded(&shrunk, now(), &increment)
        .await
        .unwrap()
        .expect("the stored record is live");
    assert_eq!(out.version, record.version + 1);
    assert_eq!(out.data.get("n"), Some(&json!(1)));
}

#[tokio::test]
async fn standalone_the_stored_deadlines_decide() {
    the_stored_deadlines_decide(common::standalone("deadlines").await).await;
}

#[tokio::test]
async fn cluster_the_stored_deadlines_decide() {
    the_stored_deadlines_decide(common::cluster("deadlines").await).await;
}
