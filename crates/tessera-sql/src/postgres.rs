//! The PostgreSQL backend: for many `tessera` instances on one database.
//!
//! - Compare-and-set is **one statement**
//!   (`UPDATE … WHERE hash = $ AND version = $ AND next_deadline > $`).
//!   Under READ COMMITTED a concurrent writer waits for the row lock and
//!   then re-checks the `WHERE` against the new row version, so exactly one
//!   of two racing writers wins.
//! - [`Store::modify`] locks the row with `SELECT … FOR UPDATE` in a
//!   transaction: concurrent increments queue, none conflicts or is lost.
//! - [`Store::rotate`] re-keys the row with one `UPDATE` instead of a
//!   delete and an insert. A revocation racing with it (by handle or by
//!   user) waits for the row lock and then follows the update to the new
//!   row version, so it deletes the rotated session rather than missing it.
//! - The sweeper deletes a bounded batch per statement and skips rows other
//!   transactions hold (`FOR UPDATE SKIP LOCKED`), so sweepers on several
//!   instances never wait for each other or for requests.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::FromRow;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope};
use tessera::policy::SessionCap;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::store::{Capped, CasOutcome, ModifyFn, Store};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

use crate::error::{bounded, delete_all, retrying, unbounded};
use crate::not_before::{self, NbCols};
use crate::options::SqlOptions;
use crate::refresh_row::{EncodedRefresh, RawRefresh, bind_refresh, diagnose_unused};
use crate::row::{
    Applied, Encoded, RawRecord, apply, bind_all, bind_mutable, limit_to_sql, miss_or_conflict,
    remaining, version_to_sql,
};
use crate::tombstone::{Target, bind_target};

mod sql {
    //! The statements, in one place.

    const COLUMNS: &str = "hash, handle, user_id, data, created_at, last_seen_at, \
        authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, client_ip, \
        user_agent, session_class";
    const SET_MUTABLE: &str = "data = $1, created_at = $2, last_seen_at = $3, \
        authenticated_at = $4, idle_deadline = $5, absolute_deadline = $6, next_deadline = $7, \
        version = $8, csrf_secret = $9, client_ip = $10, user_agent = $11, session_class = $12";

