//! Small versioned documents shared by every process on this Redis (or
//! Redis Cluster): the server keeps its sealed signing-key set here, so
//! instances on different machines sign with the same keys and publish the
//! same JWKS without a shared disk.
//!
//! Each document is one hash, `{prefix}doc:{name}`, with a version counter
//! `v` and the text `body`. Reading the version is one `HGET`; a change is
//! a compare-and-set on the version in one script on one key (one slot in
//! a cluster), so two processes changing the same document at once cannot
//! both win: the loser re-reads and retries.

use std::sync::LazyLock;

use fred::interfaces::HashesInterface;
use fred::types::scripts::Script;
use tessera::error::StoreError;

use crate::error::map_err;
use crate::{RedisStore, int, unexpected};

/// Writes `ARGV[2]` as the body if the version is still `ARGV[1]` (0 for a
/// document that does not exist). KEYS: the document. Returns the new
/// version, or 0 when the version had moved on.
const REPLACE: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 'body', ARGV[2])
return v + 1
";

static REPLACE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(REPLACE));

impl RedisStore {
    /// The key of document `name`.
    pub fn document_key(&self, name: &str) -> String {
        format!("{}doc:{name}", self.inner.prefix)
    }

    /// The version of document `name`: 0 when it does not exist. One `HGET`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis does not answer, or answers something
    /// that is not a version.
    pub async fn document_version(&self, name: &str) -> Result<u64, StoreError> {
        let key = self.document_key(name);
        let op = async {
            let v: Option<String> = Box::pin(self.inner.client.hget(key, "v"))
                .await
                .map_err(map_err)?;
            v.map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| StoreError::Corrupt(format!("document version {v:?}")))
            })
        };
        self.bounded(op).await
    }

    /// Document `name` and its version, `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::document_version`].
    pub async fn document_get(&self, name: &str) -> Result<Option<(u64, String)>, StoreError> {
        let key = self.document_key(name);
        let op = async {
            let (v, body): (Option<String>, Option<String>) =
                Box::pin(self.inner.client.hmget(key, vec!["v", "body"]))
                    .await
                    .map_err(map_err)?;
            match (v, body) {
                (Some(v), Some(body)) => {
                    let v = v
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("document version {v:?}")))?;
                    Ok(Some((v, body)))
                }
                (None, None) => Ok(None),
                _ => Err(StoreError::Corrupt(
                    "document without version or body".into(),
                )),
            }
        };
        self.bounded(op).await
    }

    /// Replaces document `name` with `body` if its version is still
    /// `expected` (0: create it if it does not exist). Returns the new
    /// version, or `None` when another process changed it first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis does not answer as expected.
    pub async fn document_replace(
        &self,
        name: &str,
        expected: u64,
        body: &str,
    ) -> Result<Option<u64>, StoreError> {
        let op = async {
            let v = self
                .eval(
                    &REPLACE_SCRIPT,
                    self.document_key(name),
                    vec![expected.to_string(), body.to_owned()],
                )
                .await?;
            let n = u64::try_from(int(&v)?).map_err(|_| unexpected("document"))?;
            Ok((n != 0).then_some(n))
        };
        self.bounded(op).await
    }
}
