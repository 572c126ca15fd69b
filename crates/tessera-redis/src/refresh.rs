//! Refresh-token families ([`RefreshStore`], RFC 9700 §4.14.2) on Redis
//! and Redis Cluster.
//!
//! # Layout
//!
//! - `<prefix>f:{<handle>}` — the **family hash**: one Redis hash per
//!   session handle holding every refresh token of the family: field
//!   `<token hash hex>` is the record as JSON (never marked used), and
//!   field `u:<token hash hex>` is set once that token is exchanged
//!   (`<at ms>:<child hash hex>:<sealed child hex>`). It expires at the
//!   latest `expires_at` of its tokens (the session's absolute deadline).
//! - `<prefix>r:{<token hash hex>}` — the **pointer**: a string holding the
//!   family handle, expiring at the token's `expires_at`. A presented token
//!   names only its hash, so this is how its family is found.
//!
//! Parent and child of a rotation are fields of **one key**, so the
//! rotation's compare-and-set (parent unused and unexpired → mark it, store
//! the child) is one single-key script: atomic on a standalone Redis and on
//! a cluster alike. Only the pointers live in other slots, and they are
//! ordered around the script so that a reader never finds a child that was
//! not committed:
//!
//! 1. `GET` the parent's pointer (no pointer: `Unknown`).
//! 2. `SET NX PXAT` the child's pointer (exists: `Duplicate`).
//! 3. The rotation script on the family hash — the linearization point.
//! 4. If the script did not rotate, delete the child's pointer again.
//!
//! A pointer without its family field (a loser's pointer whose deletion
//! failed, or one whose script reply was lost) loads as `None` and expires
//! at its token's deadline; it can never make a token work.

use async_trait::async_trait;
use fred::interfaces::{HashesInterface, KeysInterface};
use fred::types::{Expiration, SetOptions, Value};
use futures_util::StreamExt;
use futures_util::stream;
use tessera::error::StoreError;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse, UsedRefresh};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

use crate::error::map_err;
use crate::{RedisStore, array, int, ms, unexpected};

/// Pointer deletions after a family is dropped, in flight at once.
const CLEANUP_CONCURRENCY: usize = 64;

impl RedisStore {
    /// The Redis key of the pointer from a refresh token's hash to its
    /// family (for operators and tests: its `PEXPIRETIME` is the token's
    /// `expires_at`).
    ///
    /// ```no_run
    /// # async fn demo(store: tessera_redis::RedisStore, hash: tessera::token::TokenHash) {
    /// assert!(store.refresh_key(&hash).ends_with(&format!("r:{{{}}}", hash.to_hex())));
    /// # }
    /// ```
    pub fn refresh_key(&self, hash: &TokenHash) -> String {
        format!("{}r:{{{}}}", self.inner.prefix, hash.to_hex())
    }

    /// The Redis key of a refresh family: the hash holding every refresh
    /// token of the session with this handle.
    pub fn refresh_family_key(&self, family: &SessionHandle) -> String {
        format!("{}f:{{{}}}", self.inner.prefix, family.as_str())
    }

    /// The family a refresh token's pointer names, if the pointer exists.
    async fn family_of(&self, hash: &TokenHash) -> Result<Option<SessionHandle>, StoreError> {
        let family: Option<String> = self
            .inner
            .client
            .get(self.refresh_key(hash))
            .await
            .map_err(map_err)?;
        family
            .map(|f| {
                SessionHandle::parse(&f)
                    .ok_or_else(|| StoreError::Corrupt("refresh pointer: malformed family".into()))
            })
            .transpose()
    }

    /// Creates a token's pointer unless one exists; returns whether it did.
    async fn claim_pointer(&self, record: &RefreshRecord) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .inner
            .client
            .set(
                self.refresh_key(&record.hash),
                record.family.as_str(),
                Some(Expiration::PXAT(record.expires_at.as_millis())),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(map_err)?;
        Ok(set.is_some())
    }

    /// Best-effort removal of a pointer whose token was not stored. A
    /// leftover pointer is harmless (it leads to no record) and expires.
    async fn drop_pointer(&self, hash: &TokenHash) {
        if let Err(e) = self
            .inner
            .client
            .del::<i64, _>(self.refresh_key(hash))
            .await
        {
            tracing::debug!(
                token = %hash.fingerprint(),
                error = %e,
                "could not remove a refresh pointer; it leads nowhere and expires with its token"
            );
        }
    }

