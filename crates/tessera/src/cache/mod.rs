//! A per-instance cache of verified sessions that hears about every change.
//!
//! With several instances on one shared store (PostgreSQL, Redis), every
//! request pays a round trip to the store. [`CachedStore`] keeps the
//! records this instance loaded in memory (a bounded [moka] cache) and
//! answers repeated loads without the store. What makes that safe for a
//! session store is that it *hears*: every write made through any
//! instance's `CachedStore` publishes an [`Invalidate`] message on an
//! [`Invalidation`] channel (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`),
//! and every instance evicts what the message names. A revocation on one
//! node is honoured on all of them as soon as its message arrives (ASVS 5.0
//! V7.4.1 and V7.4.5: terminated sessions must not be usable anywhere).
//!
//! # What it guarantees
//!
//! - **Staleness bound.** No entry is served once older than
//!   [`CacheConfig::max_staleness`] (default 1 s). This holds whatever the
//!   channel does: if a message is lost without anyone noticing, a revoked
//!   session may still be accepted by another node for at most that long
//!   after it was cached. With the channel working, the delay is the
//!   channel's delivery time (see `docs/performance.md`).
//! - **A lost channel is noticed.** When the subscription drops, the cache
//!   is flushed and serves nothing (every load goes to the store) until the
//!   subscription is back, and is flushed again then, because messages may
//!   have been missed in between.
//! - **Deadlines are the store's near the edge.** An entry within
//!   `max_staleness` of its idle or absolute deadline is not served: the
//!   store is asked, so a touch made on another node whose message is still
//!   on its way cannot make a live session look expired here, and the
//!   session manager still checks both deadlines against the request's time
//!   on every load (ASVS 5.0 V7.3.1, V7.3.2).
//! - **No stale re-insert.** A load that races an invalidation does not put
//!   the record it read back into the cache after the eviction: generation
//!   counters, bumped before and after every eviction, are checked after
//!   the insert, and the entry is dropped if they moved. They are striped
//!   by token hash (an invalidation of one session bumps its stripe; one of
//!   a handle, a user or everyone bumps a global counter every load
//!   watches), so writes to unrelated sessions do not cancel each other's
//!   loads.
//! - **Absences are never cached**, so a refused token still reaches the
//!   store's tombstone, and the reason a session ended (signed out,
//!   revoked, expired) comes out as without the cache.
//! - **Writes go to the store.** The touch policy is unchanged: a touch
//!   that moves the idle deadline is written to the store and invalidates
//!   the session on every other node, whose next load reads it afresh.
//! - **A node reads its own writes from memory.** The record a data write
//!   or touch stored replaces this node's copy (when it held one, and no
//!   invalidation of the session ran meanwhile), so the next load here
//!   is a hit that shows the write. Of several writes of one session on
//!   this node at once, the newest record (the highest version) stays,
//!   whichever finishes last, so a client whose requests all write its
//!   session still has it read from memory. The entry keeps the instant of the
//!   load that last read it from the store: a write does not check the
//!   kill switches a store load checks, so writes never extend an entry
//!   past `max_staleness` from that load.
//! - **A node skips only its own messages.** Each message carries the
//!   [`Origin`] of the cache that sent it; that cache applied it before
//!   publishing and skips it when it comes back. Any other message, one
//!   with no origin, and one that does not parse (which flushes) are
//!   applied.
//! - **Messages follow their writes.** A message leaves only once the
//!   write it announces returned from the store. Revocations return only
//!   once their message is handed to the channel; a data write's message
//!   is sent in the background, so it adds no round trip to the request
//!   (see [`CachedStore`]).
//!
//! # Credentials outside the store
//!
//! A server may check other credentials on every request (the `tessera`
//! server's API keys live in its database). [`CachedStore::vouch`] lends
//! the cache's channel to them: what is read under a [`Vouch`] may be used
//! while [`CachedStore::vouches`] holds, which ends when any node calls
//! [`CachedStore::forget_credentials`] after a revocation, on a flush, and
//! while the channel is down. Without a channel nothing is vouched for.
//!
//! # Sizing
//!
//! [`CacheConfig::max_entries`] and [`CacheConfig::max_bytes`] bound the
//! cache (least-recently/frequently used entries go first). An entry is
//! about 400 bytes plus its data; size it for the sessions active within
//! `max_staleness`, not for every session: an entry lives at most that long.
//!
//! # Without a channel
//!
//! [`CachedStore::without_channel`] serves entries for up to
//! `max_staleness` with no invalidation from other processes. That is exact
//! only when this process is the store's one writer; for SQLite (which
//! another process, such as the `tessera` CLI, may write) and MySQL (which
//! has no notification channel) it is the polling fallback: a revocation
//! made elsewhere takes effect here within `max_staleness`.
//!
//! [moka]: https://docs.rs/moka

mod channel;
mod config;
mod core;
mod message;
mod store;

pub use channel::{Invalidation, InvalidationSink, LocalChannel};
pub use config::{CacheConfig, CacheStats};
pub use message::{Invalidate, MAX_SESSIONS_PER_MESSAGE, Origin};
pub use store::{CachedStore, Vouch};
