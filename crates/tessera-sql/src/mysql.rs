//! The MySQL / MariaDB backend (InnoDB).
//!
//! - Compare-and-set is **one statement**
//!   (`UPDATE … WHERE hash = ? AND version = ? AND next_deadline > ?`);
//!   InnoDB's `UPDATE` is a locking read of the latest committed row, so
//!   exactly one of two racing writers wins. sqlx asks the server for
//!   "found rows", so the affected-row count means "matched".
//! - [`Store::modify`] locks the row with `SELECT … FOR UPDATE` in a
//!   transaction; [`Store::rotate`] re-keys the row with one `UPDATE`, so a
//!   racing revocation by handle or user (locking reads too) finds it.
//! - A transaction InnoDB picks as a deadlock victim is re-run (it was
//!   rolled back whole).
//! - `handle` and `user_id` are `VARBINARY`: the default collations would
//!   compare `'Alice '` equal to `'alice'` and hand one user another's
//!   sessions.
//! - The sweeper deletes a bounded batch per statement
//!   (`DELETE … ORDER BY next_deadline LIMIT ?`) through the deadline index.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::FromRow;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
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
    const SET_MUTABLE: &str = "data = ?, created_at = ?, last_seen_at = ?, \
        authenticated_at = ?, idle_deadline = ?, absolute_deadline = ?, next_deadline = ?, \
        version = ?, csrf_secret = ?, client_ip = ?, user_agent = ?, session_class = ?";

    pub(super) fn select_by_hash() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = ?")
    }
    pub(super) fn select_for_update() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = ? FOR UPDATE")
    }
    pub(super) fn list_by_user() -> String {
        format!(
            "SELECT {COLUMNS} FROM tessera_sessions WHERE user_id = ? AND next_deadline > ? \
             ORDER BY created_at, handle"
        )
    }
    pub(super) const NEXT_DEADLINE: &str =
        "SELECT next_deadline FROM tessera_sessions WHERE hash = ?";
    /// Takes the user's cap lock row for the rest of the transaction
    /// (see the migration `tessera_session_cap_locks`).
    pub(super) const LOCK_USER: &str = "INSERT INTO tessera_session_cap_locks (user_id) \
        VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id";
    /// The user's live sessions, oldest first (the eviction order, as
    /// `list_by_user`); a locking read, so it sees the latest commits.
    pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
        WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle FOR UPDATE";
    /// Tombstone, then delete, of one evicted session: it ends the way any
    /// revocation does.
    pub(super) const TOMBSTONE_BY_HANDLE: &str = "INSERT INTO tessera_tombstones \
        (hash, reason, expires_at) \
        SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE handle = ? \
        ON DUPLICATE KEY UPDATE reason = VALUES(reason), expires_at = VALUES(expires_at)";
    pub(super) const DELETE_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
    pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
        created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
        next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
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
    /// The rows one purge batch takes, locked until its commit.
    pub(super) const PURGE_LOCK: &str = "SELECT hash, absolute_deadline FROM tessera_sessions \
        WHERE next_deadline <= ? ORDER BY next_deadline LIMIT ? FOR UPDATE";
    pub(super) fn select_by_handle() -> String {
        format!("SELECT {COLUMNS} FROM tessera_sessions WHERE handle = ?")
    }

    pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
        user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    const REFRESH_COLUMNS: &str = "hash, family, user_id, issued_at, expires_at, used_at, \
        child_hash, sealed_child";
    pub(super) fn refresh_select() -> String {
        format!("SELECT {REFRESH_COLUMNS} FROM tessera_refresh_tokens WHERE hash = ?")
    }
    /// A locking read: it sees the latest committed row, not the
    /// transaction's REPEATABLE READ snapshot.
    pub(super) fn refresh_select_locked() -> String {
        format!("SELECT {REFRESH_COLUMNS} FROM tessera_refresh_tokens WHERE hash = ? FOR UPDATE")
    }
    /// The compare-and-set of a rotation: InnoDB's `UPDATE` reads the
    /// latest committed row under its lock, so exactly one of two
    /// concurrent uses of a parent matches.
    pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
        SET used_at = ?, child_hash = ?, sealed_child = ? \
        WHERE hash = ? AND used_at IS NULL AND expires_at > ?";
    pub(super) const REFRESH_DELETE_FAMILY: &str =
        "DELETE FROM tessera_refresh_tokens WHERE family = ?";
    /// Raises a not-before: never backward, and the cause changes only
    /// with the time (an equal time keeps the first cause). The
    /// assignments run left to right: `reason` compares with the old `at`.
    pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
        (scope, user_id, at, reason) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
        reason = IF(VALUES(at) > at, VALUES(reason), reason), at = GREATEST(at, VALUES(at))";
    pub(super) const NOT_BEFORE_SELECT: &str =
        "SELECT at, reason FROM tessera_not_before WHERE scope = ? AND user_id = ?";
    pub(super) const TOMBSTONE: &str =
        "SELECT reason FROM tessera_tombstones WHERE hash = ? AND expires_at > ?";
    /// Bounded like `PURGE`, through the `expires_at` index.
    pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones \
        WHERE expires_at <= ? ORDER BY expires_at LIMIT ?";
    pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens \
        WHERE expires_at <= ? ORDER BY expires_at LIMIT ?";
}

