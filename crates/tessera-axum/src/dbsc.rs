//! Device Bound Session Credentials (W3C DBSC) for axum applications: the
//! protocol's two endpoints, the bound-cookie gate and the tier extractors.
//!
//! The engine is [`tessera::dbsc`]; this module carries it over HTTP. Turn
//! it on with [`SessionConfig::with_dbsc`](crate::SessionConfig::with_dbsc)
//! and mount [`routes`] *inside* the [`SessionLayer`](crate::SessionLayer):
//!
//! - a response that signs a user in gets `Secure-Session-Registration`
//!   (and its legacy spelling), with a fresh single-use challenge;
//! - `POST` to the registration path binds the session to the browser's key
//!   and sets the short-lived bound cookie;
//! - `POST` to the refresh path answers `403` + `Secure-Session-Challenge`
//!   until a fresh proof from the bound key arrives, then sets a new bound
//!   cookie. It never redirects (a 3xx strands the deferred page) and
//!   answers `{"continue": false}` when the device session must end;
//! - every other request is classified by its bound cookie: in
//!   [`DbscMode::Required`](tessera::dbsc::DbscMode::Required) a bound
//!   session without a live bound cookie is not authenticated
//!   ([`AuthUser`](crate::AuthUser) answers 401 `device_unbound`); in
//!   additive mode it is served and the miss audited.
//!
//! The two endpoint POSTs carry the session cookie but no CSRF token: they
//! are authenticated by their proofs. The layer still runs the
//! `Origin` / `Sec-Fetch-Site` check on them.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use tessera::{SessionManager, store::MemoryStore};
//! use tessera::dbsc::{Dbsc, DbscConfig, DbscMode, MemoryDbscStore};
//! use tessera_axum::{BoundSession, SessionConfig, SessionLayer};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let config = DbscConfig { mode: DbscMode::Additive, ..DbscConfig::default() };
//! let dbsc = Dbsc::new(config, Arc::new(MemoryDbscStore::new()));
//! let app: Router = Router::new()
//!     // Sensitive routes demand a device-bound request, whatever the mode.
//!     .route("/payout", get(|s: BoundSession| async move { s.user_id }))
//!     .merge(tessera_axum::dbsc::routes(&dbsc))
//!     .layer(SessionLayer::with_config(manager, SessionConfig::default().with_dbsc(dbsc)));
//! # Ok(()) }
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use axum::routing::post;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tessera::dbsc::{Dbsc, DbscError, RefreshOutcome, Tier, header};
use tessera::record::SessionRecord;

use crate::extract::session_of;
use crate::rejection::SessionRejection;
use tessera::session::EndReason;

/// Longest bound-cookie value read (the engine's values are 43 bytes).
const MAX_COOKIE_VALUE: usize = 64;

/// The value of the cookie `name` in the request's `Cookie` headers, if
/// exactly one distinct value is present. Two different values mean none:
/// a planted duplicate must not choose which one counts.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::COOKIE};
/// let mut headers = HeaderMap::new();
/// headers.insert(COOKIE, HeaderValue::from_static("a=1; __Host-tessera-dbsc=xyz"));
/// assert_eq!(tessera_axum::dbsc::cookie_value(&headers, "__Host-tessera-dbsc").as_deref(), Some("xyz"));
/// headers.append(COOKIE, HeaderValue::from_static("__Host-tessera-dbsc=other"));
/// assert_eq!(tessera_axum::dbsc::cookie_value(&headers, "__Host-tessera-dbsc"), None);
/// ```
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<&str> = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key != name || value.len() > MAX_COOKIE_VALUE {
                continue;
            }
            match found {
                Some(seen) if seen != value => return None,
                _ => found = Some(value),
            }
        }
    }
    found.map(str::to_owned)
}

/// The first of `names` present in `headers`, as text.
fn field<'a>(headers: &'a HeaderMap, names: [&str; 2]) -> Option<&'a str> {
    names
        .into_iter()
        .find_map(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
}

