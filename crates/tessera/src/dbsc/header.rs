//! DBSC HTTP fields: names (current and legacy) and their Structured Field
//! Values (RFC 8941/9651) encoding, through the `sfv` crate.
//!
//! Chromium renamed the fields during the origin trial; servers meet both
//! spellings in the wild, so tessera reads both and writes both on
//! responses (a browser ignores the names it does not know).

use sfv::{BareItem, KeyRef, ListEntry, ListSerializer, Parser, StringRef, TokenRef};

use super::proof::ProofAlg;

/// Response field that starts a registration (W3C DBSC).
pub const REGISTRATION: &str = "Secure-Session-Registration";
/// Legacy name of [`REGISTRATION`].
pub const LEGACY_REGISTRATION: &str = "Sec-Session-Registration";
/// Response field carrying a fresh challenge.
pub const CHALLENGE: &str = "Secure-Session-Challenge";
/// Legacy name of [`CHALLENGE`].
pub const LEGACY_CHALLENGE: &str = "Sec-Session-Challenge";
/// Request field carrying the proof JWT.
pub const RESPONSE: &str = "Secure-Session-Response";
/// Legacy name of [`RESPONSE`].
pub const LEGACY_RESPONSE: &str = "Sec-Session-Response";
/// Request field naming the DBSC session on a refresh.
pub const SESSION_ID: &str = "Sec-Secure-Session-Id";
/// Legacy name of [`SESSION_ID`].
pub const LEGACY_SESSION_ID: &str = "Sec-Session-Id";
/// Request field telling that the browser skipped a refresh.
pub const SKIPPED: &str = "Secure-Session-Skipped";

/// Longest field value read; anything longer is refused unparsed.
const MAX_FIELD: usize = super::proof::MAX_PROOF_LEN + 16;

/// `Secure-Session-Registration: (ES256 RS256);path="…";challenge="…"`,
/// plus `authorization` when given.
///
/// ```
/// use tessera::dbsc::header;
/// let v = header::registration("/dbsc/register", "abc", None);
/// assert_eq!(v.as_deref(), Some(r#"(ES256 RS256);path="/dbsc/register";challenge="abc""#));
/// ```
///
/// # Errors
///
/// `None` if a value is not a valid sf-string (non-ASCII or control
/// characters).
pub fn registration(path: &str, challenge: &str, authorization: Option<&str>) -> Option<String> {
    let mut ser = ListSerializer::new();
    {
        let mut inner = ser.inner_list();
        for alg in [ProofAlg::ES256, ProofAlg::RS256] {
            let _ = inner.bare_item(TokenRef::from_str(alg.as_str()).ok()?);
        }
        let mut params = inner.finish();
        params = params.parameter(KeyRef::constant("path"), StringRef::from_str(path).ok()?);
        params = params.parameter(
            KeyRef::constant("challenge"),
            StringRef::from_str(challenge).ok()?,
        );
        if let Some(auth) = authorization {
            let _ = params.parameter(
                KeyRef::constant("authorization"),
                StringRef::from_str(auth).ok()?,
            );
        }
    }
    ser.finish()
}

/// `Secure-Session-Challenge: "<challenge>";id="<session id>"`.
///
/// ```
/// assert_eq!(tessera::dbsc::header::challenge("c1", "s1").as_deref(), Some(r#""c1";id="s1""#));
/// ```
pub fn challenge(challenge: &str, session_id: &str) -> Option<String> {
    let mut ser = ListSerializer::new();
    let _ = ser
        .bare_item(StringRef::from_str(challenge).ok()?)
        .parameter(
            KeyRef::constant("id"),
            StringRef::from_str(session_id).ok()?,
        );
    ser.finish()
}

/// Reads an sf-string item (`Secure-Session-Response`,
/// `Sec-Secure-Session-Id`). Early Chromium builds sent the proof as a bare
/// token-like value; a value that is not a structured string but consists
/// of JWT characters only is accepted as is.
///
/// ```
/// use tessera::dbsc::header::string_item;
/// assert_eq!(string_item(r#""a.b.c""#).as_deref(), Some("a.b.c"));
/// assert_eq!(string_item("a.b.c").as_deref(), Some("a.b.c"));
/// assert_eq!(string_item("a b"), None);
/// ```
pub fn string_item(value: &str) -> Option<String> {
    if value.len() > MAX_FIELD {
        return None;
    }
    if value.starts_with('"') {
        let list = Parser::new(value).parse_list::<sfv::List>().ok()?;
        return match list.first() {
            Some(ListEntry::Item(item)) => match &item.bare_item {
                BareItem::String(s) => Some(s.as_str().to_owned()),
                _ => None,
            },
            _ => None,
        };
    }
    let bare = value.trim();
    let jwt_chars = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    (!bare.is_empty() && bare.bytes().all(jwt_chars)).then(|| bare.to_owned())
}

/// What `Secure-Session-Skipped` reports: the reason token
/// (`unreachable`, `server_error`, `quota_exceeded`…) and the session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The reason token, as sent (unknown reasons are kept, not refused).
    pub reason: String,
    /// The DBSC session identifier, when given.
    pub session_id: Option<String>,
}

/// Parses `Secure-Session-Skipped: unreachable;session_identifier="…"`.
///
/// ```
/// use tessera::dbsc::header::skipped;
/// let s = skipped(r#"server_error;session_identifier="s1""#).ok_or("a Skipped value")?;
/// assert_eq!((s.reason.as_str(), s.session_id.as_deref()), ("server_error", Some("s1")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn skipped(value: &str) -> Option<Skipped> {
    if value.len() > MAX_FIELD {
        return None;
    }
    let list = Parser::new(value).parse_list::<sfv::List>().ok()?;
    let Some(ListEntry::Item(item)) = list.first() else {
        return None;
    };
    let BareItem::Token(reason) = &item.bare_item else {
        return None;
    };
    let session_id = item
        .params
        .iter()
        .find(|(k, _)| k.as_str() == "session_identifier")
        .and_then(|(_, v)| match v {
            BareItem::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        });
    Some(Skipped {
        reason: reason.as_str().to_owned(),
        session_id,
    })
}
