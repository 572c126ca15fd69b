//! `GET /`: who you are and when the session ends.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::guard::{SiteCtx, fail, signed_in};
use super::pages::{self, HomeView};
use crate::extract::wants_json;
use crate::state::AppState;

/// `GET /`. Without a live session, redirects to the sign-in page, which
/// says why the user was signed out (inactivity or time limit) when the
/// presented session had expired.
pub async fn home(State(state): State<AppState>, ctx: SiteCtx, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    match signed_in(&ctx).await {
        Ok((user, record)) => {
            if json {
                return super::sessions::status(ctx).await;
            }
            let csrf = match ctx.session.csrf_token().await {
                Ok(t) => t.unwrap_or_default(),
                Err(e) => return fail(json, e.into()),
            };
            let view = HomeView {
                user: &user,
                record: &record,
                csrf: &csrf,
                now: state.manager.now(),
                idle_timeout: state.manager.policy().lifetime(record.class).idle_timeout,
                reauth_window: state.config.reauth_window,
            };
            Html(pages::home_page(&view)).into_response()
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED && !json => {
            let reason = e.body.reason.as_deref().unwrap_or("missing");
            match (reason, e.body.revoked_by) {
                ("missing", _) => Redirect::to("/login").into_response(),
                // The sign-in page says in words who or what revoked it.
                (reason, Some(by)) => {
                    Redirect::to(&format!("/login?reason={reason}&by={by}")).into_response()
                }
                (reason, None) => Redirect::to(&format!("/login?reason={reason}")).into_response(),
            }
        }
        Err(e) => fail(json, e),
    }
}
