//! Sign-in, sign-out, re-authentication and password change.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::guard::{SiteCtx, fail, signed_in};
use super::pages;
use crate::activity::EventKind;
use crate::api::types::Revoked;
use crate::audit::{self, ServerEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{FormOrJson, wants_json};
use crate::password_check::{Door, check_password};
use crate::state::AppState;
use tessera::Revocation;

pub use crate::password_check::GENERIC_FAILURE;

/// `POST /login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// "Keep me signed in" (the form's checkbox sends `true`): the session
    /// gets the remember lifetime class. Refused with 400 when the server
    /// does not offer it.
    #[serde(default)]
    pub remember: bool,
}

/// Answer to a JSON sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The signed-in user.
    pub user: String,
    /// Public handle of the new session.
    pub handle: String,
    /// CSRF token for state-changing requests (`X-CSRF-Token`).
    pub csrf_token: String,
    /// RFC 3339 idle deadline.
    pub idle_expires_at: String,
    /// RFC 3339 absolute deadline.
    pub absolute_expires_at: String,
    /// Lifetime class: `default`, or `remember` ("keep me signed in").
    pub session_class: &'static str,
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Why the user was signed out.
    pub reason: Option<String>,
    /// For `reason=revoked`: who or what revoked the session.
    pub by: Option<String>,
}

/// `GET /login`: the sign-in form, with the reason for a sign-out if any.
///
/// When the browser already holds a live session, signing in again is an
/// unsafe request of that session, so the form carries its CSRF token.
pub async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    csrf: Option<tessera_axum::CsrfToken>,
) -> Html<String> {
    let csrf = csrf.map(|tessera_axum::CsrfToken(t)| t);
    // `revoked` with its cause selects a more specific text.
    let reason = match (q.reason.as_deref(), q.by.as_deref()) {
        (Some("revoked"), Some(by)) => Some(format!("revoked:{by}")),
        (reason, _) => reason.map(str::to_owned),
    };
    let remember = crate::lifetime::remember_offered(&state);
    Html(pages::login_page(
        reason.as_deref(),
        None,
        csrf.as_deref(),
        remember,
    ))
}

/// `POST /login`.
#[utoipa::path(post, path = "/login", tag = "session",
    request_body = LoginForm,
    responses((status = 200, body = LoginResponse, description = "JSON sign-in; session cookie set"),
        (status = 303, description = "Form sign-in; session cookie set"),
        (status = 400, body = ErrorBody, description = "`remember` when the class is not configured (`remember_not_configured`); nothing is checked or stored"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Cross-site (login CSRF)"),
        (status = 429, body = ErrorBody, description = "Too many failures; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(form): FormOrJson<LoginForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = login_inner(&state, &ctx, &form).await;
    if let Ok(body) = &result {
        super::activity::note(
            &state,
            ctx.ip,
            &headers,
            &body.user,
            EventKind::SignedIn,
            "",
        )
        .await;
    }
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) if !json && e.status == StatusCode::UNAUTHORIZED => {
            let csrf = match ctx.session.csrf_token().await {
                Ok(csrf) => csrf,
                Err(e) => return fail(json, e.into()),
            };
            (
                StatusCode::UNAUTHORIZED,
                Html(pages::login_page(
                    None,
                    Some(GENERIC_FAILURE),
                    csrf.as_deref(),
                    crate::lifetime::remember_offered(&state),
                )),
            )
                .into_response()
        }
        Err(e) => fail(json, e),
    }
}

async fn login_inner(
    state: &AppState,
    ctx: &SiteCtx,
    form: &LoginForm,
) -> Result<LoginResponse, ApiError> {
    // Before the password check: a refused class costs no hashing and
    // counts no failure.
    let class = crate::lifetime::requested_class(state, form.remember)?;
    // Read before the password hash is: a password change or disable that
    // commits after this check read the old hash sets a not-before later
    // than this instant, which refuses the session created below.
    let checked_at = state.manager.now();
    check_password(state, &form.username, ctx.ip, &form.password, Door::SignIn)
        .await
        .map_err(|e| e.into_api(GENERIC_FAILURE))?;
    // A brand-new token; any presented one stops working (fixation).
    ctx.session
        .login_checked(&form.username, class, checked_at)
        .await?;
    audit::emit(
        ServerEvent::LoginSucceeded,
        Some(&form.username),
        ctx.ip,
        "",
    );
    let record = ctx
        .session
        .record()
        .await?
        .ok_or_else(|| ApiError::unauthenticated("missing"))?;
    Ok(LoginResponse {
        user: form.username.clone(),
        handle: record.handle.to_string(),
        csrf_token: ctx.session.csrf_token().await?.unwrap_or_default(),
        idle_expires_at: record.deadlines.idle.to_rfc3339(),
        absolute_expires_at: record.deadlines.absolute.to_rfc3339(),
        session_class: record.class.as_str(),
    })
}

/// A form that carries only the CSRF token.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CsrfForm {
    /// CSRF token, for form posts. JSON clients send the `X-CSRF-Token`
    /// header instead: the session layer reads only the header and
    /// url-encoded form fields.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

