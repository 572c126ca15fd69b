//! The request guard: the one decision, shared by every integration, of
//! whether an HTTP request may act on its session.
//!
//! The axum layer (`tessera-axum`) and `tessera serve`'s request-check API
//! (used by the Node and Python clients) both run exactly this code, so a
//! request is accepted or refused the same way whichever integration sees
//! it. It follows the OWASP CSRF Prevention Cheat Sheet ("Fetch Metadata",
//! "Verifying Origin With Standard Headers", "Synchronizer Token Pattern")
//! and ASVS 5.0 V3.5.1 (CSRF defences on state-changing requests):
//!
//! 1. **Safe methods** (GET, HEAD, OPTIONS, TRACE) and **bearer-authenticated**
//!    requests pass: a browser never attaches a bearer token by itself, so
//!    such a request carries no ambient authority to forge.
//! 2. **Origin check**, on every other request, with or without a session
//!    cookie ([`OriginCheck`]). Running it on cookie-less requests is what
//!    stops login CSRF: another site cannot post the sign-in form.
//! 3. **Token check**, when the request carries a session cookie that opens
//!    a live session: a valid masked CSRF token of *that* session must be
//!    presented ([`CsrfSecret::verify`](crate::csrf::CsrfSecret::verify),
//!    constant-time). A cookie that opens no live session (expired, revoked,
//!    malformed, ambiguous) carries no authority, so the request proceeds as
//!    a session-less one and a user whose session timed out can sign in
//!    again.
//!
//! The guard only reads: a refused request changes nothing in the store.
//! Steps 1 and 2 need no store call ([`precheck`]); step 3 loads the session
//! ([`check_token`]), which an integration may defer until it knows it
//! needs the token (the axum layer reads a form body only then).
//!
//! ```
//! use tessera::csrf::{CsrfRejection, OriginCheck};
//! use tessera::guard::{self, Credential, GuardStep, RequestFacts};
//!
//! let origins = OriginCheck::default();
//! let post = RequestFacts {
//!     method: "POST",
//!     sec_fetch_site: Some("cross-site"),
//!     origin: Some("https://evil.test"),
//!     host: Some("app.test"),
//! };
//! // Refused before any store call, with or without a cookie.
//! assert_eq!(guard::precheck(&origins, Credential::Cookie, &post), Err(CsrfRejection::CrossSite));
//! assert_eq!(guard::precheck(&origins, Credential::Absent, &post), Err(CsrfRejection::CrossSite));
//! // A bearer token carries no ambient authority.
//! assert_eq!(guard::precheck(&origins, Credential::Bearer, &post), Ok(GuardStep::Pass));
//!
//! let same_origin = RequestFacts { sec_fetch_site: Some("same-origin"), ..post };
//! assert_eq!(guard::precheck(&origins, Credential::Cookie, &same_origin), Ok(GuardStep::RequireToken));
//! ```

use crate::audit::{self, AuditKind};
use crate::csrf::{CsrfRejection, OriginCheck, is_unsafe_method};
use crate::error::SessionError;
use crate::record::SessionRecord;
use crate::session::Session;

/// How the request presented its session credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// No session cookie and no bearer token.
    Absent,
    /// Something in the session cookie (well-formed or not): ambient
    /// authority that a browser attaches by itself.
    Cookie,
    /// `Authorization: Bearer tss_…`: never attached by a browser on its own.
    Bearer,
}

/// What the guard sees of a request: its method and the headers the origin
/// check reads. Header values that were present but not readable as text
/// must be passed as `Some("")` (which the check refuses), never as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The request method, as sent (methods are case-sensitive, RFC 9110
    /// §9.1).
    pub method: &'a str,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The host the browser addressed (`Host`, or HTTP/2 `:authority`).
    pub host: Option<&'a str>,
}

/// What remains to check after [`precheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardStep {
    /// Nothing: the request may proceed.
    Pass,
    /// An unsafe request that presented a session cookie: run
    /// [`check_token`] with the CSRF token it carries.
    RequireToken,
}

