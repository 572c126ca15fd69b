//! Device-bound sessions ([`DbscStore`], W3C DBSC) on Redis and Redis
//! Cluster.
//!
//! # Layout
//!
//! One Redis hash per session handle, `<prefix>d:{<handle>}`:
//!
//! - field `b`: the binding as JSON, field `be`: its expiry (ms);
//! - field `c:<digest>`: a live challenge, valued with its expiry (ms);
//! - field `k:<digest>`: a bound cookie, valued with its expiry (ms).
//!
//! Everything of one session is in one key (one slot on a cluster), so
//! each operation is one single-key command or script: atomic on a
//! standalone Redis and on a cluster alike. The key expires at the latest
//! expiry of its fields (the binding's is the session's absolute deadline);
//! expired fields are ignored by every read and pruned by writes.

use std::sync::LazyLock;

use async_trait::async_trait;
use fred::interfaces::{HashesInterface, KeysInterface};
use fred::types::Value;
use fred::types::scripts::Script;
use tessera::dbsc::{DbscBinding, DbscStore, Secret};
use tessera::error::StoreError;
use tessera::record::SessionHandle;
use tessera::time::Timestamp;

use crate::error::map_err;
use crate::{RedisStore, int, ms};

/// Fields beyond which a write prunes expired ones (bounds the hash a
/// client spamming refreshes can grow).
const PRUNE_ABOVE: &str = "64";

/// Lua: `extend(key, at)` moves the key's expiry to `at` if later.
macro_rules! extend_lua {
    () => {
        r"
local function extend(k, at, now)
  local ttl = redis.call('PTTL', k)
  if ttl < 0 or now + ttl < at then redis.call('PEXPIREAT', k, at) end
end
"
    };
}

/// Binds unless a live binding exists.
///
/// KEYS: dbsc key. ARGV: now ms, binding JSON, expires-at ms.
/// Returns 1 when bound, 0 when a live binding exists.
static BIND: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(concat!(
        extend_lua!(),
        r"
local now = tonumber(ARGV[1])
local e = redis.call('HGET', KEYS[1], 'be')
if e and tonumber(e) > now then return 0 end
redis.call('HSET', KEYS[1], 'b', ARGV[2], 'be', ARGV[3])
extend(KEYS[1], tonumber(ARGV[3]), now)
return 1
"
    ))
});

/// Stores a secret field, pruning expired fields of a large hash. `now` is
/// the server's clock (`TIME`), as the trait method takes none.
///
/// KEYS: dbsc key. ARGV: field, expires-at ms, prune threshold.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(concat!(
        extend_lua!(),
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 2, 2) == ':' and tonumber(all[i + 1]) <= now then
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
extend(KEYS[1], tonumber(ARGV[2]), now)
return 1
"
    ))
});

/// Consumes a challenge: deletes the field and reports whether it was
/// live. KEYS: dbsc key. ARGV: now ms, field. Returns 1 or 0.
static CONSUME: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r"
local e = redis.call('HGET', KEYS[1], ARGV[2])
if not e then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
if tonumber(e) > tonumber(ARGV[1]) then return 1 end
return 0
",
    )
});

fn field(kind: Secret, digest: &str) -> String {
    format!("{}:{digest}", kind.tag())
}

impl RedisStore {
    /// The Redis key holding a session's DBSC state (binding, challenges,
    /// bound cookies). The handle is the hash tag, so it is one slot.
    pub fn dbsc_key(&self, handle: &SessionHandle) -> String {
        format!("{}d:{{{}}}", self.inner.prefix, handle.as_str())
    }

    async fn dbsc_eval(
        &self,
        script: &Script,
        handle: &SessionHandle,
        args: Vec<String>,
    ) -> Result<i64, StoreError> {
        int(&self.eval(script, self.dbsc_key(handle), args).await?)
    }
}

#[async_trait]
impl DbscStore for RedisStore {
    async fn bind(&self, binding: &DbscBinding, now: Timestamp) -> Result<bool, StoreError> {
        let json = serde_json::to_string(binding)
            .map_err(|e| StoreError::Corrupt(format!("dbsc binding: {e}")))?;
        let args = vec![ms(now), json, ms(binding.expires_at)];
        self.bounded(self.dbsc_eval(&BIND, &binding.handle, args))
            .await
            .map(|n| n == 1)
    }

    async fn load_binding(
        &self,
        handle: &SessionHandle,
        now: Timestamp,
    ) -> Result<Option<DbscBinding>, StoreError> {
        let json: Option<String> = self
            .bounded(async {
                self.inner
                    .client
                    .hget(self.dbsc_key(handle), "b")
                    .await
                    .map_err(map_err)
            })
            .await?;
        let Some(json) = json else { return Ok(None) };
        let binding: DbscBinding = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("dbsc binding: {e}")))?;
        if &binding.handle != handle {
            return Err(StoreError::Corrupt(
                "dbsc binding under another handle".into(),
            ));
        }
        Ok((binding.expires_at > now).then_some(binding))
    }

    async fn put_secret(
        &self,
        handle: &SessionHandle,
        kind: Secret,
        digest: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let args = vec![field(kind, digest), ms(expires_at), PRUNE_ABOVE.to_owned()];
        self.bounded(self.dbsc_eval(&PUT, handle, args)).await?;
        Ok(())
    }

    async fn consume_challenge(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let args = vec![ms(now), field(Secret::Challenge, digest)];
        self.bounded(self.dbsc_eval(&CONSUME, handle, args))
            .await
            .map(|n| n == 1)
    }

    async fn cookie_is_live(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let expiry: Option<Value> = self
            .bounded(async {
                self.inner
                    .client
                    .hget(self.dbsc_key(handle), field(Secret::Cookie, digest))
                    .await
                    .map_err(map_err)
            })
            .await?;
        let expiry = expiry
            .and_then(|v| v.as_string())
            .and_then(|s| s.parse::<i64>().ok());
        Ok(expiry.is_some_and(|e| e > now.as_millis()))
    }

    async fn delete_dbsc(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        self.bounded(async {
            self.inner
                .client
                .del::<i64, _>(self.dbsc_key(handle))
                .await
                .map_err(map_err)
        })
        .await?;
        Ok(())
    }
}
