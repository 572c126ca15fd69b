//! Rows as MySQL returns them: the binary columns come back as bytes.

use tessera::StoreError;
use tessera::record::SessionRecord;
use tessera::refresh::RefreshRecord;

use crate::refresh_row::RawRefresh;
use crate::row::RawRecord;

/// A refresh row as MySQL returns it: the binary columns come back as bytes.
#[derive(sqlx::FromRow)]
pub(super) struct MySqlRawRefresh {
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
    pub(super) fn decode(self) -> Result<RefreshRecord, StoreError> {
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
pub(super) struct MySqlRaw {
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
    pub(super) fn into_raw(self) -> Result<RawRecord, StoreError> {
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

    pub(super) fn decode(self) -> Result<SessionRecord, StoreError> {
        self.into_raw()?.decode()
    }
}
