//! [`DbscStore`] on SQL: `tessera_dbsc_bindings` and `tessera_dbsc_secrets`
//! (migration `20250601000007_tessera_dbsc.sql` of each dialect).
//!
//! Every operation is one statement, so no transaction is needed:
//!
//! - binding once: delete the handle's *expired* binding, then an insert
//!   that does nothing on a key conflict; the primary key lets exactly one
//!   of racing inserts in, on any instance.
//! - single-use challenges: one conditional `DELETE`; of concurrent
//!   consumers exactly one sees one affected row.

use async_trait::async_trait;
use tessera::StoreError;
use tessera::dbsc::{DbscBinding, DbscStore, PublicJwk, Secret};
use tessera::record::SessionHandle;
use tessera::time::Timestamp;

use crate::error::{OpError, bounded};
use crate::store::SqlStore;

/// A binding row as selected.
type RawBinding = (String, String, String, i64, i64);

fn decode(handle: &SessionHandle, raw: RawBinding) -> Result<DbscBinding, StoreError> {
    let (session_id, thumbprint, jwk, bound_at, expires_at) = raw;
    let jwk: PublicJwk = serde_json::from_str(&jwk)
        .map_err(|e| StoreError::Corrupt(format!("dbsc binding jwk: {e}")))?;
    Ok(DbscBinding {
        handle: handle.clone(),
        session_id,
        thumbprint,
        jwk,
        bound_at: Timestamp::from_millis(bound_at),
        expires_at: Timestamp::from_millis(expires_at),
    })
}

/// The statements of one dialect.
struct Sql {
    delete_expired_binding: &'static str,
    insert_binding: &'static str,
    select_binding: &'static str,
    insert_secret: &'static str,
    consume_challenge: &'static str,
    cookie_is_live: &'static str,
    delete_bindings: &'static str,
    delete_secrets: &'static str,
    purge_bindings: &'static str,
    purge_secrets: &'static str,
}

/// SQLite and MySQL: `?` placeholders. The insert (`ON CONFLICT DO
/// NOTHING` / `INSERT IGNORE`) and the binding's select list differ.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! question_mark_sql {
    ($insert:literal, $columns:literal) => {
        Sql {
            delete_expired_binding: "DELETE FROM tessera_dbsc_bindings WHERE handle = ? AND expires_at <= ?",
            insert_binding: $insert,
            select_binding: concat!("SELECT ", $columns, " FROM tessera_dbsc_bindings WHERE handle = ? AND expires_at > ?"),
            insert_secret: "INSERT INTO tessera_dbsc_secrets (handle, kind, digest, expires_at) VALUES (?, ?, ?, ?)",
            consume_challenge: "DELETE FROM tessera_dbsc_secrets WHERE handle = ? AND kind = 'c' AND digest = ? AND expires_at > ?",
            cookie_is_live: "SELECT COUNT(*) FROM tessera_dbsc_secrets WHERE handle = ? AND kind = 'k' AND digest = ? AND expires_at > ?",
            delete_bindings: "DELETE FROM tessera_dbsc_bindings WHERE handle = ?",
            delete_secrets: "DELETE FROM tessera_dbsc_secrets WHERE handle = ?",
            purge_bindings: "DELETE FROM tessera_dbsc_bindings WHERE expires_at <= ?",
            purge_secrets: "DELETE FROM tessera_dbsc_secrets WHERE expires_at <= ?",
        }
    };
}

#[cfg(feature = "sqlite")]
const SQLITE: Sql = question_mark_sql!(
    "INSERT INTO tessera_dbsc_bindings (handle, session_id, thumbprint, jwk, bound_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (handle) DO NOTHING",
    "session_id, thumbprint, jwk, bound_at, expires_at"
);

// `INSERT IGNORE` rather than `ON DUPLICATE KEY UPDATE`: sqlx sets
// CLIENT_FOUND_ROWS, under which a no-op update still counts one row.
#[cfg(feature = "mysql")]
const MYSQL: Sql = question_mark_sql!(
    "INSERT IGNORE INTO tessera_dbsc_bindings (handle, session_id, thumbprint, jwk, bound_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    // Binary-collated text reads back as VARBINARY; as CHAR it decodes as
    // a string.
    "CAST(session_id AS CHAR), CAST(thumbprint AS CHAR), CAST(jwk AS CHAR), bound_at, expires_at"
);

#[cfg(feature = "postgres")]
const POSTGRES: Sql = Sql {
    delete_expired_binding: "DELETE FROM tessera_dbsc_bindings WHERE handle = $1 AND expires_at <= $2",
    insert_binding: "INSERT INTO tessera_dbsc_bindings (handle, session_id, thumbprint, jwk, bound_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (handle) DO NOTHING",
    select_binding: "SELECT session_id, thumbprint, jwk, bound_at, expires_at FROM tessera_dbsc_bindings WHERE handle = $1 AND expires_at > $2",
    insert_secret: "INSERT INTO tessera_dbsc_secrets (handle, kind, digest, expires_at) VALUES ($1, $2, $3, $4)",
    consume_challenge: "DELETE FROM tessera_dbsc_secrets WHERE handle = $1 AND kind = 'c' AND digest = $2 AND expires_at > $3",
    cookie_is_live: "SELECT COUNT(*) FROM tessera_dbsc_secrets WHERE handle = $1 AND kind = 'k' AND digest = $2 AND expires_at > $3",
    delete_bindings: "DELETE FROM tessera_dbsc_bindings WHERE handle = $1",
    delete_secrets: "DELETE FROM tessera_dbsc_secrets WHERE handle = $1",
    purge_bindings: "DELETE FROM tessera_dbsc_bindings WHERE expires_at <= $1",
    purge_secrets: "DELETE FROM tessera_dbsc_secrets WHERE expires_at <= $1",
};

