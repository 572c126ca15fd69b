//! Converting between [`SessionRecord`] and table rows, shared by every
//! backend.
//!
//! One table, `tessera_sessions`, one row per session. The token hash is the
//! primary key; the CSRF secret is raw bytes; `data` is the JSON text of the
//! application data; every timestamp is an integer of milliseconds since the
//! Unix epoch, and `next_deadline = min(idle_deadline, absolute_deadline)`
//! is the single column liveness checks and the sweeper compare against.

use tessera::StoreError;
use tessera::csrf::CsrfSecret;
use tessera::policy::{Deadlines, SessionClass};
use tessera::store::{CasOutcome, Modify, ModifyFn};

use crate::error::OpResult;
use tessera::record::{ClientMeta, Data, SessionHandle, SessionRecord};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

/// A record ready to bind, in the canonical column order of
/// `bind_all!` and `bind_mutable!`.
pub(crate) struct Encoded<'a> {
    pub(crate) hash: &'a [u8],
    pub(crate) handle: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) data: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: i64,
    pub(crate) authenticated_at: Option<i64>,
    pub(crate) idle_deadline: i64,
    pub(crate) absolute_deadline: i64,
    pub(crate) next_deadline: i64,
    pub(crate) version: i64,
    pub(crate) csrf_secret: &'a [u8],
    /// The IP as its text, as stored before it was typed.
    pub(crate) client_ip: Option<String>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) session_class: &'static str,
}

impl<'a> Encoded<'a> {
    /// Encodes a record for writing.
    pub(crate) fn new(record: &'a SessionRecord) -> Result<Self, StoreError> {
        let data = serde_json::to_string(&record.data).map_err(StoreError::backend)?;
        Ok(Self {
            hash: record.hash.as_bytes(),
            handle: record.handle.as_str(),
            user_id: record.user_id.as_deref(),
            data,
            created_at: record.created_at.as_millis(),
            last_seen_at: record.last_seen_at.as_millis(),
            authenticated_at: record.authenticated_at.map(Timestamp::as_millis),
            idle_deadline: record.deadlines.idle.as_millis(),
            absolute_deadline: record.deadlines.absolute.as_millis(),
            next_deadline: record.deadlines.next().as_millis(),
            version: version_to_sql(record.version)?,
            csrf_secret: record.csrf_secret.as_bytes(),
            client_ip: record.client.ip.map(|ip| ip.to_string()),
            user_agent: record.client.user_agent.as_deref(),
            session_class: record.class.as_str(),
        })
    }
}

/// A version as the signed 64-bit integer SQL stores.
pub(crate) fn version_to_sql(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::backend("session version out of range"))
}

/// Limits as SQL integers (`LIMIT` takes a signed 64-bit value).
pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// What is left of a purge `limit` after `used` rows were deleted (the
/// limit is shared by sessions and refresh tokens).
pub(crate) fn remaining(limit: usize, used: u64) -> usize {
    limit.saturating_sub(usize::try_from(used).unwrap_or(usize::MAX))
}

/// Binds all 15 columns of an [`Encoded`] in canonical order: hash, handle,
/// user_id, data, created_at, last_seen_at, authenticated_at, idle_deadline,
/// absolute_deadline, next_deadline, version, csrf_secret, client_ip,
/// user_agent, session_class.
macro_rules! bind_all {
    ($query:expr, $e:expr) => {{
        let e = $e;
        $query
            .bind(e.hash)
            .bind(e.handle)
            .bind(e.user_id)
            .bind(e.data.as_str())
            .bind(e.created_at)
            .bind(e.last_seen_at)
            .bind(e.authenticated_at)
            .bind(e.idle_deadline)
            .bind(e.absolute_deadline)
            .bind(e.next_deadline)
            .bind(e.version)
            .bind(e.csrf_secret)
            .bind(e.client_ip.as_deref())
            .bind(e.user_agent)
            .bind(e.session_class)
    }};
}

/// Binds the 12 columns a compare-and-set may change (all but hash, handle
/// and user_id, which are fixed for a record's life), in canonical order.
macro_rules! bind_mutable {
    ($query:expr, $e:expr) => {{
        let e = $e;
        $query
            .bind(e.data.as_str())
            .bind(e.created_at)
            .bind(e.last_seen_at)
            .bind(e.authenticated_at)
            .bind(e.idle_deadline)
            .bind(e.absolute_deadline)
            .bind(e.next_deadline)
            .bind(e.version)
            .bind(e.csrf_secret)
            .bind(e.client_ip.as_deref())
            .bind(e.user_agent)
            .bind(e.session_class)
    }};
}