/// A refresh row as MySQL returns it: the binary columns come back as bytes.
#[derive(sqlx::FromRow)]
struct MySqlRawRefresh {
    hash: Vec<u8>,
    family: Vec<u8>,
    user_id: Option<Vec<u8>>,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    child_hash: Option<Vec<u8>>,
    sealed_child: Option<Vec<u8>>,
}

impl MySqlRawRefresh {
    fn decode(self) -> Result<RefreshRecord, StoreError> {
        let text = |bytes: Vec<u8>, what: &str| {
            String::from_utf8(bytes).map_err(|_| {
                StoreError::Corrupt(format!("tessera_refresh_tokens row: {what} is not UTF-8"))
            })
        };
        RawRefresh {
            hash: self.hash,
            family: text(self.family, "family")?,
            user_id: self.user_id.map(|u| text(u, "user_id")).transpose()?,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
            child_hash: self.child_hash,
            sealed_child: self.sealed_child,
        }
        .decode()
    }
}

/// A row as MySQL returns it: the binary columns come back as bytes.
#[derive(sqlx::FromRow)]
struct MySqlRaw {
    hash: Vec<u8>,
    handle: Vec<u8>,
    user_id: Option<Vec<u8>>,
    data: String,
    created_at: i64,
    last_seen_at: i64,
    authenticated_at: Option<i64>,
    idle_deadline: i64,
    absolute_deadline: i64,
    version: i64,
    csrf_secret: Vec<u8>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    session_class: String,
}

impl MySqlRaw {
    fn into_raw(self) -> Result<RawRecord, StoreError> {
        let text = |bytes: Vec<u8>, what: &str| {
            String::from_utf8(bytes).map_err(|_| {
                StoreError::Corrupt(format!("tessera_sessions row: {what} is not UTF-8"))
            })
        };
        Ok(RawRecord {
            hash: self.hash,
            handle: text(self.handle, "handle")?,
            user_id: self.user_id.map(|u| text(u, "user_id")).transpose()?,
            data: self.data,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            authenticated_at: self.authenticated_at,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            version: self.version,
            csrf_secret: self.csrf_secret,
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            session_class: self.session_class,
        })
    }

    fn decode(self) -> Result<SessionRecord, StoreError> {
        self.into_raw()?.decode()
    }
}

/// A [`Store`] on MySQL 8 or MariaDB 10.6+ (InnoDB). See the
/// crate README ("Consistency") for its consistency.
///
/// ```no_run
/// # async fn demo() -> Result<(), tessera::StoreError> {
/// let store = tessera_sql::MySqlStore::connect("mysql://tessera@db.internal/tessera").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pub(crate) pool: MySqlPool,
    pub(crate) timeout: Duration,
}

