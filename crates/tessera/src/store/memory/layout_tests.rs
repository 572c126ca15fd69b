//! The memory store's slab and index layout.

use super::*;
use crate::not_before::Scope;
use crate::policy::SessionPolicy;
use crate::store::{CasOutcome, Modify, Store};
use crate::token::SessionToken;
use async_trait::async_trait;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn record(user: Option<&str>, now: Timestamp) -> Result<SessionRecord, Box<dyn std::error::Error>> {
    Ok(SessionRecord::new(
        SessionToken::generate()?.hash(),
        user.map(str::to_owned),
        now,
        SessionPolicy::default().deadlines_at(now),
        ClientMeta::default(),
    )?)
}

#[tokio::test]
async fn user_chains_survive_removal_from_any_position_and_slot_reuse() -> TestResult {
    let store = MemoryStore::new();
    let now = Timestamp::from_millis(1_000);
    let rs: Vec<SessionRecord> = (0..5)
        .map(|_| record(Some("ann"), now))
        .collect::<Result<_, _>>()?;
    for r in &rs {
        store.create(r).await?;
    }
    store.create(&record(Some("bob"), now)?).await?;
    // Middle, then head (the last created), then tail (the first).
    for gone in [&rs[2], &rs[4], &rs[0]] {
        assert!(store.delete(&gone.hash).await?);
    }
    let left: Vec<_> = store.list_by_user("ann", now).await?;
    let mut handles: Vec<_> = left.iter().map(|r| r.handle.clone()).collect();
    handles.sort();
    let mut want = vec![rs[1].handle.clone(), rs[3].handle.clone()];
    want.sort();
    assert_eq!(handles, want);
    // Freed slots are reused by new sessions without mixing indexes.
    let fresh = record(Some("ann"), now)?;
    store.create(&fresh).await?;
    assert_eq!(store.list_by_user("ann", now).await?.len(), 3);
    assert_eq!(store.list_by_user("bob", now).await?.len(), 1);
    assert_eq!(
        store
            .delete_by_user("ann", Some(&fresh.handle), Revocation::Other)
            .await?,
        2
    );
    assert_eq!(store.load(&fresh.hash).await?, Some(fresh.clone()));
    assert!(store.load(&rs[1].hash).await?.is_none());
    assert!(
        store
            .delete_by_handle(&fresh.handle, None, Revocation::Other)
            .await?
    );
    assert!(store.list_by_user("ann", now).await?.is_empty());
    assert_eq!(store.len(), 1);
    Ok(())
}

#[tokio::test]
async fn records_round_trip_through_the_compact_slot() -> TestResult {
    let store = MemoryStore::new();
    let now = Timestamp::from_millis(5_000);
    let mut r = record(Some("ann"), now)?;
    r.data.insert("n".into(), 7.into());
    r.authenticated_at = Some(now);
    r.client = ClientMeta::new(Some([203, 0, 113, 9].into()), Some("ua".into()));
    store.create(&r).await?;
    assert_eq!(store.load(&r.hash).await?, Some(r.clone()));
    let anonymous = record(None, now)?;
    store.create(&anonymous).await?;
    assert_eq!(store.load(&anonymous.hash).await?, Some(anonymous));
    Ok(())
}

/// The memory store behind the trait's *default* `modify` and
/// `modify_loaded` (compare-and-set loops), as a remote store sees them.
struct Cas(MemoryStore);

