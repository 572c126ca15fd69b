//! `/v1/requests/…`: sessions for applications in other languages, decided
//! by the same code as the axum layer.
//!
//! A client middleware (the Node and Python packages in `clients/`) sends
//! what it saw of each incoming request to `POST /v1/requests/check` and
//! gets back what to do: serve it with a session, serve it anonymously, or
//! refuse it (CSRF / origin), plus the `Set-Cookie` values to pass on. The
//! decision runs [`tessera::guard`] (the CSRF / origin rules) and
//! [`tessera::Session`] (credential loading, expiry, the touch policy) —
//! the very code behind [`tessera_axum::SessionLayer`] — and the cookies are
//! rendered with this server's [`tessera::cookie::CookieConfig`], so no
//! client re-implements any of it. Sign-in, rotation and sign-out go through
//! the same [`tessera::Session`] operations (`/v1/requests/login`,
//! `rotate`, `logout`).
//!
//! The wire contract is `clients/PROTOCOL.md`.

pub mod types;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use tessera::cookie::Presented;
use tessera::guard::{self, Credential, GuardStep, RequestFacts};
use tessera::record::{ClientMeta, Data, DataChanges};
use tessera::session::CookieAction;
use tessera::store::{PatchOp, PatchOutcome};
use tessera::{Access, Session, SessionError};

use self::types::{
    CheckBatch, CheckBatchResponse, CheckPatch, CheckRequest, CheckResponse, Installed,
    LoginRequest, Outcome, PatchOutcome as WriteOutcome, PresentedToken, SignedOut,
};
use super::types::{BodyToken, SessionView, checked_at, valid_data_keys, valid_user_id};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Longest accepted method name: real ones are a few letters.
const MAX_METHOD_LEN: usize = 32;

/// Checks one incoming request of a client application.
#[utoipa::path(post, path = "/v1/requests/check", tag = "v1",
    request_body = CheckRequest,
    responses(
        (status = 200, body = CheckResponse, description = "The decision: session, no_session or refused"),
        (status = 400, body = ErrorBody, description = "invalid_method, invalid_header, invalid_json, \
            invalid_data, invalid_patch; nothing was written"),
        (status = 401, body = ErrorBody, description = "No valid API key"),
        (status = 413, body = ErrorBody, description = "data_too_large: the patch would make the \
            session data exceed max_data_bytes; nothing was written"),
        (status = 503, body = ErrorBody, description = "The session store did not answer: fail closed")),
    security(("api_key" = [])))]
pub async fn check(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CheckRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    decide(&state, req).await.map(Json)
}

/// Checks several incoming requests in one call: a client serving many
/// requests at once sends their checks together instead of one call each.
/// Each is decided exactly as by `POST /v1/requests/check`, concurrently;
/// one with bad input gets the outcome `bad_request` without affecting the
/// others. If the store fails for any of them, the whole call is a 503
/// (fail closed).
#[utoipa::path(post, path = "/v1/requests/check-batch", tag = "v1",
    request_body = CheckBatch,
    responses(
        (status = 200, body = CheckBatchResponse, description = "One decision per request, in order"),
        (status = 400, body = ErrorBody, description = "invalid_json, invalid_batch (empty or more than MAX_BATCH requests)"),
        (status = 401, body = ErrorBody, description = "No valid API key"),
        (status = 503, body = ErrorBody, description = "The session store did not answer: fail closed")),
    security(("api_key" = [])))]
pub async fn check_batch(
    State(state): State<AppState>,
    JsonBody(batch): JsonBody<CheckBatch>,
) -> Result<Json<CheckBatchResponse>, ApiError> {
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_batch",
            format!("send 1 to {MAX_BATCH} requests"),
        ));
    }
    let decisions =
        futures_util::future::join_all(batch.requests.into_iter().map(|req| decide(&state, req)))
            .await;
    let mut results = Vec::with_capacity(decisions.len());
    for decision in decisions {
        results.push(match decision {
            Ok(answer) => answer,
            // Bad input of one request (a method, a header, a patch) is
            // that request's answer; it does not fail the others.
            Err(e) if e.status.is_client_error() => CheckResponse {
                outcome: Outcome::BadRequest,
                reason: Some(e.body.error.to_owned()),
                status: Some(e.status.as_u16()),
                ..CheckResponse::empty()
            },
            Err(e) => return Err(e),
        });
    }
    Ok(Json(CheckBatchResponse { results }))
}

/// Most requests in one `check-batch` call.
pub const MAX_BATCH: usize = 256;

