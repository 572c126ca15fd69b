//! A [`tessera::store::Store`] on Redis and Redis Cluster.
//!
//! ```no_run
//! use tessera_redis::{RedisOptions, RedisStore};
//! # async fn demo() -> Result<(), tessera::error::StoreError> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379", RedisOptions::default()).await?;
//! let cluster = RedisStore::connect(
//!     "redis-cluster://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379",
//!     RedisOptions::default(),
//! ).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `<prefix>s:{<token hash hex>}` — one Redis string per session holding
//!   the whole record once, in a compact encoding (a short text header the
//!   scripts check, then binary; no JSON, no copy of the hash), expiring at
//!   the record's next deadline (`SET … PXAT`), so Redis removes ended
//!   sessions itself and no sweeper is needed
//!   ([`Store::purge_expired`](tessera::store::Store::purge_expired) returns 0).
//!   Reading a session is one `GET`. A session ended with a reason holds
//!   its tombstone, `t<absolute ms>,<reason>`, instead.
//! - `<prefix>h:{<handle>}` — the handle record: the hashes registered for
//!   that session (normally one; two during a rotation; fields named by the
//!   hash in base64url) and its revocation generation `g`. Expires at the
//!   absolute deadline.
//! - `<prefix>u:{<tag>}` — the user index: a sorted set of handles scored
//!   by absolute deadline, pruned by the server clock. The tag is the first
//!   128 bits of the user id's SHA-256 in base64url, so that any id (even
//!   one with braces) makes a valid hash tag, and ids do not appear in key
//!   names.
//!
//! Sessions stored by the previous layout (session keys as hashes, hex
//! hashes in handle records, user indexes tagged with the whole SHA-256 in
//! hex) keep working: see the README, "Upgrading".
//! - `<prefix>f:{<handle>}` and `<prefix>r:{<refresh hash hex>}` — refresh
//!   token families and the pointers that find them, for the
//!   [`RefreshStore`](tessera::refresh::RefreshStore) implementation (see
//!   the `refresh` module and the README): a rotation is one single-key
//!   script on the family hash.
//!
//! Every Lua script touches one key, so the same code is correct on a
//! single Redis and on a cluster, where the three keys of a session
//! generally live on different nodes. The crate's `README.md` explains the order of
//! the multi-key operations and the consistency this gives; in short:
//! authentication depends only on the session key (updated atomically by
//! compare-and-set scripts), rotation creates the new key before
//! compare-and-deleting the old one and then re-checks the handle's
//! revocation generation, and revocation bumps that generation before it
//! deletes — so a revoke racing a rotation never leaves a working session.
//!
//! Requires Redis 7.0 or later (`PEXPIREAT … GT`, and scripts that read
//! `TIME`, which needs effects replication).
//!
//! Client: [`fred`] 10, which supports clusters (MOVED/ASK, topology
//! refresh), Lua with `EVALSHA` and reload on `NOSCRIPT`, automatic
//! pipelining of concurrent commands, command timeouts and reconnection.
#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod codec;
mod config;
mod counter;
mod dbsc;
mod delete_all;
mod document;
mod error;
mod inner;
mod invalidation;
mod not_before;
mod patch;
mod pipeline;
mod refresh;
mod scripts;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fred::bytes::Bytes;
use fred::interfaces::ClientLike;
use fred::prelude::Builder;
use fred::types::Value;
use fred::types::config::ReconnectPolicy;
use fred::types::scripts::Script;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use tessera::error::StoreError;
use tessera::record::SessionHandle;
use tessera::time::Timestamp;
use tessera::token::TokenHash;

pub use config::RedisOptions;
use config::{config_error, parse_url};
use error::map_err;
pub use inner::RedisStore;
use inner::{Inner, Stripe};
pub use invalidation::RedisChannel;
use scripts::Scripts;

/// Attempts of [`Store::modify`](tessera::store::Store::modify) before [`StoreError::Contention`].
const MODIFY_ATTEMPTS: u32 = 64;

/// Stripes of the in-process lock that serializes `modify` calls on one
/// session within this process.
const MODIFY_STRIPES: usize = 64;

