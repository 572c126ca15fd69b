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
//! - `<prefix>s:{<token hash hex>}` — one Redis hash per session holding the
//!   whole record once, in one field `c` in a compact encoding (a short text
//!   header the scripts check, then binary; no JSON, no copy of the hash),
//!   expiring at the record's next deadline (`PEXPIREAT`), so
//!   Redis removes ended sessions itself and no sweeper is needed
//!   ([`Store::purge_expired`] returns 0). Reading a session is one `HGET`.
//! - `<prefix>h:{<handle>}` — the handle record: the hashes registered for
//!   that session (normally one; two during a rotation) and its revocation
//!   generation `g`. Expires at the absolute deadline.
//! - `<prefix>u:{<sha256(user id) hex>}` — the user index: a sorted set of
//!   handles scored by absolute deadline, pruned by the server clock. The
//!   user id is hashed so that any id (even one with braces) makes a valid
//!   hash tag, and so that ids do not appear in key names.
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

mod codec;
mod config;
mod counter;
mod dbsc;
mod delete_all;
mod document;
mod invalidation;
mod not_before;
mod patch;
mod refresh;
mod scripts;

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::clients::Client;
use fred::error::{Error as RedisError, ErrorKind};
use fred::interfaces::{ClientLike, HashesInterface, KeysInterface, SortedSetsInterface};
use fred::prelude::Builder;
use fred::types::config::ReconnectPolicy;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};
use futures_util::FutureExt;
use futures_util::future::join_all;
use sha2::{Digest, Sha256};
use tessera::ended::{Ended, Revocation};
use tessera::error::StoreError;
use tessera::policy::{SessionCap, SessionLimitAction};
use tessera::record::{SessionHandle, SessionRecord};
use tessera::store::{Capped, CasOutcome, Modify, ModifyFn, Patch, PatchOutcome, Store};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

pub use config::RedisOptions;
use config::{config_error, parse_url};
pub use invalidation::RedisChannel;
use scripts::Scripts;

/// Attempts of [`Store::modify`] before [`StoreError::Contention`].
const MODIFY_ATTEMPTS: u32 = 64;

/// Stripes of the in-process lock that serializes `modify` calls on one
/// session within this process.
const MODIFY_STRIPES: usize = 64;

/// A session store on Redis (standalone) or Redis Cluster.
///
/// Cheap to clone; clones share one multiplexed connection (per node).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    scripts: Scripts,
    prefix: String,
    options: RedisOptions,
    clustered: bool,
    /// `modify` calls on the same session from this process queue here
    /// instead of racing each other's compare-and-set (many concurrent
    /// requests of one client would otherwise exhaust the retries). Across
    /// processes the compare-and-set alone keeps writes safe. See
    /// [`Stripe`].
    modify_locks: Vec<tokio::sync::Mutex<Stripe>>,
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
struct Stripe {
    last: Option<Written>,
    /// Names the chains of writes computed one from another (see
    /// [`Written::chain`]).
    chains: u64,
}