/// The registration and refresh endpoints at the configured paths. Mount
/// them inside the [`SessionLayer`](crate::SessionLayer) configured with
/// the same engine ([`SessionConfig::with_dbsc`](crate::SessionConfig::with_dbsc)).
///
/// ```
/// # use std::sync::Arc;
/// # use tessera::dbsc::{Dbsc, DbscConfig, MemoryDbscStore};
/// let dbsc = Dbsc::new(DbscConfig::default(), Arc::new(MemoryDbscStore::new()));
/// let routes: axum::Router = tessera_axum::dbsc::routes(&dbsc);
/// ```
pub fn routes<S: Clone + Send + Sync + 'static>(dbsc: &Dbsc) -> Router<S> {
    let config = dbsc.config();
    let (register_engine, refresh_engine) = (dbsc.clone(), dbsc.clone());
    Router::new()
        .route(
            &config.registration_path,
            post(move |parts: Parts| async move { register(&register_engine, &parts).await }),
        )
        .route(
            &config.refresh_path,
            post(move |parts: Parts| async move { refresh(&refresh_engine, &parts).await }),
        )
}

/// The live session of a DBSC endpoint request, or why there is none.
async fn endpoint_session(
    parts: &Parts,
) -> Result<(tessera::Session, Option<SessionRecord>), SessionRejection> {
    let session = session_of(parts)?;
    // A browser's background request, not user activity: it must not keep
    // an idle session alive.
    session.mark_status_query();
    let record = session.record().await?;
    Ok((session, record))
}

/// `POST` registration path: verifies the proof, binds the session.
async fn register(dbsc: &Dbsc, parts: &Parts) -> Response {
    let (session, record) = match endpoint_session(parts).await {
        Ok(found) => found,
        Err(rejection) => return rejection.render(true),
    };
    let Some(record) = record else {
        // Plain JSON, not a layer rejection: an integration that turns 401
        // pages into sign-in redirects must not redirect this POST.
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "unauthenticated", "reason": "missing" }),
        );
    };
    let Some(proof) = field(&parts.headers, [header::RESPONSE, header::LEGACY_RESPONSE]) else {
        return refused("dbsc_proof_missing");
    };
    match dbsc.register(session.manager(), &record, proof).await {
        Ok(registered) => {
            let mut response = json(StatusCode::OK, &registered.config);
            set_cookie(&mut response, &registered.cookie.set_cookie());
            response
        }
        Err(DbscError::Refused(e)) => {
            tracing::info!(error = %e, "DBSC registration proof refused");
            refused("dbsc_proof_refused")
        }
        Err(DbscError::StaleChallenge) => refused("dbsc_challenge_unknown"),
        Err(DbscError::AlreadyBound) => refused("dbsc_already_bound"),
        Err(e) => unavailable(&e),
    }
}

/// `POST` refresh path: a challenge until a fresh proof from the bound key
/// arrives, then a new bound cookie. Never a redirect, never a 4xx other
/// than 403: the browser ends the device session on those.
async fn refresh(dbsc: &Dbsc, parts: &Parts) -> Response {
    let (session, record) = match endpoint_session(parts).await {
        Ok(found) => found,
        Err(rejection) => return rejection.render(true),
    };
    let Some(record) = record else {
        // Signed out, expired or revoked: the device session ends with it.
        return end_device_session();
    };
    let headers = &parts.headers;
    let session_id = field(headers, [header::SESSION_ID, header::LEGACY_SESSION_ID]);
    let proof = field(headers, [header::RESPONSE, header::LEGACY_RESPONSE]);
    let manager = session.manager();
    match dbsc.refresh(manager, &record, session_id, proof).await {
        Ok(RefreshOutcome::Refreshed { cookie, config }) => {
            let mut response = json(StatusCode::OK, &config);
            set_cookie(&mut response, &cookie.set_cookie());
            response
        }
        Ok(RefreshOutcome::Challenge { header, refused }) => {
            if let Some(why) = refused {
                tracing::info!(reason = %why, "DBSC refresh proof did not count: new challenge");
            }
            challenge(&header)
        }
        Err(DbscError::NotBound | DbscError::KeyMismatch) => end_device_session(),
        Err(DbscError::Session(e)) if !e.is_unavailable() => end_device_session(),
        Err(e) => unavailable(&e),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn set_cookie(response: &mut Response, value: &str) {
    match HeaderValue::try_from(value) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(_) => {
            tracing::error!("the bound cookie is not a valid header value (check its name)");
            *response = SessionRejection::Internal {
                reason: "cookie_header",
            }
            .render(true);
        }
    }
}

/// 400 with an `error` code: the proof does not count; nothing was stored.
fn refused(code: &'static str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": code, "reason": code }),
    )
}