#[async_trait]
impl Store for Cas {
    async fn create(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.0.create(r).await
    }
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        self.0.raise_not_before(scope, to).await
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        self.0.not_before(scope).await
    }
    async fn load(&self, h: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        self.0.load(h).await
    }
    async fn update(
        &self,
        v: u64,
        r: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.0.update(v, r, now).await
    }
    async fn rotate(
        &self,
        o: &TokenHash,
        v: u64,
        n: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.0.rotate(o, v, n, now).await
    }
    async fn delete(&self, h: &TokenHash) -> Result<bool, StoreError> {
        self.0.delete(h).await
    }
    async fn delete_by_handle(
        &self,
        h: &SessionHandle,
        o: Option<&str>,
        w: Revocation,
    ) -> Result<bool, StoreError> {
        self.0.delete_by_handle(h, o, w).await
    }
    async fn end(&self, h: &TokenHash, w: Ended) -> Result<bool, StoreError> {
        self.0.end(h, w).await
    }
    async fn ended(&self, h: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.0.ended(h, now).await
    }
    async fn list_by_user(
        &self,
        u: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.0.list_by_user(u, now).await
    }
    async fn delete_by_user(
        &self,
        u: &str,
        e: Option<&SessionHandle>,
        w: Revocation,
    ) -> Result<u64, StoreError> {
        self.0.delete_by_user(u, e, w).await
    }
    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.0.delete_all().await
    }
    async fn purge_expired(&self, now: Timestamp, l: usize) -> Result<u64, StoreError> {
        self.0.purge_expired(now, l).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn bump(r: &mut SessionRecord) -> Modify {
    let n = r
        .data
        .get("n")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    r.data.insert("n".into(), (n + 1).into());
    Modify::Write
}

#[tokio::test]
async fn modify_loaded_from_a_stale_copy_loses_no_update() -> TestResult {
    // The provided compare-and-set method (through `Cas`) and the
    // memory store's own fast path behave the same.
    let cas = Cas(MemoryStore::new());
    let direct = MemoryStore::new();
    for store in [&cas as &dyn Store, &direct] {
        stale_copy_loses_no_update(store).await?;
    }
    Ok(())
}

async fn stale_copy_loses_no_update(store: &dyn Store) -> TestResult {
    let now = Timestamp::from_millis(1_000);
    let r = record(None, now)?;
    store.create(&r).await?;
    // Two requests loaded version 1; both write from their copy.
    let first = store
        .modify_loaded(&r, now, &bump)
        .await?
        .ok_or("first modify_loaded wrote nothing")?;
    assert_eq!(first.version, 2);
    let second = store
        .modify_loaded(&r, now, &bump)
        .await?
        .ok_or("second modify_loaded wrote nothing")?;
    assert_eq!(second.version, 3);
    let stored = store.load(&r.hash).await?.ok_or("stored record missing")?;
    assert_eq!(stored.data.get("n"), Some(&2.into()));
    assert_eq!(stored, second);
    Ok(())
}

#[tokio::test]
async fn modify_loaded_never_resurrects_an_ended_session() -> TestResult {
    let cas = Cas(MemoryStore::new());
    let direct = MemoryStore::new();
    for store in [&cas as &dyn Store, &direct] {
        ended_session_is_not_resurrected(store).await?;
    }
    Ok(())
}

async fn ended_session_is_not_resurrected(store: &dyn Store) -> TestResult {
    let now = Timestamp::from_millis(1_000);
    let r = record(None, now)?;
    store.create(&r).await?;
    assert!(store.delete(&r.hash).await?);
    assert_eq!(store.modify_loaded(&r, now, &bump).await?, None);
    assert_eq!(store.load(&r.hash).await?, None);
    // Expired at `now` by the stored deadlines: no write either.
    let e = record(None, now)?;
    store.create(&e).await?;
    let late = Timestamp::from_millis(e.deadlines.absolute.as_millis() + 1);
    assert_eq!(store.modify_loaded(&e, late, &bump).await?, None);
    assert_eq!(store.load(&e.hash).await?, Some(e));
    Ok(())
}

#[test]
fn a_slot_stays_small() -> TestResult {
    // The footprint target (<= 300 B per session, docs/performance.md) leaves
    // about 100 B for the indexes and the user id's allocation.
    assert!(std::mem::size_of::<Option<Slot>>() <= 200);
    Ok(())
}
