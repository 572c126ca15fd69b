//! Request and response bodies of the token endpoints (also the OpenAPI
//! schemas).
//!
//! Request parameters are all optional at the type level so that a missing
//! one is answered with an `invalid_request` naming it, not a parser
//! message. Unknown parameters are ignored, as RFC 6749 §3.2 requires of a
//! token endpoint; a parameter given twice is refused (RFC 6749 §3.1).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /token` (RFC 6749 §4.3 password grant, §6 refresh), as
/// `application/x-www-form-urlencoded` or JSON.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenGrant {
    /// `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// User name (password grant).
    pub username: Option<String>,
    /// Password (password grant).
    pub password: Option<String>,
    /// The refresh token (refresh grant).
    pub refresh_token: Option<String>,
    /// Accepted and ignored: tessera tokens carry no scopes.
    pub scope: Option<String>,
    /// Accepted and ignored: first-party public clients are not registered.
    pub client_id: Option<String>,
}

/// `POST /v1/tokens/refresh`, as JSON or a form.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token (`tsr_…`) to exchange.
    pub refresh_token: Option<String>,
    /// Accepted for OAuth clients that always send it; must be
    /// `refresh_token` when present.
    pub grant_type: Option<String>,
}

/// `POST /v1/tokens/revoke` (RFC 7009) and `POST /v1/tokens/introspect`
/// (RFC 7662), as a form or JSON.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenQuery {
    /// The token: a refresh token (`tsr_…`), an access token (JWT) or a
    /// session token (`tss_…`).
    pub token: Option<String>,
    /// `refresh_token` or `access_token`. Only a hint: tessera recognises
    /// each token by its form, so an unknown or wrong hint changes nothing
    /// (RFC 7009 §2.1).
    pub token_type_hint: Option<String>,
}

/// A token pair (RFC 6749 §5.1 plus tessera's session fields).
///
/// The refresh token appears here once; tessera keeps only its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// A signed access token (JWT, `typ: at+jwt`): send it as
    /// `Authorization: Bearer`. Verifiable with the JWKS, no store call.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token (`tsr_…`): exchange it at `POST /v1/tokens/refresh`
    /// (or `POST /token`, `grant_type=refresh_token`) for a new pair. Each
    /// one works once.
    pub refresh_token: String,
    /// The public handle of the session behind the tokens (the `sid`
    /// claim): list and revoke it like any session.
    pub handle: String,
    /// RFC 3339: the session's absolute deadline, after which the refresh
    /// token stops working whatever happens. It also stops after the idle
    /// timeout without a refresh, and at once when the session is revoked.
    pub refresh_expires_at: String,
}

/// An RFC 7662 introspection answer. Inactive tokens give only
/// `{"active": false}`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    /// Whether the token is live now (for access tokens: valid signature,
    /// unexpired, and its session still live).
    pub active: bool,
    /// `access_token`, `refresh_token` or `session_token` (the RFC 7009
    /// §4.1.2 type-hint vocabulary, extended with tessera's opaque session
    /// token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The session's public handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issuer (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Token id (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The client the token was issued to, if any (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user name (RFC 7662 `username`), same as `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Introspection {
    /// `{"active": false}`.
    ///
    /// ```
    /// let body = serde_json::to_value(tessera_server::tokens::types::Introspection::inactive())?;
    /// assert_eq!(body, serde_json::json!({"active": false}));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn inactive() -> Self {
        Self::default()
    }
}
