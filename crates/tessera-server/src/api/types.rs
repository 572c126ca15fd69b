//! Request and response bodies of the `/v1` API and the session routes
//! (also the OpenAPI schemas).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera::cookie::Presented;
use tessera::record::SessionRecord;
use tessera::token::SessionToken;
use utoipa::ToSchema;

use crate::error::ApiError;

/// `POST /v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The user the session belongs to (1–256 bytes).
    pub user_id: String,
    /// Initial session data (a JSON object).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// Client IP, for the device list: an IPv4 or IPv6 address (text that
    /// is not one is not kept).
    pub ip: Option<String>,
    /// Client user agent, for the device list.
    pub user_agent: Option<String>,
    /// "Keep me signed in": the session gets the remember lifetime class
    /// (its own idle and absolute timeouts). Refused with 400
    /// `remember_not_configured` when the server does not offer it.
    #[serde(default)]
    pub remember: bool,
    /// RFC 3339: when your app began checking the user's credential,
    /// read **before** it read the stored password hash. The session then
    /// counts as created just before that instant, so a password change or
    /// disable that your app committed meanwhile — followed by
    /// `DELETE /v1/users/{user_id}/sessions?reason=password_changed` —
    /// refuses it even if this request arrives after that call (the
    /// sign-in read the old password). Without it the session counts as
    /// created now. Needs your clock and tessera's to agree (NTP); see
    /// [`checked_at`].
    pub checked_at: Option<String>,
}

/// How far in the past a `checked_at` may be: a credential check takes
/// seconds, not minutes, and an older value is a unit or clock mistake.
pub const MAX_CHECK_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How far in the future a `checked_at` may be (clock skew between the
/// app and tessera); a future value counts as now.
pub const MAX_CHECK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// Parses the `checked_at` of a sign-in request (`POST /v1/sessions`,
/// `POST /v1/requests/login`, `POST /v1/tokens`) against tessera's `now`:
/// an RFC 3339 time no older than [`MAX_CHECK_AGE`] and no later than
/// [`MAX_CHECK_SKEW`] ahead. The instant closes the race between a sign-in
/// that read the old password and a password change (see
/// `tessera::not_before`; ASVS 5.0 V7.4.3).
///
/// ```
/// use tessera::time::Timestamp;
/// use tessera_server::api::types::checked_at;
/// let now = Timestamp::from_millis(1_767_225_600_000); // 2026-01-01T00:00:00Z
/// assert_eq!(checked_at(None, now).ok(), Some(None));
/// let at = checked_at(Some("2025-12-31T23:59:58.5Z"), now).ok().flatten();
/// assert_eq!(at.map(Timestamp::as_millis), Some(now.as_millis() - 1_500));
/// assert!(checked_at(Some("yesterday"), now).is_err());
/// assert!(checked_at(Some("2025-12-31T23:00:00Z"), now).is_err()); // an hour old
/// assert!(checked_at(Some("2026-01-01T00:05:00Z"), now).is_err()); // 5 min ahead
/// ```
///
/// # Errors
///
/// 400 `invalid_checked_at`.
pub fn checked_at(
    value: Option<&str>,
    now: tessera::time::Timestamp,
) -> Result<Option<tessera::time::Timestamp>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_checked_at",
            "checked_at must be an RFC 3339 time within the last 15 minutes",
        )
    };
    let parsed = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid())?;
    let ms = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid())?;
    let at = tessera::time::Timestamp::from_millis(ms);
    let oldest = now.as_millis().saturating_sub(millis(MAX_CHECK_AGE));
    let latest = now.as_millis().saturating_add(millis(MAX_CHECK_SKEW));
    if ms < oldest || ms > latest {
        return Err(invalid());
    }
    Ok(Some(at))
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The longest accepted `user_id`, in bytes.
pub const MAX_USER_ID: usize = tessera::user_id::MAX_USER_ID_BYTES;

/// Checks a `user_id` from a body or a path: 1 to [`MAX_USER_ID`] bytes,
/// no control characters (they would end up in logs and the device list).
/// A pure function, so the fuzz target `v1_bodies` runs exactly what the
/// handlers run.
///
/// ```
/// use tessera_server::api::types::valid_user_id;
/// assert!(valid_user_id("alice").is_ok());
/// assert!(valid_user_id("").is_err());
/// assert!(valid_user_id("a\nb").is_err());
/// assert!(valid_user_id(&"x".repeat(257)).is_err());
/// ```
///
/// # Errors
///
/// 400 `invalid_user_id`.
pub fn valid_user_id(user_id: &str) -> Result<(), ApiError> {
    // The library's rule (tessera::user_id), so the server and the library
    // accept the same ids.
    if tessera::user_id::UserId::check(user_id).is_err() {
        return Err(ApiError::bad_request(
            "invalid_user_id",
            format!("user_id must be 1 to {MAX_USER_ID} bytes without control characters"),
        ));
    }
    Ok(())
}

