//! [`CachedStore`]: the [`Store`] wrapper that serves verified sessions
//! from memory and tells the other nodes about every change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::channel::{Invalidation, InvalidationSink};
use super::config::{CacheConfig, CacheStats};
use super::core::{Core, Seen};
use super::message::{Invalidate, MAX_SESSIONS_PER_MESSAGE};
use crate::ended::{Ended, Revocation};
use crate::error::StoreError;
use crate::not_before::{NotBefore, Scope};
use crate::policy::SessionCap;
use crate::record::{SessionHandle, SessionRecord};
use crate::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use crate::store::{Capped, CasOutcome, Modify, ModifyFn, Patch, PatchOutcome, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{SECRET_LEN, TokenHash};

/// A [`Store`] with a per-instance cache of session records in front of it.
///
/// - [`Store::load`] answers from the cache when it can; a miss asks the
///   wrapped store and caches a record it finds (never an absence, so why a
///   session ended still comes from the store's tombstone).
/// - Every write goes to the wrapped store, then evicts locally and
///   publishes an [`Invalidate`] on the channel, which evicts on every
///   other node. A data write or touch (`update`, `modify`,
///   `modify_loaded`, `patch`) that succeeds puts the record it wrote in
///   this node's cache in place of the older copy, when this node held
///   one, so the next load here is a hit that shows the write.
/// - **When a write's message leaves.** Ending sessions (`delete`, `end`,
///   `rotate`, `delete_by_handle`, `delete_by_user`, `delete_all`,
///   `raise_not_before`, evictions by `create_capped`) returns only once
///   the channel took the message: when the caller answers, every other
///   node is being told. A data write or touch returns as soon as the
///   store has it; its message is queued for a task that sends what is
///   queued as one message ([`Invalidate::Sessions`], up to
///   [`MAX_SESSIONS_PER_MESSAGE`] sessions) as soon as the previous one
///   left (at most 1,024 queued; beyond that the write sends its own
///   message as a revocation does). So the publish adds no round trip to
///   the request, and under load one `PUBLISH` (and one message for each
///   node to read) carries the writes of many requests. Nothing waits to
///   fill a batch: an idle node sends each write's message at once.
///   Either way the message leaves only after the write
///   returned from the store: a node that hears it and reloads reads the
///   write, never the state before it. The other nodes see the change
///   when the message arrives, as before; what a data write no longer
///   guarantees is that its message was handed over before its caller
///   answered. [`CachedStore::wait_published`] waits for those in
///   flight (a process about to exit, a test).
/// - An entry is never served once older than
///   [`CacheConfig::max_staleness`], nor within that much of a deadline
///   (by the clock given to [`CachedStore::with_clock`], which must be the
///   session manager's), nor while the channel is down.
///
/// See the [module docs](super) for the guarantees and how to size it.
///
/// ```
/// use std::sync::Arc;
/// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
/// use tessera::store::{MemoryStore, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shared = Arc::new(MemoryStore::new());
/// let channel = Arc::new(LocalChannel::new());
/// let node_a = CachedStore::from_arc(shared.clone(), CacheConfig::default(), channel.clone());
/// let node_b = CachedStore::from_arc(shared, CacheConfig::default(), channel);
///
/// let (_, record) = tessera::testkit::sample_record(Some("alice"));
/// node_a.create(&record).await?;
/// assert!(node_b.load(&record.hash).await?.is_some()); // now cached on B
/// node_a.delete(&record.hash).await?;                   // B hears about it
/// # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
/// assert!(node_b.load(&record.hash).await?.is_none());
/// # Ok(()) }
/// ```
pub struct CachedStore<S: ?Sized> {
    inner: Arc<S>,
    core: Arc<Core>,
    channel: Option<Arc<dyn Invalidation>>,
    /// Where data writes queue their message (see the type docs); `None`
    /// without a channel.
    outbox: Option<Outbox>,
}

/// Data-write messages queued for the sending task, at most.
const MAX_QUEUED: usize = 1024;

/// The queue of data-write messages and what [`CachedStore::wait_published`]
/// watches.
#[derive(Clone)]
struct Outbox {
    queue: mpsc::Sender<TokenHash>,
    /// Messages queued so far (a running count).
    queued: Arc<std::sync::atomic::AtomicU64>,
    /// Of those, how many the sending task has handed to the channel (or
    /// failed to).
    sent: watch::Receiver<u64>,
}

impl<S: ?Sized> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            channel: self.channel.clone(),
            outbox: self.outbox.clone(),
        }
    }
}

