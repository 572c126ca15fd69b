//! Fixed-window counters shared by every process on this Redis (or Redis
//! Cluster): the server's sign-in limiter keeps its counts here, so N
//! instances give an attacker one budget, not N.
//!
//! Each counter is one key, `{prefix}c:{name}`, changed by one Lua script
//! at a time: the increment and the expiry that starts its window are one
//! atomic step, on one node (a single key has a single slot in a cluster).

use std::time::Duration;

use fred::types::Value;
use fred::types::scripts::Script;
use tessera::error::StoreError;

use crate::{RedisStore, int, unexpected};

/// Adds one; starts the window (the key's expiry) if the key is new or had
/// none. KEYS: counter. ARGV: window in ms. Returns {count, ms left}.
const INCR: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Takes one back; never below zero, and the key goes at zero.
/// KEYS: counter. Returns the new count.
const DECR: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then return redis.call('DECR', KEYS[1]) end
if n == 1 then redis.call('DEL', KEYS[1]) end
return 0
";

impl RedisStore {
    /// The key of counter `name`.
    pub fn counter_key(&self, name: &str) -> String {
        format!("{}c:{name}", self.inner.prefix)
    }

    /// Adds one to counter `name`, starting a `window` if none is running,
    /// and returns the new count and the time left in the window.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis does not answer as expected.
    pub async fn counter_incr(
        &self,
        name: &str,
        window: Duration,
    ) -> Result<(u64, Duration), StoreError> {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let op = async {
            let v = self
                .eval(
                    &Script::from_lua(INCR),
                    self.counter_key(name),
                    vec![ms.to_string()],
                )
                .await?;
            let Value::Array(items) = v else {
                return Err(unexpected("counter"));
            };
            let [count, left] = items.as_slice() else {
                return Err(unexpected("counter"));
            };
            let count = u64::try_from(int(count)?).map_err(|_| unexpected("counter"))?;
            let left = u64::try_from(int(left)?).unwrap_or(0);
            Ok((count, Duration::from_millis(left)))
        };
        self.bounded(op).await
    }

    /// Takes one back from counter `name` (not below zero).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis does not answer as expected.
    pub async fn counter_decr(&self, name: &str) -> Result<(), StoreError> {
        let op = async {
            self.eval(&Script::from_lua(DECR), self.counter_key(name), Vec::new())
                .await
                .map(drop)
        };
        self.bounded(op).await
    }

    /// Deletes counter `name`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis does not answer.
    pub async fn counter_clear(&self, name: &str) -> Result<(), StoreError> {
        let op = async {
            fred::interfaces::KeysInterface::del::<i64, _>(
                &self.inner.client,
                self.counter_key(name),
            )
            .await
            .map(drop)
            .map_err(crate::map_err)
        };
        self.bounded(op).await
    }
}
