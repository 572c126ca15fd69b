//! What a store keeps for one session.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::csrf::CsrfSecret;
use crate::policy::{Deadlines, SessionClass};
use crate::random::RandomError;
use crate::time::Timestamp;
use crate::token::TokenHash;

/// The session data: a JSON object of application keys.
pub type Data = Map<String, Value>;

/// One session as stored.
///
/// Keyed by [`TokenHash`], never by the token (docs/design.md, invariant 2). The
/// `version` grows by one with every successful write and is what
/// compare-and-set compares (invariant 8).
///
/// ```
/// use tessera::record::{ClientMeta, SessionRecord};
/// use tessera::policy::SessionPolicy;
/// use tessera::time::Timestamp;
/// use tessera::token::SessionToken;
///
/// let now = Timestamp::from_millis(0);
/// let token = SessionToken::generate()?;
/// let record = SessionRecord::new(token.hash(), Some("alice".into()), now,
///     SessionPolicy::default().deadlines_at(now), ClientMeta::default())?;
/// assert_eq!(record.version, 1);
/// assert!(record.is_valid_at(now));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Deliberately *not* `#[non_exhaustive]`: stores build records field by
/// field when decoding, and a new field must break their build rather than
/// silently default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Hash of the current token: the store key.
    pub hash: TokenHash,
    /// Public, non-secret identifier for listing and revoking. It survives
    /// rotation, so a device keeps its identity in the device list.
    pub handle: SessionHandle,
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// Application data.
    pub data: Data,
    /// When the session was created (or the user last signed in afresh).
    pub created_at: Timestamp,
    /// Last activity that was written back (see the touch policy).
    pub last_seen_at: Timestamp,
    /// When the user last proved who they are (sign-in or re-authentication);
    /// used for step-up checks.
    pub authenticated_at: Option<Timestamp>,
    /// Idle and absolute deadlines.
    pub deadlines: Deadlines,
    /// Lifetime class, chosen at creation or sign-in: which timeouts set
    /// `deadlines` (see [`SessionClass`]).
    pub class: SessionClass,
    /// Compare-and-set version; starts at 1.
    pub version: u64,
    /// Secret from which CSRF tokens are derived. Replaced on rotation.
    pub csrf_secret: CsrfSecret,
    /// Client metadata for the device list.
    pub client: ClientMeta,
}

impl SessionRecord {
    /// A fresh record at version 1 with a new handle and CSRF secret, of
    /// the default class (set [`SessionRecord::class`] with the matching
    /// deadlines for another).
    ///
    /// # Errors
    ///
    /// [`RandomError`] if the OS CSPRNG fails.
    pub fn new(
        hash: TokenHash,
        user_id: Option<String>,
        now: Timestamp,
        deadlines: Deadlines,
        client: ClientMeta,
    ) -> Result<Self, RandomError> {
        Ok(Self {
            hash,
            handle: SessionHandle::generate()?,
            user_id,
            data: Data::new(),
            created_at: now,
            last_seen_at: now,
            authenticated_at: None,
            deadlines,
            class: SessionClass::Default,
            version: 1,
            csrf_secret: CsrfSecret::generate()?,
            client,
        })
    }

    /// True while `now` is before both deadlines.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.deadlines.expired_at(now).is_none()
    }
}

/// Client metadata shown in the device list. Informational only: binding a
/// session to an IP or user agent is a detection signal, not a defence
/// (OWASP Session Management Cheat Sheet).
///
/// The address is kept as its text (`192.0.2.7`, `2001:db8::1`) by every
/// store and in JSON; a stored text that is not an IP address (written by
/// an older version, or by hand) reads as `None`, so it never fails a
/// load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMeta {
    /// Client IP address as seen by the server.
    #[serde(default, deserialize_with = "lenient_ip")]
    pub ip: Option<IpAddr>,
    /// `User-Agent` header, truncated to [`ClientMeta::MAX_USER_AGENT`].
    pub user_agent: Option<String>,
}

impl ClientMeta {
    /// Longest user agent kept, in bytes.
    pub const MAX_USER_AGENT: usize = 256;

    /// Builds metadata, truncating an overlong user agent at a character
    /// boundary.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use tessera::record::ClientMeta;
    ///
    /// let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    /// let meta = ClientMeta::new(Some(ip), Some("x".repeat(1000)));
    /// assert_eq!(meta.ip, Some(ip));
    /// assert_eq!(meta.user_agent.map(|u| u.len()), Some(256));
    /// ```
    pub fn new(ip: Option<IpAddr>, user_agent: Option<String>) -> Self {
        let user_agent = user_agent.map(|mut ua| {
            if ua.len() > Self::MAX_USER_AGENT {
                let mut cut = Self::MAX_USER_AGENT;
                while !ua.is_char_boundary(cut) {
                    cut -= 1;
                }
                ua.truncate(cut);
            }
            ua
        });
        Self { ip, user_agent }
    }

    /// An IP address from its stored text: `None` for text that is not
    /// one (see the [type docs](Self)), so a bad value never fails a load.
    ///
    /// ```
    /// use tessera::record::ClientMeta;
    ///
    /// assert_eq!(ClientMeta::parse_ip("2001:db8::1").map(|ip| ip.to_string()), Some("2001:db8::1".into()));
    /// assert_eq!(ClientMeta::parse_ip("unknown"), None);
    /// ```
    pub fn parse_ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }
}