impl<S: ?Sized> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("stats", &self.core.stats())
            .field("channel", &self.channel.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Store> CachedStore<S> {
    /// Wraps `inner`, subscribing to `channel`. Serves from the cache only
    /// once the channel confirms its subscription. Must be called inside a
    /// Tokio runtime (the channel starts a task).
    pub fn new(inner: S, config: CacheConfig, channel: Arc<dyn Invalidation>) -> Self {
        Self::from_arc(inner.into(), config, channel)
    }
}

impl<S: Store + ?Sized> CachedStore<S> {
    /// [`CachedStore::new`] for a store already in an `Arc` (possibly a
    /// `dyn Store`).
    pub fn from_arc(inner: Arc<S>, config: CacheConfig, channel: Arc<dyn Invalidation>) -> Self {
        Self::build(inner, config, Arc::new(SystemClock), Some(channel))
    }

    /// A cache with **no** channel: nothing tells it about writes made by
    /// other processes, so each entry may be stale for up to
    /// [`CacheConfig::max_staleness`]. Correct without that caveat only when
    /// this process is the store's only writer (an embedded SQLite file);
    /// for a shared MySQL store it is the documented polling fallback:
    /// revocations elsewhere take effect here within `max_staleness`.
    pub fn without_channel(inner: Arc<S>, config: CacheConfig) -> Self {
        Self::build(inner, config, Arc::new(SystemClock), None)
    }

    /// The general constructor: `channel` as in [`CachedStore::from_arc`]
    /// (or `None` as in [`CachedStore::without_channel`]), and `clock`, the
    /// session manager's clock, by which the cache decides whether an
    /// entry is near a deadline.
    pub fn with_clock(
        inner: Arc<S>,
        config: CacheConfig,
        channel: Option<Arc<dyn Invalidation>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::build(inner, config, clock, channel)
    }

    fn build(
        inner: Arc<S>,
        config: CacheConfig,
        clock: Arc<dyn Clock>,
        channel: Option<Arc<dyn Invalidation>>,
    ) -> Self {
        let core = Arc::new(Core::new(&config, clock, channel.is_none()));
        let outbox = channel.as_ref().map(|channel| {
            channel.subscribe(InvalidationSink::new(&core));
            let (queue, queued) = mpsc::channel(MAX_QUEUED);
            let (sent_tx, sent) = watch::channel(0);
            tokio::spawn(send_queued(queued, channel.clone(), core.clone(), sent_tx));
            Outbox {
                queue,
                queued: Arc::default(),
                sent,
            }
        });
        Self {
            inner,
            core,
            channel,
            outbox,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Counters and sizes, for metrics.
    pub fn stats(&self) -> CacheStats {
        self.core.stats()
    }

    /// A mark under which to remember a credential that is checked outside
    /// the session store (the server remembers its API keys this way), or
    /// `None` when nothing may be remembered: this cache has no channel
    /// (the polling fallback, where nobody would hear of a revocation), or
    /// its channel is down.
    ///
    /// Take the mark **before** reading the credential's store, keep it
    /// with what was read, and use what was read only while
    /// [`CachedStore::vouches`] holds for it. A revocation that reached
    /// this node since (an [`Invalidate::Credentials`], sent by
    /// [`CachedStore::forget_credentials`] on any node), a flush and a
    /// lost channel all end it; so does a revocation that raced the read,
    /// since its message arrives after the mark was taken. Bound what is
    /// remembered by [`CacheConfig::max_staleness`] too, for a loss of
    /// messages nobody noticed.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
    /// use tessera::store::MemoryStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shared = Arc::new(MemoryStore::new());
    /// let channel = Arc::new(LocalChannel::new());
    /// let a = CachedStore::from_arc(shared.clone(), CacheConfig::default(), channel.clone());
    /// let b = CachedStore::from_arc(shared.clone(), CacheConfig::default(), channel);
    ///
    /// let Some(mark) = b.vouch() else {
    ///     return; // B does not hear its channel: remember nothing
    /// };
    /// // ... B reads a credential and remembers it with `mark` ...
    /// assert!(b.vouches(mark));
    /// a.forget_credentials().await; // A revoked one: every node forgets
    /// # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    /// assert!(!b.vouches(mark));
    ///
    /// // Without a channel nothing may be remembered.
    /// assert!(CachedStore::without_channel(shared, CacheConfig::default()).vouch().is_none());
    /// # }
    /// ```
    pub fn vouch(&self) -> Option<Vouch> {
        // No channel, no mark: nobody would hear of a revocation.
        self.channel.as_ref()?;
        self.core.credentials().map(Vouch)
    }

    /// Whether what was read under `vouch` may still be used (see
    /// [`CachedStore::vouch`]): the channel stayed up and nothing told this
    /// node to forget credentials since.
    pub fn vouches(&self, vouch: Vouch) -> bool {
        self.core.credentials() == Some(vouch.0)
    }

    /// Tells every node, this one first, to forget the credentials it
    /// remembers under a [`Vouch`]: call it after revoking one in its own
    /// store. Returns once the channel took the message, `true` if it did;
    /// on `false` (logged and counted as a publish failure) the other
    /// nodes let go of what they remember within their `max_staleness`.
    /// Without a channel there is nobody to tell (and nothing is
    /// remembered): `true`.
    ///
    /// See [`CachedStore::vouch`] for an example.
    pub async fn forget_credentials(&self) -> bool {
        let message = Invalidate::Credentials;
        self.core.apply(&message);
        match &self.channel {
            Some(channel) => publish(channel.as_ref(), &self.core, &message).await,
            None => true,
        }
    }

    /// Waits until every message of a data write queued so far (see the
    /// type docs) has been handed to the channel or has failed.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
    /// use tessera::store::{MemoryStore, Patch, PatchOp, Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = CachedStore::new(MemoryStore::new(), CacheConfig::default(), Arc::new(LocalChannel::new()));
    /// let (_, record) = tessera::testkit::sample_record(None);
    /// cache.create(&record).await?;
    /// let inc = Patch::new(vec![PatchOp::Increment { key: "n".into(), by: 1 }]);
    /// cache.patch(&record.hash, None, &inc, record.created_at).await?;
    /// cache.wait_published().await;
    /// assert_eq!(cache.stats().published, 1);
    /// # Ok(()) }
    /// ```
    pub async fn wait_published(&self) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        let target = outbox.queued.load(Ordering::SeqCst);
        let mut sent = outbox.sent.clone();
        // An error means the sending task is gone, and with it the queue.
        let _ = sent.wait_for(|sent| *sent >= target).await;
    }

    /// Evicts locally, then tells the other nodes, and returns once the
    /// channel took the message. A failed publish is logged and counted,
    /// not returned: the write it follows has happened, and the other
    /// nodes' copies expire within `max_staleness` anyway.
    async fn invalidate(&self, message: Invalidate) {
        self.core.apply(&message);
        self.publish_now(&message).await;
    }

    async fn publish_now(&self, message: &Invalidate) {
        if let Some(channel) = &self.channel {
            let _ = publish(channel.as_ref(), &self.core, message).await;
        }
    }

    /// Tells the other nodes that the session under `hash` changed, in the
    /// background (the caller applied the change locally already): the
    /// message leaves after the write returned from the store, without the
    /// request waiting for it. With the queue full, it is sent before
    /// returning instead.
    async fn announce(&self, hash: &TokenHash) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        // Counted first, so that `wait_published` never waits for less
        // than what is in the queue.
        outbox.queued.fetch_add(1, Ordering::SeqCst);
        if outbox.queue.try_send(*hash).is_err() {
            outbox.queued.fetch_sub(1, Ordering::SeqCst);
            self.publish_now(&Invalidate::Session(*hash)).await;
        }
    }

    /// After a write that may have changed the session under `hash`:
    /// `written` is the record as stored afterwards when the write is
    /// known to have succeeded. Caches it in place of this node's copy if
    /// safe ([`Core::write_through`]), else evicts; then tells the others.
    async fn after_write(&self, hash: &TokenHash, written: Option<&SessionRecord>, seen: Seen) {
        match written {
            Some(record) if record.hash == *hash => self.core.write_through(record, seen),
            _ => self.core.apply(&Invalidate::Session(*hash)),
        }
        self.announce(hash).await;
    }

    /// Evicts locally only (the store did not change, but this node's copy
    /// may be older than the store's).
    async fn evict_local(&self, hash: &TokenHash) {
        self.core.apply(&Invalidate::Session(*hash));
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for CachedStore<S> {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        // A new hash is in no cache (absences are never cached).
        self.inner.create(record).await
    }

    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        let outcome = self.inner.create_capped(record, cap, now).await?;
        if let Capped::Created { evicted } = &outcome {
            for handle in evicted {
                self.invalidate(Invalidate::Handle(handle.clone())).await;
            }
        }
        Ok(outcome)
    }

    /// A kill switch refuses sessions this node may hold: drop them here
    /// and on every node, also when the store errs (it may have written).
    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let result = self.inner.raise_not_before(scope, to).await;
        let message = match scope {
            Scope::User(user) => Invalidate::User(user.to_owned()),
            Scope::Everyone => Invalidate::Everyone,
        };
        self.invalidate(message).await;
        result
    }

    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        self.inner.not_before(scope).await
    }

    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(record) = self.core.get(hash) {
            return Ok(Some(record));
        }
        let seen = self.core.seen(hash);
        let loaded = self.inner.load(hash).await?;
        if let Some(record) = &loaded {
            self.core.insert(record, seen);
        }
        Ok(loaded)
    }

    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        self.core
            .hit(hash, now)
            .or_else(|| self.inner.load_in_memory(hash, now))
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let seen = self.core.before_write(&record.hash);
        let outcome = self.inner.update(expected_version, record, now).await;
        match outcome {
            Ok(CasOutcome::Applied) => self.after_write(&record.hash, Some(record), seen).await,
            // An error may hide a write that happened.
            Err(_) => self.after_write(&record.hash, None, seen).await,
            Ok(CasOutcome::Conflict | CasOutcome::Missing) => self.evict_local(&record.hash).await,
        }
        outcome
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let outcome = self.inner.rotate(old, expected_version, new, now).await;
        match outcome {
            Ok(CasOutcome::Applied) | Err(_) => self.invalidate(Invalidate::Session(*old)).await,
            Ok(CasOutcome::Conflict | CasOutcome::Missing) => self.evict_local(old).await,
        }
        outcome
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let result = self.inner.delete(hash).await;
        self.invalidate(Invalidate::Session(*hash)).await;
        result
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        let result = self.inner.end(hash, why).await;
        self.invalidate(Invalidate::Session(*hash)).await;
        result
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
        let result = self.inner.delete_by_handle(handle, owner, why).await;
        if !matches!(result, Ok(false)) {
            self.invalidate(Invalidate::Handle(handle.clone())).await;
        }
        result
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
        let result = self.inner.delete_by_user(user_id, except, why).await;
        // Also with nothing deleted here: every node drops what it holds of
        // the user, whatever this store's count says.
        self.invalidate(Invalidate::User(user_id.to_owned())).await;
        result
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let result = self.inner.delete_all().await;
        self.invalidate(Invalidate::Everyone).await;
        result
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        // Expired records are refused by their deadlines wherever cached.
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
        let wrote = AtomicBool::new(false);
        let watched = |r: &mut SessionRecord| {
            let decision = f(r);
            if decision == Modify::Write {
                wrote.store(true, Ordering::SeqCst);
            }
            decision
        };
        let seen = self.core.before_write(hash);
        let result = self.inner.modify(hash, now, &watched).await;
        self.after_modify(hash, &result, wrote.load(Ordering::SeqCst), seen)
            .await;
        result
    }

    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let wrote = AtomicBool::new(false);
        let watched = |r: &mut SessionRecord| {
            let decision = f(r);
            if decision == Modify::Write {
                wrote.store(true, Ordering::SeqCst);
            }
            decision
        };
        let seen = self.core.before_write(&current.hash);
        let result = self.inner.modify_loaded(current, now, &watched).await;
        self.after_modify(&current.hash, &result, wrote.load(Ordering::SeqCst), seen)
            .await;
        result
    }

    /// Forwarded so the wrapped store's one-operation patch is kept; a
    /// caller that loaded nothing gets this node's copy as `base`, the
    /// record the wrapped store may compute the write from (on Redis the
    /// compare-and-set script, which costs Redis less than half of the
    /// patch script). That is safe with a stale copy: a base is only a
    /// starting point, and a store that uses it compares it with what is
    /// stored and applies the patch to the stored record when they differ
    /// (the [`Store::patch`] contract). Anything but a refusal or a miss
    /// may have written, so it publishes like a `modify` that wrote, and
    /// an applied patch's record replaces this node's copy like a
    /// `modify`'s.
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        let seen = self.core.before_write(hash);
        let cached = match base {
            Some(_) => None,
            None => self.core.peek(hash),
        };
        let base = base.or(cached.as_ref());
        let result = self.inner.patch(hash, base, patch, now).await;
        match &result {
            Ok(PatchOutcome::Refused { .. } | PatchOutcome::Missing) => {
                self.evict_local(hash).await;
            }
            Ok(PatchOutcome::Applied(record)) => self.after_write(hash, Some(record), seen).await,
            Err(_) => self.after_write(hash, None, seen).await,
        }
        result
    }
}