/// The `GET_LOCK` name held while migrating.
const MIGRATION_LOCK: &str = "tessera_sql_migrations";

/// How long an instance waits for another one's migrations, in seconds.
const MIGRATION_LOCK_WAIT_SECS: i64 = 120;

fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("migrations/mysql");
    // The application may keep its own sqlx migrations in the same database.
    m.set_ignore_missing(true);
    m
}

impl MySqlStore {
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

    /// Connects with default [`SqlOptions`] and runs the migrations.
    /// `mysql://` and `mariadb://` URLs are accepted alike.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; backend
    /// errors for a bad URL or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &SqlOptions::default()).await
    }

    /// Like [`MySqlStore::connect`], with explicit options.
    ///
    /// # Errors
    ///
    /// As for [`MySqlStore::connect`].
    pub async fn connect_with(url: &str, options: &SqlOptions) -> Result<Self, StoreError> {
        let connect = MySqlConnectOptions::from_str(url).map_err(crate::error::map)?;
        let pool = MySqlPoolOptions::new()
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

    /// Runs the embedded migrations (idempotent), under a database-wide
    /// lock so that instances starting together migrate one at a time.
    ///
    /// sqlx's migrator takes `GET_LOCK(…, -1)` and ignores the answer, and
    /// MariaDB does not wait on a negative timeout: two instances would run
    /// the same migration at once and the second would find it "partially
    /// applied". So the run holds a lock of its own, with a real timeout,
    /// on the connection it migrates through.
    ///
    /// # Errors
    ///
    /// Backend errors if a migration fails or the lock is not granted
    /// within two minutes.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(crate::error::map)?;
        let granted: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(MIGRATION_LOCK)
            .bind(MIGRATION_LOCK_WAIT_SECS)
            .fetch_one(&mut *conn)
            .await
            .map_err(crate::error::map)?;
        if granted != Some(1) {
            return Err(StoreError::backend(
                "another instance held the migration lock too long",
            ));
        }
        let result = migrator()
            .run(&mut *conn)
            .await
            .map_err(StoreError::backend);
        // Also released when the connection closes, should this fail.
        sqlx::query("DO RELEASE_LOCK(?)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(crate::error::map)?;
        result
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

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

/// Refresh-token families in `tessera_refresh_tokens` (see
/// [`tessera::refresh`]). The rotation is one InnoDB transaction whose
/// conditional `UPDATE` serialises concurrent uses of a parent on its row
/// lock; a deadlock victim is re-run whole.
#[async_trait]
impl RefreshStore for MySqlStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let e = EncodedRefresh::new(record);
        let (e, pool) = (&e, &self.pool);
        bounded(
            self.timeout,
            retrying!(async {
                bind_refresh!(sqlx::query(sql::REFRESH_INSERT), e)
                    .execute(pool)
                    .await?;
                Ok(())
            }),
        )
        .await
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let statement = sql::refresh_select();
        let raw = bounded(self.timeout, async {
            let raw: Option<MySqlRawRefresh> = sqlx::query_as(&statement)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?;
            Ok(raw)
        })
        .await?;
        raw.map(MySqlRawRefresh::decode).transpose()
    }

    /// Conditional `UPDATE` of the parent; if it matched, `INSERT` the
    /// child and commit; otherwise a locking read of the parent says why,
    /// and the transaction rolls back.
    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let e = EncodedRefresh::new(child);
        let select = sql::refresh_select_locked();
        let (e, pool, select) = (&e, &self.pool, select.as_str());
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
                let raw: Option<MySqlRawRefresh> = sqlx::query_as(select)
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
            Some(raw) => diagnose_unused(raw.map(MySqlRawRefresh::decode).transpose()?, now),
        }
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        bounded(
            self.timeout,
            retrying!(async {
                let done = sqlx::query(sql::REFRESH_DELETE_FAMILY)
                    .bind(family.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }),
        )
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
                Some(row) => Some((MySqlRaw::from_row(&row)?.decode()?, NbCols::from_row(&row)?)),
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