/// Deserializes [`ClientMeta::ip`] from its text, leniently (see
/// [`ClientMeta::parse_ip`]).
fn lenient_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.as_deref().and_then(ClientMeta::parse_ip))
}

/// The public handle of a session: `tsh_` and 128 random bits.
///
/// Not a secret and not a credential: it names a session in device lists,
/// logs and revocation calls, and can never be used to authenticate.
///
/// ```
/// use tessera::record::SessionHandle;
/// let handle = SessionHandle::generate()?;
/// assert_eq!(SessionHandle::parse(handle.as_str()), Some(handle));
/// assert_eq!(SessionHandle::parse("../etc/passwd"), None);
/// # Ok::<(), tessera::error::RandomError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionHandle(String);

impl SessionHandle {
    const PREFIX: &'static str = "tsh_";
    const LEN: usize = 4 + 22;

    /// A new random handle.
    ///
    /// # Errors
    ///
    /// [`RandomError`] if the OS CSPRNG fails.
    pub fn generate() -> Result<Self, RandomError> {
        let mut raw = [0u8; 16];
        crate::random::fill(&mut raw)?;
        let mut s = String::with_capacity(Self::LEN);
        s.push_str(Self::PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut s);
        Ok(Self(s))
    }

    /// Validates a handle from input (a URL path, a JSON body, a CLI flag).
    pub fn parse(input: &str) -> Option<Self> {
        let body = input.strip_prefix(Self::PREFIX)?;
        let ok = input.len() == Self::LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(input.to_owned()))
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 128 random bits of a well-formed handle (compact storage), or
    /// `None` for a handle that did not come from [`SessionHandle::generate`]
    /// (a non-canonical encoding, or text deserialized from elsewhere).
    pub(crate) fn to_raw(&self) -> Option<[u8; 16]> {
        let body = self.0.strip_prefix(Self::PREFIX)?;
        if body.len() != 22 {
            return None;
        }
        let mut buf = [0u8; 24];
        // The decoder refuses non-zero trailing bits, so only the canonical
        // spelling decodes and `from_raw(to_raw(h)) == h` always holds.
        match URL_SAFE_NO_PAD.decode_slice(body, &mut buf) {
            Ok(16) => {
                let mut raw = [0u8; 16];
                raw.copy_from_slice(&buf[..16]);
                Some(raw)
            }
            _ => None,
        }
    }

    /// The handle whose random bits are `raw` (inverse of `to_raw`).
    pub(crate) fn from_raw(raw: &[u8; 16]) -> Self {
        let mut s = String::with_capacity(Self::LEN);
        s.push_str(Self::PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut s);
        Self(s)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of changes to session data, applied key by key.
///
/// Changes are merged onto the *latest* stored data when saved, so two
/// requests that change different keys never lose each other's writes
/// (docs/design.md, invariant 8).
///
/// ```
/// use serde_json::json;
/// use tessera::record::{Data, DataChanges};
///
/// let mut changes = DataChanges::default();
/// changes.set("theme", json!("dark"));
/// changes.remove("cart");
/// let mut data = Data::new();
/// data.insert("cart".into(), json!([1]));
/// changes.apply(&mut data);
/// assert_eq!(data.get("theme"), Some(&json!("dark")));
/// assert!(data.get("cart").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataChanges {
    ops: Vec<(String, Option<Value>)>,
}

impl DataChanges {
    /// Records `key = value`.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.ops.push((key.into(), Some(value)));
    }

    /// Records the removal of `key`.
    pub fn remove(&mut self, key: impl Into<String>) {
        self.ops.push((key.into(), None));
    }

    /// Removes every key currently in `data` (used by `clear`).
    pub fn clear_all(&mut self, data: &Data) {
        for key in data.keys() {
            self.ops.push((key.clone(), None));
        }
    }

    /// The changes in order: `(key, Some(value))` sets, `(key, None)`
    /// removes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&Value>)> {
        self.ops.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies the changes in order.
    pub fn apply(&self, data: &mut Data) {
        for (key, value) in &self.ops {
            match value {
                Some(v) => {
                    data.insert(key.clone(), v.clone());
                }
                None => {
                    data.remove(key);
                }
            }
        }
    }

    /// The value this change set gives `key`, if it touches it: `Some(None)`
    /// for a removal.
    pub fn pending(&self, key: &str) -> Option<Option<&Value>> {
        self.ops
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::ClientMeta;

    #[test]
    fn client_ip_is_text_in_json_and_text_that_is_no_address_reads_as_none() {
        let meta = ClientMeta::new(Some("2001:db8::7".parse().unwrap()), Some("ua".into()));
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ip": "2001:db8::7", "user_agent": "ua"})
        );
        assert_eq!(serde_json::from_value::<ClientMeta>(json).unwrap(), meta);
        let old: ClientMeta =
            serde_json::from_value(serde_json::json!({"ip": "unknown", "user_agent": "ua"}))
                .unwrap();
        assert_eq!(old, ClientMeta::new(None, Some("ua".into())));
        let bare: ClientMeta = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(bare, ClientMeta::default());
    }
}
