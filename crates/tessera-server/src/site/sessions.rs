//! `/session` (status), `/session/keepalive`, and the device list
//! `/sessions`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tessera::Access;
use tessera::Revocation;
use tessera::record::{DataChanges, SessionHandle};
use utoipa::ToSchema;

use super::auth::CsrfForm;
use super::guard::{SiteCtx, fail, signed_in};
use super::pages;
use crate::api::types::{Revoked, SessionSummary};
use crate::audit::{self, ServerEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{FormOrJson, wants_json};
use crate::state::AppState;

/// `GET /session`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionStatus {
    /// The signed-in user.
    pub user: String,
    /// Public handle.
    pub handle: String,
    /// RFC 3339 creation (sign-in) time.
    pub created_at: String,
    /// RFC 3339 last recorded activity.
    pub last_seen_at: String,
    /// RFC 3339 time of the last sign-in or re-authentication.
    pub authenticated_at: Option<String>,
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline.
    pub absolute_expires_at: String,
    /// CSRF token for state-changing requests.
    pub csrf_token: String,
}

/// `GET /session`: the session's status. A status query: it does not count
/// as activity, so a page polling it cannot keep itself signed in.
#[utoipa::path(get, path = "/session", tag = "session",
    responses((status = 200, body = SessionStatus),
        (status = 401, body = ErrorBody, description = "reason: expired_idle, expired_absolute, revoked or missing")))]
pub async fn status(ctx: SiteCtx) -> Response {
    ctx.session.mark_status_query();
    let result = async {
        let (user, r) = signed_in(&ctx).await?;
        Ok::<_, ApiError>(SessionStatus {
            user,
            handle: r.handle.to_string(),
            created_at: r.created_at.to_rfc3339(),
            last_seen_at: r.last_seen_at.to_rfc3339(),
            authenticated_at: r.authenticated_at.map(|t| t.to_rfc3339()),
            idle_expires_at: r.deadlines.idle.to_rfc3339(),
            absolute_expires_at: r.deadlines.absolute.to_rfc3339(),
            csrf_token: ctx.session.csrf_token().await?.unwrap_or_default(),
        })
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Deadlines after a keepalive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deadlines {
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline (never moves).
    pub absolute_expires_at: String,
}

/// `POST /session/keepalive`: counts as activity and always moves the idle
/// deadline (never past the absolute one).
#[utoipa::path(post, path = "/session/keepalive", tag = "session",
    responses((status = 200, body = Deadlines), (status = 303),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn keepalive(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(_form): FormOrJson<CsrfForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (_, record) = signed_in(&ctx).await?;
        // Explicit activity: write now, whatever the touch step says.
        let updated = state
            .manager
            .modify(&record.hash, &DataChanges::default(), Access::Activity)
            .await?;
        Ok::<_, ApiError>(Deadlines {
            idle_expires_at: updated.deadlines.idle.to_rfc3339(),
            absolute_expires_at: updated.deadlines.absolute.to_rfc3339(),
        })
    }
    .await;
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => fail(json, e),
    }
}

/// `GET /sessions`: the user's sessions, the current one marked.
#[utoipa::path(get, path = "/sessions", tag = "session",
    responses((status = 200, body = [SessionSummary]), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, ctx: SiteCtx, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, current) = signed_in(&ctx).await?;
        let records = state.manager.list_user(&user).await?;
        let list: Vec<SessionSummary> = records
            .iter()
            .map(|r| SessionSummary::new(r, r.handle == current.handle))
            .collect();
        let csrf = ctx.session.csrf_token().await?.unwrap_or_default();
        Ok::<_, ApiError>((user, list, csrf))
    }
    .await;
    match result {
        Ok((_, list, _)) if json => Json(list).into_response(),
        Ok((user, list, csrf)) => Html(pages::sessions_page(&user, &list, &csrf)).into_response(),
        Err(e) if !json && e.status == StatusCode::UNAUTHORIZED => {
            Redirect::to("/login").into_response()
        }
        Err(e) => fail(json, e),
    }
}