/// The decision for one incoming request (see [`check`]).
async fn decide(state: &AppState, req: CheckRequest) -> Result<CheckResponse, ApiError> {
    let method = valid_method(&req.method)?;
    let headers = credential_headers(req.cookie.as_deref(), req.authorization.as_deref())?;
    // Bad patch input is refused before anything is read or written.
    let patch = req.patch.map(patch_of).transpose()?;
    let (presented, credential) =
        tessera_axum::find_credential(&state.cookie, req.authorization.is_some(), &headers);
    let token = presented.token().map(|t| t.expose().to_owned());
    if let (Some((expect, changes)), Credential::Bearer, Presented::Token(presented), None) =
        (&patch, credential, &presented, &state.dbsc)
        && let Some(answer) = write_directly(state, presented, expect, changes, req.touch).await?
    {
        return Ok(answer);
    }
    let mut session = Session::new(state.manager.clone(), presented, ClientMeta::default());
    if let Some(engine) = &state.dbsc {
        // The DBSC gate of the layer: the bound cookie is in the same
        // `Cookie` header as the session cookie.
        let bound = tessera_axum::dbsc::cookie_value(&headers, &engine.config().cookie_name);
        session = session.with_dbsc(engine.clone(), bound);
    }
    if !req.touch || patch.is_some() {
        // With a patch, its write is the request's activity (it moves the
        // idle deadline): no separate touch write before it.
        session.mark_status_query();
    }

    let facts = RequestFacts {
        method: method.as_str(),
        sec_fetch_site: req.sec_fetch_site.as_deref(),
        origin: req.origin.as_deref(),
        host: req.host.as_deref(),
    };
    let verdict = match guard::precheck(&state.origin, credential, &facts) {
        Err(rejection) => Err((rejection, None)),
        Ok(GuardStep::Pass) => Ok(()),
        Ok(_) => match guard::check_token(&session, req.csrf_token.as_deref()).await? {
            Ok(()) => Ok(()),
            Err(rejection) => Err((rejection, session.record().await?)),
        },
    };
    if let Err((rejection, record)) = verdict {
        // The guard only read: nothing was written (the patch neither),
        // nothing is committed.
        guard::audit_rejection(
            rejection,
            record.as_ref(),
            &format!("{method} (client check)"),
        );
        return Ok(CheckResponse {
            outcome: Outcome::Refused,
            reason: Some(rejection.as_code().to_owned()),
            status: Some(403),
            ..CheckResponse::empty()
        });
    }

    // Load (as a handler reading the session would), then commit: the
    // commit applies the touch policy (one write at most, none inside the
    // touch step) and says whether a dead cookie must go.
    session.is_live().await?;
    let action = session.commit().await?;
    let set_cookie = cookie_headers(state, credential, action)?;
    let Some(record) = session.record().await? else {
        let reason = session
            .end_reason()
            .await?
            .map_or("missing", |end| end.as_code());
        return Ok(no_session(reason, set_cookie));
    };
    let (record, patched) = match patch {
        None => (record, None),
        Some((expect, changes)) => {
            // One compare-and-set on the record just loaded; a write in
            // between makes the store re-read and check `expect` again.
            match state
                .manager
                .modify_expecting_loaded(&record, &expect, &changes)
                .await
            {
                Ok((true, written)) => (written, Some(WriteOutcome::Applied)),
                Ok((false, latest)) => (latest, Some(WriteOutcome::Conflict)),
                // Ended between the load and the write: never resurrected.
                Err(SessionError::NotFound) => {
                    let clear =
                        cookie_headers(state, credential, CookieAction::Clear { logout: false })?;
                    return Ok(no_session("missing", clear));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let touch_due = (!req.touch).then(|| {
        let policy = state.manager.policy();
        policy.needs_touch_for(record.class, &record.deadlines, state.manager.now())
    });
    let mut view = view(&record)?;
    view.tier = session.tier().await?.map(tessera::dbsc::Tier::as_str);
    Ok(CheckResponse {
        outcome: Outcome::Session,
        token,
        session: Some(view),
        set_cookie,
        patch: patched,
        touch_due,
        ..CheckResponse::empty()
    })
}

/// A client's data write (a bearer check carrying a patch, as the clients
/// send from a request that already passed its own check): one atomic
/// [`tessera::Store::patch`], without loading the session first — the same
/// write the axum layer makes for a handler's `insert`/`remove`. The store
/// checks both deadlines against now, the owner and the expectations in
/// that one step, and never resurrects an ended session. The kill switches
/// (per-user and global not-before) are checked by the request's own check,
/// as the layer checks them once per request, not again for its writes.
///
/// `None` sends the check down the general path: the session is not live
/// (that path finds the reason), or an expectation failed only because the
/// wire contract reads an expected `null` as "absent or null" and the store
/// compares exactly (the general path applies the contract's rule).
async fn write_directly(
    state: &AppState,
    token: &tessera::token::SessionToken,
    expect: &Data,
    changes: &DataChanges,
    touch: bool,
) -> Result<Option<CheckResponse>, ApiError> {
    let hash = token.hash();
    let outcome = state
        .manager
        .patch(&hash, None, patch_ops(expect, changes), Access::Activity)
        .await;
    let (record, patched) = match outcome {
        Ok(PatchOutcome::Applied(record)) => (record, WriteOutcome::Applied),
        Ok(PatchOutcome::Refused { record, .. }) => {
            // Decided on the record the store just returned, by the
            // contract's rule: no store call if it fails again.
            match state
                .manager
                .modify_expecting_loaded(&record, expect, changes)
                .await
            {
                Ok((true, written)) => (written, WriteOutcome::Applied),
                Ok((false, latest)) => (latest, WriteOutcome::Conflict),
                Err(SessionError::NotFound) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(PatchOutcome::Missing) | Err(SessionError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let touch_due = (!touch).then(|| {
        let policy = state.manager.policy();
        policy.needs_touch_for(record.class, &record.deadlines, state.manager.now())
    });
    Ok(Some(CheckResponse {
        outcome: Outcome::Session,
        token: Some(token.expose().to_owned()),
        session: Some(view(&record)?),
        patch: Some(patched),
        touch_due,
        ..CheckResponse::empty()
    }))
}

/// A check's patch as store operations: each expected key is compared and
/// set (or removed) by its first change, keys only expected are compared
/// and left as they are, the other changes follow in order.
fn patch_ops(expect: &Data, changes: &DataChanges) -> Vec<PatchOp> {
    let cas = |key: &str, new: Option<Value>| PatchOp::CompareAndSet {
        key: key.to_owned(),
        expected: expect.get(key).filter(|v| !v.is_null()).cloned(),
        new,
    };
    let mut ops: Vec<PatchOp> = expect
        .iter()
        .filter(|(key, _)| !changes.iter().any(|(k, _)| k == key.as_str()))
        .map(|(key, value)| cas(key, (!value.is_null()).then(|| value.clone())))
        .collect();
    let mut compared = std::collections::HashSet::new();
    for (key, value) in changes.iter() {
        let value = value.cloned();
        ops.push(if expect.contains_key(key) && compared.insert(key) {
            cas(key, value)
        } else if let Some(value) = value {
            PatchOp::Set {
                key: key.to_owned(),
                value,
            }
        } else {
            PatchOp::Remove {
                key: key.to_owned(),
            }
        });
    }
    ops
}

/// The answer for a request without a live session.
fn no_session(reason: &str, set_cookie: Vec<String>) -> CheckResponse {
    CheckResponse {
        outcome: Outcome::NoSession,
        reason: Some(reason.to_owned()),
        set_cookie,
        ..CheckResponse::empty()
    }
}

/// A check's patch as the expectation and the changes, or bad input (the
/// same key rules as `PATCH /v1/sessions/data`).
fn patch_of(patch: CheckPatch) -> Result<(Data, DataChanges), ApiError> {
    valid_data_keys(
        patch
            .set
            .keys()
            .chain(patch.remove.iter())
            .chain(patch.expect.keys()),
    )?;
    if patch.set.is_empty() && patch.remove.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_patch",
            "a patch sets or removes at least one key",
        ));
    }
    let mut changes = DataChanges::default();
    for (key, value) in patch.set {
        changes.set(key, value);
    }
    for key in patch.remove {
        changes.remove(key);
    }
    Ok((patch.expect, changes))
}

/// Signs a user in: a brand-new token; the presented one (if any) stops
/// working at once.
#[utoipa::path(post, path = "/v1/requests/login", tag = "v1",
    request_body = LoginRequest,
    responses(
        (status = 200, body = Installed),
        (status = 400, body = ErrorBody, description = "invalid_user_id, invalid_token, invalid_json, remember_not_configured"),
        (status = 401, body = ErrorBody, description = "No valid API key"),
        (status = 409, body = ErrorBody, description = "session_limit: the user holds \
            max_sessions_per_user sessions and session_limit_action is refuse_new"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<Installed>, ApiError> {
    valid_user_id(&req.user_id)?;
    let class = crate::lifetime::requested_class(&state, req.remember)?;
    let checked_at = checked_at(req.checked_at.as_deref(), state.manager.now())?;
    let presented = match &req.token {
        None => Presented::Absent,
        Some(token) => Presented::Token(token.token().cloned().ok_or_else(|| {
            ApiError::bad_request("invalid_token", "token is not a tessera session token")
        })?),
    };
    let client = ClientMeta::new(
        req.ip.as_deref().and_then(ClientMeta::parse_ip),
        req.user_agent,
    );
    let session = Session::new(state.manager.clone(), presented, client);
    match checked_at {
        Some(at) => session.login_checked(&req.user_id, class, at).await?,
        None => session.login_with_class(&req.user_id, class).await?,
    }
    installed(&state, &session).await
}

/// Issues a new token for the presented session (after a privilege change);
/// the old one stops working at once.
#[utoipa::path(post, path = "/v1/requests/rotate", tag = "v1",
    request_body = PresentedToken,
    responses(
        (status = 200, body = Installed),
        (status = 401, body = ErrorBody, description = "No live session (reason: missing, expired_idle, expired_absolute, …), or no valid API key"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PresentedToken>,
) -> Result<Json<Installed>, ApiError> {
    let session = presented_session(&state, req.token.as_ref());
    match session.rotate().await {
        Ok(()) => installed(&state, &session).await,
        Err(SessionError::Unauthenticated) => {
            let reason = session.end_reason().await?;
            Err(ApiError::unauthenticated(
                reason.map_or("missing", |end| end.as_code()),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Signs out: deletes the presented session and clears the cookie. Signing
/// out without a live session is not an error (`ended: false`).
#[utoipa::path(post, path = "/v1/requests/logout", tag = "v1",
    request_body = PresentedToken,
    responses(
        (status = 200, body = SignedOut),
        (status = 401, body = ErrorBody, description = "No valid API key"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PresentedToken>,
) -> Result<Json<SignedOut>, ApiError> {
    let session = presented_session(&state, req.token.as_ref());
    let ended = session.logout().await?;
    let action = session.commit().await?;
    Ok(Json(SignedOut {
        ended,
        set_cookie: cookie_headers(&state, Credential::Cookie, action)?,
    }))
}

/// A session for a token sent in a body. A value that is not a token opens
/// no session (as a junk cookie would not), without a store call.
fn presented_session(state: &AppState, token: Option<&BodyToken>) -> Session {
    let presented = token.map_or(Presented::Absent, BodyToken::presented);
    Session::new(state.manager.clone(), presented, ClientMeta::default())
}

/// Commits a session that was just issued a token and answers with it.
async fn installed(state: &AppState, session: &Session) -> Result<Json<Installed>, ApiError> {
    let action = session.commit().await?;
    let CookieAction::Set { token, .. } = &action else {
        // login and rotate always issue a token; anything else is a bug.
        tracing::error!("a sign-in or rotation did not issue a token");
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal"));
    };
    let token = token.expose().to_owned();
    let set_cookie = cookie_headers(state, Credential::Cookie, action)?;
    let record = session
        .record()
        .await?
        .ok_or_else(|| ApiError::unauthenticated("missing"))?;
    Ok(Json(Installed {
        token,
        session: view(&record)?,
        set_cookie,
    }))
}

/// The `Set-Cookie` values for a cookie action, rendered with this server's
/// cookie policy, as the axum layer renders them. Bearer requests never get
/// a cookie: a token they did not receive in one must not become ambient.
fn cookie_headers(
    state: &AppState,
    credential: Credential,
    action: CookieAction,
) -> Result<Vec<String>, ApiError> {
    if credential == Credential::Bearer {
        return Ok(Vec::new());
    }
    Ok(match action {
        CookieAction::Keep => Vec::new(),
        CookieAction::Set { token, max_age } => vec![state.cookie.set_cookie(&token, max_age)],
        CookieAction::Clear { .. } => vec![state.cookie.clear_cookie()],
    })
}

fn view(record: &tessera::record::SessionRecord) -> Result<SessionView, ApiError> {
    SessionView::new(record).map_err(|e| ApiError::from(SessionError::from(e)))
}

/// A method name as RFC 9110 §9.1 allows (a `token`), of a sane length.
fn valid_method(method: &str) -> Result<Method, ApiError> {
    if method.is_empty() || method.len() > MAX_METHOD_LEN {
        return Err(invalid_method());
    }
    Method::from_bytes(method.as_bytes()).map_err(|_| invalid_method())
}

fn invalid_method() -> ApiError {
    ApiError::bad_request(
        "invalid_method",
        format!("method must be an HTTP method name of 1 to {MAX_METHOD_LEN} characters"),
    )
}

/// The credential headers as a request would carry them, so that
/// [`tessera_axum::find_credential`] reads them exactly as the layer reads
/// a real request. Values that no HTTP request could carry (control
/// characters) are bad input.
fn credential_headers(
    cookie: Option<&str>,
    authorization: Option<&str>,
) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::COOKIE, cookie),
        (header::AUTHORIZATION, authorization),
    ] {
        if let Some(value) = value {
            let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                ApiError::bad_request(
                    "invalid_header",
                    format!("{name} is not a valid header value"),
                )
            })?;
            headers.insert(name, value);
        }
    }
    Ok(headers)
}
