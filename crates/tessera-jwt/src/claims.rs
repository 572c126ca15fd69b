//! The JOSE header and the claims of a tessera access token (RFC 9068).

use serde::{Deserialize, Serialize};
use tessera::record::SessionHandle;

/// The longest `iss`, `sub`, `aud` or `client_id` accepted when issuing, in
/// bytes. Keeps every token far below [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN).
pub const MAX_CLAIM_LEN: usize = 256;

/// The `typ` header value of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The protected header. Deserialisation refuses every member besides
/// these three, which rules out `crit` (RFC 7515 §4.1.11), embedded or
/// remote keys (`jwk`, `jku`, `x5u`, `x5c`) and duplicate members.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
}

impl Header {
    /// RFC 9068 §4: `at+jwt` or `application/at+jwt`; media types compare
    /// case-insensitively (RFC 7515 §4.1.9).
    pub(crate) fn has_access_token_type(&self) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        })
    }
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience, serialised as a string.
    One(String),
    /// Several audiences, serialised as an array.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `audience` (exact, case-sensitive comparison).
    ///
    /// ```
    /// use tessera_jwt::claims::Audience;
    /// assert!(Audience::One("api".into()).contains("api"));
    /// assert!(Audience::Many(vec!["a".into(), "api".into()]).contains("api"));
    /// assert!(!Audience::One("API".into()).contains("api"));
    /// ```
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// The claims of a tessera access token.
///
/// Times are NumericDate: whole seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
    /// Issuer: who signed the token.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience: the resource server(s) the token is for.
    pub aud: Audience,
    /// The OAuth client the token was issued to (RFC 9068 §2.2), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The public handle of the session the token was derived from. Not a
    /// credential; lets a resource server ask whether the session is still
    /// active (see [`SessionCheck`](crate::SessionCheck)).
    pub sid: SessionHandle,
    /// Issued at.
    pub iat: i64,
    /// Not before (equal to `iat` when tessera issues).
    pub nbf: i64,
    /// Expires at: the token is refused from this second on (plus leeway).
    pub exp: i64,
    /// Unique token id: 128 random bits, base64url.
    pub jti: String,
}

/// Wire form of the claims: `sid` arrives as a plain string and is
/// validated with [`SessionHandle::parse`] (its `Deserialize` accepts any
/// string). Unknown claims are ignored, as RFC 7519 §4 requires.
#[derive(Deserialize)]
pub(crate) struct WireClaims {
    iss: String,
    sub: String,
    aud: Audience,
    #[serde(default)]
    client_id: Option<String>,
    sid: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

impl WireClaims {
    pub(crate) fn validate(self) -> Option<AccessClaims> {
        let sid = SessionHandle::parse(&self.sid)?;
        if self.jti.is_empty() || self.jti.len() > 64 || self.sub.is_empty() {
            return None;
        }
        Some(AccessClaims {
            iss: self.iss,
            sub: self.sub,
            aud: self.aud,
            client_id: self.client_id,
            sid,
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
            jti: self.jti,
        })
    }
}
