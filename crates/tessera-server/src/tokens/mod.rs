//! Token mode: signed access tokens and rotating refresh tokens for APIs
//! and mobile apps.
//!
//! A token pair stands on a tessera **session**: the session is the
//! refresh-token *family* (its public handle is the JWT's `sid`), and it
//! keeps its idle and absolute deadlines. So:
//!
//! - the **access token** is a JWT (EdDSA by default) valid for
//!   `access_token_lifetime` (10 minutes). Anyone can verify it with the
//!   JWKS at `GET /.well-known/jwks.json`, without a store call;
//! - the **refresh token** (`tsr_…`, opaque, only its hash is stored) works
//!   once: each refresh returns a new pair and kills the presented token.
//!   Presenting a used one again outside the grace period revokes the
//!   family and the session (RFC 9700 §4.14.2, audit event
//!   `refresh_reuse_detected`);
//! - **revoking the session** (sign-out, `DELETE /v1/sessions/{handle}`,
//!   revoke-all, password change) kills its refresh tokens at once. Its
//!   access tokens stay valid until they expire — at most the access-token
//!   lifetime — for every verifier that does not ask the store.
//!   `POST /v1/tokens/introspect` does ask, and reports them inactive at
//!   once.
//!
//! Which endpoint needs what:
//!
//! | Endpoint | Credential |
//! | --- | --- |
//! | `POST /v1/tokens` | API key (a backend vouches for the user) |
//! | `POST /token` | the user's password (`grant_type=password`) or a refresh token (`grant_type=refresh_token`) |
//! | `POST /v1/tokens/refresh` | the refresh token itself (public clients call it directly) |
//! | `POST /v1/tokens/revoke` | the token itself (RFC 7009; public) |
//! | `POST /v1/tokens/introspect` | API key (RFC 7662 §2.1) |
//! | `GET /.well-known/jwks.json` | none (public keys) |
//!
//! None of these routes reads or sets a cookie: they sit outside the
//! session layer, so a browser's ambient credentials play no part and no
//! CSRF defence is needed (docs/design.md, invariant 7).

pub mod error;
pub mod grant;
pub mod manage;
pub mod types;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// How long clients may cache the JWKS, in seconds. Short, because a
/// rotated key signs at once: a verifier holding a cached set meets an
/// unknown `kid` and should refetch (rate-limited) anyway; a retired key
/// stays in the set for the whole access-token lifetime, so caching never
/// hides a key that still has live tokens.
pub const JWKS_MAX_AGE: u32 = 60;

/// The public token routes (no API key): `POST /token`,
/// `POST /v1/tokens/refresh`, `POST /v1/tokens/revoke`. The API-key routes
/// (`POST /v1/tokens`, `POST /v1/tokens/introspect`) are in
/// [`crate::api::router`]; the JWKS in [`jwks_router`].
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/token", post(grant::token))
        .route("/v1/tokens/refresh", post(grant::refresh))
        .route("/v1/tokens/revoke", post(manage::revoke))
}

/// `GET /.well-known/jwks.json`, mounted outside the site's security-header
/// middleware so that its cache headers survive.
pub fn jwks_router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// The public signing keys (RFC 7517 JWK Set): the active key and every
/// retired key until all the tokens it signed have expired. Public members
/// only.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "JWK Set (RFC 7517), Cache-Control: public, max-age=60")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(state.signing.jwks().await).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
