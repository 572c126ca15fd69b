//! The CSRF guard (OWASP CSRF Prevention Cheat Sheet). The decision is
//! [`tessera::guard`], the one implementation that `tessera serve`'s request
//! check (for the Node and Python clients) runs too; this module reads its
//! inputs from the request and finds the token in a header or form body.
//!
//! For every unsafe method (anything but GET, HEAD, OPTIONS, TRACE) of a
//! request that is not bearer-authenticated:
//!
//! 1. **Origin check**, always, with or without a session:
//!    `Sec-Fetch-Site: cross-site` is refused, `same-site` is refused unless
//!    the `Origin` is trusted, a foreign `Origin` is refused — whatever token
//!    the request carries. Running it on session-less requests is what stops
//!    login CSRF: another site cannot post the sign-in form.
//! 2. **Token check**, when the request carries a session cookie that opens
//!    a live session: a valid masked token of *that* session must arrive in
//!    the `X-CSRF-Token` header or, for `application/x-www-form-urlencoded`
//!    bodies, in the `csrf_token` field. Verification is constant-time
//!    ([`tessera::Session::verify_csrf`]).
//!
//! A cookie that opens no live session (expired, revoked, malformed,
//! ambiguous duplicates) carries no authority: the request proceeds as a
//! session-less one (step 1 still applies), so a user whose session timed
//! out can still sign in again. Requiring a token there would protect
//! nothing, since the handler sees no session.
//!
//! A rejected request never reaches the handler and changes nothing in the
//! store: the guard only reads.
//!
//! Forms posted as `multipart/form-data` must send the token in the header
//! (the guard does not parse multipart bodies): tokens in URLs would leak
//! through logs and `Referer`.

use axum::body::Body;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tessera::csrf::{CsrfRejection, OriginCheck};
use tessera::guard::{self as rules, Credential, GuardStep, RequestFacts};

use crate::rejection::SessionRejection;

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const ORIGIN: HeaderName = HeaderName::from_static("origin");

/// The part of the guard that needs no store call and no body
/// ([`tessera::guard::precheck`]): `Ok(true)` when the request must still
/// pass [`check_token`], `Ok(false)` when it may proceed.
///
/// Split from [`check_token`] so that the layer runs it inline and only an
/// unsafe, cookie-authenticated request pays for the asynchronous part.
pub(crate) fn precheck(
    origins: &OriginCheck,
    credential: Credential,
    token_required: bool,
    req: &Request<Body>,
) -> Result<bool, SessionRejection> {
    // Safe methods and bearer requests pass whatever their headers say:
    // the common read path does not look them up.
    if !rules::guards(credential, req.method().as_str()) {
        return Ok(false);
    }
    let headers = req.headers();
    // A header that is present but not visible ASCII must not read as
    // absent (which would let the token decide): it is passed as an empty
    // value, which the check refuses.
    let facts = RequestFacts {
        method: req.method().as_str(),
        sec_fetch_site: header_text(headers, &SEC_FETCH_SITE),
        origin: header_text(headers, &ORIGIN),
        // HTTP/2 carries the host in `:authority`, which hyper exposes in
        // the URI.
        host: header_text(headers, &HOST).or_else(|| req.uri().authority().map(|a| a.as_str())),
    };
    match rules::precheck(origins, credential, &facts) {
        Ok(GuardStep::Pass) => Ok(false),
        // `token_required` is false only for the DBSC endpoints, whose
        // requests are authenticated by a signed proof instead (the origin
        // check above still ran).
        Ok(_) => Ok(token_required),
        Err(rejection) => Err(reject(rejection, req, None)),
    }
}

/// The rest of the guard, for a request [`precheck`] sent on: if the
/// session is live, the request must carry one of its CSRF tokens. Returns
/// the request (its body restored if it was buffered) or the rejection.
pub(crate) async fn check_token(
    form_limit: usize,
    session: &tessera::Session,
    req: Request<Body>,
) -> Result<Request<Body>, SessionRejection> {
    // Only a live session needs a token: checking that first (a store read,
    // no write; a failure fails closed) spares buffering the body of every
    // form posted with a dead cookie.
    if !session.is_live().await? {
        return Ok(req);
    }
    let (req, token) = find_token(req, form_limit).await?;
    match rules::check_token(session, token.as_deref()).await? {
        Ok(()) => Ok(req),
        Err(rejection) => {
            // Only a refusal needs the record (for the audit event), so the
            // accepted path does not copy it.
            let record = session.record().await?;
            Err(reject(rejection, &req, record.as_ref()))
        }
    }
}

fn reject(
    rejection: CsrfRejection,
    req: &Request<Body>,
    record: Option<&tessera::record::SessionRecord>,
) -> SessionRejection {
    let detail = format!("{} {}", req.method(), req.uri().path());
    rules::audit_rejection(rejection, record, &detail);
    SessionRejection::Csrf(rejection)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or_default())
}

/// The token from the header, else from the form body (buffered up to
/// `limit` and put back for the handler).
async fn find_token(
    req: Request<Body>,
    limit: usize,
) -> Result<(Request<Body>, Option<String>), SessionRejection> {
    if let Some(value) = req.headers().get(CSRF_HEADER) {
        let token = value.to_str().map(str::to_owned).unwrap_or_default();
        return Ok((req, Some(token)));
    }
    if !is_form(req.headers()) {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(SessionRejection::PayloadTooLarge);
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not read a form body for the CSRF check");
            return Err(SessionRejection::BadRequest);
        }
    };
    let token = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = String::from_utf8_lossy(v.as_bytes());
        v.split(';').next().is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}
