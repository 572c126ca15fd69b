//! The SQLite backend: the embedded default.
//!
//! - **WAL mode**, so readers never wait for the writer and the writer never
//!   waits for readers.
//! - **One writer connection** in its own pool, plus a pool of readers.
//!   SQLite admits one writer at a time whatever we do; queueing writes in
//!   the pool (fair, bounded by `acquire_timeout`) instead of in SQLite's
//!   busy handler (sleep-and-poll) keeps latency flat under contention.
//! - Multi-statement writes use **`BEGIN IMMEDIATE`**, which takes the write
//!   lock up front. A deferred transaction that reads and then writes can
//!   fail with `SQLITE_BUSY` ("database is locked") without ever calling the
//!   busy handler, if another writer committed in between; an immediate one
//!   cannot. `busy_timeout` covers writers in *other* processes (the CLI).
//! - `synchronous = FULL`: a commit is on disk before it is acknowledged, so
//!   a sign-out or revocation survives a power cut (NORMAL could roll it
//!   back and resurrect the session).
//! - `sqlite::memory:` works too (one connection, never recycled, since
//!   every connection to `:memory:` is a different database).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::FromRow;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope};
use tessera::policy::SessionCap;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::store::{Capped, CasOutcome, ModifyFn, Store};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

use crate::error::{bounded, delete_all, unbounded};
use crate::not_before::{self, NbCols};
use crate::options::SqlOptions;
use crate::refresh_row::{EncodedRefresh, RawRefresh, bind_refresh, diagnose_unused};
use crate::row::{
    Applied, Encoded, RawRecord, apply, bind_all, bind_mutable, limit_to_sql, miss_or_conflict,
    remaining, version_to_sql,
};
use crate::tombstone::{Target, bind_target};

mod sql {
    //! The statements, in one place so tests can `EXPLAIN` the very text
    //! the store runs.

    pub(super) const SELECT_BY_HASH: &str = "SELECT hash, handle, user_id, data, created_at, \
        last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
        client_ip, user_agent, session_class FROM tessera_sessions WHERE hash = ?";
    pub(super) const NEXT_DEADLINE: &str =
        "SELECT next_deadline FROM tessera_sessions WHERE hash = ?";
    pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
        created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
        next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const SET_MUTABLE: &str = "data = ?, created_at = ?, last_seen_at = ?, \
        authenticated_at = ?, idle_deadline = ?, absolute_deadline = ?, next_deadline = ?, \
        version = ?, csrf_secret = ?, client_ip = ?, user_agent = ?, session_class = ?";
    pub(super) fn cas_update() -> String {
        format!(
            "UPDATE tessera_sessions SET {SET_MUTABLE} \
             WHERE hash = ? AND version = ? AND next_deadline > ?"
        )
    }
    pub(super) fn update_locked() -> String {
        format!("UPDATE tessera_sessions SET {SET_MUTABLE} WHERE hash = ?")
    }
    pub(super) fn rotate() -> String {
        format!(
            "UPDATE tessera_sessions SET hash = ?, handle = ?, user_id = ?, {SET_MUTABLE} \
             WHERE hash = ? AND version = ? AND next_deadline > ?"
        )
    }
    pub(super) const DELETE: &str = "DELETE FROM tessera_sessions WHERE hash = ?";
    /// The user's live sessions, oldest first (the eviction order).
    pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
        WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle";
    /// Tombstone, then delete, of one session by handle: an eviction by
    /// the session cap ends a session the way any revocation does.
    pub(super) const TOMBSTONE_BY_HANDLE: &str = "INSERT OR REPLACE INTO tessera_tombstones \
        (hash, reason, expires_at) \
        SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE handle = ?";
    pub(super) const DELETE_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
    /// Same condition as the deletes of `bury` (index plan tests).
    #[cfg(test)]
    pub(super) const DELETE_BY_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
    pub(super) const LIST_BY_USER: &str = "SELECT hash, handle, user_id, data, created_at, \
        last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
        client_ip, user_agent, session_class FROM tessera_sessions \
        WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle";
    /// Same condition as the deletes of `bury` (index plan tests).
    #[cfg(test)]
    pub(super) const DELETE_BY_USER_EXCEPT: &str =
        "DELETE FROM tessera_sessions WHERE user_id = ? AND handle <> ?";
    /// Bounded: at most `LIMIT` rows per statement, oldest deadline first,
    /// found through the `next_deadline` index, so the write lock is held
    /// briefly whatever the backlog.
    pub(super) const PURGE: &str = "DELETE FROM tessera_sessions WHERE hash IN \
        (SELECT hash FROM tessera_sessions WHERE next_deadline <= ?1 \
         ORDER BY next_deadline LIMIT ?2)";
    /// Before `PURGE`, in its transaction and on the same rows: an
    /// idle-expired session (its absolute deadline still ahead) leaves an
    /// `expired_idle` tombstone until that deadline (`tessera::ended`).
    pub(super) const PURGE_TOMBSTONES: &str = "INSERT OR IGNORE INTO tessera_tombstones \
        (hash, reason, expires_at) \
        SELECT hash, 'expired_idle', absolute_deadline FROM tessera_sessions WHERE hash IN \
        (SELECT hash FROM tessera_sessions WHERE next_deadline <= ?1 \
         ORDER BY next_deadline LIMIT ?2) AND absolute_deadline > ?1";
    pub(super) const SELECT_BY_HANDLE: &str = "SELECT hash, handle, user_id, data, created_at, \
        last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
        client_ip, user_agent, session_class FROM tessera_sessions WHERE handle = ?";

    pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
        user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    pub(super) const REFRESH_SELECT: &str = "SELECT hash, family, user_id, issued_at, \
        expires_at, used_at, child_hash, sealed_child FROM tessera_refresh_tokens WHERE hash = ?";
    /// The compare-and-set of a rotation: only an unused parent that is
    /// live at `now` is marked.
    pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
        SET used_at = ?, child_hash = ?, sealed_child = ? \
        WHERE hash = ? AND used_at IS NULL AND expires_at > ?";
    pub(super) const REFRESH_DELETE_FAMILY: &str =
        "DELETE FROM tessera_refresh_tokens WHERE family = ?";
    /// Raises a not-before: never backward, and the cause changes only
    /// with the time (an equal time keeps the first cause).
    pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
        (scope, user_id, at, reason) VALUES (?, ?, ?, ?) \
        ON CONFLICT (scope, user_id) DO UPDATE SET at = excluded.at, reason = excluded.reason \
        WHERE excluded.at > tessera_not_before.at";
    pub(super) const NOT_BEFORE_SELECT: &str =
        "SELECT at, reason FROM tessera_not_before WHERE scope = ? AND user_id = ?";
    pub(super) const TOMBSTONE: &str =
        "SELECT reason FROM tessera_tombstones WHERE hash = ? AND expires_at > ?";
    /// Bounded like `PURGE`, through the `expires_at` index.
    pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones WHERE hash IN \
        (SELECT hash FROM tessera_tombstones WHERE expires_at <= ? \
         ORDER BY expires_at LIMIT ?)";
    /// Bounded like `PURGE`, through the `expires_at` index.
    pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens WHERE hash IN \
        (SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= ? \
         ORDER BY expires_at LIMIT ?)";
}

/// A [`Store`] on an SQLite file.
///
/// Usually reached through [`SqlStore::connect`](crate::SqlStore::connect)
/// with a `sqlite://` URL; see the crate README ("Consistency") for how it avoids
/// "database is locked".
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera::Store;
/// use tessera_sql::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.ping().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) timeout: Duration,
}

/// The embedded SQLite migrations (`migrations/sqlite/`).
fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/sqlite");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl SqliteStore {
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

    /// Opens (creating if missing) the database at `url` with default
    /// [`SqlOptions`], and runs the migrations.
    ///
    /// `url` is `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`,
    /// or `sqlite::memory:`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the file cannot be opened; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`SqliteStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`SqliteStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(crate::error::map)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            // A local file does not drop connections; skip the round trip.
            .test_before_acquire(false);
        if in_memory {
            // The database lives and dies with its one connection.
            writer = writer
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let writer = writer
            .connect_with(connect.clone())
            .await
            .map_err(crate::error::map)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .min_connections(options.min_connections)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .connect_lazy_with(connect)
        };
        let store = Self {
            writer,
            reader,
            timeout: options.statement_timeout,
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Runs the embedded migrations (idempotent).
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator()
            .run(&self.writer)
            .await
            .map_err(StoreError::backend)
    }

    /// Closes every connection; the last one to close checkpoints the WAL
    /// into the main file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The pool that serves writes (one connection), for callers that need
    /// raw access such as backups.
    pub fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }
}

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