impl<S: Store + ?Sized> CachedStore<S> {
    /// After a `modify`: publish if anything may have been written (a
    /// closure that chose to write, or an error that may hide a write),
    /// keeping the record as stored afterwards here when it wrote;
    /// otherwise just drop this node's copy, which a conflict proved old.
    async fn after_modify(
        &self,
        hash: &TokenHash,
        result: &Result<Option<SessionRecord>, StoreError>,
        wrote: bool,
        seen: Seen,
    ) {
        match result {
            Ok(Some(record)) if wrote => self.after_write(hash, Some(record), seen).await,
            _ if wrote || result.is_err() => self.after_write(hash, None, seen).await,
            _ => self.evict_local(hash).await,
        }
    }
}

/// The sending task of a cache's data-write messages: takes whatever is
/// queued (up to a message's worth), sends it as one message, and counts
/// it in `sent`; ends when every `CachedStore` clone is gone.
async fn send_queued(
    mut queue: mpsc::Receiver<TokenHash>,
    channel: Arc<dyn Invalidation>,
    core: Arc<Core>,
    sent: watch::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(MAX_SESSIONS_PER_MESSAGE);
    loop {
        let taken = queue.recv_many(&mut batch, MAX_SESSIONS_PER_MESSAGE).await;
        if taken == 0 {
            return;
        }
        // Writes of one session in the same batch need one eviction.
        batch.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        batch.dedup();
        let message = match batch.as_slice() {
            [one] => Invalidate::Session(*one),
            _ => Invalidate::Sessions(std::mem::take(&mut batch)),
        };
        let _ = publish(channel.as_ref(), &core, &message).await;
        batch.clear();
        sent.send_modify(|sent| *sent += taken as u64);
    }
}

/// Sends one message, counting (and logging) a failure; whether it left.
async fn publish(channel: &dyn Invalidation, core: &Core, message: &Invalidate) -> bool {
    let result = channel.publish(message, core.origin()).await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "could not publish a cache invalidation");
    }
    core.published(result.is_ok());
    result.is_ok()
}

/// A mark taken by [`CachedStore::vouch`] before reading a credential
/// kept outside the session store; what was read may be used while
/// [`CachedStore::vouches`] holds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vouch(u64);

/// Refresh-token families are not cached: every call goes to the wrapped
/// store. Ending a session on reuse goes through [`Store`] methods, which
/// publish.
#[async_trait]
impl<S: Store + RefreshStore + ?Sized> RefreshStore for CachedStore<S> {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        self.inner.insert_refresh(record).await
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        self.inner.load_refresh(hash).await
    }

    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        self.inner
            .use_refresh(parent, child, sealed_child, now)
            .await
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        self.inner.delete_refresh_family(family).await
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.load_session_by_handle(handle).await
    }
}