/// Most keys one `/v1` request may send in a data map (`data`, `set`) or a
/// removal list (`remove`).
pub const MAX_DATA_KEYS: usize = 256;

/// Longest data key, in bytes.
pub const MAX_DATA_KEY_BYTES: usize = 256;

/// Longest accepted `ip`, in bytes (a textual IPv6 address with a zone
/// fits in 64).
pub const MAX_IP_BYTES: usize = 64;

/// Longest accepted `user_agent`, in bytes (the record keeps the first
/// [`ClientMeta::MAX_USER_AGENT`](tessera::record::ClientMeta::MAX_USER_AGENT)).
pub const MAX_USER_AGENT_BYTES: usize = 1024;

/// Checks the data keys of a request: at most [`MAX_DATA_KEYS`], each
/// 1 to [`MAX_DATA_KEY_BYTES`] bytes. The size of the data itself is
/// checked after merging, by the session policy (`max_session_data`).
///
/// ```
/// use tessera_server::api::types::valid_data_keys;
/// assert!(valid_data_keys(["theme", "cart"]).is_ok());
/// assert!(valid_data_keys([""]).is_err());
/// assert!(valid_data_keys((0..300).map(|i| i.to_string())).is_err());
/// ```
///
/// # Errors
///
/// 400 `invalid_data`.
pub fn valid_data_keys<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> Result<(), ApiError> {
    let mut count = 0usize;
    for key in keys {
        count += 1;
        let key = key.as_ref();
        if count > MAX_DATA_KEYS || key.is_empty() || key.len() > MAX_DATA_KEY_BYTES {
            return Err(ApiError::bad_request(
                "invalid_data",
                format!(
                    "at most {MAX_DATA_KEYS} keys per request, each 1 to \
                     {MAX_DATA_KEY_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the client metadata of a request: `ip` at most [`MAX_IP_BYTES`],
/// `user_agent` at most [`MAX_USER_AGENT_BYTES`], neither with control
/// characters (both are shown in the device list and logged).
///
/// ```
/// use tessera_server::api::types::valid_client_meta;
/// assert!(valid_client_meta(Some("2001:db8::1"), Some("Mozilla/5.0")).is_ok());
/// assert!(valid_client_meta(Some(&"1".repeat(65)), None).is_err());
/// assert!(valid_client_meta(None, Some("a\r\nb")).is_err());
/// ```
///
/// # Errors
///
/// 400 `invalid_client`.
pub fn valid_client_meta(ip: Option<&str>, user_agent: Option<&str>) -> Result<(), ApiError> {
    let bad = |v: Option<&str>, max: usize| {
        v.is_some_and(|v| v.len() > max || v.chars().any(char::is_control))
    };
    if bad(ip, MAX_IP_BYTES) || bad(user_agent, MAX_USER_AGENT_BYTES) {
        return Err(ApiError::bad_request(
            "invalid_client",
            format!(
                "ip must be at most {MAX_IP_BYTES} bytes and user_agent at most \
                 {MAX_USER_AGENT_BYTES}, without control characters"
            ),
        ));
    }
    Ok(())
}

/// A session token as a `/v1` body carries it, parsed once when the body
/// is read: a well-formed `tss_…` token, or a value that is not one. A
/// malformed value does not fail the whole body (400): it is a presented
/// credential that opens nothing, answered 401 `missing` without a store
/// call, exactly like a malformed cookie.
///
/// ```
/// use tessera_server::api::types::BodyToken;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bad: BodyToken = serde_json::from_str("\"not-a-token\"")?;
/// assert!(bad.token().is_none());
/// let token = tessera::token::SessionToken::generate()?;
/// let good: BodyToken = serde_json::from_value(serde_json::json!(token.expose()))?;
/// assert_eq!(good.token(), Some(&token));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BodyToken(Presented);

impl BodyToken {
    /// The token, if well-formed.
    pub fn token(&self) -> Option<&SessionToken> {
        match &self.0 {
            Presented::Token(token) => Some(token),
            _ => None,
        }
    }

    /// The token, or 401 `unauthenticated`/`missing` for a malformed one.
    ///
    /// # Errors
    ///
    /// That 401.
    pub fn require(&self) -> Result<&SessionToken, ApiError> {
        self.token()
            .ok_or_else(|| ApiError::unauthenticated("missing"))
    }

    /// As the core's [`Presented`]: `Token` or `Malformed`.
    pub fn presented(&self) -> Presented {
        self.0.clone()
    }
}

impl<'de> Deserialize<'de> for BodyToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self(match SessionToken::parse(&text) {
            Ok(token) => Presented::Token(token),
            Err(_) => Presented::Malformed,
        }))
    }
}

/// A newly issued token. The token appears here once; tessera keeps only its
/// hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedSession {
    /// The session token (`tss_…`): give it to the client, never log it.
    pub token: String,
    /// Public handle for listing and revoking.
    pub handle: String,
    /// A CSRF token for this session (masked, differs on every call).
    pub csrf_token: String,
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline.
    pub absolute_expires_at: String,
    /// Lifetime class: `default`, or `remember` ("keep me signed in").
    pub session_class: &'static str,
}

/// A request naming a session by its token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The session token.
    #[schema(value_type = String)]
    pub token: BodyToken,
}

/// `POST /v1/sessions/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The session token.
    #[schema(value_type = String)]
    pub token: BodyToken,
    /// Count this as user activity (moves the idle deadline per the touch
    /// policy). Default true; false for status checks.
    #[serde(default = "yes")]
    pub touch: bool,
    /// The value of the DBSC bound cookie the request carried, if any
    /// (`dbsc` on): decides the tier, and in required mode whether a
    /// device-bound session is authenticated.
    #[serde(default)]
    pub dbsc_cookie: Option<String>,
    /// `bound` to refuse (401 `device_unbound`) a request that is not
    /// device-bound, whatever the mode; `unbound` (default) demands nothing.
    #[serde(default)]
    pub require_tier: Option<String>,
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/sessions/data`: applied atomically onto the latest stored
/// data, so concurrent patches of other keys are never lost.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchData {
    /// The session token.
    #[schema(value_type = String)]
    pub token: BodyToken,
    /// Keys to set.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: Map<String, Value>,
    /// Keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Compare-and-set: apply `set` and `remove` only if each of these keys
    /// currently holds exactly this value (`null`: the key is absent).
    /// Otherwise nothing is written and the answer is 409
    /// [`ExpectationFailed`] with the current session, to retry from. This
    /// is how a client updates a value from its current one (a counter)
    /// without losing concurrent updates.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub expect: Map<String, Value>,
}

/// 409 answer of `PATCH /v1/sessions/data` when an `expect`ed value did not
/// hold: nothing was written.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpectationFailed {
    /// Always `conflict`.
    pub error: &'static str,
    /// Always `expectation_failed`.
    pub reason: &'static str,
    /// The session as stored now (compute the change again from its data).
    pub session: SessionView,
}

/// A live session as a backend sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// Public handle.
    pub handle: String,
    /// Session data.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// RFC 3339 creation (or last fresh sign-in) time.
    pub created_at: String,
    /// RFC 3339 last recorded activity.
    pub last_seen_at: String,
    /// RFC 3339 time of the last sign-in or re-authentication.
    pub authenticated_at: Option<String>,
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline.
    pub absolute_expires_at: String,
    /// A CSRF token for this session.
    pub csrf_token: String,
    /// Lifetime class: `default`, or `remember` ("keep me signed in").
    pub session_class: &'static str,
    /// Device binding of the request checked (DBSC): `bound` with a live
    /// bound cookie of a device-bound session, else `unbound`. Present in
    /// the answers of `POST /v1/sessions/verify` and
    /// `POST /v1/requests/check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'static str>,
}

