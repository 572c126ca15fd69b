//! The sign-in site and the browser session routes (HTML for browsers, JSON
//! when the request sends or accepts `application/json`).

pub mod activity;
pub mod auth;
pub mod device;
pub mod guard;
pub mod home;
pub mod pages;
pub mod sessions;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::state::AppState;

/// The site routes, behind [`tessera_axum::SessionLayer`] (all session and
/// CSRF rules) wrapped in [`guard::site_context`] (client IP, error
/// formats).
pub fn router(state: AppState) -> Router<AppState> {
    let dbsc = match &state.dbsc {
        // The DBSC endpoints, inside the layer (they need the session).
        Some(engine) => tessera_axum::dbsc::routes(engine),
        None => Router::new(),
    };
    Router::new()
        .route("/", get(home::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/reauth", post(auth::reauth))
        .route("/account/password", post(auth::change_password))
        .route("/session", get(sessions::status))
        .route("/session/keepalive", post(sessions::keepalive))
        .route("/sessions", get(sessions::list))
        .route("/activity", get(activity::page))
        .route("/sessions/revoke-others", post(sessions::revoke_others))
        .route("/sessions/{handle}", delete(sessions::revoke))
        .route("/sessions/{handle}/revoke", post(sessions::revoke_form))
        .merge(dbsc)
        // Inner: the session layer; outer: the context it needs and the
        // rendering of its refusals.
        .route_layer(guard::session_layer(&state))
        .route_layer(middleware::from_fn_with_state(state, guard::site_context))
}

/// Static assets (served outside the session guard: they need no session).
pub fn assets() -> Router<AppState> {
    Router::new()
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
        .route("/static/tessera-browser.js", get(browser_js))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    )
}

/// The browser helper (the `@tessera/browser` package in
/// `clients/browser`; a copy kept identical by a test, so this crate
/// packages on its own).
async fn browser_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/tessera-browser.js"),
    )
}

async fn app_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    )
}
