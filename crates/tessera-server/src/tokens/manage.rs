//! `POST /v1/tokens/revoke` (RFC 7009) and `POST /v1/tokens/introspect`
//! (RFC 7662).
//!
//! Tokens are told apart by their form, not by `token_type_hint`: a refresh
//! token starts with `tsr_`, a session token with `tss_`, and anything else
//! is tried as an access token (JWT). A wrong or unknown hint therefore
//! changes nothing (RFC 7009 §2.1 lets the server ignore it).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera::Revocation;
use tessera::token::{Refresh, Session, SessionToken, TokenKind};
use tessera::{Access, SessionError};

use super::error::OAuthError;
use super::types::{Introspection, TokenQuery};
use crate::error::{ApiError, ErrorBody};
use crate::extract::FormOrJson;
use crate::state::AppState;

/// The kinds of token a request can name.
enum Presented<'a> {
    Refresh(&'a str),
    Session(&'a str),
    Access(&'a str),
}

fn classify(token: &str) -> Presented<'_> {
    if token.starts_with(<Refresh as TokenKind>::PREFIX) {
        Presented::Refresh(token)
    } else if token.starts_with(<Session as TokenKind>::PREFIX) {
        Presented::Session(token)
    } else {
        Presented::Access(token)
    }
}

/// A store failure: 503, and the revocation did not happen (RFC 7009
/// §2.2.1 allows 503; the client should retry).
fn unavailable(e: &SessionError) -> OAuthError {
    tracing::error!(error = %e, "token revocation failed: store unavailable");
    OAuthError::unavailable()
}

/// Revokes a token (RFC 7009). **Public, no API key**: whoever holds a
/// token may revoke it (sign-out of a mobile app), as with an OAuth
/// revocation endpoint for public clients.
///
/// What is revoked:
/// - a **refresh token**: its whole family *and* the session behind it
///   (RFC 7009 §2.1: revoking a refresh token revokes the grant). Every
///   refresh token of the family stops working at once; access tokens
///   already issued keep working until they expire (≤ the access-token
///   lifetime).
/// - an **access token** (a valid, unexpired JWT of this server): the
///   session named by its `sid`, with its refresh tokens. That token and
///   its siblings stay valid for verifiers that do not ask the store, until
///   they expire.
/// - an opaque **session token** (`tss_…`): that session and its refresh
///   tokens.
///
/// Always 200 for a token that is unknown, malformed, expired or already
/// revoked (RFC 7009 §2.2): the answer tells a caller nothing about the
/// token. 400 only for a request without a `token`.
#[utoipa::path(post, path = "/v1/tokens/revoke", tag = "tokens",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded",
        description = "Also accepted as application/json."),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, body = super::error::OAuthErrorBody, description = "invalid_request: no token"),
        (status = 503, body = super::error::OAuthErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    form: Result<FormOrJson<TokenQuery>, ApiError>,
) -> Result<Response, OAuthError> {
    let FormOrJson(query) = form?;
    let token = query
        .token
        .ok_or_else(|| OAuthError::invalid_request("missing parameter: token"))?;
    match classify(&token) {
        Presented::Refresh(t) => {
            state
                .manager
                .revoke_refresh(t)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        Presented::Session(t) => {
            if let Ok(parsed) = SessionToken::parse(t) {
                match state.manager.load_hash(&parsed.hash()).await {
                    Ok(record) => state
                        .manager
                        .revoke_family(&record.handle, Revocation::Other)
                        .await
                        .map_err(|e| unavailable(&e))?,
                    Err(e) if e.is_unavailable() => return Err(unavailable(&e)),
                    Err(_) => {}
                }
            }
        }
        Presented::Access(t) => {
            // Only a token this server signed and that is still valid can
            // name a session to revoke; anything else is "unknown" (200).
            if let Ok(verified) = state.signing.verify(t).await {
                state
                    .manager
                    .revoke_family(&verified.claims.sid, Revocation::Other)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
        }
    }
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Tells a backend whether a token is live and what it stands for
/// (RFC 7662). **API-key authenticated** (RFC 7662 §2.1: the endpoint must
/// be protected, or it becomes an oracle for token scanning).
///
/// `{"active": false}` for anything not live: unknown, malformed, expired,
/// used (refresh), revoked, or whose session ended. For an **access token**
/// this makes one store call to check that its session is still live — so
/// introspection, unlike plain JWT verification (which needs no store call
/// and keeps accepting a token until its `exp`), reports a revoked
/// session's access tokens as inactive at once.
#[utoipa::path(post, path = "/v1/tokens/introspect", tag = "tokens",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded",
        description = "Also accepted as application/json."),
    responses(
        (status = 200, body = Introspection),
        (status = 400, body = ErrorBody, description = "No token, or a malformed body"),
        (status = 401, body = ErrorBody, description = "No or unknown API key"),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn introspect(
    State(state): State<AppState>,
    FormOrJson(query): FormOrJson<TokenQuery>,
) -> Result<Response, ApiError> {
    let token = query
        .token
        .ok_or_else(|| ApiError::bad_request("invalid_request", "missing parameter: token"))?;
    let answer = match classify(&token) {
        Presented::Refresh(t) => match state.manager.introspect_refresh(t).await? {
            // The session's user: the real owner of the family.
            Some((record, session)) => Introspection {
                active: true,
                token_type: Some("refresh_token"),
                sub: session.user_id.clone(),
                username: session.user_id,
                sid: Some(record.family.to_string()),
                exp: Some(record.expires_at.as_secs()),
                iat: Some(record.issued_at.as_secs()),
                ..Introspection::default()
            },
            None => Introspection::inactive(),
        },
        Presented::Session(t) => match state.manager.load(t, Access::Status).await {
            Ok(record) => Introspection {
                active: true,
                token_type: Some("session_token"),
                sub: record.user_id.clone(),
                username: record.user_id.clone(),
                sid: Some(record.handle.to_string()),
                exp: Some(
                    record
                        .deadlines
                        .idle
                        .min(record.deadlines.absolute)
                        .as_secs(),
                ),
                iat: Some(record.created_at.as_secs()),
                ..Introspection::default()
            },
            Err(e) if e.is_unavailable() => return Err(e.into()),
            Err(_) => Introspection::inactive(),
        },
        Presented::Access(t) => match state.signing.verify(t).await {
            Ok(verified) => {
                let claims = verified.claims;
                if session_is_live(&state, &claims.sid, &claims.sub).await? {
                    Introspection {
                        active: true,
                        token_type: Some("access_token"),
                        username: Some(claims.sub.clone()),
                        sub: Some(claims.sub),
                        sid: Some(claims.sid.to_string()),
                        exp: Some(claims.exp),
                        iat: Some(claims.iat),
                        nbf: Some(claims.nbf),
                        iss: Some(claims.iss),
                        aud: Some(state.signing.audience().to_owned()),
                        jti: Some(claims.jti),
                        client_id: claims.client_id,
                    }
                } else {
                    Introspection::inactive()
                }
            }
            Err(_) => Introspection::inactive(),
        },
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether the session `sid` of user `sub` is live now: one store call.
async fn session_is_live(
    state: &AppState,
    sid: &tessera::record::SessionHandle,
    sub: &str,
) -> Result<bool, ApiError> {
    let Some(store) = state.manager.refresh_backend() else {
        return Ok(false);
    };
    let found = store
        .load_session_by_handle(sid)
        .await
        .map_err(|e| ApiError::from(SessionError::Store(e)))?;
    Ok(found
        .is_some_and(|s| s.is_valid_at(state.manager.now()) && s.user_id.as_deref() == Some(sub)))
}
