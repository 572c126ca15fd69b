//! The session cache (`tessera::cache`): two nodes with their own caches
//! over one shared store, talking through a `LocalChannel`. Each test
//! fails if invalidation is removed: the caches' staleness bound is set to
//! a minute, so only a message can make node B drop what it holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tessera::cache::{CacheConfig, CachedStore, Invalidation, LocalChannel};
use tessera::ended::{Ended, Revocation};
use tessera::error::StoreError;
use tessera::not_before::{NotBefore, Scope};
use tessera::policy::SessionCap;
use tessera::record::{ClientMeta, Data, SessionHandle, SessionRecord};
use tessera::store::{Capped, CasOutcome, MemoryStore, ModifyFn, Patch, PatchOutcome, Store};
use tessera::testkit::CountingStore;
use tessera::time::Timestamp;
use tessera::token::TokenHash;
use tessera::{Access, SessionError, SessionManager};
use tokio::sync::Notify;

/// Far longer than any test waits for a message, shorter than the
/// default idle timeout (entries near a deadline are never served).
const LONG: Duration = Duration::from_secs(60);

fn long_lived() -> CacheConfig {
    CacheConfig {
        max_staleness: LONG,
        ..CacheConfig::default()
    }
}

struct Node {
    manager: SessionManager,
    cache: CachedStore<dyn Store>,
}

fn node(store: Arc<dyn Store>, channel: Arc<dyn Invalidation>) -> Node {
    let cache = CachedStore::from_arc(store, long_lived(), channel);
    let manager = SessionManager::builder(cache.clone()).build().unwrap();
    Node { manager, cache }
}

fn two_nodes() -> (Node, Node) {
    let shared: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    (node(shared.clone(), channel.clone()), node(shared, channel))
}

/// Loads through `node` until it refuses, for at most 5 s (the message is
/// delivered by another task); returns the refusal.
async fn refused_by(node: &Node, token: &str) -> SessionError {
    for _ in 0..500 {
        match node.manager.load(token, Access::Status).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => return e,
        }
    }
    panic!("node B kept serving a session that ended on node A");
}

async fn cached_on(node: &Node, token: &str) -> SessionRecord {
    node.manager.load(token, Access::Status).await.unwrap();
    let before = node.cache.stats().hits;
    let record = node.manager.load(token, Access::Status).await.unwrap();
    assert_eq!(
        node.cache.stats().hits,
        before + 1,
        "the second load must hit"
    );
    record
}

#[tokio::test]
async fn conformance_suite_passes_on_a_cached_memory_store() {
    let inner = Arc::new(MemoryStore::new());
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    let cached = Arc::new(CachedStore::from_arc(
        inner,
        CacheConfig::default(),
        channel,
    ));
    tessera::testkit::run_all(cached.clone()).await;
    tessera::testkit::run_refresh_all(cached.clone(), cached).await;
}

#[tokio::test]
async fn revoked_on_a_is_refused_on_b_with_the_reason() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(Some("alice".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&b, token).await;
    assert!(
        a.manager
            .revoke(&issued.record.handle, None, Revocation::Admin)
            .await
            .unwrap()
    );
    assert!(matches!(
        refused_by(&b, token).await,
        SessionError::Revoked {
            by: Revocation::Admin
        }
    ));
    assert!(b.cache.stats().invalidations_received > 0);
}

#[tokio::test]
async fn revoking_a_user_on_a_is_refused_on_b() {
    let (a, b) = two_nodes();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let issued = a
            .manager
            .create(Some("bob".into()), Data::new(), ClientMeta::default())
            .await
            .unwrap();
        cached_on(&b, issued.token.expose()).await;
        tokens.push(issued.token);
    }
    let other = a
        .manager
        .create(Some("carol".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, other.token.expose()).await;

    a.manager
        .revoke_user("bob", None, Revocation::PasswordChanged)
        .await
        .unwrap();
    for token in &tokens {
        assert!(matches!(
            refused_by(&b, token.expose()).await,
            SessionError::Revoked {
                by: Revocation::PasswordChanged
            }
        ));
    }
    // Another user's session is untouched, and still served from cache.
    cached_on(&b, other.token.expose()).await;
}

#[tokio::test]
async fn signing_everybody_out_on_a_empties_b() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(None, Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, issued.token.expose()).await;
    // The switch refuses sessions created *before* its instant (ms): let
    // the clock move past the creation, as it does between real requests.
    tokio::time::sleep(Duration::from_millis(3)).await;
    a.manager.revoke_everyone().await.unwrap();
    refused_by(&b, issued.token.expose()).await;
}

#[tokio::test]
async fn sign_out_on_a_reads_as_signed_out_on_b() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(Some("dave".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, issued.token.expose()).await;
    a.manager.destroy(&issued.record.hash).await.unwrap();
    assert!(matches!(
        refused_by(&b, issued.token.expose()).await,
        SessionError::SignedOut
    ));
}