/// `POST /logout`: deletes the record and clears the cookie.
#[utoipa::path(post, path = "/logout", tag = "session",
    responses((status = 204, description = "JSON: signed out"), (status = 303, description = "Form: signed out"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(_form): FormOrJson<CsrfForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, _) = signed_in(&ctx).await?;
        ctx.session.logout().await?;
        Ok::<String, ApiError>(user)
    }
    .await;
    if let Ok(user) = &result {
        super::activity::note(&state, ctx.ip, &headers, user, EventKind::SignedOut, "").await;
    }
    match result {
        Ok(_) if json => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => Redirect::to("/login?reason=signed_out").into_response(),
        Err(e) => fail(json, e),
    }
}

/// `POST /reauth`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReauthForm {
    /// The user's password.
    pub password: String,
    /// CSRF token, for form posts. JSON clients send the `X-CSRF-Token`
    /// header instead: the session layer reads only the header and
    /// url-encoded form fields.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

/// `POST /reauth`: proves the password again; rotates the token and starts
/// fresh deadlines and `authenticated_at` (step-up; ASVS 5.0 V7.5).
#[utoipa::path(post, path = "/reauth", tag = "session",
    request_body = ReauthForm,
    responses((status = 200, body = LoginResponse), (status = 303),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn reauth(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(form): FormOrJson<ReauthForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, _) = signed_in(&ctx).await?;
        check_password(&state, &user, ctx.ip, &form.password, Door::Reauth)
            .await
            .map_err(|e| e.into_api("The password is not correct."))?;
        ctx.session.reauthenticated().await?;
        let record = ctx
            .session
            .record()
            .await?
            .ok_or_else(|| ApiError::unauthenticated("missing"))?;
        Ok(LoginResponse {
            user,
            handle: record.handle.to_string(),
            csrf_token: ctx.session.csrf_token().await?.unwrap_or_default(),
            idle_expires_at: record.deadlines.idle.to_rfc3339(),
            absolute_expires_at: record.deadlines.absolute.to_rfc3339(),
            session_class: record.class.as_str(),
        })
    }
    .await;
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => fail(json, e),
    }
}

/// `POST /account/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordForm {
    /// The current password.
    pub current_password: String,
    /// The new password (8 to 1024 bytes).
    pub new_password: String,
    /// CSRF token, for form posts. JSON clients send the `X-CSRF-Token`
    /// header instead: the session layer reads only the header and
    /// url-encoded form fields.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

/// `POST /account/password`: needs a sign-in within `reauth_window` (else
/// 401 `reauth_required`), then revokes every other session of the user
/// (ASVS 5.0 V7.4.3) and rotates the current one.
#[utoipa::path(post, path = "/account/password", tag = "session",
    request_body = PasswordForm,
    responses((status = 200, body = Revoked), (status = 303),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "unauthenticated, invalid_credentials or reauth_required"),
        (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    ctx: SiteCtx,
    headers: HeaderMap,
    FormOrJson(form): FormOrJson<PasswordForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, record) = signed_in(&ctx).await?;
        let now = state.manager.now();
        let recent = record
            .authenticated_at
            .is_some_and(|at| at.until(now) <= state.config.reauth_window);
        if !recent {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "reauth_required")
                .message("Confirm your password (re-authenticate) first."));
        }
        check_password(
            &state,
            &user,
            ctx.ip,
            &form.current_password,
            Door::PasswordChange,
        )
        .await
        .map_err(|e| e.into_api("The current password is not correct."))?;
        state.users.set_password(&user, &form.new_password).await?;
        // The order closes the race with a concurrent sign-in (the users
        // database and the session store may be different databases):
        // 1. the new hash is committed (above);
        // 2. `at` is read after that commit, so a sign-in that read the
        //    old hash took its `checked_at` no later than `at` and its
        //    session counts as created before it;
        // 3. this session is re-issued as a new sign-in (new token and
        //    handle, created at or after `at`): kept, and a privilege
        //    change gets a new token;
        // 4. the user's not-before is raised to `at`: every other session,
        //    including one a racing sign-in stores later, is refused. A
        //    store error here fails the request loudly.
        let at = state.manager.now();
        ctx.session.login_with_class(&user, record.class).await?;
        let kept = ctx
            .session
            .record()
            .await?
            .ok_or_else(|| ApiError::unauthenticated("missing"))?;
        let revoked = state
            .manager
            .revoke_user_before(&user, at, Some(&kept.handle), Revocation::PasswordChanged)
            .await?;
        crate::metrics::count_revoked(revoked);
        audit::emit(ServerEvent::PasswordChanged, Some(&user), ctx.ip, "");
        super::activity::note(
            &state,
            ctx.ip,
            &headers,
            &user,
            EventKind::PasswordChanged,
            &revoked.to_string(),
        )
        .await;
        Ok(Revoked { revoked })
    }
    .await;
    match result {
        Ok(body) if json => Json(body).into_response(),
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => fail(json, e),
    }
}
