//! Converting between [`RefreshRecord`] and rows of `tessera_refresh_tokens`,
//! shared by every backend.
//!
//! One row per refresh token, keyed by the token's hash (never the token:
//! docs/design.md, invariant 2). The three `used` columns are all NULL (unused) or
//! all set (used); anything else is a row that cannot be trusted and
//! decodes as [`StoreError::Corrupt`].

use tessera::StoreError;
use tessera::record::SessionHandle;
use tessera::refresh::{RefreshRecord, RefreshUse, UsedRefresh};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};

/// A refresh record ready to bind, in the column order of
/// `bind_refresh!`: hash, family, user_id, issued_at, expires_at, used_at,
/// child_hash, sealed_child.
pub(crate) struct EncodedRefresh<'a> {
    pub(crate) hash: &'a [u8],
    pub(crate) family: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) used_at: Option<i64>,
    pub(crate) child_hash: Option<&'a [u8]>,
    pub(crate) sealed_child: Option<&'a [u8]>,
}

impl<'a> EncodedRefresh<'a> {
    pub(crate) fn new(record: &'a RefreshRecord) -> Self {
        let used = record.used.as_ref();
        Self {
            hash: record.hash.as_bytes(),
            family: record.family.as_str(),
            user_id: record.user_id.as_deref(),
            issued_at: record.issued_at.as_millis(),
            expires_at: record.expires_at.as_millis(),
            used_at: used.map(|u| u.at.as_millis()),
            child_hash: used.map(|u| u.child.as_bytes().as_slice()),
            sealed_child: used.map(|u| u.sealed_child.as_slice()),
        }
    }
}

/// Binds the 8 columns of an [`EncodedRefresh`] in canonical order.
macro_rules! bind_refresh {
    ($query:expr, $e:expr) => {{
        let e = $e;
        $query
            .bind(e.hash)
            .bind(e.family)
            .bind(e.user_id)
            .bind(e.issued_at)
            .bind(e.expires_at)
            .bind(e.used_at)
            .bind(e.child_hash)
            .bind(e.sealed_child)
    }};
}

pub(crate) use bind_refresh;

/// A `tessera_refresh_tokens` row as read, before validation.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawRefresh {
    pub(crate) hash: Vec<u8>,
    pub(crate) family: String,
    pub(crate) user_id: Option<String>,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) used_at: Option<i64>,
    pub(crate) child_hash: Option<Vec<u8>>,
    pub(crate) sealed_child: Option<Vec<u8>>,
}

impl RawRefresh {
    /// Validates the row and builds the record; anything that does not
    /// decode is `Corrupt` and never served.
    pub(crate) fn decode(self) -> Result<RefreshRecord, StoreError> {
        let hash: [u8; 32] = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("hash is not 32 bytes"))?;
        let family =
            SessionHandle::parse(&self.family).ok_or_else(|| corrupt("family is malformed"))?;
        let used = match (self.used_at, self.child_hash, self.sealed_child) {
            (None, None, None) => None,
            (Some(at), Some(child), Some(sealed)) => {
                let child: [u8; 32] = child
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("child_hash is not 32 bytes"))?;
                let sealed_child: [u8; SECRET_LEN] = sealed
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("sealed_child has the wrong length"))?;
                Some(UsedRefresh {
                    at: Timestamp::from_millis(at),
                    child: TokenHash::from_bytes(child),
                    sealed_child,
                })
            }
            _ => return Err(corrupt("used_at, child_hash and sealed_child disagree")),
        };
        Ok(RefreshRecord {
            hash: TokenHash::from_bytes(hash),
            family,
            user_id: self.user_id,
            issued_at: Timestamp::from_millis(self.issued_at),
            expires_at: Timestamp::from_millis(self.expires_at),
            used,
        })
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("tessera_refresh_tokens row: {what}"))
}

/// Why the conditional `UPDATE` of a `use_refresh` matched no row, from
/// the parent as read afterwards in the same transaction (so nothing was
/// written either way). Mirrors the reference store: unknown or expired at
/// `now` is [`RefreshUse::Unknown`], used is [`RefreshUse::AlreadyUsed`].
///
/// A row that is live and unused here cannot happen (the `UPDATE` would
/// have matched it); if it somehow does, nothing was written and the
/// caller gets [`StoreError::Contention`] rather than a guess.
pub(crate) fn diagnose_unused(
    parent: Option<RefreshRecord>,
    now: Timestamp,
) -> Result<RefreshUse, StoreError> {
    match parent {
        None => Ok(RefreshUse::Unknown),
        Some(p) if now >= p.expires_at => Ok(RefreshUse::Unknown),
        Some(RefreshRecord {
            used: Some(used), ..
        }) => Ok(RefreshUse::AlreadyUsed(used)),
        Some(_) => Err(StoreError::Contention),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::token::RefreshToken;

    fn raw_of(record: &RefreshRecord) -> RawRefresh {
        let e = EncodedRefresh::new(record);
        RawRefresh {
            hash: e.hash.to_vec(),
            family: e.family.to_owned(),
            user_id: e.user_id.map(str::to_owned),
            issued_at: e.issued_at,
            expires_at: e.expires_at,
            used_at: e.used_at,
            child_hash: e.child_hash.map(<[u8]>::to_vec),
            sealed_child: e.sealed_child.map(<[u8]>::to_vec),
        }
    }

    fn sample(used: bool) -> RefreshRecord {
        let parent = RefreshToken::generate().unwrap();
        let child = RefreshToken::generate().unwrap();
        RefreshRecord {
            hash: parent.hash(),
            family: SessionHandle::generate().unwrap(),
            user_id: Some("alice".into()),
            issued_at: Timestamp::from_millis(1_700_000_000_000),
            expires_at: Timestamp::from_millis(1_700_000_600_000),
            used: used.then(|| UsedRefresh {
                at: Timestamp::from_millis(1_700_000_100_000),
                child: child.hash(),
                sealed_child: parent.seal_child(&child),
            }),
        }
    }

    #[test]
    fn records_round_trip_through_a_row() {
        for used in [false, true] {
            let record = sample(used);
            assert_eq!(raw_of(&record).decode().unwrap(), record);
        }
    }

    #[test]
    fn half_used_rows_are_corrupt() {
        let mut raw = raw_of(&sample(true));
        raw.sealed_child = None;
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
        let mut raw = raw_of(&sample(false));
        raw.used_at = Some(1);
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn malformed_columns_are_corrupt() {
        let mut raw = raw_of(&sample(true));
        raw.child_hash = Some(vec![0; 31]);
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
        let mut raw = raw_of(&sample(false));
        raw.family = "not a handle".into();
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
        let mut raw = raw_of(&sample(false));
        raw.hash.push(0);
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_missed_update_is_explained_like_the_reference_store() {
        let now = Timestamp::from_millis(1_700_000_200_000);
        assert_eq!(diagnose_unused(None, now).unwrap(), RefreshUse::Unknown);
        let used = sample(true);
        assert!(matches!(
            diagnose_unused(Some(used.clone()), now).unwrap(),
            RefreshUse::AlreadyUsed(u) if Some(&u) == used.used.as_ref()
        ));
        // Expiry wins over use, as in MemoryStore.
        assert_eq!(
            diagnose_unused(Some(used.clone()), used.expires_at).unwrap(),
            RefreshUse::Unknown
        );
        assert!(matches!(
            diagnose_unused(Some(sample(false)), now),
            Err(StoreError::Contention)
        ));
    }
}