impl SessionView {
    /// Builds the view (draws a fresh CSRF mask).
    ///
    /// # Errors
    ///
    /// If the OS CSPRNG fails.
    pub fn new(r: &SessionRecord) -> Result<Self, tessera::error::RandomError> {
        Ok(Self {
            user_id: r.user_id.clone(),
            handle: r.handle.to_string(),
            data: r.data.clone(),
            created_at: r.created_at.to_rfc3339(),
            last_seen_at: r.last_seen_at.to_rfc3339(),
            authenticated_at: r.authenticated_at.map(|t| t.to_rfc3339()),
            idle_expires_at: r.deadlines.idle.to_rfc3339(),
            absolute_expires_at: r.deadlines.absolute.to_rfc3339(),
            csrf_token: r.csrf_secret.masked_token()?,
            session_class: r.class.as_str(),
            tier: None,
        })
    }
}

/// One entry of a session list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    /// Public handle.
    pub handle: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 last recorded activity.
    pub last_seen_at: String,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// Client user agent at creation.
    pub user_agent: Option<String>,
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline.
    pub absolute_expires_at: String,
    /// True for the session making the request (site routes only).
    pub current: bool,
}

impl SessionSummary {
    /// Summarises a record.
    pub fn new(r: &SessionRecord, current: bool) -> Self {
        Self {
            handle: r.handle.to_string(),
            created_at: r.created_at.to_rfc3339(),
            last_seen_at: r.last_seen_at.to_rfc3339(),
            ip: r.client.ip.map(|ip| ip.to_string()),
            user_agent: r.client.user_agent.clone(),
            idle_expires_at: r.deadlines.idle.to_rfc3339(),
            absolute_expires_at: r.deadlines.absolute.to_rfc3339(),
            current,
        }
    }
}

/// How many sessions a revocation ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Number of sessions revoked.
    pub revoked: u64,
}