    async fn insert_refresh_inner(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        if !self.claim_pointer(record).await? {
            return Err(StoreError::Duplicate);
        }
        let stored = self
            .eval(
                &self.inner.scripts.refresh_insert,
                self.refresh_family_key(&record.family),
                vec![
                    record.hash.to_hex(),
                    stored_json(record)?,
                    record.used.as_ref().map(used_value).unwrap_or_default(),
                    ms(record.expires_at),
                ],
            )
            .await
            .and_then(|v| int(&v));
        match stored {
            Ok(1) => Ok(()),
            other => {
                self.drop_pointer(&record.hash).await;
                match other {
                    Ok(0) => Err(StoreError::Duplicate),
                    Ok(_) => Err(unexpected("refresh insert")),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn load_refresh_inner(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let Some(family) = self.family_of(hash).await? else {
            return Ok(None);
        };
        let hex = hash.to_hex();
        let fields = array(
            self.inner
                .client
                .hmget::<Value, _, _>(
                    self.refresh_family_key(&family),
                    vec![hex.clone(), format!("u:{hex}")],
                )
                .await
                .map_err(map_err)?,
        )?;
        let mut fields = fields.into_iter().map(|v| v.as_string());
        let (Some(json), used) = (fields.next().flatten(), fields.next().flatten()) else {
            // A pointer whose record is gone (family revoked, or a
            // rotation that lost): no such token.
            return Ok(None);
        };
        let mut record: RefreshRecord =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if record.hash != *hash || record.family != family {
            return Err(StoreError::Corrupt(
                "refresh record does not match its key".into(),
            ));
        }
        record.used = used.as_deref().map(parse_used).transpose()?;
        Ok(Some(record))
    }

    async fn use_refresh_inner(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let Some(family) = self.family_of(parent).await? else {
            return Ok(RefreshUse::Unknown);
        };
        if child.family != family {
            // The script would store the child in the wrong family.
            return Err(StoreError::backend(
                "a refresh token's child must belong to its parent's family",
            ));
        }
        // The child's pointer first: once the script has committed the
        // child, it must be findable. Before that, the pointer leads to no
        // record, so it working "early" is impossible.
        if !self.claim_pointer(child).await? {
            return Err(StoreError::Duplicate);
        }
        let used = UsedRefresh {
            at: now,
            child: child.hash,
            sealed_child: *sealed_child,
        };
        // An error here is ambiguous (the script may have run): keep the
        // child's pointer, so a completed rotation stays complete. If it
        // did not run, the pointer leads nowhere and expires.
        let reply = array(
            self.eval(
                &self.inner.scripts.refresh_use,
                self.refresh_family_key(&family),
                vec![
                    parent.to_hex(),
                    ms(now),
                    used_value(&used),
                    child.hash.to_hex(),
                    stored_json(child)?,
                    ms(child.expires_at),
                ],
            )
            .await?,
        )?;
        let outcome = match reply.first().map(int).transpose()? {
            Some(4) => return Ok(RefreshUse::Rotated),
            Some(0) => Ok(RefreshUse::Unknown),
            Some(1) => reply
                .get(1)
                .and_then(Value::as_string)
                .ok_or_else(|| unexpected("refresh use"))
                .and_then(|u| parse_used(&u))
                .map(RefreshUse::AlreadyUsed),
            Some(2) => Err(StoreError::Duplicate),
            Some(3) => Err(StoreError::Corrupt(
                "refresh record does not decode in the rotation script".into(),
            )),
            _ => Err(unexpected("refresh use")),
        };
        // Not rotated: the child was never stored, so neither may its
        // pointer outlive this call.
        self.drop_pointer(&child.hash).await;
        outcome
    }

    /// Best-effort deletion of the pointers of a dropped family, bounded by
    /// the operation timeout. Leftovers lead to no record and expire.
    async fn drop_pointers(&self, hexes: Vec<String>) {
        let prefix = &self.inner.prefix;
        let deletes = stream::iter(hexes)
            .map(|hex| {
                let key = format!("{prefix}r:{{{hex}}}");
                async move { self.inner.client.del::<i64, _>(key).await }
            })
            .buffer_unordered(CLEANUP_CONCURRENCY)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "could not remove a refresh pointer");
                }
            });
        let limit = self.inner.options.operation_timeout();
        if tokio::time::timeout(limit, deletes).await.is_err() {
            tracing::debug!("refresh pointer cleanup timed out; the rest expire by themselves");
        }
    }
}

