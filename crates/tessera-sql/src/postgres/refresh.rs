//! [`RefreshStore`] for [`PgStore`]: refresh-token rows.

use async_trait::async_trait;
use sqlx::FromRow;
use tessera::StoreError;
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

use super::{PgStore, sql};
use crate::error::{bounded, retrying};
use crate::not_before::{self, NbCols};
use crate::refresh_row::{EncodedRefresh, RawRefresh, bind_refresh, diagnose_unused};
use crate::row::RawRecord;

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
