//! [`Store`] for [`SqliteStore`]: sessions, tombstones, kill switches, caps
//! and the purge of the sweeper.

use async_trait::async_trait;
use sqlx::FromRow;
use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope};
use tessera::policy::SessionCap;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::store::{Capped, CasOutcome, ModifyFn, Store};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

use super::{SqliteStore, sql};
use crate::error::{bounded, delete_all, unbounded};
use crate::not_before::{self, NbCols};
use crate::row::{
    Applied, Encoded, RawRecord, apply, bind_all, bind_mutable, limit_to_sql, miss_or_conflict,
    remaining, version_to_sql,
};
use crate::tombstone::{Target, bind_target};

impl SqliteStore {
    /// The record under `hash` and the not-befores that apply to it, in
    /// one statement.
    async fn load_checked(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(SessionRecord, NbCols)>, StoreError> {
        let statement = not_before::checked(sql::SELECT_BY_HASH);
        bounded(self.timeout, async {
            let row = sqlx::query(&statement)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&self.reader)
                .await?;
            Ok(match row {
                Some(row) => Some((
                    RawRecord::from_row(&row)?.decode()?,
                    NbCols::from_row(&row)?,
                )),
                None => None,
            })
        })
        .await
    }

    /// Deletes the target's sessions and records why, in one transaction
    /// on the single writer (no other write interleaves). Returns how many
    /// sessions were deleted.
    async fn bury(&self, target: &Target<'_>, why: Ended) -> Result<u64, StoreError> {
        let cond = target.condition(None);
        let record = format!(
            "INSERT OR REPLACE INTO tessera_tombstones (hash, reason, expires_at) \
             SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE {cond}"
        );
        let delete = format!("DELETE FROM tessera_sessions WHERE {cond}");
        let reason = why.to_stored();
        bounded(self.timeout, async {
            let mut tx = self.writer.begin().await?;
            bind_target!(sqlx::query(&record).bind(&reason), target)
                .execute(&mut *tx)
                .await?;
            let n = bind_target!(sqlx::query(&delete), target)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let e = Encoded::new(record)?;
        bounded(self.timeout, async {
            bind_all!(sqlx::query(sql::INSERT), &e)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    /// One `BEGIN IMMEDIATE` transaction on the writer: it holds the
    /// database's write lock from the start, so the count, the evictions
    /// and the insert of racing creations (also from other processes) are
    /// serialized.
    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: SessionCap,
        now: Timestamp,
    ) -> Result<Capped, StoreError> {
        let Some(user) = record.user_id.as_deref() else {
            self.create(record).await?;
            return Ok(Capped::Created {
                evicted: Vec::new(),
            });
        };
        let e = Encoded::new(record)?;
        let reason = Ended::Revoked(Revocation::SessionLimit).to_stored();
        let evicted: Option<Vec<String>> = bounded(self.timeout, async {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let live: Vec<String> = sqlx::query_scalar(sql::LIVE_HANDLES_BY_USER)
                .bind(user)
                .bind(now.as_millis())
                .fetch_all(&mut *tx)
                .await?;
            let Some(excess) = cap.excess(live.len()) else {
                tx.rollback().await?;
                return Ok(None);
            };
            let evict: Vec<String> = live.into_iter().take(excess).collect();
            for handle in &evict {
                sqlx::query(sql::TOMBSTONE_BY_HANDLE)
                    .bind(&reason)
                    .bind(handle)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::DELETE_HANDLE)
                    .bind(handle)
                    .execute(&mut *tx)
                    .await?;
            }
            bind_all!(sqlx::query(sql::INSERT), &e)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(evict))
        })
        .await?;
        crate::row::capped_outcome(evicted)
    }

    /// One statement: the row and the not-befores that apply to it.
    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        match self.load_checked(hash).await? {
            Some((record, nb)) => nb.usable(record),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let e = Encoded::new(record)?;
        let expected = version_to_sql(expected_version)?;
        let statement = sql::cas_update();
        bounded(self.timeout, async {
            // Both statements on the one writer connection: no other write
            // can slip between the miss and its diagnosis.
            let mut conn = self.writer.acquire().await?;
            let done = bind_mutable!(sqlx::query(&statement), &e)
                .bind(e.hash)
                .bind(expected)
                .bind(now.as_millis())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 1 {
                return Ok(CasOutcome::Applied);
            }
            let next: Option<i64> = sqlx::query_scalar(sql::NEXT_DEADLINE)
                .bind(e.hash)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(miss_or_conflict(next, now))
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
        let e = Encoded::new(new)?;
        let expected = version_to_sql(expected_version)?;
        let statement = sql::rotate();
        let old = old.as_bytes().as_slice();
        bounded(self.timeout, async {
            let mut conn = self.writer.acquire().await?;
            // One UPDATE re-keys the row in place: there is no instant at
            // which both or neither key exists, and a concurrent revocation
            // by handle or user hits the row whichever key it has.
            let done = bind_all!(sqlx::query(&statement), &e)
                .bind(old)
                .bind(expected)
                .bind(now.as_millis())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 1 {
                return Ok(CasOutcome::Applied);
            }
            let next: Option<i64> = sqlx::query_scalar(sql::NEXT_DEADLINE)
                .bind(old)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(miss_or_conflict(next, now))
        })
        .await
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let done = sqlx::query(sql::DELETE)
                .bind(hash.as_bytes().as_slice())
                .execute(&self.writer)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        Ok(self.bury(&Target::Hash(hash), why).await? > 0)
    }

    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        let reason: Option<String> = bounded(self.timeout, async {
            Ok(sqlx::query_scalar(sql::TOMBSTONE)
                .bind(hash.as_bytes().as_slice())
                .bind(now.as_millis())
                .fetch_optional(&self.reader)
                .await?)
        })
        .await?;
        if let Some(ended) = reason.as_deref().and_then(Ended::from_stored) {
            return Ok(Some(ended));
        }
        // No tombstone: the record may still be stored, refused by a
        // not-before (only a refused token pays for this second read).
        match self.load_checked(hash).await? {
            Some((record, nb)) => nb.ended(&record),
            None => Ok(None),
        }
    }

    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let (scope, user) = not_before::key(scope);
        let stored = bounded(self.timeout, async {
            // One write transaction: the conditional upsert, then the value
            // in force (SQLite has one writer, so nothing comes between).
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(sql::NOT_BEFORE_RAISE)
                .bind(scope)
                .bind(user)
                .bind(to.at.as_millis())
                .bind(to.why.as_code())
                .execute(&mut *tx)
                .await?;
            let row: (i64, String) = sqlx::query_as(sql::NOT_BEFORE_SELECT)
                .bind(scope)
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
        .await?;
        not_before::stored(Some(stored.0), Some(&stored.1))?
            .ok_or_else(|| StoreError::Corrupt("tessera_not_before row vanished".into()))
    }

    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        let (scope, user) = not_before::key(scope);
        let row: Option<(i64, String)> = bounded(self.timeout, async {
            Ok(sqlx::query_as(sql::NOT_BEFORE_SELECT)
                .bind(scope)
                .bind(user)
                .fetch_optional(&self.reader)
                .await?)
        })
        .await?;
        match row {
            Some((at, reason)) => not_before::stored(Some(at), Some(&reason)),
            None => Ok(None),
        }
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        let target = Target::Handle(handle, owner);
        Ok(self.bury(&target, Ended::Revoked(why)).await? > 0)
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let statement = not_before::checked(sql::LIST_BY_USER);
        let rows = bounded(self.timeout, async {
            let rows = sqlx::query(&statement)
                .bind(user_id)
                .bind(now.as_millis())
                .fetch_all(&self.reader)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((RawRecord::from_row(row)?.decode()?, NbCols::from_row(row)?));
            }
            Ok(out)
        })
        .await?;
        not_before::usable_rows(rows)
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        self.bury(&Target::User(user_id, except), Ended::Revoked(why))
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        bounded(self.timeout, async {
            // Sessions first, then refresh tokens, `limit` rows in all
            // (short statements, never one long one). The tombstones of
            // idle expiries and the deletion take the same rows: one
            // transaction on the single writer, nothing interleaves.
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(sql::PURGE_TOMBSTONES)
                .bind(now.as_millis())
                .bind(limit_to_sql(limit))
                .execute(&mut *tx)
                .await?;
            let sessions = sqlx::query(sql::PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(limit))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            let left = remaining(limit, sessions);
            if left == 0 {
                return Ok(sessions);
            }
            let tokens = sqlx::query(sql::REFRESH_PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(left))
                .execute(&self.writer)
                .await?
                .rows_affected();
            let left = remaining(left, tokens);
            if left == 0 {
                return Ok(sessions.saturating_add(tokens));
            }
            let tombstones = sqlx::query(sql::TOMBSTONE_PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(left))
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(sessions.saturating_add(tokens).saturating_add(tombstones))
        })
        .await
    }

    /// Two statements in one transaction on the single writer: no other
    /// write interleaves. Not bounded by the operation timeout (see the
    /// trait); the writer's busy timeout still applies.
    async fn delete_all(&self) -> Result<u64, StoreError> {
        unbounded(delete_all!(self.writer)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.timeout, async {
            sqlx::query("SELECT 1").execute(&self.reader).await?;
            Ok(())
        })
        .await
    }

    /// One `BEGIN IMMEDIATE` transaction: read, apply `f`, write. `f` runs
    /// exactly once, and concurrent calls queue instead of conflicting.
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let statement = sql::update_locked();
        bounded(self.timeout, async {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let raw: Option<RawRecord> = sqlx::query_as(sql::SELECT_BY_HASH)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = apply(raw, hash, now, f)?;
            if let Applied::Write(record) = &outcome {
                let e = Encoded::new(record)?;
                bind_mutable!(sqlx::query(&statement), &e)
                    .bind(e.hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(outcome.into_record())
        })
        .await
    }
}