/// Outcome of the `CAS` script.
enum Cas {
    Missing,
    /// The stored record, which is not the write's base.
    Conflict(Bytes),
    Applied,
}

/// Outcome of the update script.
enum Update {
    Missing,
    Conflict,
    Applied { old_absolute: i64 },
}

impl RedisStore {
    /// Connects to `redis://host:port[/db]`, `rediss://…` (feature `tls`),
    /// `redis-cluster://host:port,host:port,…` or `rediss-cluster://…`
    /// (feature `tls`) and checks that the
    /// server answers.
    ///
    /// After this, the client reconnects by itself (exponential backoff up
    /// to 2 s, forever); while it is disconnected, commands fail with
    /// [`StoreError::Timeout`] after the response timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for a bad URL or options;
    /// [`StoreError::Unavailable`]/[`StoreError::Timeout`] if the server
    /// cannot be reached within the connect timeout.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let config = parse_url(url)?;
        let clustered = config.server.is_clustered();
        let connect_timeout = options.connect_timeout();
        let response_timeout = options.response_timeout();
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = response_timeout;
                // One attempt per command: a retry after a timeout could
                // apply a write twice; callers decide about retrying.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = response_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build()
            .map_err(|e| config_error(format!("invalid Redis configuration: {e}")))?;
        match tokio::time::timeout(connect_timeout, client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(map_err(e));
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err(StoreError::Timeout);
            }
        }
        let prefix = options.key_prefix().to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                scripts: Scripts::new(),
                prefix,
                options,
                clustered,
                modify_locks: (0..MODIFY_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(Stripe::default()))
                    .collect(),
            }),
        })
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.clustered
    }

    /// The Redis key of the session with this token hash (for operators
    /// and tests: `PTTL` of it is the time left until the next deadline).
    ///
    /// ```no_run
    /// # async fn demo(store: tessera_redis::RedisStore, hash: tessera::token::TokenHash) {
    /// let key = store.session_key(&hash);
    /// assert!(key.ends_with(&format!("{{{}}}", hash.to_hex())));
    /// # }
    /// ```
    pub fn session_key(&self, hash: &TokenHash) -> String {
        // Built by hand: this runs for every request.
        let prefix = &self.inner.prefix;
        let mut key = String::with_capacity(prefix.len() + 4 + 2 * hash.as_bytes().len());
        key.push_str(prefix);
        key.push_str("s:{");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in hash.as_bytes() {
            for nibble in [b >> 4, b & 0x0f] {
                key.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        key.push('}');
        key
    }

    /// The name of a session hash as a field of its handle record: the
    /// hash in unpadded base64url (43 characters; the layout before it
    /// used 64 hex digits, which [`parse_hash_field`] still reads).
    pub(crate) fn hash_field(hash: &TokenHash) -> String {
        URL_SAFE_NO_PAD.encode(hash.as_bytes())
    }

    /// Every name a session hash may have as a field of a handle record
    /// (this layout's and the earlier hex one), for removing it: a session
    /// stored before the upgrade is registered under its hex name.
    pub(crate) fn hash_fields(hash: &TokenHash) -> Vec<String> {
        vec![Self::hash_field(hash), hash.to_hex()]
    }

    /// The Redis key of a handle record.
    pub fn handle_key(&self, handle: &SessionHandle) -> String {
        format!("{}h:{{{}}}", self.inner.prefix, handle.as_str())
    }

    /// The Redis key of a user's index: `<prefix>u:{<tag>}`, the tag being
    /// the first 128 bits of the SHA-256 of the user id in base64url (22
    /// characters), so that any id makes a valid hash tag and no id shows
    /// in key names.
    ///
    /// Two ids with the same tag would share an index; every reader checks
    /// the user of each record it finds (listing, revocation), so the only
    /// effect would be a shared session cap, and finding such a pair takes
    /// about 2^64 hashes.
    ///
    /// ```no_run
    /// # async fn demo(store: tessera_redis::RedisStore) {
    /// assert_eq!(store.user_key("alice").len(), "tessera:u:{}".len() + 22);
    /// # }
    /// ```
    pub fn user_key(&self, user_id: &str) -> String {
        let digest = Sha256::digest(user_id.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default());
        format!("{}u:{{{tag}}}", self.inner.prefix)
    }

    /// The key of a user's index in the layout before [`RedisStore::user_key`]
    /// (tagged with the whole SHA-256 in hex). Such indexes are read beside
    /// the current one until they expire, and written only to remove
    /// members (see the README, "Upgrading").
    pub(crate) fn legacy_user_key(&self, user_id: &str) -> String {
        format!("{}u:{{{}}}", self.inner.prefix, user_hex(user_id))
    }

    /// Disconnects. Clones of this store stop working too.
    ///
    /// # Errors
    ///
    /// Backend errors while quitting.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.client.quit().await.map_err(map_err)
    }

    /// Runs a script with `EVALSHA`, loading it on `NOSCRIPT`.
    ///
    /// fred's command futures are large (about 5 KB): boxing them here, once
    /// per command, keeps every future of this crate small, so that moving
    /// them (into a timeout, into `async_trait`'s box) copies little. Unboxed,
    /// a write request copied about 60 KB of future state.
    async fn eval(
        &self,
        script: &Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        Box::pin(script.evalsha_with_reload::<Value, _, _>(&self.inner.client, key, args))
            .await
            .map_err(map_err)
    }

    /// [`RedisStore::eval`] with binary-safe arguments (encoded records).
    async fn eval_values(
        &self,
        script: &Script,
        key: String,
        args: Vec<Value>,
    ) -> Result<Value, StoreError> {
        Box::pin(script.evalsha_with_reload::<Value, _, _>(&self.inner.client, key, args))
            .await
            .map_err(map_err)
    }

    /// Bounds a whole operation by the operation timeout.
    ///
    /// Not an `async fn`: that would hold `op` twice (as its argument and
    /// inside the timeout), doubling the future that `async_trait` boxes
    /// and copies on every call (fred's command futures are ~5 KB each).
    fn bounded<T, F>(&self, op: F) -> impl Future<Output = Result<T, StoreError>> + use<T, F>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::timeout(self.inner.options.operation_timeout(), op)
            .map(|r| r.unwrap_or(Err(StoreError::Timeout)))
    }
}

