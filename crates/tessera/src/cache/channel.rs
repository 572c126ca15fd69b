//! How invalidations travel between nodes.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::core::Core;
use super::message::{Invalidate, Origin};
use crate::error::StoreError;

/// A channel that carries [`Invalidate`] messages to every node sharing a
/// store: Redis pub/sub (`tessera-redis`), PostgreSQL `LISTEN/NOTIFY`
/// (`tessera-sql`), or [`LocalChannel`] within one process.
///
/// The contract an implementation keeps:
///
/// - [`Invalidation::publish`] reaches every subscribed node, this one
///   included, with its `origin` (a cache skips the messages it sent
///   itself; see [`Origin`]). A message must reach the other nodes only
///   after the write it announces is visible in the store (a
///   [`CachedStore`](super::CachedStore) publishes once the write
///   returned).
/// - [`Invalidation::subscribe`] starts a background task that calls
///   [`InvalidationSink::connected`] once the subscription is confirmed
///   (and again after every reconnection), [`InvalidationSink::disconnected`]
///   as soon as it knows the subscription is lost, and
///   [`InvalidationSink::deliver_raw`] for each message in between. A
///   message may be lost only while the sink is told it is disconnected;
///   the sink then serves nothing from the cache and flushes it on
///   reconnection. A loss nobody notices (a silently dead TCP connection)
///   is bounded by the cache's `max_staleness`.
/// - The task ends when [`InvalidationSink::is_closed`] says the cache is
///   gone.
#[async_trait]
pub trait Invalidation: Send + Sync + 'static {
    /// Sends `message`, from the cache `origin`, to every subscribed node
    /// (the wire form is [`Invalidate::encode_from`]).
    ///
    /// # Errors
    ///
    /// Backend errors (the message may not have been delivered).
    async fn publish(&self, message: &Invalidate, origin: Origin) -> Result<(), StoreError>;

    /// Starts delivering every node's messages to `sink` (see the trait
    /// docs). Must be called inside a Tokio runtime; returns at once.
    fn subscribe(&self, sink: InvalidationSink);
}

/// Where a channel delivers messages: a weak handle on one cache.
#[derive(Clone)]
pub struct InvalidationSink {
    core: Weak<Core>,
}

impl std::fmt::Debug for InvalidationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationSink")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl InvalidationSink {
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        Self {
            core: Arc::downgrade(core),
        }
    }

    /// The subscription is confirmed: the cache is flushed (messages may
    /// have been missed before) and starts serving.
    pub fn connected(&self) {
        if let Some(core) = self.core.upgrade() {
            core.set_live(true);
        }
    }

    /// The subscription is lost: the cache is flushed and serves nothing
    /// until [`InvalidationSink::connected`].
    pub fn disconnected(&self) {
        if let Some(core) = self.core.upgrade() {
            core.set_live(false);
        }
    }

    /// Applies a decoded message whose origin is not known (always
    /// applied).
    pub async fn deliver(&self, message: &Invalidate) {
        self.deliver_from(message, None).await;
    }

    /// Applies a decoded message, unless `origin` is this cache's own (it
    /// applied the message before publishing it).
    pub async fn deliver_from(&self, message: &Invalidate, origin: Option<Origin>) {
        if let Some(core) = self.core.upgrade() {
            core.receive(message, origin);
        }
    }

    /// Applies a message in wire form (either form, see
    /// [`Invalidate::decode_from`]). One that does not parse flushes the
    /// whole cache: it may have been a revocation.
    pub async fn deliver_raw(&self, text: &str) {
        match Invalidate::decode_from(text) {
            Some((origin, message)) => self.deliver_from(&message, origin).await,
            None => {
                tracing::warn!("unreadable cache invalidation; flushing the cache");
                self.flush();
            }
        }
    }

    /// Drops every cached entry (for example when messages were dropped).
    pub fn flush(&self) {
        if let Some(core) = self.core.upgrade() {
            core.flush();
        }
    }

    /// Whether the cache is serving (last told
    /// [`InvalidationSink::connected`]); false once it is gone.
    pub fn is_live(&self) -> bool {
        self.core.upgrade().is_some_and(|core| core.is_live())
    }

    /// True once the cache is gone: the channel's task should end.
    pub fn is_closed(&self) -> bool {
        self.core.strong_count() == 0
    }
}

/// An in-process channel: every [`CachedStore`](super::CachedStore)
/// subscribed to clones of one `LocalChannel` hears every other's writes.
/// For several caches in one process (tests, or several managers over one
/// [`MemoryStore`](crate::store::MemoryStore)); across processes use the
/// store's own channel.
///
/// ```
/// use std::sync::Arc;
/// use tessera::cache::{CacheConfig, CachedStore, LocalChannel};
/// use tessera::store::MemoryStore;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let channel = Arc::new(LocalChannel::new());
/// let a = CachedStore::from_arc(store.clone(), CacheConfig::default(), channel.clone());
/// let b = CachedStore::from_arc(store, CacheConfig::default(), channel);
/// # let _ = (a, b);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LocalChannel {
    sender: broadcast::Sender<(Origin, Invalidate)>,
}

impl Default for LocalChannel {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalChannel {
    /// A channel with room for 4,096 undelivered messages per subscriber;
    /// a subscriber that falls further behind flushes its cache.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self { sender }
    }
}

#[async_trait]
impl Invalidation for LocalChannel {
    async fn publish(&self, message: &Invalidate, origin: Origin) -> Result<(), StoreError> {
        // No receiver is not an error: no cache to tell.
        let _ = self.sender.send((origin, message.clone()));
        Ok(())
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let mut receiver = self.sender.subscribe();
        sink.connected();
        tokio::spawn(async move {
            loop {
                if sink.is_closed() {
                    return;
                }
                match receiver.recv().await {
                    Ok((origin, message)) => sink.deliver_from(&message, Some(origin)).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => sink.flush(),
                    Err(broadcast::error::RecvError::Closed) => {
                        sink.disconnected();
                        return;
                    }
                }
            }
        });
    }
}