/// Implements [`DbscStore`] for one backend: `$write`/`$read` name the
/// pools for writes and reads.
macro_rules! dbsc_store {
    ($store:ty, $sql:expr, $write:ident, $read:ident) => {
        #[async_trait]
        impl DbscStore for $store {
            async fn bind(&self, b: &DbscBinding, now: Timestamp) -> Result<bool, StoreError> {
                let jwk = b.jwk.canonical_json();
                bounded(self.timeout, async {
                    sqlx::query($sql.delete_expired_binding)
                        .bind(b.handle.as_str())
                        .bind(now.as_millis())
                        .execute(&self.$write)
                        .await?;
                    let done = sqlx::query($sql.insert_binding)
                        .bind(b.handle.as_str())
                        .bind(b.session_id.as_str())
                        .bind(b.thumbprint.as_str())
                        .bind(jwk.as_str())
                        .bind(b.bound_at.as_millis())
                        .bind(b.expires_at.as_millis())
                        .execute(&self.$write)
                        .await?;
                    Ok::<_, OpError>(done.rows_affected() == 1)
                })
                .await
            }

            async fn load_binding(
                &self,
                handle: &SessionHandle,
                now: Timestamp,
            ) -> Result<Option<DbscBinding>, StoreError> {
                let raw: Option<RawBinding> = bounded(self.timeout, async {
                    Ok(sqlx::query_as($sql.select_binding)
                        .bind(handle.as_str())
                        .bind(now.as_millis())
                        .fetch_optional(&self.$read)
                        .await?)
                })
                .await?;
                raw.map(|raw| decode(handle, raw)).transpose()
            }

            async fn put_secret(
                &self,
                handle: &SessionHandle,
                kind: Secret,
                digest: &str,
                expires_at: Timestamp,
            ) -> Result<(), StoreError> {
                bounded(self.timeout, async {
                    sqlx::query($sql.insert_secret)
                        .bind(handle.as_str())
                        .bind(kind.tag())
                        .bind(digest)
                        .bind(expires_at.as_millis())
                        .execute(&self.$write)
                        .await?;
                    Ok(())
                })
                .await
            }

            async fn consume_challenge(
                &self,
                handle: &SessionHandle,
                digest: &str,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                bounded(self.timeout, async {
                    let done = sqlx::query($sql.consume_challenge)
                        .bind(handle.as_str())
                        .bind(digest)
                        .bind(now.as_millis())
                        .execute(&self.$write)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
                .await
            }

            async fn cookie_is_live(
                &self,
                handle: &SessionHandle,
                digest: &str,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                bounded(self.timeout, async {
                    let (n,): (i64,) = sqlx::query_as($sql.cookie_is_live)
                        .bind(handle.as_str())
                        .bind(digest)
                        .bind(now.as_millis())
                        .fetch_one(&self.$read)
                        .await?;
                    Ok(n > 0)
                })
                .await
            }

            async fn delete_dbsc(&self, handle: &SessionHandle) -> Result<(), StoreError> {
                bounded(self.timeout, async {
                    sqlx::query($sql.delete_secrets)
                        .bind(handle.as_str())
                        .execute(&self.$write)
                        .await?;
                    sqlx::query($sql.delete_bindings)
                        .bind(handle.as_str())
                        .execute(&self.$write)
                        .await?;
                    Ok(())
                })
                .await
            }
        }

        impl $store {
            /// Deletes expired DBSC bindings, challenges and bound cookies;
            /// returns how many rows went.
            ///
            /// # Errors
            ///
            /// Backend errors.
            pub async fn purge_expired_dbsc(&self, now: Timestamp) -> Result<u64, StoreError> {
                bounded(self.timeout, async {
                    let a = sqlx::query($sql.purge_secrets)
                        .bind(now.as_millis())
                        .execute(&self.$write)
                        .await?;
                    let b = sqlx::query($sql.purge_bindings)
                        .bind(now.as_millis())
                        .execute(&self.$write)
                        .await?;
                    Ok(a.rows_affected() + b.rows_affected())
                })
                .await
            }
        }
    };
}

#[cfg(feature = "sqlite")]
dbsc_store!(crate::SqliteStore, SQLITE, writer, reader);
#[cfg(feature = "postgres")]
dbsc_store!(crate::PgStore, POSTGRES, pool, pool);
#[cfg(feature = "mysql")]
dbsc_store!(crate::MySqlStore, MYSQL, pool, pool);

/// Dispatches to the backend inside.
#[async_trait]
impl DbscStore for SqlStore {
    async fn bind(&self, binding: &DbscBinding, now: Timestamp) -> Result<bool, StoreError> {
        self.dbsc().bind(binding, now).await
    }

    async fn load_binding(
        &self,
        handle: &SessionHandle,
        now: Timestamp,
    ) -> Result<Option<DbscBinding>, StoreError> {
        self.dbsc().load_binding(handle, now).await
    }

    async fn put_secret(
        &self,
        handle: &SessionHandle,
        kind: Secret,
        digest: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.dbsc()
            .put_secret(handle, kind, digest, expires_at)
            .await
    }

    async fn consume_challenge(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.dbsc().consume_challenge(handle, digest, now).await
    }

    async fn cookie_is_live(
        &self,
        handle: &SessionHandle,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.dbsc().cookie_is_live(handle, digest, now).await
    }

    async fn delete_dbsc(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        self.dbsc().delete_dbsc(handle).await
    }
}