/// A session hash from a field name of a handle record, in either
/// spelling (base64url, or the hex of the layout before it); `None` for
/// anything else (the generation field `g`).
fn parse_hash_field(field: &str) -> Option<TokenHash> {
    match field.len() {
        64 => TokenHash::from_hex(field),
        43 => {
            let raw = URL_SAFE_NO_PAD.decode(field).ok()?;
            Some(TokenHash::from_bytes(raw.try_into().ok()?))
        }
        _ => None,
    }
}

/// The SHA-256 of a user id in hex: the hash tag of the user's kill switch
/// (`n:{…}`) and of the user index of the earlier layout.
fn user_hex(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn ms(t: Timestamp) -> String {
    t.as_millis().to_string()
}

fn int(v: &Value) -> Result<i64, StoreError> {
    v.as_i64().ok_or_else(|| unexpected("script"))
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        _ => Err(unexpected("script")),
    }
}

fn unexpected(what: &str) -> StoreError {
    StoreError::backend(format!("unexpected reply from the {what} script"))
}

/// A fresh revocation generation: 128 random bits, hex. Random rather than
/// a counter so that an expired-and-recreated handle key can never show a
/// rotation the generation it read earlier (no ABA).
fn random_generation() -> Result<String, StoreError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| StoreError::backend(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Short jittered pause between compare-and-set attempts so contending
/// writers spread out.
async fn backoff(attempt: u32) {
    let mut b = [0u8; 1];
    // Jitter only; a failed RNG just means no jitter.
    let _ = getrandom::fill(&mut b);
    let base_us = 50u64 << attempt.min(6);
    let [r] = b;
    tokio::time::sleep(Duration::from_micros(
        base_us + u64::from(r) * base_us / 255,
    ))
    .await;
}
