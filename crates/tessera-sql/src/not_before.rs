//! The kill switches on SQL: reading the not-befores in the same statement
//! as a session, and raising them (see `tessera::not_before`).
//!
//! Every statement that returns a session for use wraps the plain select
//! in [`checked`]: two `LEFT JOIN`s on the primary key of
//! `tessera_not_before` (the user's row and the global row) add four
//! columns, and [`RawChecked::decode`] applies `tessera::not_before::refusal`
//! to them. One statement, one round trip, whatever the number of
//! sessions.

use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope, refusal};
use tessera::record::SessionRecord;
use tessera::time::Timestamp;

/// `select` (a statement over `tessera_sessions` with the usual columns),
/// with the not-befores that apply to each row.
pub(crate) fn checked(select: &str) -> String {
    format!(
        "SELECT s.*, u.at AS nb_user_at, u.reason AS nb_user_reason, \
         g.at AS nb_all_at, g.reason AS nb_all_reason FROM ({select}) s \
         LEFT JOIN tessera_not_before u ON u.scope = 'u' AND u.user_id = s.user_id \
         LEFT JOIN tessera_not_before g ON g.scope = 'g' AND g.user_id = ''"
    )
}

/// The four columns [`checked`] adds, read from the same row as the
/// record (`FromRow::from_row` on the row, beside the record's own type).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NbCols {
    nb_user_at: Option<i64>,
    nb_user_reason: Option<String>,
    nb_all_at: Option<i64>,
    nb_all_reason: Option<String>,
}

impl NbCols {
    /// Why a not-before refuses `record`, if one does.
    pub(crate) fn refusal(&self, record: &SessionRecord) -> Result<Option<Revocation>, StoreError> {
        let user = stored(self.nb_user_at, self.nb_user_reason.as_deref())?;
        let everyone = stored(self.nb_all_at, self.nb_all_reason.as_deref())?;
        Ok(refusal(record, user, everyone))
    }

    /// `record` unless a not-before refuses it.
    pub(crate) fn usable(
        &self,
        record: SessionRecord,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.refusal(&record)?.is_none().then_some(record))
    }

    /// `Ended::Revoked(cause)` if a not-before refuses `record`.
    pub(crate) fn ended(&self, record: &SessionRecord) -> Result<Option<Ended>, StoreError> {
        Ok(self.refusal(record)?.map(Ended::Revoked))
    }
}

/// The usable records among `rows`, oldest first (a join does not promise
/// to keep the inner statement's order).
pub(crate) fn usable_rows(
    rows: Vec<(SessionRecord, NbCols)>,
) -> Result<Vec<SessionRecord>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for (record, nb) in rows {
        out.extend(nb.usable(record)?);
    }
    out.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.handle.cmp(&b.handle))
    });
    Ok(out)
}

/// A stored not-before; a row that does not decode is `Corrupt` (a
/// switch that cannot be read must not silently turn off).
pub(crate) fn stored(
    at: Option<i64>,
    reason: Option<&str>,
) -> Result<Option<NotBefore>, StoreError> {
    match (at, reason) {
        (Some(at), Some(reason)) => {
            let why = Revocation::from_code(reason).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown not-before reason {reason:?}"))
            })?;
            Ok(Some(NotBefore::new(Timestamp::from_millis(at), why)))
        }
        _ => Ok(None),
    }
}

/// The primary key of a scope's row.
pub(crate) fn key<'a>(scope: Scope<'a>) -> (&'static str, &'a str) {
    match scope {
        Scope::Everyone => ("g", ""),
        Scope::User(user) => ("u", user),
    }
}
