//! [`Store`] for [`MySqlStore`]: sessions, tombstones, kill switches, caps
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

use super::rows::MySqlRaw;
use super::{MySqlStore, sql};
use crate::error::{bounded, delete_all, retrying, unbounded};
use crate::not_before::{self, NbCols};
use crate::row::{
    Applied, Encoded, apply, bind_all, bind_mutable, limit_to_sql, miss_or_conflict, remaining,
    version_to_sql,
};
use crate::tombstone::{Target, bind_target};

impl MySqlStore {
    /// The record under `hash` and the not-befores that apply to it, in
    /// one statement.
    async fn load_checked(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(SessionRecord, NbCols)>, StoreError> {
        let statement = not_before::checked(&sql::select_by_hash());
        bounded(self.timeout, async {
            let row = sqlx::query(&statement)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?;
            Ok(match row {
                Some(row) => Some((MySqlRaw::from_row(&row)?.decode()?, NbCols::from_row(&row)?)),
                None => None,
            })
        })
        .await
    }

    async fn not_before_of(
        &self,
        scope: &str,
        user: &str,
    ) -> Result<Option<NotBefore>, StoreError> {
        let row: Option<(i64, String)> = bounded(self.timeout, async {
            Ok(sqlx::query_as(sql::NOT_BEFORE_SELECT)
                .bind(scope)
                .bind(user.as_bytes())
                .fetch_optional(&self.pool)
                .await?)
        })
        .await?;
        match row {
            Some((at, reason)) => not_before::stored(Some(at), Some(&reason)),
            None => Ok(None),
        }
    }

    /// Deletes the target's sessions and records why, in one transaction
    /// (retried on a deadlock): the rows are locked first (`FOR UPDATE`),
    /// so a racing rotation cannot re-key one between the two statements.
    /// Returns how many sessions were deleted.
    async fn bury(&self, target: &Target<'_>, why: Ended) -> Result<u64, StoreError> {
        let cond = target.condition(None);
        let lock = format!("SELECT hash FROM tessera_sessions WHERE {cond} FOR UPDATE");
        let record = format!(
            "INSERT INTO tessera_tombstones (hash, reason, expires_at) \
             SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE {cond} \
             ON DUPLICATE KEY UPDATE reason = VALUES(reason), expires_at = VALUES(expires_at)"
        );
        let delete = format!("DELETE FROM tessera_sessions WHERE {cond}");
        let reason = why.to_stored();
        bounded(
            self.timeout,
            retrying!(async {
                let mut tx = self.pool.begin().await?;
                bind_target!(sqlx::query(&lock), target)
                    .execute(&mut *tx)
                    .await?;
                bind_target!(sqlx::query(&record).bind(&reason), target)
                    .execute(&mut *tx)
                    .await?;
                let n = bind_target!(sqlx::query(&delete), target)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n)
            }),
        )
        .await
    }
}