/// A record written (or being written) through a [`Stripe`], encoded as
/// sent (cloning the bytes is a reference count).
struct Written {
    hash: TokenHash,
    version: u64,
    value: Bytes,
    /// Writes computed from the remembered record continue its chain; a
    /// write computed from a record read from Redis (or the caller's copy)
    /// starts a new one. When a write fails, every later write of its chain
    /// was computed from it and fails too, so the memory is dropped if it
    /// still belongs to that chain, and not if a new chain started since.
    chain: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("clustered", &self.inner.clustered)
            .finish_non_exhaustive()
    }
}

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

    /// The Redis key of a handle record.
    pub fn handle_key(&self, handle: &SessionHandle) -> String {
        format!("{}h:{{{}}}", self.inner.prefix, handle.as_str())
    }

    /// The Redis key of a user's index.
    pub fn user_key(&self, user_id: &str) -> String {
        let digest = Sha256::digest(user_id.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push_str(&format!("{b:02x}"));
        }
        format!("{}u:{{{}}}", self.inner.prefix, hex)
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

    /// The compare-and-set of the write path (the `CAS` script): writes
    /// `value` if the stored value is still exactly `expected`.
    async fn cas(
        &self,
        hash: &TokenHash,
        expected: Bytes,
        value: Bytes,
        expire_at: Timestamp,
    ) -> Result<Cas, StoreError> {
        let v = self
            .eval_values(
                &self.inner.scripts.cas,
                self.session_key(hash),
                vec![
                    Value::from(expected),
                    Value::from(value),
                    Value::from(expire_at.as_millis()),
                ],
            )
            .await?;
        match v {
            Value::Integer(0) => Ok(Cas::Missing),
            Value::Integer(2) => Ok(Cas::Applied),
            stored @ (Value::Bytes(_) | Value::String(_)) => stored
                .into_bytes()
                .map(Cas::Conflict)
                .ok_or_else(|| unexpected("compare-and-set")),
            _ => Err(unexpected("compare-and-set")),
        }
    }

    /// Forgets the stripe's memory if it belongs to `chain`, whose write
    /// just failed (see [`Written::chain`]).
    async fn forget_chain(&self, stripe: &tokio::sync::Mutex<Stripe>, chain: u64) {
        let mut guard = stripe.lock().await;
        if guard.last.as_ref().is_some_and(|w| w.chain == chain) {
            guard.last = None;
        }
    }

    /// The stored record of a session and its exact stored bytes: one
    /// `HGET`.
    async fn get_stored(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(SessionRecord, Bytes)>, StoreError> {
        match self.get_value(hash).await? {
            Some(raw) => Ok(Some((codec::decode(hash, &raw)?, raw))),
            None => Ok(None),
        }
    }

    /// The encoded record of a session: one `HGET` (boxed: see
    /// [`RedisStore::eval`]).
    async fn get_value(&self, hash: &TokenHash) -> Result<Option<Bytes>, StoreError> {
        let hget = self
            .inner
            .client
            .hget::<Value, _, _>(self.session_key(hash), codec::FIELD);
        let v = Box::pin(hget).await.map_err(map_err)?;
        Ok(v.into_bytes())
    }

    async fn create_session_key(&self, record: &SessionRecord) -> Result<bool, StoreError> {
        let value = codec::encode(record)?;
        let v = self
            .eval_values(
                &self.inner.scripts.create,
                self.session_key(&record.hash),
                vec![
                    Value::from(Bytes::from(value)),
                    Value::from(ms(record.deadlines.next())),
                ],
            )
            .await?;
        Ok(int(&v)? == 1)
    }

    async fn user_add(
        &self,
        user_id: &str,
        handle: &SessionHandle,
        absolute: Timestamp,
    ) -> Result<(), StoreError> {
        self.eval(
            &self.inner.scripts.user_add,
            self.user_key(user_id),
            vec![handle.as_str().to_owned(), ms(absolute)],
        )
        .await
        .map(drop)
    }

    async fn update_inner(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        let value = codec::encode(record)?;
        let v = self
            .eval_values(
                &self.inner.scripts.update,
                self.session_key(&record.hash),
                vec![
                    Value::from(ms(now)),
                    Value::from(expected_version.to_string()),
                    Value::from(Bytes::from(value)),
                    Value::from(ms(record.deadlines.next())),
                ],
            )
            .await?;
        let items = array(v)?;
        let code = items.first().map(int).transpose()?;
        let out = match code {
            Some(0) => Update::Missing,
            Some(1) => Update::Conflict,
            Some(2) => {
                let old_absolute = items
                    .get(1)
                    .and_then(Value::as_string)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(i64::MAX);
                Update::Applied { old_absolute }
            }
            Some(3) => {
                return Err(StoreError::backend(
                    "update must not change a session's user or handle",
                ));
            }
            Some(4) => {
                return Err(StoreError::Corrupt(
                    "stored session header does not parse".into(),
                ));
            }
            _ => return Err(unexpected("update")),
        };
        if let Update::Applied { old_absolute } = out {
            // The indexes must live as long as the session: when the
            // absolute deadline moved later, extend them (rare: only
            // re-authentication moves it).
            if record.deadlines.absolute.as_millis() > old_absolute {
                self.extend_indexes(record).await?;
            }
        }
        Ok(out)
    }

    async fn extend_indexes(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.eval(
            &self.inner.scripts.extend,
            self.handle_key(&record.handle),
            vec![ms(record.deadlines.absolute)],
        )
        .await?;
        if let Some(user) = &record.user_id {
            self.user_add(user, &record.handle, record.deadlines.absolute)
                .await?;
        }
        Ok(())
    }

    /// Deletes a session key if it matches; returns its (handle, user).
    async fn delete_if(
        &self,
        hash: &str,
        handle: Option<&SessionHandle>,
        owner: Option<&str>,
        why: Option<Ended>,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let key = format!("{}s:{{{hash}}}", self.inner.prefix);
        let v = self
            .eval(
                &self.inner.scripts.delete_if,
                key,
                vec![
                    handle.map(|h| h.as_str().to_owned()).unwrap_or_default(),
                    if owner.is_some() { "1" } else { "0" }.to_owned(),
                    owner.unwrap_or_default().to_owned(),
                    String::new(),
                    why.map(Ended::to_stored).unwrap_or_default(),
                ],
            )
            .await?;
        let items = array(v)?;
        if items.first().map(int).transpose()? != Some(1) {
            return Ok(None);
        }
        let handle = items
            .get(1)
            .and_then(Value::as_string)
            .ok_or_else(|| unexpected("delete"))?;
        let user = items.get(2).and_then(Value::as_string);
        Ok(Some((handle, user)))
    }

    /// Forgets hashes under a handle; when none remain, drops the handle
    /// from the user's index. Best-effort housekeeping: readers tolerate
    /// stale entries.
    async fn forget(
        &self,
        handle: &str,
        hashes: Vec<String>,
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let remaining = int(&self.eval(&self.inner.scripts.forget, key, hashes).await?)?;
        if remaining == 0 {
            if let Some(user) = user {
                let _: i64 = fred::interfaces::SortedSetsInterface::zrem(
                    &self.inner.client,
                    self.user_key(user),
                    handle.to_owned(),
                )
                .await
                .map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Revokes every session registered under a handle (owned by `owner`
    /// when given). Bumps the handle's generation first, so that a rotation
    /// in flight aborts (see the README).
    async fn revoke_handle(
        &self,
        handle: &str,
        owner: Option<&str>,
        why: Option<Ended>,
    ) -> Result<u64, StoreError> {
        let generation = random_generation()?;
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let listed = array(
            self.eval(&self.inner.scripts.revoke, key, vec![generation])
                .await?,
        )?;
        let hashes: Vec<String> = listed.iter().filter_map(Value::as_string).collect();
        let parsed = SessionHandle::parse(handle);
        let results = join_all(
            hashes
                .iter()
                .map(|h| self.delete_if(h, parsed.as_ref(), owner, why)),
        )
        .await;
        let mut deleted = 0u64;
        let mut gone = Vec::new();
        let mut user = None;
        for (hash, result) in hashes.iter().zip(results) {
            if let Some((_, u)) = result? {
                deleted += 1;
                user = user.or(u);
                gone.push(hash.clone());
            } else if self.get_value_hex(hash).await?.is_none() {
                // Expired or never created (an aborted rotation): forget it.
                gone.push(hash.clone());
            }
        }
        // One more look at the handle. A rotation whose PENDING ran after
        // REVOKE listed the hashes read the new generation, so its FINISH
        // cannot notice this revocation; if it then took the old key before
        // the deletes above could, its new key survived them. But PENDING
        // (registering the new hash) precedes its TAKE, which preceded the
        // failed delete of the old key above: the new hash is listed by now.
        // A rotation that comes to TAKE after those deletes finds nothing.
        let again: Vec<String> = self
            .inner
            .client
            .hkeys(format!("{}h:{{{handle}}}", self.inner.prefix))
            .await
            .map_err(map_err)?;
        for hash in again.iter().filter(|h| *h != "g" && !hashes.contains(h)) {
            if let Some((_, u)) = self.delete_if(hash, parsed.as_ref(), owner, why).await? {
                deleted += 1;
                user = user.or(u);
                gone.push(hash.clone());
            }
        }
        self.forget(handle, gone, user.as_deref().or(owner)).await?;
        Ok(deleted)
    }

    async fn get_value_hex(&self, hash: &str) -> Result<Option<Bytes>, StoreError> {
        let v = self
            .inner
            .client
            .hget::<Value, _, _>(format!("{}s:{{{hash}}}", self.inner.prefix), codec::FIELD)
            .await
            .map_err(map_err)?;
        Ok(v.into_bytes())
    }

    /// The live records registered under a handle.
    async fn records_of_handle(&self, handle: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let fields: Vec<String> = self.inner.client.hkeys(key).await.map_err(map_err)?;
        let hashes: Vec<&String> = fields.iter().filter(|f| f.as_str() != "g").collect();
        let loaded = join_all(hashes.iter().map(|h| self.get_value_hex(h))).await;
        let mut out = Vec::new();
        for (hex, value) in hashes.iter().zip(loaded) {
            if let Some(value) = value? {
                let hash = TokenHash::from_hex(hex)
                    .ok_or_else(|| StoreError::Corrupt("handle lists a bad hash".into()))?;
                out.push(codec::decode(&hash, &value)?);
            }
        }
        Ok(out)
    }

    /// The body of [`Store::create_capped`] once the handle is claimed:
    /// admit into the user index (the linearization point), revoke what
    /// the admission evicted, create the session key, and check that no
    /// later admission evicted the new handle before its key existed (its
    /// revocation would have found nothing to delete).
    async fn admit_and_create(
        &self,
        record: &SessionRecord,
        user: &str,
        cap: SessionCap,
    ) -> Result<Capped, StoreError> {
        let action = match cap.action {
            SessionLimitAction::EvictOldest => "evict",
            SessionLimitAction::RefuseNew => "refuse",
        };
        let user_key = self.user_key(user);
        let admitted = array(
            self.eval(
                &self.inner.scripts.user_admit,
                user_key.clone(),
                vec![
                    record.handle.as_str().to_owned(),
                    ms(record.deadlines.absolute),
                    cap.max.max(1).to_string(),
                    action.to_owned(),
                ],
            )
            .await?,
        )?;
        if admitted.first().map(int).transpose()? != Some(1) {
            return Ok(Capped::Refused);
        }
        let evicted: Vec<String> = admitted
            .iter()
            .skip(1)
            .filter_map(Value::as_string)
            .collect();
        let why = Some(Ended::Revoked(Revocation::SessionLimit));
        for handle in &evicted {
            self.revoke_handle(handle, Some(user), why).await?;
        }
        if !self.create_session_key(record).await? {
            return Err(StoreError::Duplicate);
        }
        let still: Option<f64> = self
            .inner
            .client
            .zscore(user_key, record.handle.as_str())
            .await
            .map_err(map_err)?;
        if still.is_none() {
            // A racing admission evicted this handle first: end the
            // session as that eviction meant to.
            let hex = record.hash.to_hex();
            if self
                .delete_if(&hex, Some(&record.handle), Some(user), why)
                .await?
                .is_some()
            {
                self.forget(record.handle.as_str(), vec![hex], Some(user))
                    .await?;
            }
        }
        let evicted = evicted
            .iter()
            .map(|h| {
                SessionHandle::parse(h)
                    .ok_or_else(|| StoreError::Corrupt("user index lists a bad handle".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Capped::Created { evicted })
    }

    async fn user_handles(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let v = self
            .eval(
                &self.inner.scripts.user_list,
                self.user_key(user_id),
                Vec::new(),
            )
            .await?;
        Ok(array(v)?.iter().filter_map(Value::as_string).collect())
    }

    /// Best-effort removal of a key a failed rotation created.
    async fn discard_pending(&self, new: &SessionRecord) {
        let key = self.session_key(&new.hash);
        if let Err(e) = self.inner.client.del::<i64, _>(key).await {
            tracing::warn!(
                session = %new.hash.fingerprint(),
                error = %e,
                "could not remove the new key of a failed rotation; it expires at its deadline and its token was never issued"
            );
        }
        let _ = self
            .inner
            .client
            .hdel::<i64, _, _>(self.handle_key(&new.handle), new.hash.to_hex())
            .await;
    }

    async fn rotate_inner(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        // 1. Register the new hash under the handle (so a revocation that
        //    starts from now on sees it) and read the revocation generation.
        let pending = self.eval(
            &self.inner.scripts.pending,
            self.handle_key(&new.handle),
            vec![new.hash.to_hex(), ms(new.deadlines.absolute)],
        );
        let generation = match &new.user_id {
            Some(user) => {
                let (g, added) = tokio::join!(
                    pending,
                    self.user_add(user, &new.handle, new.deadlines.absolute)
                );
                added?;
                g?
            }
            None => pending.await?,
        };
        let generation = generation.as_string().unwrap_or_default();
        // 2. Create the new key. Its token has not been issued to anyone
        //    yet, so it working a moment early is unobservable.
        match self.create_session_key(new).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = self
                    .inner
                    .client
                    .hdel::<i64, _, _>(self.handle_key(&new.handle), new.hash.to_hex())
                    .await;
                return Err(StoreError::Duplicate);
            }
            Err(e) => {
                self.discard_pending(new).await;
                return Err(e);
            }
        }
        // 3. Compare-and-delete the old key: the linearization point. From
        //    here on the old token, and for a sign-in the old handle (whose
        //    handle record now lists only a deleted key), find nothing.
        let taken = self
            .eval(
                &self.inner.scripts.take,
                self.session_key(old),
                vec![
                    ms(now),
                    expected_version.to_string(),
                    new.handle.as_str().to_owned(),
                ],
            )
            .await
            .and_then(array)
            .and_then(|items| Ok((items.first().map(int).transpose()?, items)));
        let (items, outcome) = match taken {
            Ok((Some(2 | 4), items)) => (items, None),
            Ok((Some(0), _)) => (Vec::new(), Some(Ok(CasOutcome::Missing))),
            Ok((Some(1), _)) => (Vec::new(), Some(Ok(CasOutcome::Conflict))),
            Ok(_) => (Vec::new(), Some(Err(unexpected("rotate")))),
            Err(e) => (Vec::new(), Some(Err(e))),
        };
        if let Some(outcome) = outcome {
            self.discard_pending(new).await;
            return outcome;
        }
        // A sign-in: the session left its old handle. Forget the old key
        // there and drop the handle from the old user's index. Only
        // housekeeping (readers skip keys that are gone; the handle record
        // expires at its absolute deadline), so a failure is logged.
        if let Some(old_handle) = items.get(1).and_then(Value::as_string) {
            let old_user = items.get(2).and_then(Value::as_string);
            if let Err(e) = self
                .forget(&old_handle, vec![old.to_hex()], old_user.as_deref())
                .await
            {
                tracing::debug!(error = %e, "index cleanup after a sign-in failed");
            }
        }
        // 4. If the handle was revoked since step 1, the revocation may have
        //    listed the hashes before the new key existed: delete it here.
        let finished = self
            .eval(
                &self.inner.scripts.finish,
                self.handle_key(&new.handle),
                vec![generation, old.to_hex()],
            )
            .await
            .and_then(|v| int(&v));
        match finished {
            Ok(1) => Ok(CasOutcome::Applied),
            Ok(_) => {
                self.discard_pending(new).await;
                Ok(CasOutcome::Missing)
            }
            Err(e) => {
                // Unknown whether a revocation ran: fail closed.
                self.discard_pending(new).await;
                Err(e)
            }
        }
    }

    /// The read-modify-write loop. With `seed` (a record the caller loaded
    /// in this request) the first attempt is the compare-and-set itself, no
    /// read; a conflict hands back the latest record for the next attempt.
    ///
    /// Every compare-and-set is computed from a base record that was
    /// checked valid at `now` here, and the `CAS` script writes only if the
    /// stored record is that base (same version, deadlines, handle and
    /// user): so nothing expired is written and no update is lost.
    async fn modify_inner(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
        seed: Option<&SessionRecord>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let stripe = self
            .inner
            .modify_locks
            .get(usize::from(hash.as_bytes()[0]) % MODIFY_STRIPES)
            .ok_or_else(|| unexpected("modify"))?;
        // The latest record known from the caller or from Redis. When it
        // came from Redis, `known_raw` holds its exact stored bytes: the
        // compare-and-set compares whole values (see `CAS`), and an expired
        // record, or `Keep`, is then the final answer (a caller's copy may
        // be older than the store).
        let (mut known, mut known_raw): (Cow<'_, SessionRecord>, Option<Bytes>) = match seed {
            Some(record) => (Cow::Borrowed(record), None),
            None => match self.get_stored(hash).await? {
                Some((record, raw)) => (Cow::Owned(record), Some(raw)),
                None => return Ok(None),
            },
        };
        // Cleared when the stripe's memory must not be the base (it looked
        // expired, or `f` kept the record: both need the stored record).
        let mut use_memory = true;
        let mut conflicts = 0u32;
        loop {
            let mut guard = stripe.lock().await;
            let remembered = match guard.last.as_ref() {
                Some(w) if use_memory && w.hash == *hash && w.version > known.version => {
                    let record = codec::decode(hash, &w.value)?;
                    record
                        .is_valid_at(now)
                        .then(|| (record, w.chain, w.value.clone()))
                }
                _ => None,
            };
            let (current, chain) = match &remembered {
                Some((record, chain, _)) => (record, *chain),
                None => {
                    guard.chains = guard.chains.wrapping_add(1);
                    (&*known, guard.chains)
                }
            };
            let final_base = known_raw.is_some() && remembered.is_none();
            let mut next = current.clone();
            let reread = if !current.is_valid_at(now) {
                if final_base {
                    return Ok(None);
                }
                // The request's copy looks expired, but another request may
                // have moved the idle deadline: read the stored record.
                true
            } else if f(&mut next) == Modify::Keep {
                if final_base {
                    // Nothing written: the record as stored.
                    return Ok(Some(known.into_owned()));
                }
                // Keep reports the record *as stored*: the request's copy
                // (or this process's memory) may differ, so read and decide
                // again.
                true
            } else {
                false
            };
            if reread {
                drop(guard);
                let Some((record, raw)) = self.get_stored(hash).await? else {
                    return Ok(None);
                };
                (known, known_raw) = (Cow::Owned(record), Some(raw));
                use_memory = false;
                continue;
            }
            next.version = current.version.saturating_add(1);
            next.hash = *hash;
            next.handle = current.handle.clone();
            next.user_id.clone_from(&current.user_id);
            let value = Bytes::from(codec::encode(&next)?);
            // The exact bytes the write is computed from: what this
            // process sent for the remembered write, what Redis returned,
            // or (for the caller's copy) its encoding, which is how it was
            // stored; if that ever differs, the conflict hands back the
            // stored bytes and the next attempt uses them.
            let expected = match (&remembered, &known_raw) {
                (Some((_, _, sent)), _) => sent.clone(),
                (None, Some(raw)) => raw.clone(),
                (None, None) => Bytes::from(codec::encode(current)?),
            };
            let grew = next.deadlines.absolute > current.deadlines.absolute;
            let mut cas = pin!(self.cas(hash, expected, value.clone(), next.deadlines.next()));
            // Poll once while holding the stripe: that queues the command on
            // the connection, so the next write of this session, computed
            // from `next`, is sent after it (see `Stripe`).
            let first = poll_fn(|cx| Poll::Ready(cas.as_mut().poll(cx))).await;
            guard.last = Some(Written {
                hash: *hash,
                version: next.version,
                value,
                chain,
            });
            drop(guard);
            let outcome = match first {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => cas.await,
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.forget_chain(stripe, chain).await;
                    return Err(e);
                }
            };
            match outcome {
                Cas::Applied => {
                    // The indexes must live as long as the session: when the
                    // absolute deadline moved later, extend them (rare: only
                    // re-authentication moves it).
                    if grew {
                        self.extend_indexes(&next).await?;
                    }
                    return Ok(Some(next));
                }
                Cas::Missing => {
                    self.forget_chain(stripe, chain).await;
                    return Ok(None);
                }
                Cas::Conflict(latest) => {
                    self.forget_chain(stripe, chain).await;
                    // A stale copy (the caller's, or this process's memory)
                    // is not contention: retry at once the first time.
                    let stale_copy = seed.is_some() || remembered.is_some();
                    known = Cow::Owned(codec::decode(hash, &latest)?);
                    known_raw = Some(latest);
                    use_memory = true;
                    conflicts += 1;
                    if conflicts >= MODIFY_ATTEMPTS {
                        return Err(StoreError::Contention);
                    }
                    if conflicts > 1 || !stale_copy {
                        backoff(conflicts - 1).await;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.bounded(async {
            // Claim the handle and index the user before the session key
            // exists: every key that can find a session is in place before
            // the session can authenticate anything.
            let claim = self.eval(
                &self.inner.scripts.claim,
                self.handle_key(&record.handle),
                vec![record.hash.to_hex(), ms(record.deadlines.absolute)],
            );
            let claimed = int(&claim.await?)? == 1;
            if !claimed {
                return Err(StoreError::Duplicate);
            }
            let created = async {
                if let Some(user) = &record.user_id {
                    self.user_add(user, &record.handle, record.deadlines.absolute)
                        .await?;
                }
                self.create_session_key(record).await
            }
            .await;
            match created {
                Ok(true) => Ok(()),
                other => {
                    // Release the handle we claimed (it holds only our hash).
                    let _ = self
                        .inner
                        .client
                        .del::<i64, _>(self.handle_key(&record.handle))
                        .await;
                    match other {
                        Ok(_) => Err(StoreError::Duplicate),
                        Err(e) => Err(e),
                    }
                }
            }
        })
        .await
    }

    /// The admission and the eviction are one `USER_ADMIT` script on the
    /// user's index key (see the crate README, "Session cap"); the
    /// evicted sessions are then revoked by handle, with their tombstones.
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        _now: Timestamp, // The script prunes by the server's clock.
    ) -> Result<Capped, StoreError> {
        let Some(user) = record.user_id.as_deref() else {
            self.create(record).await?;
            return Ok(Capped::Created {
                evicted: Vec::new(),
            });
        };
        self.bounded(async {
            let claim = self.eval(
                &self.inner.scripts.claim,
                self.handle_key(&record.handle),
                vec![record.hash.to_hex(), ms(record.deadlines.absolute)],
            );
            if int(&claim.await?)? != 1 {
                return Err(StoreError::Duplicate);
            }
            let outcome = self.admit_and_create(record, user, cap).await;
            if !matches!(outcome, Ok(Capped::Created { .. })) {
                // Refused or failed: release the handle we claimed (it holds
                // only our hash) and our place in the index, if taken.
                let _ = self
                    .inner
                    .client
                    .del::<i64, _>(self.handle_key(&record.handle))
                    .await;
                if outcome.is_err() {
                    let _ = self
                        .inner
                        .client
                        .zrem::<i64, _, _>(self.user_key(user), record.handle.as_str())
                        .await;
                }
            }
            outcome
        })
        .await
    }

    /// The whole read path of a request: one `HGET` of the session and,
    /// pipelined with it, one `HMGET` of the global not-before hash (the
    /// kill switches); a second round trip for the user's not-before only
    /// when a user switch set after the session's creation may apply (see
    /// the `not_before` module).
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        self.bounded(async {
            let (value, global) =
                futures_util::try_join!(self.get_value(hash), self.global_not_before())?;
            match value {
                Some(value) => {
                    let record = codec::decode(hash, &value)?;
                    self.usable(record, global).await
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn raise_not_before(
        &self,
        scope: tessera::not_before::Scope<'_>,
        to: tessera::not_before::NotBefore,
    ) -> Result<tessera::not_before::NotBefore, StoreError> {
        self.bounded(self.raise_not_before_inner(scope, to)).await
    }

    async fn not_before(
        &self,
        scope: tessera::not_before::Scope<'_>,
    ) -> Result<Option<tessera::not_before::NotBefore>, StoreError> {
        self.bounded(self.not_before_inner(scope)).await
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.bounded(async {
            Ok(
                match self.update_inner(expected_version, record, now).await? {
                    Update::Missing => CasOutcome::Missing,
                    Update::Conflict => CasOutcome::Conflict,
                    Update::Applied { .. } => CasOutcome::Applied,
                },
            )
        })
        .await
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        self.bounded(self.rotate_inner(old, expected_version, new, now))
            .await
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        self.bounded(async {
            let hex = hash.to_hex();
            match self.delete_if(&hex, None, None, None).await? {
                Some((handle, user)) => {
                    if let Err(e) = self.forget(&handle, vec![hex], user.as_deref()).await {
                        tracing::debug!(error = %e, "index cleanup after delete failed");
                    }
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        let why = Some(Ended::Revoked(why));
        self.bounded(async { Ok(self.revoke_handle(handle.as_str(), owner, why).await? > 0) })
            .await
    }

    /// The `DELETE_IF` script with a tombstone: the record and its
    /// tombstone change places on the one session key.
    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        self.bounded(async {
            let hex = hash.to_hex();
            match self.delete_if(&hex, None, None, Some(why)).await? {
                Some((handle, user)) => {
                    if let Err(e) = self.forget(&handle, vec![hex], user.as_deref()).await {
                        tracing::debug!(error = %e, "index cleanup after end failed");
                    }
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
    }

    /// One `HGET` of the tombstone field (`<absolute ms>,<reason>`); Redis
    /// drops the key at the session's absolute deadline, and a tombstone
    /// read at or after it is ignored like an expired record.
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.bounded(async {
            let hget = self
                .inner
                .client
                .hget::<Option<String>, _, _>(self.session_key(hash), "t");
            let stored = Box::pin(hget).await.map_err(map_err)?;
            let tombstone = stored.as_deref().and_then(|t| {
                let (until, reason) = t.split_once(',')?;
                let until: i64 = until.parse().ok()?;
                (now.as_millis() < until)
                    .then(|| Ended::from_stored(reason))
                    .flatten()
            });
            if tombstone.is_some() {
                return Ok(tombstone);
            }
            // No tombstone: the record may still be stored, refused by a
            // kill switch (only a refused token pays for these reads).
            match self.get_value(hash).await? {
                Some(value) => self.refused(&codec::decode(hash, &value)?).await,
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.bounded(async {
            let handles = self.user_handles(user_id).await?;
            let per_handle = join_all(handles.iter().map(|h| self.records_of_handle(h))).await;
            let mut out = Vec::new();
            for (handle, records) in handles.iter().zip(per_handle) {
                for record in records? {
                    if record.handle.as_str() == handle.as_str()
                        && record.user_id.as_deref() == Some(user_id)
                        && record.is_valid_at(now)
                        && !out.iter().any(|r: &SessionRecord| r.hash == record.hash)
                    {
                        out.push(record);
                    }
                }
            }
            out.sort_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then_with(|| a.handle.cmp(&b.handle))
            });
            self.usable_of_user(user_id, out).await
        })
        .await
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        let why = Some(Ended::Revoked(why));
        self.bounded(async {
            let handles = self.user_handles(user_id).await?;
            let targets: Vec<&String> = handles
                .iter()
                .filter(|h| except.is_none_or(|e| e.as_str() != h.as_str()))
                .collect();
            let results = join_all(
                targets
                    .iter()
                    .map(|h| self.revoke_handle(h, Some(user_id), why)),
            )
            .await;
            let mut n = 0;
            for r in results {
                n += r?;
            }
            Ok(n)
        })
        .await
    }

    /// `SCAN` of this store's prefix on every master, then the deletions in
    /// pages; see the `delete_all` module for the order and why a racing
    /// rotation cannot survive it.
    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.delete_all_inner().await
    }

    /// Redis expires session keys at their next deadline by itself: nothing
    /// to purge. Returns 0.
    async fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let cmd = CustomCommand::new_static("PING", ClusterHash::Random, false);
            self.inner
                .client
                .custom::<Value, Value>(cmd, Vec::new())
                .await
                .map(drop)
                .map_err(map_err)
        })
        .await
    }

    /// One `HGET`, then one compare-and-set script per attempt; on a
    /// conflict the script returns the latest record, so a retry costs one
    /// round trip.
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.bounded(self.modify_inner(hash, now, f, None)).await
    }

    /// The compare-and-set script straight away on the request's record: a
    /// write costs one round trip unless another write came in between.
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.bounded(self.modify_inner(&current.hash, now, f, Some(current)))
            .await
    }

    /// One `EVALSHA` of the patch script, which applies the changes to the
    /// stored record on the server (see the `patch` module): no read before
    /// the write, no retry under contention. `base` is not needed.
    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        self.patch_record(hash, base, patch, now).await
    }
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

/// Maps client errors: timeouts to [`StoreError::Timeout`], connection
/// trouble to [`StoreError::Unavailable`] (callers answer 503 either way),
/// everything else to [`StoreError::Backend`].
fn map_err(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::Timeout => StoreError::Timeout,
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Cluster => {
            StoreError::unavailable(e)
        }
        _ if e.details().starts_with("CLUSTERDOWN")
            || e.details().starts_with("LOADING")
            || e.details().starts_with("TRYAGAIN")
            || e.details().starts_with("MASTERDOWN") =>
        {
            StoreError::unavailable(e)
        }
        _ => StoreError::backend(e),
    }
}