pub(crate) use {bind_all, bind_mutable};

/// A row as read, before validation.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawRecord {
    pub(crate) hash: Vec<u8>,
    pub(crate) handle: String,
    pub(crate) user_id: Option<String>,
    pub(crate) data: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: i64,
    pub(crate) authenticated_at: Option<i64>,
    pub(crate) idle_deadline: i64,
    pub(crate) absolute_deadline: i64,
    pub(crate) version: i64,
    pub(crate) csrf_secret: Vec<u8>,
    pub(crate) client_ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) session_class: String,
}

impl RawRecord {
    /// Validates the row and builds the record. Anything that does not
    /// decode is `Corrupt`: a row that cannot be trusted is never served.
    pub(crate) fn decode(self) -> Result<SessionRecord, StoreError> {
        let hash: [u8; 32] = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("hash is not 32 bytes"))?;
        let csrf: [u8; 32] = self
            .csrf_secret
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("csrf_secret is not 32 bytes"))?;
        let handle =
            SessionHandle::parse(&self.handle).ok_or_else(|| corrupt("handle is malformed"))?;
        let data: Data = serde_json::from_str(&self.data)
            .map_err(|e| corrupt(&format!("data is not a JSON object: {e}")))?;
        let version = u64::try_from(self.version).map_err(|_| corrupt("version is negative"))?;
        let deadlines = Deadlines {
            idle: Timestamp::from_millis(self.idle_deadline),
            absolute: Timestamp::from_millis(self.absolute_deadline),
        };
        let client = ClientMeta {
            // Text that is not an IP address reads as none rather than
            // failing the load (`ClientMeta::parse_ip`).
            ip: self.client_ip.as_deref().and_then(ClientMeta::parse_ip),
            user_agent: self.user_agent,
        };
        let class = SessionClass::parse(&self.session_class)
            .ok_or_else(|| corrupt("session_class is unknown"))?;
        // A struct literal, not `SessionRecord::new`: decoding must not draw
        // randomness, and a new record field must fail to compile here.
        let record = SessionRecord {
            hash: TokenHash::from_bytes(hash),
            handle,
            user_id: self.user_id,
            data,
            created_at: Timestamp::from_millis(self.created_at),
            last_seen_at: Timestamp::from_millis(self.last_seen_at),
            authenticated_at: self.authenticated_at.map(Timestamp::from_millis),
            deadlines,
            class,
            version,
            csrf_secret: CsrfSecret::from_bytes(csrf),
            client,
        };
        Ok(record)
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("tessera_sessions row: {what}"))
}

/// Why a compare-and-set matched no row, from the row's `next_deadline`
/// read afterwards: no row, or an expired one, is `Missing` (a write never
/// resurrects a session); a live row means its version moved on.
pub(crate) fn miss_or_conflict(next_deadline: Option<i64>, now: Timestamp) -> CasOutcome {
    match next_deadline {
        // Live only while `now` is strictly before both deadlines.
        Some(next) if now.as_millis() < next => CasOutcome::Conflict,
        _ => CasOutcome::Missing,
    }
}

/// What applying a modify closure to a locked row produced.
pub(crate) enum Applied {
    /// No live record.
    Gone,
    /// `f` chose to keep the row.
    Keep(SessionRecord),
    /// Write this record (version already bumped).
    Write(SessionRecord),
}

impl Applied {
    pub(crate) fn into_record(self) -> Option<SessionRecord> {
        match self {
            Self::Gone => None,
            Self::Keep(r) | Self::Write(r) => Some(r),
        }
    }
}