/// Whether [`precheck`] looks at a request at all: only an unsafe method
/// (RFC 9110 §9.2.1) without a bearer token can be forged cross-site, so
/// everything else passes without its headers being read. An integration
/// may call this first and skip collecting the [`RequestFacts`] of a
/// request that passes anyway.
///
/// ```
/// use tessera::guard::{Credential, guards};
/// assert!(guards(Credential::Cookie, "POST"));
/// assert!(guards(Credential::Absent, "DELETE"));
/// assert!(!guards(Credential::Cookie, "GET"));
/// assert!(!guards(Credential::Bearer, "POST"));
/// ```
pub fn guards(credential: Credential, method: &str) -> bool {
    credential != Credential::Bearer && is_unsafe_method(method)
}

/// Steps 1 and 2 of the [module rules](self): no store call.
///
/// # Errors
///
/// The [`CsrfRejection`] of the origin check.
pub fn precheck(
    origins: &OriginCheck,
    credential: Credential,
    facts: &RequestFacts<'_>,
) -> Result<GuardStep, CsrfRejection> {
    if !guards(credential, facts.method) {
        return Ok(GuardStep::Pass);
    }
    origins.check(facts.sec_fetch_site, facts.origin, facts.host)?;
    Ok(match credential {
        Credential::Cookie => GuardStep::RequireToken,
        _ => GuardStep::Pass,
    })
}

/// Step 3 of the [module rules](self): if `session` is live, `token` must be
/// one of its CSRF tokens. Loads the session (without touching it) if that
/// was not done yet.
///
/// The outer `Result` is the store (fail closed, 503); the inner one the
/// verdict.
///
/// # Errors
///
/// Store errors.
pub async fn check_token(
    session: &Session,
    token: Option<&str>,
) -> Result<Result<(), CsrfRejection>, SessionError> {
    if !session.is_live().await? {
        return Ok(Ok(()));
    }
    Ok(match token {
        None => Err(CsrfRejection::MissingToken),
        Some(token) if session.verify_csrf(token).await? => Ok(()),
        Some(_) => Err(CsrfRejection::InvalidToken),
    })
}

/// The whole guard for an integration that has the CSRF token at hand:
/// [`precheck`], then [`check_token`] when needed.
///
/// ```
/// use tessera::{Session, SessionManager};
/// use tessera::cookie::Presented;
/// use tessera::csrf::{CsrfRejection, OriginCheck};
/// use tessera::guard::{self, Credential, RequestFacts};
/// use tessera::session::CookieAction;
/// use tessera::store::MemoryStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// let first = Session::new(manager.clone(), Presented::Absent, Default::default());
/// first.login("alice").await?;
/// let csrf = first.csrf_token().await?.unwrap_or_default();
/// let CookieAction::Set { token, .. } = first.commit().await? else { unreachable!() };
///
/// let post = RequestFacts { method: "POST", sec_fetch_site: Some("same-origin"), origin: None, host: None };
/// let next = Session::new(manager, Presented::Token(token), Default::default());
/// let origins = OriginCheck::default();
/// assert_eq!(guard::check(&origins, Credential::Cookie, &post, &next, None).await?,
///            Err(CsrfRejection::MissingToken));
/// assert_eq!(guard::check(&origins, Credential::Cookie, &post, &next, Some(&csrf)).await?, Ok(()));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Store errors (the outer `Result`).
pub async fn check(
    origins: &OriginCheck,
    credential: Credential,
    facts: &RequestFacts<'_>,
    session: &Session,
    token: Option<&str>,
) -> Result<Result<(), CsrfRejection>, SessionError> {
    match precheck(origins, credential, facts) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(GuardStep::Pass) => Ok(Ok(())),
        Ok(GuardStep::RequireToken) => check_token(session, token).await,
    }
}

/// Emits the `csrf_rejected` audit event for a refusal. `record` is the
/// session the request presented, if it was loaded; `detail` says which
/// request (method and path), never a token.
pub fn audit_rejection(rejection: CsrfRejection, record: Option<&SessionRecord>, detail: &str) {
    audit::emit(
        AuditKind::CsrfRejected,
        record.map(|r| &r.handle),
        record.and_then(|r| r.user_id.as_deref()),
        &format!("{} {detail}", rejection.as_code()),
    );
}
