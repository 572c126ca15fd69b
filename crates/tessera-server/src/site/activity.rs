//! The signed-in user's security events: `note` records one from a
//! site handler, `GET /activity` lists the recent ones.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::guard::{SiteCtx, fail, signed_in};
use super::pages;
use crate::activity::{EventKind, NewEvent};
use crate::error::ApiError;
use crate::extract::wants_json;
use crate::state::AppState;

/// Records a security event of `user` done from this request's client
/// (its IP and `User-Agent`), best effort (see [`crate::activity`]).
pub(crate) async fn note(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &axum::http::HeaderMap,
    user: &str,
    kind: EventKind,
    detail: &str,
) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let ip = ip.map(|ip| ip.to_string());
    state
        .activity
        .record_or_log(&NewEvent {
            user,
            at_ms: state.manager.now().as_millis(),
            kind,
            ip: ip.as_deref(),
            user_agent,
            detail,
        })
        .await;
}

/// How many events the page shows (all that are kept).
const SHOWN: i64 = crate::activity::KEEP_PER_USER;

/// `GET /activity`: sign-ins with device and IP, sign-outs, devices signed
/// out and by whom, password changes; newest first. HTML only.
pub async fn page(State(state): State<AppState>, ctx: SiteCtx, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let (user, _) = signed_in(&ctx).await?;
        let events = state.activity.list(&user, SHOWN).await.map_err(|e| {
            tracing::error!(error = %e, "security activity unavailable");
            ApiError::unavailable()
        })?;
        Ok::<_, ApiError>(events)
    }
    .await;
    match result {
        Ok(events) => Html(pages::activity_page(&events, state.manager.now())).into_response(),
        Err(e) if !json && e.status == StatusCode::UNAUTHORIZED => {
            Redirect::to("/login").into_response()
        }
        Err(e) => fail(json, e),
    }
}
