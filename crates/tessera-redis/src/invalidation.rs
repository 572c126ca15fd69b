//! Cache invalidation over Redis pub/sub, for `tessera::cache`.
//!
//! One channel, `<key prefix>invalidate`, plain `PUBLISH`/`SUBSCRIBE` on
//! standalone Redis and on Cluster alike. On a Cluster a plain `PUBLISH`
//! reaches the subscribers of every node (the cluster bus forwards it), so
//! the subscriber may sit on any node and needs no slot map. Sharded
//! pub/sub (`SPUBLISH`) would put a single channel on a single shard
//! anyway, and would tie the subscription to that shard's failovers and
//! slot moves; invalidations are a few short messages per *write*, not per
//! read, so the broadcast costs little. See the crate README.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tessera::cache::{Invalidate, Invalidation, InvalidationSink, Origin};
use tessera::error::StoreError;
use tokio::sync::broadcast::error::RecvError;

use crate::RedisStore;
use crate::error::map_err;

/// How often the subscriber task checks that its cache still exists, and
/// that a subscription marked lost is not in fact back.
const CLOSED_CHECK: Duration = Duration::from_millis(500);
/// Pause between failed attempts to (re)subscribe.
const RETRY: Duration = Duration::from_millis(100);
/// Messages the subscriber's client may hold for the listener task.
///
/// fred hands pub/sub messages to the listener through a broadcast channel
/// (32 slots by default). Its reader decodes every message already in the
/// socket buffer before the listener runs again, and a busy node's writes
/// come back as a burst: more than the channel holds means "lagged", which
/// the listener must answer with a flush (it cannot know what it missed),
/// so under write load the cache would keep emptying itself. A 64 KiB read
/// holds about 1,000 messages; the slots (about 200 B each, allocated with
/// the client) cost ~1.6 MiB per subscribed cache.
const SUBSCRIBER_BACKLOG: usize = 8_192;

/// A [`tessera::cache::Invalidation`] channel on the Redis (or Redis
/// Cluster) deployment of a [`RedisStore`]: publishes on the store's
/// connection, subscribes on a connection of its own.
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera::cache::{CacheConfig, CachedStore};
/// use tessera_redis::{RedisChannel, RedisOptions, RedisStore};
/// # async fn demo() -> Result<(), tessera::error::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379", RedisOptions::default()).await?;
/// let channel = Arc::new(RedisChannel::new(&store));
/// let cached = CachedStore::new(store, CacheConfig::default(), channel);
/// # let _ = cached; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisChannel {
    publisher: Client,
    /// A client with the store's configuration, not yet connected: each
    /// [`Invalidation::subscribe`] connects a copy of it.
    template: Client,
    channel: Arc<str>,
}

impl std::fmt::Debug for RedisChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannel")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RedisChannel {
    /// The channel of `store`'s deployment and key prefix (stores with
    /// other prefixes do not hear each other).
    pub fn new(store: &RedisStore) -> Self {
        Self {
            publisher: store.inner.client.clone(),
            template: subscriber_client(&store.inner.client),
            channel: format!("{}invalidate", store.inner.prefix).into(),
        }
    }

    /// The pub/sub channel name.
    pub fn channel_name(&self) -> &str {
        &self.channel
    }
}

#[async_trait]
impl Invalidation for RedisChannel {
    async fn publish(&self, message: &Invalidate, origin: Origin) -> Result<(), StoreError> {
        let _: i64 = self
            .publisher
            .publish(&*self.channel, message.encode_from(origin))
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let client = self.template.clone_new();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            listen(&client, &channel, &sink).await;
            let _ = client.quit().await;
        });
    }
}

/// A client configured like `store` (servers, credentials, timeouts,
/// reconnection), not yet connected, with room for [`SUBSCRIBER_BACKLOG`]
/// messages.
fn subscriber_client(store: &Client) -> Client {
    let mut performance = store.perf_config();
    performance.broadcast_channel_capacity = SUBSCRIBER_BACKLOG;
    Client::new(
        store.client_config(),
        Some(performance),
        Some(store.connection_config().clone()),
        store.client_reconnect_policy(),
    )
}

/// The subscriber: connects, subscribes, delivers; on any connection error
/// marks the cache down, and on every reconnection subscribes again and
/// only then marks it up (which flushes it).
async fn listen(client: &Client, channel: &str, sink: &InvalidationSink) {
    // Receivers first, so that the first connection's event is not missed.
    let mut messages = client.message_rx();
    let mut reconnects = client.reconnect_rx();
    let mut errors = client.error_rx();
    let _connection = client.connect();
    let mut check = tokio::time::interval(CLOSED_CHECK);
    loop {
        // Biased: an error reported before a reconnection is handled before
        // it, so the cache is never left marked down after the reconnection
        // (nor up before it).
        tokio::select! {
            biased;
            error = errors.recv() => match error {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    tracing::warn!("cache invalidation subscription lost; bypassing the cache");
                    sink.disconnected();
                }
                Err(RecvError::Closed) => break,
            },
            reconnected = reconnects.recv() => match reconnected {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Messages sent while the connection was down are lost:
                    // serve nothing until subscribed again, then start afresh.
                    sink.disconnected();
                    if !subscribe(client, channel, sink).await {
                        break;
                    }
                    sink.connected();
                }
                Err(RecvError::Closed) => break,
            },
            message = messages.recv() => match message {
                Ok(message) if &*message.channel == channel => {
                    match message.value.as_str() {
                        Some(text) => sink.deliver_raw(&text).await,
                        None => sink.flush(),
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => sink.flush(),
                Err(RecvError::Closed) => break,
            },
            _ = check.tick() => {
                if sink.is_closed() {
                    return;
                }
                // An error that did not end in a reconnection (the
                // connection survived it): subscribe again (harmless if
                // still subscribed) and serve again.
                if !sink.is_live() && client.is_connected() {
                    if !subscribe(client, channel, sink).await {
                        break;
                    }
                    sink.connected();
                }
            }
        }
    }
    sink.disconnected();
}

/// Subscribes until it succeeds; false if the cache is gone meanwhile.
async fn subscribe(client: &Client, channel: &str, sink: &InvalidationSink) -> bool {
    loop {
        if sink.is_closed() {
            return false;
        }
        match client.subscribe(channel).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to cache invalidations; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
