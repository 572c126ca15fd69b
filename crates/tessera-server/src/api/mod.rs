//! The `/v1` JSON API for backends in any language, authenticated with
//! `Authorization: Bearer <api key>`.
//!
//! Bearer-authenticated requests carry no ambient authority (a browser never
//! attaches the key by itself), so they need no CSRF token (docs/design.md,
//! invariant 7).

pub mod requests;
pub mod sessions;
pub mod types;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};

use crate::audit::{self, ServerEvent};
use crate::error::ApiError;
use crate::state::AppState;

/// The `/v1` routes that need an API key (forward auth is mounted
/// separately: proxies present the user's cookie, not a key; so are the
/// public token routes, [`crate::tokens::public_router`], whose token is
/// the credential).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/sessions",
            post(sessions::create).delete(sessions::revoke_everyone),
        )
        .route("/v1/sessions/verify", post(sessions::verify))
        .route("/v1/sessions/rotate", post(sessions::rotate))
        .route("/v1/sessions/data", patch(sessions::patch_data))
        .route("/v1/sessions/{handle}", delete(sessions::delete))
        .route("/v1/requests/check", post(requests::check))
        .route("/v1/requests/check-batch", post(requests::check_batch))
        .route("/v1/requests/login", post(requests::login))
        .route("/v1/requests/rotate", post(requests::rotate))
        .route("/v1/requests/logout", post(requests::logout))
        .route(
            "/v1/users/{user_id}/sessions",
            get(sessions::list_user).delete(sessions::revoke_user),
        )
        .route("/v1/tokens", post(crate::tokens::grant::issue))
        .route(
            "/v1/tokens/introspect",
            post(crate::tokens::manage::introspect),
        )
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// Refuses requests without a live API key: 401 with
/// `WWW-Authenticate: Bearer` (RFC 6750 §3).
async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let name = match presented {
        Some(key) => match state.keys.verify(key).await {
            Ok(found) => found,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    match name {
        Some(name) => {
            tracing::debug!(api_key = %name, path = %req.uri().path(), "api request");
            next.run(req).await
        }
        None => {
            audit::emit(
                ServerEvent::ApiKeyRejected,
                None,
                None,
                if presented.is_some() {
                    "unknown key"
                } else {
                    "no key"
                },
            );
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")
                .message("send Authorization: Bearer <api key>")
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}
