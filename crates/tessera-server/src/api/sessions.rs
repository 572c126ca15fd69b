//! `/v1/sessions…` and `/v1/users/{user_id}/sessions` handlers, all built on
//! [`tessera::SessionManager`].

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera::Revocation;
use tessera::record::{ClientMeta, DataChanges, SessionHandle, SessionRecord};
use tessera::token::SessionToken;
use tessera::{Access, Renewal, SessionError};

use super::types::{
    CreateSession, ExpectationFailed, IssuedSession, PatchData, Revoked, SessionSummary,
    SessionView, TokenRequest, VerifyRequest, checked_at, valid_client_meta, valid_data_keys,
    valid_user_id,
};
use crate::audit::{self, ServerEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Longest accepted user id, in bytes.
fn issued(record: &SessionRecord, token: &SessionToken) -> Result<IssuedSession, ApiError> {
    Ok(IssuedSession {
        token: token.expose().to_owned(),
        handle: record.handle.to_string(),
        csrf_token: record
            .csrf_secret
            .masked_token()
            .map_err(|e| ApiError::from(SessionError::from(e)))?,
        idle_expires_at: record.deadlines.idle.to_rfc3339(),
        absolute_expires_at: record.deadlines.absolute.to_rfc3339(),
        session_class: record.class.as_str(),
    })
}

fn view(record: &SessionRecord) -> Result<SessionView, ApiError> {
    SessionView::new(record).map_err(|e| ApiError::from(SessionError::from(e)))
}

/// After a write found no live record, ask why (expired records are still
/// loadable until purged, so the client can be told the reason).
async fn why_gone(state: &AppState, token: &SessionToken) -> ApiError {
    match state.manager.load_hash(&token.hash()).await {
        Err(e) => ApiError::from(e),
        Ok(_) => ApiError::unauthenticated("missing"),
    }
}

/// Creates a signed-in session for `user_id`.
#[utoipa::path(post, path = "/v1/sessions", tag = "v1",
    request_body = CreateSession,
    responses(
        (status = 201, body = IssuedSession, description = "Session created"),
        (status = 400, body = ErrorBody, description = "Invalid input, or `remember` when the class is not configured (`remember_not_configured`)"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody,
            description = "`session_limit`: the user holds `max_sessions_per_user` sessions \
                and `session_limit_action` is `refuse_new`"),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateSession>,
) -> Result<Response, ApiError> {
    valid_user_id(&req.user_id)?;
    valid_data_keys(req.data.keys())?;
    valid_client_meta(req.ip.as_deref(), req.user_agent.as_deref())?;
    let class = crate::lifetime::requested_class(&state, req.remember)?;
    let checked_at = checked_at(req.checked_at.as_deref(), state.manager.now())?;
    let client = ClientMeta::new(
        req.ip.as_deref().and_then(ClientMeta::parse_ip),
        req.user_agent,
    );
    let issued_session = match checked_at {
        Some(at) => {
            state
                .manager
                .create_signed_in(req.user_id, req.data, client, class, at)
                .await?
        }
        None => {
            state
                .manager
                .create_with_class(Some(req.user_id), req.data, client, class)
                .await?
        }
    };
    let body = issued(&issued_session.record, &issued_session.token)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Verifies a token and returns the session.
#[utoipa::path(post, path = "/v1/sessions/verify", tag = "v1",
    request_body = VerifyRequest,
    responses(
        (status = 200, body = SessionView),
        (status = 400, body = ErrorBody, description = "invalid_tier: require_tier is neither bound nor unbound"),
        (status = 401, body = ErrorBody, description = "reason: expired_idle, expired_absolute, missing, \
            or device_unbound (DBSC: required mode or require_tier without a live bound cookie)"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<SessionView>, ApiError> {
    let access = if req.touch {
        Access::Activity
    } else {
        Access::Status
    };
    let require = req
        .require_tier
        .as_deref()
        .map(crate::dbsc::parse_tier)
        .transpose()?;
    let record = state
        .manager
        .load(req.token.require()?.expose(), access)
        .await?;
    let tier = crate::dbsc::admit(&state, &record, req.dbsc_cookie.as_deref(), require).await?;
    let mut view = view(&record)?;
    view.tier = Some(tier.as_str());
    Ok(Json(view))
}

/// Replaces the token; the old one stops working at once.
#[utoipa::path(post, path = "/v1/sessions/rotate", tag = "v1",
    request_body = TokenRequest,
    responses((status = 200, body = IssuedSession), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<IssuedSession>, ApiError> {
    let token = req.token.require()?.clone();
    let issued_session = state
        .manager
        .rotate(&token.hash(), Renewal::Rotate, &DataChanges::default())
        .await?;
    Ok(Json(issued(&issued_session.record, &issued_session.token)?))
}

/// Sets and removes data keys atomically.
#[utoipa::path(patch, path = "/v1/sessions/data", tag = "v1",
    request_body = PatchData,
    responses((status = 200, body = SessionView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, body = ExpectationFailed, description = "An `expect`ed value did not hold; nothing was written"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patch_data(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PatchData>,
) -> Result<Response, ApiError> {
    let token = req.token.require()?.clone();
    valid_data_keys(req.set.keys().chain(req.remove.iter()))?;
    let mut changes = DataChanges::default();
    for (key, value) in req.set {
        changes.set(key, value);
    }
    for key in req.remove {
        changes.remove(key);
    }
    let hash = token.hash();
    let written = if req.expect.is_empty() {
        state
            .manager
            .modify(&hash, &changes, Access::Activity)
            .await
            .map(|record| (true, record))
    } else {
        state
            .manager
            .modify_expecting(&hash, &req.expect, &changes)
            .await
    };
    match written {
        Ok((true, record)) => Ok(Json(view(&record)?).into_response()),
        Ok((false, record)) => Ok((
            StatusCode::CONFLICT,
            Json(ExpectationFailed {
                error: "conflict",
                reason: "expectation_failed",
                session: view(&record)?,
            }),
        )
            .into_response()),
        Err(SessionError::NotFound) => Err(why_gone(&state, &token).await),
        Err(e) => Err(e.into()),
    }
}

/// Revokes one session by handle.
#[utoipa::path(delete, path = "/v1/sessions/{handle}", tag = "v1",
    params(("handle" = String, Path, description = "Public session handle (tsh_…)")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    let handle = SessionHandle::parse(&handle).ok_or_else(ApiError::not_found)?;
    let owner = crate::activity::owner_of(&state.manager, &handle).await;
    if state
        .manager
        .revoke(&handle, None, Revocation::Admin)
        .await?
    {
        audit::emit(ServerEvent::ApiRevoked, None, None, handle.as_str());
        if let Some(user) = owner {
            state
                .activity
                .admin_signed_out(&user, state.manager.now().as_millis(), 1)
                .await;
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Lists a user's live sessions, oldest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/sessions", tag = "v1",
    params(("user_id" = String, Path)),
    responses((status = 200, body = [SessionSummary]), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Vec<SessionSummary>>, ApiError> {
    valid_user_id(&user_id)?;
    let records = state.manager.list_user(&user_id).await?;
    Ok(Json(
        records
            .iter()
            .map(|r| SessionSummary::new(r, false))
            .collect(),
    ))
}

/// The causes an app may give for `DELETE /v1/users/{user_id}/sessions`.
const USER_REVOKE_REASONS: [Revocation; 3] = [
    Revocation::Admin,
    Revocation::PasswordChanged,
    Revocation::Disabled,
];

/// The `reason` query parameter of `DELETE /v1/users/{user_id}/sessions`:
/// absent means `admin`. Strict: an unknown or repeated parameter is a 400,
/// so a typo cannot silently record the wrong cause.
///
/// ```
/// use tessera::Revocation;
/// use tessera_server::api::sessions::user_revoke_reason;
/// assert_eq!(user_revoke_reason(None).ok(), Some(Revocation::Admin));
/// assert_eq!(user_revoke_reason(Some("reason=password_changed")).ok(), Some(Revocation::PasswordChanged));
/// assert!(user_revoke_reason(Some("reason=everyone")).is_err());
/// assert!(user_revoke_reason(Some("reson=disabled")).is_err());
/// assert!(user_revoke_reason(Some("reason=admin&reason=disabled")).is_err());
/// ```
///
/// # Errors
///
/// 400 `invalid_reason`.
pub fn user_revoke_reason(query: Option<&str>) -> Result<Revocation, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_reason",
            "the only parameter is reason=admin, reason=password_changed or reason=disabled",
        )
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| invalid())?;
    match pairs.as_slice() {
        [] => Ok(Revocation::Admin),
        [(key, value)] if key == "reason" => Revocation::from_code(value)
            .filter(|r| USER_REVOKE_REASONS.contains(r))
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// Revokes every session of a user, and refuses any of the user's sessions
/// created before now that is stored later (the user's kill switch,
/// `tessera::not_before`; ASVS 5.0 V7.4.3). Call it after your app
/// committed a password change (`?reason=password_changed`) or disabled
/// the account (`?reason=disabled`): a sign-in that read the old password
/// and passes its `checked_at` is refused even when it arrives after this
/// call. The sessions answer `reason: "revoked"` with `revoked_by` set to
/// the cause (default `admin`).
#[utoipa::path(delete, path = "/v1/users/{user_id}/sessions", tag = "v1",
    params(("user_id" = String, Path),
        ("reason" = Option<String>, Query,
            description = "admin (default), password_changed or disabled")),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Revoked>, ApiError> {
    valid_user_id(&user_id)?;
    let why = user_revoke_reason(query.as_deref())?;
    // `at` is read after the app's change committed (the app calls this
    // afterwards): see `SessionManager::revoke_user_before`.
    let at = state.manager.now();
    let n = state
        .manager
        .revoke_user_before(&user_id, at, None, why)
        .await?;
    crate::metrics::count_revoked(n);
    state
        .activity
        .admin_signed_out(&user_id, state.manager.now().as_millis(), n)
        .await;
    audit::emit(
        ServerEvent::ApiRevoked,
        Some(&user_id),
        None,
        &format!("all sessions of the user ({})", why.as_code()),
    );
    Ok(Json(Revoked { revoked: n }))
}

/// Answer to `DELETE /v1/sessions`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RevokedEveryone {
    /// RFC 3339: every session created before this instant is refused
    /// (`reason: "revoked"`, `revoked_by: "everyone"`).
    pub not_before: String,
}

/// Signs everybody out (ASVS 5.0 V7.4.5): raises the global not-before to
/// now, so every existing session of every user is refused at its next
/// request on every instance. One O(1) store write whatever the number of
/// sessions; new sign-ins work at once. Audited.
#[utoipa::path(delete, path = "/v1/sessions", tag = "v1",
    responses((status = 200, body = RevokedEveryone), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_everyone(
    State(state): State<AppState>,
) -> Result<Json<RevokedEveryone>, ApiError> {
    let in_force = state.manager.revoke_everyone().await?;
    let not_before = in_force.at.to_rfc3339();
    audit::emit(
        ServerEvent::ApiRevoked,
        None,
        None,
        &format!("every session created before {not_before}"),
    );
    Ok(Json(RevokedEveryone { not_before }))
}