#[tokio::test]
async fn rotation_on_a_retires_the_old_token_on_b() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(Some("erin".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    cached_on(&b, issued.token.expose()).await;
    let rotated = a
        .manager
        .rotate(
            &issued.record.hash,
            tessera::Renewal::Rotate,
            &tessera::record::DataChanges::default(),
        )
        .await
        .unwrap();
    refused_by(&b, issued.token.expose()).await;
    b.manager
        .load(rotated.token.expose(), Access::Status)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_data_write_on_a_is_read_on_b() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(Some("fay".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&b, token).await;
    let mut changes = tessera::record::DataChanges::default();
    changes.set("role", json!("admin"));
    a.manager
        .modify(&issued.record.hash, &changes, Access::Status)
        .await
        .unwrap();
    for _ in 0..500 {
        let record = b.manager.load(token, Access::Status).await.unwrap();
        if record.data.get("role") == Some(&json!("admin")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("node B kept serving the data from before node A's write");
}

#[tokio::test]
async fn a_cache_without_channel_serves_no_entry_past_its_staleness_bound() {
    let shared = Arc::new(MemoryStore::new());
    let config = CacheConfig {
        max_staleness: Duration::from_millis(300),
        ..CacheConfig::default()
    };
    let b = CachedStore::without_channel(shared.clone(), config);
    let (_, record) = tessera::testkit::sample_record(Some("gus"));
    shared.create(&record).await.unwrap();
    assert!(b.load(&record.hash).await.unwrap().is_some());
    let now = || tessera::time::Clock::now(&tessera::time::SystemClock);
    assert!(b.load_in_memory(&record.hash, now()).is_some());
    // Deleted behind the cache's back (another process, no channel).
    assert!(shared.delete(&record.hash).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Neither the manager's first question nor `load` serves it any more.
    assert!(b.load_in_memory(&record.hash, now()).is_none());
    assert!(b.load(&record.hash).await.unwrap().is_none());
}

/// The session manager asks `load_in_memory` before `load`: it answers
/// hits only (a miss is `None` and left to `load`, which counts it), never
/// near a deadline, never after an invalidation, and a request is counted
/// once either way.
#[tokio::test]
async fn load_in_memory_answers_hits_and_leaves_the_rest_to_load() {
    let shared = CountingStore::new(MemoryStore::new());
    let cache = CachedStore::new(shared.clone(), long_lived(), Arc::new(LocalChannel::new()));
    let (_, record) = tessera::testkit::sample_record(Some("ivy"));
    shared.create(&record).await.unwrap();
    shared.reset();
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    assert!(cache.load_in_memory(&record.hash, now).is_none());
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 0));
    assert_eq!(
        cache.load(&record.hash).await.unwrap(),
        Some(record.clone())
    );
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));
    assert_eq!(
        cache.load_in_memory(&record.hash, now),
        Some(record.clone())
    );
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    assert_eq!(shared.counts().loads, 1, "the hit made no store call");
    // Within the staleness bound of a deadline, the store decides.
    let late = record.deadlines.idle - Duration::from_secs(30);
    assert!(cache.load_in_memory(&record.hash, late).is_none());
    // Cached again by the load that follows, then invalidated by a delete.
    assert!(cache.load(&record.hash).await.unwrap().is_some());
    assert!(cache.load_in_memory(&record.hash, now).is_some());
    assert!(cache.delete(&record.hash).await.unwrap());
    assert!(cache.load_in_memory(&record.hash, now).is_none());
    assert_eq!(cache.load(&record.hash).await.unwrap(), None);
    assert_eq!((cache.stats().hits, cache.stats().misses), (2, 3));
}

#[tokio::test]
async fn an_entry_near_its_deadline_is_read_from_the_store() {
    let shared = CountingStore::new(MemoryStore::new());
    let cache = CachedStore::new(shared.clone(), long_lived(), Arc::new(LocalChannel::new()));
    let (_, mut record) = tessera::testkit::sample_record(None);
    // Idle deadline in 30 s: within the minute of staleness.
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    record.deadlines.idle = now + Duration::from_secs(30);
    shared.create(&record).await.unwrap();
    shared.reset();
    for _ in 0..3 {
        assert!(cache.load(&record.hash).await.unwrap().is_some());
    }
    assert_eq!(shared.counts().loads, 3, "no load may be served from cache");
}

/// A store whose `load` can be held after reading, to line up a load with
/// a concurrent invalidation, and whose `patch` can be held after writing,
/// to line up two writes; it also notes the version of each `patch`'s
/// `base`.
struct GatedStore {
    inner: Arc<MemoryStore>,
    armed: AtomicBool,
    read_done: Notify,
    write_armed: AtomicBool,
    write_done: Notify,
    release: Notify,
    bases: std::sync::Mutex<Vec<Option<u64>>>,
}

impl GatedStore {
    fn new(inner: Arc<MemoryStore>) -> Self {
        Self {
            inner,
            armed: AtomicBool::new(false),
            read_done: Notify::new(),
            write_armed: AtomicBool::new(false),
            write_done: Notify::new(),
            release: Notify::new(),
            bases: std::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create(record).await
    }
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        self.inner.create_capped(record, cap, now).await
    }
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        self.inner.raise_not_before(scope, to).await
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        self.inner.not_before(scope).await
    }
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let loaded = self.inner.load(hash).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        loaded
    }
    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        self.inner.load_in_memory(hash, now)
    }
    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.inner.update(expected_version, record, now).await
    }
    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.inner.rotate(old, expected_version, new, now).await
    }
    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        self.inner.delete(hash).await
    }
    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        self.inner.end(hash, why).await
    }
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.inner.ended(hash, now).await
    }
    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        self.inner.delete_by_handle(handle, owner, why).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.list_by_user(user_id, now).await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        self.inner.delete_by_user(user_id, except, why).await
    }
    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.inner.delete_all().await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.modify(hash, now, f).await
    }
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.modify_loaded(current, now, f).await
    }
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        self.bases.lock().unwrap().push(base.map(|b| b.version));
        let written = self.inner.patch(hash, base, patch, now).await;
        if self.write_armed.swap(false, Ordering::SeqCst) {
            self.write_done.notify_one();
            self.release.notified().await;
        }
        written
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_revocation_does_not_cache_the_old_record() {
    let shared = Arc::new(MemoryStore::new());
    let channel = Arc::new(LocalChannel::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let a = CachedStore::from_arc(shared.clone(), long_lived(), channel.clone());
    let b = Arc::new(CachedStore::from_arc(gated.clone(), long_lived(), channel));
    let (_, record) = tessera::testkit::sample_record(Some("hal"));
    shared.create(&record).await.unwrap();

    // B reads the live record from the store, and is held there...
    gated.armed.store(true, Ordering::SeqCst);
    let loading = tokio::spawn({
        let b = b.clone();
        async move { b.load(&record.hash).await }
    });
    gated.read_done.notified().await;
    // ...while A revokes it and B hears about it...
    assert!(a.end(&record.hash, Ended::SignedOut).await.unwrap());
    for _ in 0..500 {
        if b.stats().invalidations_received > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.stats().invalidations_received > 0);
    // ...then B's load finishes with the record it read before.
    gated.release.notify_one();
    assert!(loading.await.unwrap().unwrap().is_some());
    // What it read must not have been cached.
    assert!(b.load(&record.hash).await.unwrap().is_none());
}

/// Two records of one user (or none) whose token hashes fall in different
/// generation stripes (the stripe is the hash's first byte).
fn records_in_two_stripes(user: Option<&str>) -> (SessionRecord, SessionRecord) {
    let (_, first) = tessera::testkit::sample_record(user);
    loop {
        let (_, second) = tessera::testkit::sample_record(user);
        if second.hash.as_bytes()[0] != first.hash.as_bytes()[0] {
            return (first, second);
        }
    }
}

/// Node B (over a gated store) loads `record` and is held just after
/// reading it; `during` runs on node A meanwhile, and must make B receive
/// at least one message; then B's load finishes. Returns node B.
async fn race_a_load_with<F, Fut>(
    record: &SessionRecord,
    also: &[&SessionRecord],
    during: F,
) -> Arc<CachedStore<GatedStore>>
where
    F: FnOnce(CachedStore<MemoryStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let shared = Arc::new(MemoryStore::new());
    let channel = Arc::new(LocalChannel::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let a = CachedStore::from_arc(shared.clone(), long_lived(), channel.clone());
    let b = Arc::new(CachedStore::from_arc(gated.clone(), long_lived(), channel));
    for r in std::iter::once(record).chain(also.iter().copied()) {
        shared.create(r).await.unwrap();
    }
    gated.armed.store(true, Ordering::SeqCst);
    let loading = tokio::spawn({
        let b = b.clone();
        let hash = record.hash;
        async move { b.load(&hash).await }
    });
    gated.read_done.notified().await;
    during(a).await;
    for _ in 0..500 {
        if b.stats().invalidations_received > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.stats().invalidations_received > 0);
    gated.release.notify_one();
    assert!(loading.await.unwrap().unwrap().is_some());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_user_revocation_does_not_cache_the_old_record() {
    let (record, _) = records_in_two_stripes(Some("ida"));
    let b = race_a_load_with(&record, &[], |a| async move {
        assert_eq!(
            a.delete_by_user("ida", None, Revocation::PasswordChanged)
                .await
                .unwrap(),
            1
        );
    })
    .await;
    assert!(b.load(&record.hash).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_revocation_by_handle_does_not_cache_the_old_record() {
    let (record, _) = records_in_two_stripes(Some("jon"));
    let handle = record.handle.clone();
    let b = race_a_load_with(&record, &[], |a| async move {
        assert!(
            a.delete_by_handle(&handle, None, Revocation::Admin)
                .await
                .unwrap()
        );
    })
    .await;
    assert!(b.load(&record.hash).await.unwrap().is_none());
}

/// The generation is striped by token hash: ending an unrelated session
/// (another stripe) while a load is in flight does not make the load drop
/// what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_cached_despite_an_unrelated_invalidation_meanwhile() {
    let (record, unrelated) = records_in_two_stripes(Some("kim"));
    let other = unrelated.hash;
    let b = race_a_load_with(&record, &[&unrelated], |a| async move {
        assert!(a.end(&other, Ended::SignedOut).await.unwrap());
    })
    .await;
    let hits = b.stats().hits;
    assert!(b.load(&record.hash).await.unwrap().is_some());
    assert_eq!(b.stats().hits, hits + 1, "the load's insert was dropped");
}

/// A patch with no base gets this node's copy as its base (on Redis the
/// cheaper compare-and-set script); a stale copy loses nothing.
#[tokio::test]
async fn a_patch_without_a_base_starts_from_the_cached_copy() {
    let shared = Arc::new(MemoryStore::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    let cache = CachedStore::from_arc(gated.clone(), long_lived(), channel);
    let (_, record) = tessera::testkit::sample_record(None);
    shared.create(&record).await.unwrap();
    let now = record.created_at;
    let inc = Patch::new(vec![tessera::store::PatchOp::Increment {
        key: "n".into(),
        by: 1,
    }]);
    let applied = |outcome: PatchOutcome| assert!(matches!(outcome, PatchOutcome::Applied(_)));

    // Nothing cached: no base.
    applied(cache.patch(&record.hash, None, &inc, now).await.unwrap());
    // Cached (by a load): the copy is the base.
    let loaded = cache.load(&record.hash).await.unwrap().unwrap();
    applied(cache.patch(&record.hash, None, &inc, now).await.unwrap());
    // A caller's own base wins.
    applied(
        cache
            .patch(&record.hash, Some(&record), &inc, now)
            .await
            .unwrap(),
    );
    assert_eq!(
        *gated.bases.lock().unwrap(),
        [None, Some(loaded.version), Some(record.version)]
    );

    // Written behind the cache's back (another process, no message): the
    // cached copy is stale, the increment still lands on the stored value.
    let cached = cache.load(&record.hash).await.unwrap().unwrap();
    applied(shared.patch(&record.hash, None, &inc, now).await.unwrap());
    let PatchOutcome::Applied(written) = cache.patch(&record.hash, None, &inc, now).await.unwrap()
    else {
        panic!("the session is live");
    };
    assert_eq!(
        gated.bases.lock().unwrap().last(),
        Some(&Some(cached.version))
    );
    assert_eq!(written.data["n"], 5);
    assert_eq!(shared.load(&record.hash).await.unwrap().unwrap(), written);
}

/// Two writes of one session in flight on one node, the older finishing
/// last (as when many requests of one client write at once): the newer
/// record stays cached, so the next load is a hit that shows both writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_one_node_leave_the_newest_record_cached() {
    let shared = Arc::new(MemoryStore::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    let cache = Arc::new(CachedStore::from_arc(gated.clone(), long_lived(), channel));
    let (_, record) = tessera::testkit::sample_record(None);
    shared.create(&record).await.unwrap();
    let now = record.created_at;
    let set = |key: &str| {
        Patch::new(vec![tessera::store::PatchOp::Set {
            key: key.into(),
            value: json!(true),
        }])
    };
    assert!(cache.load(&record.hash).await.unwrap().is_some());

    // The first write is stored, then held before the cache hears of it...
    gated.write_armed.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let cache = cache.clone();
        let hash = record.hash;
        let patch = set("first");
        async move { cache.patch(&hash, None, &patch, now).await }
    });
    gated.write_done.notified().await;
    // ...while a second one is stored after it and finishes first.
    let PatchOutcome::Applied(second) = cache
        .patch(&record.hash, None, &set("second"), now)
        .await
        .unwrap()
    else {
        panic!("the session is live");
    };
    gated.release.notify_one();
    let PatchOutcome::Applied(first) = first.await.unwrap().unwrap() else {
        panic!("the session is live");
    };
    assert!(first.version < second.version);

    let hits = cache.stats().hits;
    let loaded = cache.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(
        cache.stats().hits,
        hits + 1,
        "the newer write was not cached"
    );
    assert_eq!(loaded, second, "the older write replaced the newer one");
    assert!(loaded.data.contains_key("first") && loaded.data.contains_key("second"));
    assert_eq!(shared.load(&record.hash).await.unwrap().unwrap(), second);
}

/// A load that read the store before a write of its node and finishes
/// after it does not cache the older record it read; it vouches for the
/// written one instead (the same session), so the next load is a hit that
/// shows the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_write_of_its_node_leaves_the_written_record_cached() {
    let shared = Arc::new(MemoryStore::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    let cache = Arc::new(CachedStore::from_arc(gated.clone(), long_lived(), channel));
    let (_, record) = tessera::testkit::sample_record(None);
    shared.create(&record).await.unwrap();
    let now = record.created_at;

    // The load reads the record, and is held there...
    gated.armed.store(true, Ordering::SeqCst);
    let loading = tokio::spawn({
        let cache = cache.clone();
        let hash = record.hash;
        async move { cache.load(&hash).await }
    });
    gated.read_done.notified().await;
    // ...while a write of the same node stores a newer version...
    let patch = Patch::new(vec![tessera::store::PatchOp::Set {
        key: "written".into(),
        value: json!(true),
    }]);
    let PatchOutcome::Applied(written) =
        cache.patch(&record.hash, None, &patch, now).await.unwrap()
    else {
        panic!("the session is live");
    };
    // ...then the load finishes with what it read before.
    gated.release.notify_one();
    let read = loading.await.unwrap().unwrap().unwrap();
    assert!(read.version < written.version);

    let hits = cache.stats().hits;
    let loaded = cache.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(
        cache.stats().hits,
        hits + 1,
        "the written record was not cached"
    );
    assert_eq!(loaded, written, "the load cached the older record it read");
}

/// As above, but the written record is gone from the cache by the time
/// the load finishes (here: past the cache's time to live; also what room
/// being made does): the load has nothing to compare versions with, so it
/// caches nothing, and the next load reads the written record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_write_whose_entry_is_gone_caches_nothing() {
    let shared = Arc::new(MemoryStore::new());
    let gated = Arc::new(GatedStore::new(shared.clone()));
    let channel: Arc<dyn Invalidation> = Arc::new(LocalChannel::new());
    let short = CacheConfig {
        max_staleness: Duration::from_millis(200),
        ..CacheConfig::default()
    };
    let cache = Arc::new(CachedStore::from_arc(gated.clone(), short, channel));
    let (_, record) = tessera::testkit::sample_record(None);
    shared.create(&record).await.unwrap();

    gated.armed.store(true, Ordering::SeqCst);
    let loading = tokio::spawn({
        let cache = cache.clone();
        let hash = record.hash;
        async move { cache.load(&hash).await }
    });
    gated.read_done.notified().await;
    let patch = Patch::new(vec![tessera::store::PatchOp::Set {
        key: "written".into(),
        value: json!(true),
    }]);
    let PatchOutcome::Applied(written) = cache
        .patch(&record.hash, None, &patch, record.created_at)
        .await
        .unwrap()
    else {
        panic!("the session is live");
    };
    // The write's entry lives at most the staleness bound.
    tokio::time::sleep(Duration::from_millis(400)).await;
    gated.release.notify_one();
    assert!(loading.await.unwrap().unwrap().unwrap().version < written.version);

    let loaded = cache.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(loaded, written, "the load cached the older record it read");
}

#[tokio::test]
async fn a_write_on_a_is_a_hit_on_a_with_the_new_data_and_reaches_b() {
    let (a, b) = two_nodes();
    let issued = a
        .manager
        .create(Some("lea".into()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let token = issued.token.expose();
    cached_on(&a, token).await;
    cached_on(&b, token).await;
    let mut changes = tessera::record::DataChanges::default();
    changes.set("role", json!("admin"));
    a.manager
        .modify(&issued.record.hash, &changes, Access::Status)
        .await
        .unwrap();
    // A's own write is in A's cache: the very next load is a hit, with
    // the new data.
    let hits = a.cache.stats().hits;
    let record = a.manager.load(token, Access::Status).await.unwrap();
    assert_eq!(a.cache.stats().hits, hits + 1, "A's next load missed");
    assert_eq!(record.data.get("role"), Some(&json!("admin")));
    assert!(a.cache.stats().written_through >= 1);
    // B hears about it.
    for _ in 0..500 {
        let record = b.manager.load(token, Access::Status).await.unwrap();
        if record.data.get("role") == Some(&json!("admin")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("node B kept serving the data from before node A's write");
}

#[tokio::test]
async fn a_node_skips_its_own_messages_and_keeps_what_it_wrote() {
    let (a, b) = two_nodes();
    let (_, record) = tessera::testkit::sample_record(Some("max"));
    a.cache.create(&record).await.unwrap();
    assert!(a.cache.load(&record.hash).await.unwrap().is_some());
    assert!(b.cache.load(&record.hash).await.unwrap().is_some());
    let inc = Patch::new(vec![tessera::store::PatchOp::Increment {
        key: "n".into(),
        by: 1,
    }]);
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    assert!(matches!(
        a.cache.patch(&record.hash, None, &inc, now).await.unwrap(),
        PatchOutcome::Applied(_)
    ));
    a.cache.wait_published().await;
    // Wait until A heard its own message back (and B heard it).
    for _ in 0..500 {
        if a.cache.stats().own_messages_skipped > 0 && b.cache.stats().invalidations_received > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = a.cache.stats();
    assert_eq!(stats.own_messages_skipped, 1);
    assert_eq!(stats.invalidations_received, 0);
    // Its own message did not evict what its write cached.
    let hits = a.cache.stats().hits;
    let loaded = a.cache.load(&record.hash).await.unwrap().unwrap();
    assert_eq!(a.cache.stats().hits, hits + 1);
    assert_eq!(loaded.data["n"], 1);
    // B applied it: its next load reads the store.
    let misses = b.cache.stats().misses;
    assert_eq!(
        b.cache.load(&record.hash).await.unwrap().unwrap().data["n"],
        1
    );
    assert_eq!(b.cache.stats().misses, misses + 1);
}

/// A channel that hands its sink to the test and records what is
/// published.
#[derive(Default)]
struct Captured {
    sink: std::sync::Mutex<Option<tessera::cache::InvalidationSink>>,
    published: std::sync::Mutex<Vec<(tessera::cache::Origin, tessera::cache::Invalidate)>>,
}

#[async_trait]
impl Invalidation for Captured {
    async fn publish(
        &self,
        message: &tessera::cache::Invalidate,
        origin: tessera::cache::Origin,
    ) -> Result<(), StoreError> {
        self.published
            .lock()
            .unwrap()
            .push((origin, message.clone()));
        Ok(())
    }
    fn subscribe(&self, sink: tessera::cache::InvalidationSink) {
        sink.connected();
        *self.sink.lock().unwrap() = Some(sink);
    }
}

/// Only a message that carries this cache's own origin is skipped: one
/// with another origin, one with none (the older wire form) are applied,
/// and one that does not parse flushes.
#[tokio::test]
async fn messages_from_other_or_unknown_origins_are_applied() {
    use tessera::cache::{Invalidate, Origin};
    let channel = Arc::new(Captured::default());
    let cache = CachedStore::new(MemoryStore::new(), long_lived(), channel.clone());
    let sink = channel.sink.lock().unwrap().clone().unwrap();
    let (_, record) = tessera::testkit::sample_record(Some("ned"));
    cache.create(&record).await.unwrap();
    // Learn this cache's origin from a message it publishes.
    cache
        .delete_by_user("nobody", None, Revocation::Admin)
        .await
        .unwrap();
    let own = channel.published.lock().unwrap()[0].0;

    let cached = |cache: &CachedStore<MemoryStore>| {
        let cache = cache.clone();
        let hash = record.hash;
        async move {
            assert!(cache.load(&hash).await.unwrap().is_some());
            let hits = cache.stats().hits;
            assert!(cache.load(&hash).await.unwrap().is_some());
            cache.stats().hits == hits + 1
        }
    };
    let message = Invalidate::Session(record.hash);
    let wires = [
        message.encode_from(Origin::from_u64(own.as_u64() ^ 1)),
        message.encode(),
        "t2 not-an-origin s 00".to_owned(),
        format!("t9 {:016x} a", own.as_u64()),
    ];
    for wire in wires {
        assert!(cached(&cache).await);
        sink.deliver_raw(&wire).await;
        let hits = cache.stats().hits;
        assert!(cache.load(&record.hash).await.unwrap().is_some());
        assert_eq!(cache.stats().hits, hits, "{wire:?} was not applied");
    }
    // Its own message is skipped.
    assert!(cached(&cache).await);
    sink.deliver_raw(&message.encode_from(own)).await;
    assert!(cached(&cache).await);
    assert_eq!(cache.stats().own_messages_skipped, 1);
}

#[tokio::test]
async fn a_revocation_is_published_before_it_returns() {
    let channel = Arc::new(Captured::default());
    let cache = CachedStore::new(MemoryStore::new(), long_lived(), channel.clone());
    let (_, record) = tessera::testkit::sample_record(Some("ora"));
    cache.create(&record).await.unwrap();
    assert!(cache.end(&record.hash, Ended::SignedOut).await.unwrap());
    // No waiting: the message was handed to the channel before `end`
    // returned.
    let published = channel.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].1,
        tessera::cache::Invalidate::Session(record.hash)
    );
}

/// A write does not check the kill switches that a store load checks: a
/// node that does not hold a copy verified by a load (here: evicted by a
/// kill switch raised on another node) must not cache what it wrote.
#[tokio::test]
async fn a_write_after_a_kill_switch_does_not_cache_the_killed_session() {
    let (a, b) = two_nodes();
    let (_, record) = tessera::testkit::sample_record(Some("pia"));
    a.cache.create(&record).await.unwrap();
    assert!(a.cache.load(&record.hash).await.unwrap().is_some());
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    b.cache
        .raise_not_before(
            Scope::User("pia"),
            NotBefore::new(now + Duration::from_secs(1), Revocation::PasswordChanged),
        )
        .await
        .unwrap();
    for _ in 0..500 {
        if a.cache.stats().invalidations_received > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A writes the session it loaded before (a request already past its
    // load); the store takes it.
    let mut next = record.clone();
    next.version += 1;
    next.data.insert("late".into(), json!(true));
    assert_eq!(
        a.cache.update(record.version, &next, now).await.unwrap(),
        CasOutcome::Applied
    );
    assert!(
        a.cache.load(&record.hash).await.unwrap().is_none(),
        "a session killed by a kill switch was served from the cache"
    );
}

/// A record a write caches keeps the instant the store last vouched for
/// the session (a load): writes every 50 ms do not keep it cached past
/// the staleness bound.
#[tokio::test]
async fn writes_do_not_extend_an_entry_past_its_staleness_bound() {
    let shared = CountingStore::new(MemoryStore::new());
    let config = CacheConfig {
        max_staleness: Duration::from_millis(300),
        ..CacheConfig::default()
    };
    let cache = CachedStore::new(shared.clone(), config, Arc::new(LocalChannel::new()));
    let (_, record) = tessera::testkit::sample_record(None);
    shared.create(&record).await.unwrap();
    assert!(cache.load(&record.hash).await.unwrap().is_some());
    shared.reset();
    let inc = Patch::new(vec![tessera::store::PatchOp::Increment {
        key: "n".into(),
        by: 1,
    }]);
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = tessera::time::Clock::now(&tessera::time::SystemClock);
        assert!(matches!(
            cache.patch(&record.hash, None, &inc, now).await.unwrap(),
            PatchOutcome::Applied(_)
        ));
        assert!(cache.load(&record.hash).await.unwrap().is_some());
    }
    assert!(cache.stats().written_through >= 1);
    assert!(
        shared.counts().loads >= 1,
        "600 ms of writes kept a copy cached without asking the store"
    );
}

/// A channel whose first publish waits for the test's go-ahead, so that
/// the writes made meanwhile queue up behind it.
#[derive(Default)]
struct HeldChannel {
    entered: Notify,
    go: Notify,
    first: AtomicBool,
    published: std::sync::Mutex<Vec<tessera::cache::Invalidate>>,
}

#[async_trait]
impl Invalidation for HeldChannel {
    async fn publish(
        &self,
        message: &tessera::cache::Invalidate,
        _origin: tessera::cache::Origin,
    ) -> Result<(), StoreError> {
        if !self.first.swap(true, Ordering::SeqCst) {
            self.entered.notify_one();
            self.go.notified().await;
        }
        self.published.lock().unwrap().push(message.clone());
        Ok(())
    }
    fn subscribe(&self, sink: tessera::cache::InvalidationSink) {
        sink.connected();
    }
}

/// Data writes made while a message is on its way leave together, as one
/// message naming each written session once: under load one publish (and
/// one message for every node to read) serves many requests, and no
/// write's session is left out.
#[tokio::test]
async fn data_writes_queued_meanwhile_leave_as_one_message() {
    use tessera::cache::Invalidate;
    let channel = Arc::new(HeldChannel::default());
    let cache = CachedStore::new(MemoryStore::new(), long_lived(), channel.clone());
    let inc = Patch::new(vec![tessera::store::PatchOp::Increment {
        key: "n".into(),
        by: 1,
    }]);
    let mut hashes = Vec::new();
    for _ in 0..40 {
        let (_, record) = tessera::testkit::sample_record(Some("quinn"));
        cache.create(&record).await.unwrap();
        hashes.push(record.hash);
    }
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    assert!(matches!(
        cache.patch(&hashes[0], None, &inc, now).await.unwrap(),
        PatchOutcome::Applied(_)
    ));
    channel.entered.notified().await;
    // While the first message is held: 39 other sessions, then the last
    // one three more times.
    for hash in &hashes[1..] {
        assert!(matches!(
            cache.patch(hash, None, &inc, now).await.unwrap(),
            PatchOutcome::Applied(_)
        ));
    }
    for _ in 0..3 {
        assert!(matches!(
            cache.patch(&hashes[39], None, &inc, now).await.unwrap(),
            PatchOutcome::Applied(_)
        ));
    }
    channel.go.notify_one();
    cache.wait_published().await;

    let published = channel.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0], Invalidate::Session(hashes[0]));
    let Invalidate::Sessions(mut batch) = published[1].clone() else {
        panic!("expected one message for the queued writes: {published:?}");
    };
    let mut expected = hashes[1..].to_vec();
    batch.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    expected.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(batch, expected, "each written session once");
    assert_eq!(cache.stats().published, 2);
}

/// A batch message from another node evicts every session it names.
#[tokio::test]
async fn a_batch_from_another_node_evicts_each_session() {
    let (a, b) = two_nodes();
    let mut records = Vec::new();
    for _ in 0..5 {
        let (_, record) = tessera::testkit::sample_record(Some("rio"));
        a.cache.create(&record).await.unwrap();
        assert!(b.cache.load(&record.hash).await.unwrap().is_some());
        records.push(record);
    }
    let inc = Patch::new(vec![tessera::store::PatchOp::Increment {
        key: "n".into(),
        by: 1,
    }]);
    let now = tessera::time::Clock::now(&tessera::time::SystemClock);
    // Written on A without yielding in between: queued, then sent together.
    for record in &records {
        assert!(matches!(
            a.cache.patch(&record.hash, None, &inc, now).await.unwrap(),
            PatchOutcome::Applied(_)
        ));
    }
    a.cache.wait_published().await;
    assert!(a.cache.stats().published < 5, "{:?}", a.cache.stats());
    for record in &records {
        let mut seen = None;
        for _ in 0..500 {
            let loaded = b.cache.load(&record.hash).await.unwrap().unwrap();
            seen = loaded.data.get("n").cloned();
            if seen == Some(json!(1)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, Some(json!(1)), "B kept a copy from before the write");
    }
}

/// A credential remembered under a `Vouch` (the server's API keys) may be
/// used until another node revokes one, a flush, or a lost channel; never
/// while the channel is down, never without one. Cached sessions survive a
/// credentials message.
#[tokio::test]
async fn a_vouch_ends_with_a_credentials_message_a_flush_or_a_lost_channel() {
    use tessera::cache::{Invalidate, Origin};
    let channel = Arc::new(Captured::default());
    let cache = CachedStore::new(MemoryStore::new(), long_lived(), channel.clone());
    let sink = channel.sink.lock().unwrap().clone().unwrap();
    let (_, record) = tessera::testkit::sample_record(Some("ned"));
    cache.create(&record).await.unwrap();
    let other = Origin::from_u64(42);

    // Another node's revocation ends the mark, and only the mark.
    assert!(cache.load(&record.hash).await.unwrap().is_some());
    let mark = cache.vouch().unwrap();
    assert!(cache.vouches(mark));
    sink.deliver_raw(&Invalidate::Credentials.encode_from(other))
        .await;
    assert!(!cache.vouches(mark));
    let hits = cache.stats().hits;
    assert!(cache.load(&record.hash).await.unwrap().is_some());
    assert_eq!(cache.stats().hits, hits + 1, "sessions stay cached");

    // Signing everybody out and an unreadable message end it too.
    for wire in [
        Invalidate::Everyone.encode_from(other),
        "t9 garbage".to_owned(),
    ] {
        let mark = cache.vouch().unwrap();
        sink.deliver_raw(&wire).await;
        assert!(!cache.vouches(mark), "{wire:?}");
    }
    // Unrelated invalidations do not.
    let mark = cache.vouch().unwrap();
    sink.deliver_raw(&Invalidate::User("someone".into()).encode_from(other))
        .await;
    sink.deliver_raw(&Invalidate::Session(TokenHash::from_bytes([7; 32])).encode_from(other))
        .await;
    assert!(cache.vouches(mark));

    // A lost channel ends it, and nothing is vouched for until it is back;
    // what was vouched for before stays dead.
    sink.disconnected();
    assert!(!cache.vouches(mark));
    assert!(cache.vouch().is_none());
    sink.connected();
    assert!(!cache.vouches(mark));
    let mark = cache.vouch().unwrap();

    // This node's own revocation ends it here at once and is published.
    assert!(cache.forget_credentials().await);
    assert!(!cache.vouches(mark));
    let published = channel.published.lock().unwrap().clone();
    assert_eq!(
        published.last().map(|(_, m)| m),
        Some(&Invalidate::Credentials)
    );

    // Without a channel, nobody would hear of a revocation: no mark.
    let alone = CachedStore::without_channel(Arc::new(MemoryStore::new()), long_lived());
    assert!(alone.vouch().is_none());
}
