//! Issuing and refreshing token pairs: `POST /v1/tokens` (API key),
//! `POST /token` (password sign-in of first-party clients, and the OAuth
//! refresh grant) and `POST /v1/tokens/refresh` (public).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera::Revocation;
use tessera::SessionError;
use tessera::policy::SessionClass;
use tessera::record::{ClientMeta, SessionRecord};
use tessera::refresh::RefreshError;
use tessera::time::Timestamp;
use tessera::token::RefreshToken;

use super::error::OAuthError;
use super::types::{RefreshRequest, TokenGrant, TokenPair};
use crate::api::types::{
    CreateSession, checked_at, valid_client_meta, valid_data_keys, valid_user_id,
};
use crate::audit::{self, ServerEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{FormOrJson, JsonBody, client_ip};
use crate::password_check::GENERIC_FAILURE;
use crate::password_check::{CheckError, Door, MAX_USER_NAME_BYTES, check_password};
use crate::state::AppState;

/// Why a pair could not be made, before it is mapped to one of the two
/// error shapes.
enum PairError {
    Unavailable,
    /// Refused for a reason the client can act on: the initial data is
    /// over `max_session_data`, or the user is at `max_sessions_per_user`
    /// with `refuse_new`.
    Refused(SessionError),
    /// The session reaches its absolute deadline within the second.
    Ended,
    Internal(&'static str),
}

impl From<PairError> for ApiError {
    fn from(e: PairError) -> Self {
        match e {
            PairError::Unavailable => ApiError::unavailable(),
            PairError::Refused(e) => e.into(),
            PairError::Ended => ApiError::new(StatusCode::UNAUTHORIZED, "session_ended")
                .message("the session reached its absolute timeout"),
            PairError::Internal(what) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error").message(what)
            }
        }
    }
}

impl From<PairError> for OAuthError {
    fn from(e: PairError) -> Self {
        match e {
            PairError::Unavailable => OAuthError::unavailable(),
            PairError::Refused(e) => ApiError::from(e).into(),
            PairError::Ended => OAuthError::refused_refresh(),
            PairError::Internal(what) => {
                OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", what)
            }
        }
    }
}

/// The access token for `session`, and the pair around it.
async fn pair(
    state: &AppState,
    session: &SessionRecord,
    refresh: &RefreshToken,
) -> Result<TokenPair, PairError> {
    let user = session
        .user_id
        .as_deref()
        .ok_or(PairError::Internal("the session has no user"))?;
    // Capped at the session's absolute deadline: the access token must not
    // outlive its session (ASVS 5.0 V7.3.2).
    let access = state
        .signing
        .issue_until(user, &session.handle, session.deadlines.absolute)
        .await
        .map_err(|e| match e {
            tessera_jwt::IssueError::AlreadyEnded => PairError::Ended,
            e => {
                tracing::error!(error = %e, "signing an access token failed");
                PairError::Internal("no usable signing key; see the server log")
            }
        })?;
    let expires_in = access
        .claims
        .exp
        .saturating_sub(access.claims.iat)
        .try_into()
        .unwrap_or(0u64);
    Ok(TokenPair {
        access_token: access.into_string(),
        token_type: "Bearer",
        expires_in,
        refresh_token: refresh.expose().to_owned(),
        handle: session.handle.to_string(),
        refresh_expires_at: session.deadlines.absolute.to_rfc3339(),
    })
}

/// Creates a signed-in session for `user` with its first refresh token and
/// an access token. A half-made session (its refresh token or access token
/// failed) is revoked again, so a failure leaves nothing behind.
async fn new_pair(
    state: &AppState,
    user: String,
    data: serde_json::Map<String, serde_json::Value>,
    client: ClientMeta,
    class: SessionClass,
    checked_at: Option<Timestamp>,
) -> Result<TokenPair, PairError> {
    let unavailable = |e: SessionError| {
        tracing::error!(error = %e, "creating a token session failed");
        PairError::Unavailable
    };
    let created = match checked_at {
        Some(at) => {
            state
                .manager
                .create_signed_in(user, data, client, class, at)
                .await
        }
        None => {
            state
                .manager
                .create_with_class(Some(user), data, client, class)
                .await
        }
    };
    let issued = created.map_err(|e| match e {
        e @ (SessionError::DataTooLarge { .. } | SessionError::SessionLimit) => {
            PairError::Refused(e)
        }
        e => unavailable(e),
    })?;
    let record = issued.record;
    let made = match state.manager.issue_refresh(&record).await {
        Ok(refresh) => pair(state, &record, &refresh).await,
        Err(e) => Err(unavailable(e)),
    };
    if made.is_err()
        && let Err(e) = state
            .manager
            .revoke_family(&record.handle, Revocation::Other)
            .await
    {
        tracing::warn!(error = %e, "could not revoke a half-made token session");
    }
    made
}

/// The response of a successful grant: never cached (RFC 6749 §5.1).
fn token_response(status: StatusCode, pair: TokenPair) -> Response {
    let mut response = (status, Json(pair)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Issues a token pair for a user: creates a session (the refresh family)
/// and returns an access token and its first refresh token. For backends
/// that authenticate users themselves.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body = CreateSession,
    responses(
        (status = 201, body = TokenPair, description = "Session created; token pair issued"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn issue(
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
    let pair = new_pair(&state, req.user_id, req.data, client, class, checked_at).await?;
    Ok(token_response(StatusCode::CREATED, pair))
}

/// The OAuth token endpoint for first-party clients (mobile and desktop
/// apps, SPAs of the same site): `grant_type=refresh_token` is the same as
/// `POST /v1/tokens/refresh`; `grant_type=password` signs a user in and
/// returns a token pair, only when the server runs with
/// `password_grant = true` (off by default: RFC 9700 §2.4 says the password
/// grant MUST NOT be used; otherwise it is `unsupported_grant_type`).
/// Form-encoded (RFC 6749) or JSON.
///
/// Sign-in failures are rate limited and audited exactly like the site's
/// sign-in form. No cookie is read or set: there is no ambient credential,
/// so no CSRF defence is needed.
#[utoipa::path(post, path = "/token", tag = "tokens",
    request_body(content = TokenGrant, content_type = "application/x-www-form-urlencoded",
        description = "Also accepted as application/json."),
    responses(
        (status = 200, body = TokenPair),
        (status = 400, body = super::error::OAuthErrorBody, description = "invalid_request, unsupported_grant_type, or invalid_grant (wrong user name or password)"),
        (status = 401, body = super::error::OAuthErrorBody, description = "invalid_grant: refused refresh token"),
        (status = 429, body = super::error::OAuthErrorBody, description = "Too many failed sign-ins; see Retry-After"),
        (status = 503, body = super::error::OAuthErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    form: Result<FormOrJson<TokenGrant>, ApiError>,
) -> Result<Response, OAuthError> {
    let FormOrJson(grant) = form?;
    match grant.grant_type.as_deref() {
        // RFC 9700 §2.4: the resource owner password credentials grant
        // MUST NOT be used; it is off unless the operator turns it on.
        Some("password") if !state.config.password_grant => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "the password grant is disabled on this server (password_grant = false)",
        )),
        Some("password") => {
            let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            let ip = client_ip(&headers, peer, &state.config);
            let user_agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            password_grant(&state, grant, ip, user_agent).await
        }
        Some("refresh_token") => {
            let presented = grant
                .refresh_token
                .ok_or_else(|| OAuthError::invalid_request("missing parameter: refresh_token"))?;
            refresh_pair(&state, &presented).await
        }
        Some(_) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        )),
        None => Err(OAuthError::invalid_request("missing parameter: grant_type")),
    }
}

async fn password_grant(
    state: &AppState,
    grant: TokenGrant,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
) -> Result<Response, OAuthError> {
    let ip_text = ip.map(|ip| ip.to_string());
    let (Some(username), Some(password)) = (grant.username, grant.password) else {
        return Err(OAuthError::invalid_request(
            "grant_type=password needs username and password",
        ));
    };
    // Read before the password hash is, as on the sign-in form: a password
    // change or disable committed after this check read the old hash
    // refuses the session created below (`tessera::not_before`).
    let checked_at = state.manager.now();
    // The same path as the sign-in form: one budget per user name and per
    // IP, whichever door the guesses come through.
    check_password(state, &username, ip, &password, Door::TokenGrant)
        .await
        .map_err(|e| match e {
            // RFC 6749 §5.2: wrong resource-owner credentials are
            // invalid_grant (400); one message whatever the cause (no user
            // enumeration).
            CheckError::Wrong => {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", GENERIC_FAILURE)
            }
            CheckError::InvalidName => OAuthError::invalid_request(format!(
                "username must be 1 to {MAX_USER_NAME_BYTES} bytes without control characters"
            )),
            other => OAuthError::from(other.into_api(GENERIC_FAILURE)),
        })?;
    let client = ClientMeta::new(ip, user_agent.clone());
    let pair = new_pair(
        state,
        username.clone(),
        serde_json::Map::new(),
        client,
        SessionClass::Default,
        Some(checked_at),
    )
    .await?;
    audit::emit(
        ServerEvent::LoginSucceeded,
        Some(&username),
        ip,
        "token endpoint",
    );
    state
        .activity
        .record_or_log(&crate::activity::NewEvent {
            user: &username,
            at_ms: state.manager.now().as_millis(),
            kind: crate::activity::EventKind::SignedIn,
            ip: ip_text.as_deref(),
            user_agent: user_agent.as_deref(),
            detail: "",
        })
        .await;
    Ok(token_response(StatusCode::OK, pair))
}

/// Exchanges a refresh token for a new pair; see [`refresh`].
async fn refresh_pair(state: &AppState, presented: &str) -> Result<Response, OAuthError> {
    let refreshed = match state.manager.refresh(presented).await {
        Ok(r) => r,
        Err(RefreshError::Session(e)) if e.is_unavailable() => {
            tracing::error!(error = %e, "refresh failed: store unavailable");
            return Err(OAuthError::unavailable());
        }
        // Reused: the core has revoked the family and its session and
        // audited `refresh_reuse_detected`; the user's security activity
        // says so too. The client gets the same answer as for any refusal.
        Err(RefreshError::ReuseDetected {
            user_id: Some(user),
        }) => {
            state
                .activity
                .refresh_reuse_detected(&user, state.manager.now().as_millis())
                .await;
            return Err(OAuthError::refused_refresh());
        }
        // Malformed, unknown, expired, revoked, or the session ended
        // meanwhile: one answer for all.
        Err(_) => return Err(OAuthError::refused_refresh()),
    };
    let pair = pair(state, &refreshed.session, &refreshed.token).await?;
    Ok(token_response(StatusCode::OK, pair))
}

/// Exchanges a refresh token for a new access token and a new refresh
/// token (RFC 9700 §4.14.2 rotation); the presented one stops working.
///
/// **Public, no API key**: mobile and browser clients call it directly, and
/// the refresh token itself is the credential (as at an OAuth token
/// endpoint for public clients).
///
/// Presenting a refresh token that was already used revokes its whole
/// family and its session (401, audit event `refresh_reuse_detected`) —
/// except within the grace period (`refresh_grace`, default 10 s) while its
/// child is still unused: then the same child is returned again, so a
/// client that lost a response can retry.
#[utoipa::path(post, path = "/v1/tokens/refresh", tag = "tokens",
    request_body(content = RefreshRequest, description = "JSON or application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenPair),
        (status = 400, body = super::error::OAuthErrorBody, description = "invalid_request"),
        (status = 401, body = super::error::OAuthErrorBody, description = "invalid_grant: unknown, expired, revoked or reused refresh token"),
        (status = 503, body = super::error::OAuthErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    form: Result<FormOrJson<RefreshRequest>, ApiError>,
) -> Result<Response, OAuthError> {
    let FormOrJson(req) = form?;
    if req
        .grant_type
        .as_deref()
        .is_some_and(|g| g != "refresh_token")
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type, when given, must be refresh_token",
        ));
    }
    let presented = req
        .refresh_token
        .ok_or_else(|| OAuthError::invalid_request("missing parameter: refresh_token"))?;
    refresh_pair(&state, &presented).await
}