/// The body of every revoke request: the user's current password, because
/// ending sessions needs a fresh proof of the password (ASVS 5.0 V7.5.2:
/// terminate sessions "having authenticated again with at least one
/// factor"). A stolen session alone can then not sign its victim out of
/// their other devices.
///
/// ```
/// use tessera_server::site::sessions::RevokeForm;
/// let form: RevokeForm = serde_urlencoded::from_str("password=s3cret&csrf_token=t")?;
/// assert_eq!(form.password, "s3cret");
/// let none: RevokeForm = serde_urlencoded::from_str("csrf_token=t")?;
/// assert!(none.password.is_empty()); // refused with 400 password_required
/// # Ok::<(), serde_urlencoded::de::Error>(())
/// ```
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RevokeForm {
    /// The user's current password; empty or absent is refused with 400
    /// `password_required`.
    #[serde(default)]
    pub password: String,
    /// CSRF token, for form posts. JSON clients send the `X-CSRF-Token`
    /// header instead: the session layer reads only the header and
    /// url-encoded form fields.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

/// Checks `password` for the signed-in `user` before a revocation: 400
/// `password_required` when empty; 429 `rate_limited` when the
/// [`LoginLimiter`](crate::ratelimit::LoginLimiter) says so; a wrong
/// password is counted there (against the user and the IP, like a failed
/// sign-in, so the form is no password oracle), audited as
/// `reauth_failed`, and answered 401 `invalid_credentials`.
async fn confirm_password(
    state: &AppState,
    ctx: &SiteCtx,
    user: &str,
    password: &str,
) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::bad_request(
            "password_required",
            "Enter your password to sign out a device; no session was revoked.",
        ));
    }
    if let Err(limited) = state.limiter.check(user, &ctx.ip) {
        audit::emit(
            ServerEvent::RateLimited,
            Some(user),
            Some(&ctx.ip),
            "revoke",
        );
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            .message("Too many wrong passwords; try again later. No session was revoked.");
        e.retry_after = Some(limited.retry_after.as_secs().saturating_add(1));
        return Err(e);
    }
    if !state.users.verify(user, password).await? {
        state.limiter.failed(user, &ctx.ip);
        audit::emit(
            ServerEvent::ReauthFailed,
            Some(user),
            Some(&ctx.ip),
            "revoke",
        );
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials")
                .message("The password is not correct; no session was revoked."),
        );
    }
    Ok(())
}

async fn revoke_inner(
    state: &AppState,
    ctx: &SiteCtx,
    handle: &str,
    password: &str,
) -> Result<(), ApiError> {
    let (user, _) = signed_in(ctx).await?;
    let handle = SessionHandle::parse(handle).ok_or_else(ApiError::not_found)?;
    confirm_password(state, ctx, &user, password).await?;
    // Only the user's own sessions: someone else's handle is "not found".
    if state
        .manager
        .revoke(&handle, Some(&user), Revocation::OtherDevice)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// `DELETE /sessions/{handle}`: revokes one of the user's sessions; the
/// body (JSON or form) carries the current password.
#[utoipa::path(delete, path = "/sessions/{handle}", tag = "session",
    params(("handle" = String, Path)),
    request_body = RevokeForm,
    responses((status = 204), (status = 400, body = ErrorBody, description = "password_required"),
        (status = 401, body = ErrorBody, description = "unauthenticated or invalid_credentials"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    Path(handle): Path<String>,
    FormOrJson(form): FormOrJson<RevokeForm>,
) -> Response {
    match revoke_inner(&state, &ctx, &handle, &form.password).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(wants_json(&headers), e),
    }
}

/// `POST /sessions/{handle}/revoke`: the HTML form variant of `DELETE`.
pub async fn revoke_form(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    Path(handle): Path<String>,
    FormOrJson(form): FormOrJson<RevokeForm>,
) -> Response {
    match revoke_inner(&state, &ctx, &handle, &form.password).await {
        Ok(()) => Redirect::to("/sessions").into_response(),
        Err(e) => fail(wants_json(&headers), e),
    }
}

/// `POST /sessions/revoke-others`: signs out every other device, after the
/// current password (see [`RevokeForm`]).
#[utoipa::path(post, path = "/sessions/revoke-others", tag = "session",
    request_body = RevokeForm,
    responses((status = 200, body = Revoked), (status = 303),
        (status = 400, body = ErrorBody, description = "password_required"),
        (status = 401, body = ErrorBody, description = "unauthenticated or invalid_credentials"),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn revoke_others(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(form): FormOrJson<RevokeForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, current) = signed_in(&ctx).await?;
        confirm_password(&state, &ctx, &user, &form.password).await?;
        let n = state
            .manager
            .revoke_user(&user, Some(&current.handle), Revocation::OtherDevice)
            .await?;
        crate::metrics::count_revoked(n);
        Ok::<_, ApiError>(Revoked { revoked: n })
    }
    .await;
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/sessions").into_response(),
        Err(e) => fail(json, e),
    }
}