    pub(super) fn select_by_hash() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = $1")
    }
    pub(super) fn select_for_update() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = $1 FOR UPDATE")
    }
    pub(super) fn list_by_user() -> String {
        // `COLLATE "C"`: ties in creation time are ordered by the handle's
        // bytes, as every other store does, whatever the database locale.
        format!(
            "SELECT {COLUMNS} FROM tessera_sessions WHERE user_id = $1 AND next_deadline > $2 \
             ORDER BY created_at, handle COLLATE \"C\""
        )
    }
    pub(super) const NEXT_DEADLINE: &str =
        "SELECT next_deadline FROM tessera_sessions WHERE hash = $1";
    pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
        created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
        next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    pub(super) fn cas_update() -> String {
        format!(
            "UPDATE tessera_sessions SET {SET_MUTABLE} \
             WHERE hash = $13 AND version = $14 AND next_deadline > $15"
        )
    }
    pub(super) fn update_locked() -> String {
        format!("UPDATE tessera_sessions SET {SET_MUTABLE} WHERE hash = $13")
    }
    pub(super) const ROTATE: &str = "UPDATE tessera_sessions SET hash = $1, handle = $2, \
        user_id = $3, data = $4, created_at = $5, last_seen_at = $6, authenticated_at = $7, \
        idle_deadline = $8, absolute_deadline = $9, next_deadline = $10, version = $11, \
        csrf_secret = $12, client_ip = $13, user_agent = $14, session_class = $15 \
        WHERE hash = $16 AND version = $17 AND next_deadline > $18";
    pub(super) const DELETE: &str = "DELETE FROM tessera_sessions WHERE hash = $1";
    /// Serializes the capped creations of one user for the rest of the
    /// transaction (a transaction-level advisory lock on a hash of the
    /// user id; a collision only serializes two users' sign-ins). Row
    /// locks would not do: `SELECT … FOR UPDATE` cannot lock the row a
    /// concurrent transaction is about to insert.
    pub(super) const LOCK_USER: &str =
        "SELECT pg_advisory_xact_lock(hashtextextended('tessera_session_cap:' || $1, 0))";
    /// The user's live sessions, oldest first (the eviction order, as
    /// `list_by_user`).
    pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
        WHERE user_id = $1 AND next_deadline > $2 ORDER BY created_at, handle COLLATE \"C\"";
    /// Ends the evicted sessions the way any revocation does: deleted,
    /// with a tombstone, in one statement.
    pub(super) const EVICT: &str = "WITH gone AS (DELETE FROM tessera_sessions \
        WHERE handle = ANY($2) RETURNING hash, absolute_deadline) \
        INSERT INTO tessera_tombstones (hash, reason, expires_at) \
        SELECT hash, $1, absolute_deadline FROM gone \
        ON CONFLICT (hash) DO UPDATE \
        SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at";
    /// The outer `next_deadline <= $1` re-checks rows a concurrent writer
    /// changed between the sub-select and the delete.
    /// An idle-expired session (its absolute deadline still ahead) leaves
    /// an `expired_idle` tombstone until that deadline, in the same
    /// statement as its deletion (`tessera::ended`). Answers how many
    /// sessions were deleted.
    pub(super) const PURGE: &str = "WITH gone AS (DELETE FROM tessera_sessions WHERE hash IN \
        (SELECT hash FROM tessera_sessions WHERE next_deadline <= $1 \
         ORDER BY next_deadline LIMIT $2 FOR UPDATE SKIP LOCKED) \
        AND next_deadline <= $1 RETURNING hash, absolute_deadline), \
        buried AS (INSERT INTO tessera_tombstones (hash, reason, expires_at) \
        SELECT hash, 'expired_idle', absolute_deadline FROM gone WHERE absolute_deadline > $1 \
        ON CONFLICT (hash) DO NOTHING) \
        SELECT count(*) FROM gone";
    pub(super) fn select_by_handle() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE handle = $1")
    }

    pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
        user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub(super) const REFRESH_SELECT: &str = "SELECT hash, family, user_id, issued_at, \
        expires_at, used_at, child_hash, sealed_child FROM tessera_refresh_tokens \
        WHERE hash = $1";
    /// The compare-and-set of a rotation. A concurrent use of the same
    /// parent waits for this row lock and then re-checks the `WHERE` on the
    /// committed row, so exactly one of them matches.
    pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
        SET used_at = $1, child_hash = $2, sealed_child = $3 \
        WHERE hash = $4 AND used_at IS NULL AND expires_at > $5";
    pub(super) const REFRESH_DELETE_FAMILY: &str =
        "DELETE FROM tessera_refresh_tokens WHERE family = $1";
    /// Raises a not-before: never backward, and the cause changes only
    /// with the time (an equal time keeps the first cause).
    pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
        (scope, user_id, at, reason) VALUES ($1, $2, $3, $4) \
        ON CONFLICT (scope, user_id) DO UPDATE SET at = excluded.at, reason = excluded.reason \
        WHERE excluded.at > tessera_not_before.at";
    pub(super) const NOT_BEFORE_SELECT: &str =
        "SELECT at, reason FROM tessera_not_before WHERE scope = $1 AND user_id = $2";
    pub(super) const TOMBSTONE: &str =
        "SELECT reason FROM tessera_tombstones WHERE hash = $1 AND expires_at > $2";
    /// Bounded like `PURGE`, through the `expires_at` index.
    pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones WHERE hash IN \
        (SELECT hash FROM tessera_tombstones WHERE expires_at <= $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
    /// Bounded like `PURGE`; skips rows a rotation holds.
    pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens WHERE hash IN \
        (SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
}

/// A [`Store`] on PostgreSQL (11 or later). See the crate README
/// ("Consistency") for its consistency.
///
/// ```no_run
/// # async fn demo() -> Result<(), tessera::StoreError> {
/// let store = tessera_sql::PgStore::connect("postgres://tessera@db.internal/tessera").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) timeout: Duration,
}

fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl PgStore {
    /// Deletes the target's sessions and records why, in **one statement**
    /// (the `DELETE … RETURNING` feeds the `INSERT`), so each deleted row,
    /// whichever key a racing rotation gave it, gets its tombstone. Returns
    /// how many sessions were deleted.
    async fn bury(&self, target: &Target<'_>, why: Ended) -> Result<u64, StoreError> {
        let cond = target.condition(Some(2));
        let statement = format!(
            "WITH gone AS (DELETE FROM tessera_sessions WHERE {cond} \
             RETURNING hash, absolute_deadline) \
             INSERT INTO tessera_tombstones (hash, reason, expires_at) \
             SELECT hash, $1, absolute_deadline FROM gone \
             ON CONFLICT (hash) DO UPDATE \
             SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at"
        );
        let reason = why.to_stored();
        bounded(self.timeout, async {
            let query = bind_target!(sqlx::query(&statement).bind(&reason), target);
            Ok(query.execute(&self.pool).await?.rows_affected())
        })
        .await
    }

    /// Connects with default [`SqlOptions`] and runs the migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`PgStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`PgStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let timeout_ms = options.statement_timeout.as_millis().max(1).to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(crate::error::map)?
            // The server abandons a statement the client has given up on.
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(crate::error::map)?;
        let store = Self {
            pool,
            timeout: options.statement_timeout,
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Runs the embedded migrations (idempotent; concurrent instances
    /// serialise on an advisory lock).
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator()
            .run(&self.pool)
            .await
            .map_err(StoreError::backend)
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PgStore {
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
                Some(row) => Some((
                    RawRecord::from_row(&row)?.decode()?,
                    NbCols::from_row(&row)?,
                )),
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
                .bind(user)
                .fetch_optional(&self.pool)
                .await?)
        })
        .await?;
        match row {
            Some((at, reason)) => not_before::stored(Some(at), Some(&reason)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let e = Encoded::new(record)?;
        bounded(self.timeout, async {
            bind_all!(sqlx::query(sql::INSERT), &e)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// One transaction that first takes the user's advisory lock, so
    /// racing creations for one user run one after the other; each
    /// statement after the lock sees every earlier creation committed
    /// (READ COMMITTED takes a new snapshot per statement).
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
            let mut tx = self.pool.begin().await?;
            sqlx::query(sql::LOCK_USER)
                .bind(user)
                .execute(&mut *tx)
                .await?;
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
            if !evict.is_empty() {
                sqlx::query(sql::EVICT)
                    .bind(&reason)
                    .bind(&evict)
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
            let mut conn = self.pool.acquire().await?;
            let done = bind_mutable!(sqlx::query(&statement), &e)
                .bind(e.hash)
                .bind(expected)
                .bind(now.as_millis())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 1 {
                return Ok(CasOutcome::Applied);
            }
            // Nothing was written either way; this only names the reason.
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
        let old = old.as_bytes().as_slice();
        bounded(self.timeout, async {
            let mut conn = self.pool.acquire().await?;
            let done = bind_all!(sqlx::query(sql::ROTATE), &e)
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
                .execute(&self.pool)
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
                .fetch_optional(&self.pool)
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
        // The upsert is atomic (ON CONFLICT takes the row lock); the read
        // after it sees the value in force, ours or a later one.
        bounded(self.timeout, async {
            sqlx::query(sql::NOT_BEFORE_RAISE)
                .bind(scope)
                .bind(user)
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
            // Sessions first, then refresh tokens, `limit` rows in all.
            let sessions: i64 = sqlx::query_scalar(sql::PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(limit))
                .fetch_one(&self.pool)
                .await?;
            let sessions = u64::try_from(sessions).unwrap_or(0);
            let left = remaining(limit, sessions);
            if left == 0 {
                return Ok(sessions);
            }
            let tokens = sqlx::query(sql::REFRESH_PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(left))
                .execute(&self.pool)
                .await?
                .rows_affected();
            let left = remaining(left, tokens);
            if left == 0 {
                return Ok(sessions.saturating_add(tokens));
            }
            let tombstones = sqlx::query(sql::TOMBSTONE_PURGE)
                .bind(now.as_millis())
                .bind(limit_to_sql(left))
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(sessions.saturating_add(tokens).saturating_add(tombstones))
        })
        .await
    }

    /// Two statements in one transaction. A rotation racing it is an
    /// `UPDATE` of the row, which the `DELETE` waits for and then follows
    /// to the re-keyed row, so no rotated session survives. Not bounded by
    /// the operation timeout (see the trait).
    async fn delete_all(&self) -> Result<u64, StoreError> {
        unbounded(delete_all!(self.pool)).await
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
                let raw: Option<RawRecord> = sqlx::query_as(select)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
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

/// Refresh-token families in `tessera_refresh_tokens` (see
/// [`tessera::refresh`]). The rotation is one READ COMMITTED transaction
/// whose conditional `UPDATE` serialises concurrent uses of a parent on its
/// row lock.
#[async_trait]
impl RefreshStore for PgStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let e = EncodedRefresh::new(record);
        bounded(self.timeout, async {
            bind_refresh!(sqlx::query(sql::REFRESH_INSERT), &e)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let raw = bounded(self.timeout, async {
            let raw: Option<RawRefresh> = sqlx::query_as(sql::REFRESH_SELECT)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?;
            Ok(raw)
        })
        .await?;
        raw.map(RawRefresh::decode).transpose()
    }

    /// Conditional `UPDATE` of the parent; if it matched, `INSERT` the
    /// child and commit; otherwise read the parent (a fresh snapshot under
    /// READ COMMITTED, so a concurrent winner's commit is visible) to say
    /// why, and roll back.
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let e = EncodedRefresh::new(child);
        let (e, pool) = (&e, &self.pool);
        let parent = parent.as_bytes().as_slice();
        let diagnosed = bounded(
            self.timeout,
            retrying!(async {
                let mut tx = pool.begin().await?;
                let marked = sqlx::query(sql::REFRESH_USE)
                    .bind(now.as_millis())
                    .bind(e.hash)
                    .bind(sealed_child.as_slice())
                    .bind(parent)
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await?;
                if marked.rows_affected() == 1 {
                    // A duplicate child fails here; dropping `tx` rolls the
                    // mark back, so nothing changed.
                    bind_refresh!(sqlx::query(sql::REFRESH_INSERT), e)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(None);
                }
                let raw: Option<RawRefresh> = sqlx::query_as(sql::REFRESH_SELECT)
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.rollback().await?;
                Ok(Some(raw))
            }),
        )
        .await?;
        match diagnosed {
            None => Ok(RefreshUse::Rotated),
            Some(raw) => diagnose_unused(raw.map(RawRefresh::decode).transpose()?, now),
        }
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        bounded(self.timeout, async {
            let done = sqlx::query(sql::REFRESH_DELETE_FAMILY)
                .bind(family.as_str())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let statement = not_before::checked(&sql::select_by_handle());
        let row = bounded(self.timeout, async {
            let row = sqlx::query(&statement)
                .bind(handle.as_str())
                .fetch_optional(&self.pool)
                .await?;
            Ok(match row {
                Some(row) => Some((
                    RawRecord::from_row(&row)?.decode()?,
                    NbCols::from_row(&row)?,
                )),
                None => None,
            })
        })
        .await?;
        match row {
            Some((record, nb)) => nb.usable(record),
            None => Ok(None),
        }
    }
}
