//! `impl Store for RedisStore`: the trait, on top of the write path
//! (`pipeline.rs`) and the key layout (`lib.rs`).

use async_trait::async_trait;
use fred::interfaces::{ClientLike, KeysInterface, SortedSetsInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use futures_util::future::join_all;
use tessera::ended::{Ended, Revocation};
use tessera::error::StoreError;
use tessera::policy::SessionCap;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::store::{Capped, CasOutcome, ModifyFn, Patch, PatchOutcome, Store};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

use crate::error::map_err;
use crate::pipeline::Stored;
use crate::{RedisStore, Update, codec, int, ms};

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
                vec![
                    Self::hash_field(&record.hash),
                    ms(record.deadlines.absolute),
                ],
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
                vec![
                    Self::hash_field(&record.hash),
                    ms(record.deadlines.absolute),
                ],
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

    /// The whole read path of a request: one `GET` of the session and,
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
            match self.delete_if(hash, None, None, None).await? {
                Some((handle, user)) => {
                    let fields = Self::hash_fields(hash);
                    if let Err(e) = self.forget(&handle, fields, user.as_deref()).await {
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
            match self.delete_if(hash, None, None, Some(why)).await? {
                Some((handle, user)) => {
                    let fields = Self::hash_fields(hash);
                    if let Err(e) = self.forget(&handle, fields, user.as_deref()).await {
                        tracing::debug!(error = %e, "index cleanup after end failed");
                    }
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
    }

    /// One `GET` of the session key, which holds either the record or the
    /// tombstone (`t<absolute ms>,<reason>`); Redis drops the key at the
    /// session's absolute deadline, and a tombstone read at or after it is
    /// ignored like an expired record.
    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        self.bounded(async {
            match self.session_value(hash).await? {
                Stored::Tombstone(t) => Ok(std::str::from_utf8(&t).ok().and_then(|t| {
                    let (until, reason) = t.split_once(',')?;
                    let until: i64 = until.parse().ok()?;
                    (now.as_millis() < until)
                        .then(|| Ended::from_stored(reason))
                        .flatten()
                })),
                // No tombstone: the record may still be stored, refused by
                // a kill switch (only a refused token pays for this read).
                Stored::Record(value) => self.refused(&codec::decode(hash, &value)?).await,
                Stored::Nothing => Ok(None),
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

    /// One `GET`, then one compare-and-set script per attempt; on a
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

    /// One script: with `base` (the record the request loaded), the
    /// compare-and-set script of `modify_loaded`, which costs Redis less
    /// than half of the patch script; without, the patch script, which
    /// applies the changes to the stored record on the server with no read
    /// before the write and no retry under contention (see the `patch`
    /// module).
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