/// Refresh-token families on Redis: all tokens of a family are fields of
/// one hash key `<prefix>f:{<handle>}`, found through a pointer key
/// `<prefix>r:{<token hash hex>}`, so a rotation is one single-key script
/// on a standalone Redis and on a cluster alike. The crate README explains
/// the order of operations and the consistency this gives.
#[async_trait]
impl RefreshStore for RedisStore {
    /// 2 round trips: `SET NX` of the pointer, then one script on the
    /// family hash.
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        self.bounded(self.insert_refresh_inner(record)).await
    }

    /// 2 round trips: `GET` of the pointer, `HMGET` on the family hash.
    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        self.bounded(self.load_refresh_inner(hash)).await
    }

    /// 3 round trips (4 when the parent was not rotatable): `GET` of the
    /// parent's pointer, `SET NX` of the child's, the single-key rotation
    /// script on the family hash, and on a loss `DEL` of the child's
    /// pointer.
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        self.bounded(self.use_refresh_inner(parent, child, sealed_child, now))
            .await
    }

    /// One script deletes the family hash (every token of the family, in
    /// one atomic step), then the pointers are removed best-effort.
    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        let hexes: Vec<String> = self
            .bounded(async {
                let listed = array(
                    self.eval(
                        &self.inner.scripts.refresh_drop,
                        self.refresh_family_key(family),
                        Vec::new(),
                    )
                    .await?,
                )?;
                Ok(listed.iter().filter_map(Value::as_string).collect())
            })
            .await?;
        let n = u64::try_from(hexes.len()).unwrap_or(u64::MAX);
        self.drop_pointers(hexes).await;
        Ok(n)
    }

    /// 2 round trips (3 during a rotation): `HKEYS` of the handle record,
    /// then the registered session keys. During a rotation both the old
    /// and the new record may exist; the newer version wins.
    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.bounded(async {
            let records = self.records_of_handle(handle.as_str()).await?;
            let latest = records
                .into_iter()
                .filter(|r| r.handle == *handle)
                .max_by_key(|r| r.version);
            match latest {
                // The kill switches apply here as they do to `load`.
                Some(record) => {
                    let global = self.global_not_before().await?;
                    self.usable(record, global).await
                }
                None => Ok(None),
            }
        })
        .await
    }
}

/// A record as stored in its family field: never marked used there (the
/// use lives in the `u:` field, written by the rotation script).
fn stored_json(record: &RefreshRecord) -> Result<String, StoreError> {
    let mut stored = record.clone();
    stored.used = None;
    serde_json::to_string(&stored).map_err(StoreError::backend)
}

/// `<at ms>:<child hash hex>:<sealed child hex>`.
fn used_value(used: &UsedRefresh) -> String {
    let sealed: String = used
        .sealed_child
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}:{}:{sealed}", used.at.as_millis(), used.child.to_hex())
}

fn parse_used(value: &str) -> Result<UsedRefresh, StoreError> {
    let corrupt = || StoreError::Corrupt("refresh use record is malformed".into());
    let mut parts = value.split(':');
    let (Some(at), Some(child), Some(sealed), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt());
    };
    let at = at.parse::<i64>().map_err(|_| corrupt())?;
    let child = TokenHash::from_hex(child).ok_or_else(corrupt)?;
    // 32 bytes of hex, like a token hash.
    let sealed = TokenHash::from_hex(sealed).ok_or_else(corrupt)?;
    Ok(UsedRefresh {
        at: Timestamp::from_millis(at),
        child,
        sealed_child: *sealed.as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::token::RefreshToken;

    #[test]
    fn used_values_round_trip() {
        let parent = RefreshToken::generate().unwrap();
        let child = RefreshToken::generate().unwrap();
        let used = UsedRefresh {
            at: Timestamp::from_millis(1_700_000_000_123),
            child: child.hash(),
            sealed_child: parent.seal_child(&child),
        };
        assert_eq!(parse_used(&used_value(&used)).unwrap(), used);
    }

    #[test]
    fn malformed_used_values_are_corrupt() {
        let hex = "ab".repeat(32);
        for bad in [
            String::new(),
            "1:2".to_owned(),
            format!("x:{hex}:{hex}"),
            format!("1:{hex}:{hex}:1"),
            format!("1:{hex}:{}", "ab".repeat(31)),
            format!("1:zz:{hex}"),
        ] {
            assert!(
                matches!(parse_used(&bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
