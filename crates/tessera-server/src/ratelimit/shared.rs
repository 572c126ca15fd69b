//! Counters in the shared store, so several instances give one budget:
//! PostgreSQL and MySQL (a row per counter, an atomic upsert) or Redis and
//! Redis Cluster (a key per counter, a Lua script; see
//! `tessera_redis::RedisStore::counter_incr`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::error::LimitError;
use crate::db::Db;

/// One in this many increments also deletes rows whose window is over, a
/// bounded batch at a time, so the table does not keep every name ever
/// tried.
const PURGE_EVERY: u8 = 64;
const PURGE_BATCH: i64 = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unavailable(e: impl std::fmt::Display) -> LimitError {
    LimitError::Unavailable(e.to_string())
}

/// Counters in a PostgreSQL or MySQL database.
#[derive(Clone)]
pub(super) struct SqlCounters {
    db: Db,
    window: Duration,
}

impl SqlCounters {
    pub(super) fn new(db: Db, window: Duration) -> Self {
        Self { db, window }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    pub(super) async fn incr(&self, key: &str) -> Result<(u32, Duration), LimitError> {
        let now = now_ms();
        let ends = now.saturating_add(self.window_ms());
        // One statement (PostgreSQL) or one transaction holding the row's
        // lock (MySQL): concurrent increments of a key never lose a count.
        let (hits, window_ends): (i64, i64) = match &self.db {
            Db::Postgres(pool) => {
                let row = sqlx::query(
                    "INSERT INTO tessera_login_counters (counter_key, hits, window_ends)
                     VALUES ($1, 1, $2)
                     ON CONFLICT (counter_key) DO UPDATE SET
                       hits = CASE WHEN tessera_login_counters.window_ends <= $3 THEN 1
                                   ELSE tessera_login_counters.hits + 1 END,
                       window_ends = CASE WHEN tessera_login_counters.window_ends <= $3
                                   THEN EXCLUDED.window_ends
                                   ELSE tessera_login_counters.window_ends END
                     RETURNING hits, window_ends",
                )
                .bind(key)
                .bind(ends)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
                (row.get(0), row.get(1))
            }
            Db::MySql(pool) => {
                let mut tx = pool.begin().await.map_err(unavailable)?;
                // Assignments run left to right: `hits` reads the old
                // `window_ends`, and so does the second IF, which runs
                // before `window_ends` itself changes.
                sqlx::query(
                    "INSERT INTO tessera_login_counters (counter_key, hits, window_ends)
                     VALUES (?, 1, ?)
                     ON DUPLICATE KEY UPDATE
                       hits = IF(window_ends <= ?, 1, hits + 1),
                       window_ends = IF(window_ends <= ?, ?, window_ends)",
                )
                .bind(key)
                .bind(ends)
                .bind(now)
                .bind(now)
                .bind(ends)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                let row = sqlx::query(
                    "SELECT hits, window_ends FROM tessera_login_counters WHERE counter_key = ?",
                )
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                (row.get(0), row.get(1))
            }
            Db::Sqlite(_) => {
                return Err(LimitError::Unavailable(
                    "SQLite keeps limiter counters in the process".into(),
                ));
            }
        };
        self.maybe_purge(now).await;
        let left = u64::try_from(window_ends.saturating_sub(now)).unwrap_or(0);
        Ok((
            u32::try_from(hits).unwrap_or(u32::MAX),
            Duration::from_millis(left),
        ))
    }

    async fn maybe_purge(&self, now: i64) {
        let mut b = [0u8; 1];
        let drawn = getrandom::fill(&mut b).is_ok();
        let [v] = b;
        if !drawn || v % PURGE_EVERY != 0 {
            return;
        }
        let result = match &self.db {
            Db::Postgres(pool) => sqlx::query(
                "DELETE FROM tessera_login_counters WHERE counter_key IN
                   (SELECT counter_key FROM tessera_login_counters WHERE window_ends <= $1 LIMIT $2)",
            )
            .bind(now)
            .bind(PURGE_BATCH)
            .execute(pool)
            .await
            .map(drop),
            Db::MySql(pool) => {
                sqlx::query("DELETE FROM tessera_login_counters WHERE window_ends <= ? LIMIT ?")
                    .bind(now)
                    .bind(PURGE_BATCH)
                    .execute(pool)
                    .await
                    .map(drop)
            }
            Db::Sqlite(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "purging old limiter counters failed");
        }
    }

    pub(super) async fn decr(&self, key: &str) -> Result<(), LimitError> {
        let now = now_ms();
        let sql = self.db.dialect(
            "UPDATE tessera_login_counters SET hits = hits - 1
             WHERE counter_key = ? AND hits > 0 AND window_ends > ?",
        );
        crate::db::on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(key)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
            .map_err(unavailable))
    }

    pub(super) async fn clear(&self, key: &str) -> Result<(), LimitError> {
        let sql = self
            .db
            .dialect("DELETE FROM tessera_login_counters WHERE counter_key = ?");
        crate::db::on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(key)
            .execute(pool)
            .await
            .map(drop)
            .map_err(unavailable))
    }
}

/// Counters in Redis or Redis Cluster.
#[derive(Clone)]
pub(super) struct RedisCounters {
    store: tessera_redis::RedisStore,
    window: Duration,
}

impl RedisCounters {
    pub(super) fn new(store: tessera_redis::RedisStore, window: Duration) -> Self {
        Self { store, window }
    }

    /// Counter names carry their own namespace under the store's prefix.
    fn name(key: &str) -> String {
        format!("login:{key}")
    }

    pub(super) async fn incr(&self, key: &str) -> Result<(u32, Duration), LimitError> {
        let (hits, left) = self
            .store
            .counter_incr(&Self::name(key), self.window)
            .await
            .map_err(unavailable)?;
        Ok((u32::try_from(hits).unwrap_or(u32::MAX), left))
    }

    pub(super) async fn decr(&self, key: &str) -> Result<(), LimitError> {
        self.store
            .counter_decr(&Self::name(key))
            .await
            .map_err(unavailable)
    }

    pub(super) async fn clear(&self, key: &str) -> Result<(), LimitError> {
        self.store
            .counter_clear(&Self::name(key))
            .await
            .map_err(unavailable)
    }
}
