//! `/session` (status), `/session/keepalive`, and the device list
//! `/sessions`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
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
use crate::activity::EventKind;
use crate::api::types::{Revoked, SessionSummary};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{FormOrJson, wants_json};
use crate::password_check::{CheckError, Door, check_password};
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

/// Query of `GET /sessions`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// A device to confirm signing out (its handle, or `others`): the
    /// page's confirmation without JavaScript.
    pub confirm: Option<String>,
}

/// `GET /sessions`: the user's sessions, the current one marked.
#[utoipa::path(get, path = "/sessions", tag = "session",
    responses((status = 200, body = [SessionSummary]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let json = wants_json(&headers);
    if json {
        return match summaries(&state, &ctx).await {
            Ok(list) => Json(list).into_response(),
            Err(e) => fail(json, e),
        };
    }
    // Read leniently: a malformed or repeated parameter shows the plain
    // list rather than an error.
    let q: ListQuery = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "confirm"))
        .map(|(_, v)| ListQuery { confirm: Some(v) })
        .unwrap_or_default();
    let confirm = match q.confirm.as_deref() {
        Some("others") => Some(pages::Confirm::Others),
        Some(handle) => Some(pages::Confirm::Device(handle)),
        None => None,
    };
    device_list(&state, &ctx, confirm, None, StatusCode::OK).await
}

/// The user's sessions as the API and the page show them.
async fn summaries(state: &AppState, ctx: &SiteCtx) -> Result<Vec<SessionSummary>, ApiError> {
    let (user, current) = signed_in(ctx).await?;
    let records = state.manager.list_user(&user).await?;
    Ok(records
        .iter()
        .map(|r| SessionSummary::new(r, r.handle == current.handle))
        .collect())
}

/// Renders the device list page with `status`: with `confirm` open and
/// `error` in it after a refused confirmation. Not signed in: to the
/// sign-in page.
async fn device_list(
    state: &AppState,
    ctx: &SiteCtx,
    confirm: Option<pages::Confirm<'_>>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let result = async {
        let list = summaries(state, ctx).await?;
        let csrf = ctx.session.csrf_token().await?.unwrap_or_default();
        Ok::<_, ApiError>((list, csrf))
    }
    .await;
    match result {
        Ok((list, csrf)) => {
            let view = pages::SessionsView {
                list: &list,
                csrf: &csrf,
                now: state.manager.now(),
                confirm,
                error,
            };
            (status, Html(pages::sessions_page(&view))).into_response()
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Redirect::to("/login").into_response(),
        Err(e) => fail(false, e),
    }
}

/// A refused confirmation of a form post, shown where it was asked: the
/// device list with the confirmation open and the reason in it. Other
/// errors (rate limiting, not found, signed out) get the error page.
async fn refused_form(
    state: &AppState,
    ctx: &SiteCtx,
    confirm: pages::Confirm<'_>,
    e: ApiError,
) -> Response {
    let asks_again = e.body.error == "password_required" || e.body.error == "invalid_credentials";
    if !asks_again {
        return fail(false, e);
    }
    let message = e
        .body
        .message
        .clone()
        .unwrap_or_else(|| pages::describe_error(e.body.error).to_owned());
    device_list(state, ctx, Some(confirm), Some(&message), e.status).await
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
/// `password_required` when empty; then the one password path of
/// [`crate::password_check`]: 429 `rate_limited` when the
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
    check_password(state, user, ctx.ip, password, Door::Revoke)
        .await
        .map_err(|e| match e {
            CheckError::Limited(_) => e
                .into_api("")
                .message("Too many wrong passwords; try again later. No session was revoked."),
            e => e.into_api("The password is not correct; no session was revoked."),
        })
}

async fn revoke_inner(
    state: &AppState,
    ctx: &SiteCtx,
    headers: &HeaderMap,
    handle: &str,
    password: &str,
) -> Result<(), ApiError> {
    let (user, _) = signed_in(ctx).await?;
    let handle = SessionHandle::parse(handle).ok_or_else(ApiError::not_found)?;
    confirm_password(state, ctx, &user, password).await?;
    // The device's name for the security activity, read before it goes.
    let device = state
        .manager
        .list_user(&user)
        .await?
        .iter()
        .find(|r| r.handle == handle)
        .map(|r| super::device::describe(r.client.user_agent.as_deref()));
    // Only the user's own sessions: someone else's handle is "not found".
    if state
        .manager
        .revoke(&handle, Some(&user), Revocation::OtherDevice)
        .await?
    {
        let device = device.unwrap_or_else(|| String::from("a device"));
        super::activity::note(
            state,
            ctx.ip,
            headers,
            &user,
            EventKind::DeviceSignedOut,
            &device,
        )
        .await;
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
    match revoke_inner(&state, &ctx, &headers, &handle, &form.password).await {
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
    match revoke_inner(&state, &ctx, &headers, &handle, &form.password).await {
        Ok(()) => Redirect::to("/sessions").into_response(),
        Err(e) if !wants_json(&headers) => {
            refused_form(&state, &ctx, pages::Confirm::Device(&handle), e).await
        }
        Err(e) => fail(true, e),
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
        super::activity::note(
            &state,
            ctx.ip,
            &headers,
            &user,
            EventKind::OthersSignedOut,
            &n.to_string(),
        )
        .await;
        Ok::<_, ApiError>(Revoked { revoked: n })
    }
    .await;
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/sessions").into_response(),
        Err(e) if !json => refused_form(&state, &ctx, pages::Confirm::Others, e).await,
        Err(e) => fail(json, e),
    }
}