/// The backend-independent middle of every locking `modify`: decode the
/// locked row, refuse it if expired, run `f`, and pin what `f` must not
/// change (key, user, handle) while bumping the version.
pub(crate) fn apply(
    raw: Option<RawRecord>,
    hash: &TokenHash,
    now: Timestamp,
    f: ModifyFn<'_>,
) -> OpResult<Applied> {
    let Some(raw) = raw else {
        return Ok(Applied::Gone);
    };
    let current = raw.decode()?;
    if !current.is_valid_at(now) {
        return Ok(Applied::Gone);
    }
    let mut record = current.clone();
    if f(&mut record) == Modify::Keep {
        // The record as stored, not the closure's scratch copy: a caller
        // that decided to keep must not see changes that were not written.
        return Ok(Applied::Keep(current));
    }
    record.version = current.version.saturating_add(1);
    record.user_id = current.user_id;
    record.handle = current.handle;
    record.hash = *hash;
    Ok(Applied::Write(record))
}

/// The [`Capped`](tessera::store::Capped) outcome of a capped creation from
/// the handles it evicted, or `None` if it refused.
pub(crate) fn capped_outcome(
    evicted: Option<Vec<String>>,
) -> Result<tessera::store::Capped, StoreError> {
    let Some(evicted) = evicted else {
        return Ok(tessera::store::Capped::Refused);
    };
    let evicted = evicted
        .iter()
        .map(|h| {
            tessera::record::SessionHandle::parse(h)
                .ok_or_else(|| StoreError::Corrupt(format!("bad session handle {h:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(tessera::store::Capped::Created { evicted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::policy::SessionPolicy;
    use tessera::token::SessionToken;

    fn raw_of(record: &SessionRecord) -> RawRecord {
        let e = Encoded::new(record).unwrap();
        RawRecord {
            hash: e.hash.to_vec(),
            handle: e.handle.to_owned(),
            user_id: e.user_id.map(str::to_owned),
            data: e.data,
            created_at: e.created_at,
            last_seen_at: e.last_seen_at,
            authenticated_at: e.authenticated_at,
            idle_deadline: e.idle_deadline,
            absolute_deadline: e.absolute_deadline,
            version: e.version,
            csrf_secret: e.csrf_secret.to_vec(),
            client_ip: e.client_ip.clone(),
            user_agent: e.user_agent.map(str::to_owned),
            session_class: e.session_class.to_owned(),
        }
    }

    fn sample() -> SessionRecord {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let mut r = SessionRecord::new(
            SessionToken::generate().unwrap().hash(),
            Some("alice".into()),
            now,
            SessionPolicy::default().deadlines_at(now),
            ClientMeta::new(Some([192, 0, 2, 1].into()), Some("ua".into())),
        )
        .unwrap();
        r.data.insert("k".into(), serde_json::json!({"n": [1, 2]}));
        r.authenticated_at = Some(now);
        r.version = 7;
        r
    }

    #[test]
    fn record_round_trips_through_a_row() {
        let record = sample();
        assert_eq!(raw_of(&record).decode().unwrap(), record);
    }

    #[test]
    fn session_class_round_trips_and_unknown_is_corrupt() {
        let mut record = sample();
        record.class = tessera::policy::SessionClass::Remember;
        let raw = raw_of(&record);
        assert_eq!(raw.session_class, "remember");
        assert_eq!(raw.decode().unwrap(), record);
        let mut raw = raw_of(&record);
        raw.session_class = "forever".into();
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn client_ip_is_stored_as_text_and_text_that_is_no_address_reads_as_none() {
        let mut record = sample();
        record.client.ip = Some("2001:db8::7".parse().unwrap());
        let raw = raw_of(&record);
        assert_eq!(raw.client_ip.as_deref(), Some("2001:db8::7"));
        assert_eq!(raw.decode().unwrap(), record);
        // A row written before the address was typed, with any text.
        let mut raw = raw_of(&record);
        raw.client_ip = Some("unknown".into());
        let decoded = raw.decode().unwrap();
        assert_eq!(decoded.client.ip, None);
        assert_eq!(decoded.client.user_agent, record.client.user_agent);
    }

    #[test]
    fn short_hash_is_corrupt() {
        let mut raw = raw_of(&sample());
        raw.hash.truncate(31);
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn non_object_data_is_corrupt() {
        let mut raw = raw_of(&sample());
        raw.data = "[1]".into();
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn negative_version_is_corrupt() {
        let mut raw = raw_of(&sample());
        raw.version = -1;
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn forged_handle_is_corrupt() {
        let mut raw = raw_of(&sample());
        raw.handle = "../../etc".into();
        assert!(matches!(raw.decode(), Err(StoreError::Corrupt(_))));
    }
}
