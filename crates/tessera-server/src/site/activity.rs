//! `GET /activity`: the signed-in user's recent security events.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::guard::{SiteCtx, fail, signed_in};
use super::pages;
use crate::error::ApiError;
use crate::extract::wants_json;
use crate::state::AppState;

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
