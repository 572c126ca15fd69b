//! The [`RedisStore`] handle and the state its clones share. A leaf
//! module: every part of the store (and the invalidation channel, which
//! the crate root re-exports) names the type without importing from the
//! crate root.

use std::sync::Arc;

use fred::bytes::Bytes;
use fred::clients::Client;
use tessera::token::TokenHash;

use crate::config::RedisOptions;
use crate::scripts::Scripts;

/// A session store on Redis (standalone) or Redis Cluster.
///
/// Cheap to clone; clones share one multiplexed connection (per node).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) scripts: Scripts,
    pub(crate) prefix: String,
    pub(crate) options: RedisOptions,
    pub(crate) clustered: bool,
    /// `modify` calls on the same session from this process queue here
    /// instead of racing each other's compare-and-set (many concurrent
    /// requests of one client would otherwise exhaust the retries). Across
    /// processes the compare-and-set alone keeps writes safe. See
    /// [`Stripe`].
    pub(crate) modify_locks: Vec<tokio::sync::Mutex<Stripe>>,
}

/// One stripe of the in-process write queue of `modify`.
///
/// It remembers the last record this process wrote, *or is writing*,
/// through it. When many requests of one session queue here, each started
/// from the copy it loaded, which the writes ahead of it in the queue make
/// stale; starting from the remembered, newer record instead saves a
/// failed compare-and-set per write.
///
/// A write holds the stripe only until its compare-and-set is *queued* on
/// the connection, not until Redis answers: the next write of the session
/// is computed from the remembered result and sent right behind it, so a
/// burst of writes to one session is pipelined instead of paying one round
/// trip each in turn. Redis runs them in order; each is still a full
/// compare-and-set, so if one fails (another process wrote first), those
/// computed from it fail too, get the stored record back and retry from
/// it. The memory is only ever a starting point: nothing is lost or
/// written on its word alone.
#[derive(Default)]
pub(crate) struct Stripe {
    pub(crate) last: Option<Written>,
    /// Names the chains of writes computed one from another (see
    /// [`Written::chain`]).
    pub(crate) chains: u64,
}

/// A record written (or being written) through a [`Stripe`], encoded as
/// sent (cloning the bytes is a reference count).
pub(crate) struct Written {
    pub(crate) hash: TokenHash,
    pub(crate) version: u64,
    pub(crate) value: Bytes,
    /// Writes computed from the remembered record continue its chain; a
    /// write computed from a record read from Redis (or the caller's copy)
    /// starts a new one. When a write fails, every later write of its chain
    /// was computed from it and fails too, so the memory is dropped if it
    /// still belongs to that chain, and not if a new chain started since.
    pub(crate) chain: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("clustered", &self.inner.clustered)
            .finish_non_exhaustive()
    }
}