#[async_trait]
impl Store for MySqlStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let e = Encoded::new(record)?;
        let pool = &self.pool;
        bounded(
            self.timeout,
            retrying!(async {
                bind_all!(sqlx::query(sql::INSERT), &e)
                    .execute(pool)
                    .await?;
                Ok(())
            }),
        )
        .await
    }

    /// One transaction that first takes the user's row in
    /// `tessera_session_cap_locks`, so racing creations for one user run
    /// one after the other; the count is a locking read, which sees every
    /// earlier creation committed. Retried whole after a deadlock.
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
        let pool = &self.pool;
        let evicted: Option<Vec<Vec<u8>>> = bounded(
            self.timeout,
            retrying!(async {
                let mut tx = pool.begin().await?;
                sqlx::query(sql::LOCK_USER)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                let live: Vec<Vec<u8>> = sqlx::query_scalar(sql::LIVE_HANDLES_BY_USER)
                    .bind(user)
                    .bind(now.as_millis())
                    .fetch_all(&mut *tx)
                    .await?;
                let Some(excess) = cap.excess(live.len()) else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let evict: Vec<Vec<u8>> = live.into_iter().take(excess).collect();
                for handle in &evict {
                    sqlx::query(sql::TOMBSTONE_BY_HANDLE)
                        .bind(&reason)
                        .bind(handle.as_slice())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(sql::DELETE_HANDLE)
                        .bind(handle.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                bind_all!(sqlx::query(sql::INSERT), &e)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(evict))
            }),
        )
        .await?;
        let evicted = evicted
            .map(|v| {
                v.into_iter()
                    .map(|h| {
                        String::from_utf8(h)
                            .map_err(|_| StoreError::Corrupt("session handle is not UTF-8".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
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
        let (pool, e, statement) = (&self.pool, &e, statement.as_str());
        bounded(
            self.timeout,
            retrying!(async {
                let mut conn = pool.acquire().await?;
                let done = bind_mutable!(sqlx::query(statement), e)
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
            }),
        )
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
        let (pool, e, statement) = (&self.pool, &e, statement.as_str());
        let old = old.as_bytes().as_slice();
        bounded(
            self.timeout,
            retrying!(async {
                let mut conn = pool.acquire().await?;
                let done = bind_all!(sqlx::query(statement), e)
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
            }),
        )
        .await
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let n = bounded(
            self.timeout,
            retrying!(async {
                let done = sqlx::query(sql::DELETE)
                    .bind(hash.as_bytes().as_slice())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }),
        )
        .await?;
        Ok(n > 0)
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        Ok(self.bury(&Target::Hash(hash), why).await? > 0)
    }

    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        let reason: Option<Vec<u8>> = bounded(self.timeout, async {
            Ok(sqlx::query_scalar(sql::TOMBSTONE)
                .bind(hash.as_bytes().as_slice())
                .bind(now.as_millis())
                .fetch_optional(&self.pool)
                .await?)
        })
        .await?;
        let tombstone = reason
            .as_deref()
            .and_then(|r| std::str::from_utf8(r).ok())
            .and_then(Ended::from_stored);
        if tombstone.is_some() {
            return Ok(tombstone);
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
        // The upsert is atomic (it holds the row lock); the read after it
        // sees the value in force, ours or a later one.
        bounded(self.timeout, async {
            sqlx::query(sql::NOT_BEFORE_RAISE)
                .bind(scope)
                .bind(user.as_bytes())
                .bind(to.at.as_millis())
                .bind(to.why.as_code())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await?;
        self.not_before_of(scope, user)
            .await?
            .ok_or_else(|| StoreError::Corrupt("tessera_not_before row vanished".into()))
    }

    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        let (scope, user) = not_before::key(scope);
        self.not_before_of(scope, user).await
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
        let statement = not_before::checked(&sql::list_by_user());
        let rows = bounded(self.timeout, async {
            let rows = sqlx::query(&statement)
                .bind(user_id)
                .bind(now.as_millis())
                .fetch_all(&self.pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((MySqlRaw::from_row(row)?.decode()?, NbCols::from_row(row)?));
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
        // One transaction: lock the batch, leave an `expired_idle`
        // tombstone for each idle-expired session whose absolute deadline
        // is still ahead (kept until that deadline; `tessera::ended`), and
        // delete the batch. A rotation racing it waits on the row lock and
        // then finds no row.
        let sessions = bounded(
            self.timeout,
            retrying!(async {
                let mut tx = self.pool.begin().await?;
                let batch: Vec<(Vec<u8>, i64)> = sqlx::query_as(sql::PURGE_LOCK)
                    .bind(now.as_millis())
                    .bind(limit_to_sql(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                if batch.is_empty() {
                    tx.commit().await?;
                    return Ok(0);
                }
                let idle: Vec<&(Vec<u8>, i64)> = batch
                    .iter()
                    .filter(|(_, absolute)| *absolute > now.as_millis())
                    .collect();
                if !idle.is_empty() {
                    let mut bury = sqlx::QueryBuilder::new(
                        "INSERT INTO tessera_tombstones (hash, reason, expires_at) ",
                    );
                    bury.push_values(idle, |mut row, (hash, absolute)| {
                        row.push_bind(hash.as_slice())
                            .push_bind("expired_idle")
                            .push_bind(*absolute);
                    });
                    bury.push(" ON DUPLICATE KEY UPDATE hash = hash");
                    bury.build().execute(&mut *tx).await?;
                }
                let mut delete =
                    sqlx::QueryBuilder::new("DELETE FROM tessera_sessions WHERE hash IN (");
                let mut list = delete.separated(", ");
                for (hash, _) in &batch {
                    list.push_bind(hash.as_slice());
                }
                delete.push(")");
                let done = delete.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }),
        )
        .await?;
        // Then refresh tokens, with what is left of the shared limit.
        let left = remaining(limit, sessions);
        if left == 0 {
            return Ok(sessions);
        }
        let tokens = bounded(
            self.timeout,
            retrying!(async {
                let done = sqlx::query(sql::REFRESH_PURGE)
                    .bind(now.as_millis())
                    .bind(limit_to_sql(left))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }),
        )
        .await?;
        let left = remaining(left, tokens);
        if left == 0 {
            return Ok(sessions.saturating_add(tokens));
        }
        let tombstones = bounded(
            self.timeout,
            retrying!(async {
                let done = sqlx::query(sql::TOMBSTONE_PURGE)
                    .bind(now.as_millis())
                    .bind(limit_to_sql(left))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }),
        )
        .await?;
        Ok(sessions.saturating_add(tokens).saturating_add(tombstones))
    }

    /// Two statements in one transaction, retried on a deadlock. A
    /// rotation racing it holds the row lock, which the `DELETE` waits for,
    /// so no rotated session survives. Not bounded by the operation timeout
    /// (see the trait).
    async fn delete_all(&self) -> Result<u64, StoreError> {
        unbounded(retrying!(delete_all!(self.pool))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.timeout, async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// `SELECT … FOR UPDATE`, apply `f`, `UPDATE`, in one transaction:
    /// concurrent calls queue on the row lock instead of conflicting.
    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let select = sql::select_for_update();
        let update = sql::update_locked();
        let (select, update) = (select.as_str(), update.as_str());
        let pool = &self.pool;
        bounded(
            self.timeout,
            retrying!(async {
                let mut tx = pool.begin().await?;
                let raw: Option<MySqlRaw> = sqlx::query_as(select)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
                let raw = raw.map(MySqlRaw::into_raw).transpose()?;
                let outcome = apply(raw, hash, now, f)?;
                if let Applied::Write(record) = &outcome {
                    let e = Encoded::new(record)?;
                    bind_mutable!(sqlx::query(update), &e)
                        .bind(e.hash)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(outcome.into_record())
            }),
        )
        .await
    }
}