/// `{"continue": false}`: the browser ends its device-bound session.
fn end_device_session() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "continue": false }))
}

/// 403 with a new challenge under both field names.
fn challenge(value: &str) -> Response {
    let mut response = json(StatusCode::FORBIDDEN, &serde_json::json!({}));
    if let Ok(value) = HeaderValue::try_from(value) {
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("secure-session-challenge"),
            value.clone(),
        );
        headers.insert(HeaderName::from_static("sec-session-challenge"), value);
    }
    response
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "DBSC endpoint: store failure, answering 503");
    SessionRejection::Unavailable.render(true)
}

/// Adds `Secure-Session-Registration` (and its legacy spelling) to a
/// response that signed `record` in, when the engine offers binding.
pub(crate) async fn offer_registration(
    dbsc: &Dbsc,
    session: &tessera::Session,
    response: &mut Response,
) -> Result<(), SessionRejection> {
    let Some(record) = session.record().await? else {
        return Ok(());
    };
    if record.user_id.is_none() {
        return Ok(());
    }
    let Some(value) = dbsc.registration_header(session.manager(), &record).await? else {
        return Ok(());
    };
    if let Ok(value) = HeaderValue::try_from(value) {
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("secure-session-registration"),
            value.clone(),
        );
        headers.insert(HeaderName::from_static("sec-session-registration"), value);
    }
    Ok(())
}

/// The request's device-binding tier ([`Tier::Bound`] only with a live
/// bound cookie of a device-bound session). Rejects with 401 without a live
/// session; `Option<DeviceTier>` gives `None` instead.
///
/// ```
/// use tessera::dbsc::Tier;
/// use tessera_axum::DeviceTier;
///
/// async fn page(DeviceTier(tier): DeviceTier) -> &'static str {
///     if tier == Tier::Bound { "device verified" } else { "verify your device to see more" }
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(page);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTier(pub Tier);

async fn tier_of(parts: &Parts) -> Result<Result<Tier, EndReason>, SessionRejection> {
    let session = session_of(parts)?;
    match session.tier().await? {
        Some(tier) => Ok(Ok(tier)),
        None => Ok(Err(session
            .end_reason()
            .await?
            .unwrap_or(EndReason::Unknown))),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DeviceTier {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        tier_of(parts)
            .await?
            .map(DeviceTier)
            .map_err(|reason| SessionRejection::Unauthenticated { reason })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for DeviceTier {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(tier_of(parts).await?.ok().map(DeviceTier))
    }
}

/// A signed-in user whose request proved its device (a live bound cookie
/// of a device-bound session): for the routes that demand it whatever the
/// mode. Rejects with 401 `device_unbound` when the session is not bound
/// or the request lacks its bound cookie, and as
/// [`AuthUser`](crate::AuthUser) does without a signed-in session.
///
/// ```
/// use tessera_axum::BoundSession;
///
/// async fn payout(s: BoundSession) -> String {
///     format!("payout for {}", s.user_id)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::post(payout);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BoundSession {
    /// The user id.
    pub user_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for BoundSession {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user =
            <crate::AuthUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        match user.session.0.tier().await? {
            Some(Tier::Bound) => Ok(Self {
                user_id: user.user_id,
            }),
            _ => Err(SessionRejection::Unauthenticated {
                reason: EndReason::DeviceUnbound,
            }),
        }
    }
}

/// Whether `req` is a `POST` to one of the engine's endpoints.
pub(crate) fn is_endpoint<B>(dbsc: &Dbsc, req: &http::Request<B>) -> bool {
    let config = dbsc.config();
    let path = req.uri().path();
    req.method() == http::Method::POST
        && (path == config.registration_path || path == config.refresh_path)
}