/// Refresh-token families in `tessera_refresh_tokens` (see
/// [`tessera::refresh`]). Every write goes through the single writer
/// connection; the rotation is one `BEGIN IMMEDIATE` transaction.
#[async_trait]
impl RefreshStore for SqliteStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let e = EncodedRefresh::new(record);
        bounded(self.timeout, async {
            bind_refresh!(sqlx::query(sql::REFRESH_INSERT), &e)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let raw = bounded(self.timeout, async {
            let raw: Option<RawRefresh> = sqlx::query_as(sql::REFRESH_SELECT)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&self.reader)
                .await?;
            Ok(raw)
        })
        .await?;
        raw.map(RawRefresh::decode).transpose()
    }

    /// `BEGIN IMMEDIATE`; conditional `UPDATE` of the parent; if it
    /// matched, `INSERT` the child and commit, otherwise read the parent
    /// to say why and roll back. The write lock is held from the first
    /// statement, so concurrent uses of one parent queue and exactly one
    /// finds it unused.
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let e = EncodedRefresh::new(child);
        let parent = parent.as_bytes().as_slice();
        let diagnosed = bounded(self.timeout, async {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
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
                bind_refresh!(sqlx::query(sql::REFRESH_INSERT), &e)
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
        })
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
                .execute(&self.writer)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let statement = not_before::checked(sql::SELECT_BY_HANDLE);
        let row = bounded(self.timeout, async {
            let row = sqlx::query(&statement)
                .bind(handle.as_str())
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
        .await?;
        match row {
            Some((record, nb)) => nb.usable(record),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `statement` as SQLite's `EXPLAIN QUERY PLAN` details.
    async fn plan(store: &SqliteStore, statement: &str, binds: usize) -> Vec<String> {
        let text = format!("EXPLAIN QUERY PLAN {statement}");
        let mut conn = store.reader.acquire().await.unwrap();
        let mut q = sqlx::query(&text);
        for _ in 0..binds {
            q = q.bind(0_i64);
        }
        q.fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect()
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        (dir, SqliteStore::connect(&url).await.unwrap())
    }

    fn assert_indexed(plan: &[String], index: &str) {
        assert!(
            plan.iter()
                .any(|d| d.starts_with("SEARCH") && d.contains(index)),
            "expected a search on {index}: {plan:?}"
        );
        // A full table scan reads every session: never acceptable here.
        assert!(
            !plan
                .iter()
                .any(|d| d.starts_with("SCAN tessera_sessions") && !d.contains("INDEX")),
            "full scan: {plan:?}"
        );
    }

    #[tokio::test]
    async fn sweeper_query_searches_the_deadline_index() {
        let (_dir, store) = store().await;
        let plan = plan(&store, sql::PURGE, 2).await;
        assert_indexed(&plan, "tessera_sessions_next_deadline");
        // The outer delete finds each row by its primary key.
        assert!(plan.iter().any(|d| d.contains("PRIMARY KEY")), "{plan:?}");
        // The tombstones of idle expiries read the same rows the same way.
        let buried = super::tests::plan(&store, sql::PURGE_TOMBSTONES, 2).await;
        assert_indexed(&buried, "tessera_sessions_next_deadline");
        assert!(
            buried.iter().any(|d| d.contains("PRIMARY KEY")),
            "{buried:?}"
        );
    }

    #[tokio::test]
    async fn user_listing_searches_the_user_index() {
        let (_dir, store) = store().await;
        assert_indexed(
            &plan(&store, sql::LIST_BY_USER, 2).await,
            "tessera_sessions_user",
        );
        assert_indexed(
            &plan(&store, sql::DELETE_BY_USER_EXCEPT, 2).await,
            "tessera_sessions_user",
        );
    }

    #[tokio::test]
    async fn key_and_handle_lookups_use_their_indexes() {
        let (_dir, store) = store().await;
        assert_indexed(&plan(&store, sql::SELECT_BY_HASH, 1).await, "PRIMARY KEY");
        assert_indexed(&plan(&store, &sql::cas_update(), 14).await, "PRIMARY KEY");
        assert_indexed(
            &plan(&store, sql::DELETE_BY_HANDLE, 1).await,
            "sqlite_autoindex_tessera_sessions",
        );
    }

    #[tokio::test]
    async fn refresh_statements_use_their_indexes() {
        let (_dir, store) = store().await;
        let purge = plan(&store, sql::REFRESH_PURGE, 2).await;
        assert!(
            purge
                .iter()
                .any(|d| d.starts_with("SEARCH") && d.contains("tessera_refresh_tokens_expires_at")),
            "{purge:?}"
        );
        let family = plan(&store, sql::REFRESH_DELETE_FAMILY, 1).await;
        assert!(
            family
                .iter()
                .any(|d| d.starts_with("SEARCH") && d.contains("tessera_refresh_tokens_family")),
            "{family:?}"
        );
        for (statement, binds) in [(sql::REFRESH_USE, 5), (sql::REFRESH_SELECT, 1)] {
            let p = plan(&store, statement, binds).await;
            assert!(
                p.iter()
                    .any(|d| d.starts_with("SEARCH") && d.contains("PRIMARY KEY")),
                "{statement}: {p:?}"
            );
            assert!(!p.iter().any(|d| d.starts_with("SCAN")), "{p:?}");
        }
        assert_indexed(
            &plan(&store, sql::SELECT_BY_HANDLE, 1).await,
            "sqlite_autoindex_tessera_sessions",
        );
    }
}
