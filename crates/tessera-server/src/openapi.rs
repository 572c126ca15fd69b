//! `GET /openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::requests::types::{
    CheckBatch, CheckBatchResponse, CheckPatch, CheckRequest, CheckResponse, Installed,
    LoginRequest, Outcome, PatchOutcome, PresentedToken, SignedOut,
};
use crate::api::types::{
    CreateSession, ExpectationFailed, IssuedSession, PatchData, Revoked, SessionSummary,
    SessionView, TokenRequest, VerifyRequest,
};
use crate::error::ErrorBody;
use crate::site::auth::{CsrfForm, LoginForm, LoginResponse, PasswordForm, ReauthForm};
use crate::site::sessions::{Deadlines, SessionStatus};
use crate::tokens::error::OAuthErrorBody;
use crate::tokens::types::{Introspection, RefreshRequest, TokenGrant, TokenPair, TokenQuery};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "tessera", description = "Secure sessions over HTTP: /v1 API for backends, forward auth, the browser session routes, and token mode (access tokens, rotating refresh tokens, JWKS)."),
    paths(
        crate::api::sessions::create,
        crate::api::sessions::verify,
        crate::api::sessions::rotate,
        crate::api::sessions::patch_data,
        crate::api::sessions::delete,
        crate::api::sessions::list_user,
        crate::api::sessions::revoke_user,
        crate::api::sessions::revoke_everyone,
        crate::api::requests::check,
        crate::api::requests::check_batch,
        crate::api::requests::login,
        crate::api::requests::rotate,
        crate::api::requests::logout,
        crate::forward_auth::verify,
        crate::tokens::grant::issue,
        crate::tokens::grant::token,
        crate::tokens::grant::refresh,
        crate::tokens::manage::revoke,
        crate::tokens::manage::introspect,
        crate::tokens::jwks,
        crate::site::auth::login,
        crate::site::auth::logout,
        crate::site::auth::reauth,
        crate::site::auth::change_password,
        crate::site::sessions::status,
        crate::site::sessions::keepalive,
        crate::site::sessions::list,
        crate::site::sessions::revoke,
        crate::site::sessions::revoke_others,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(
        crate::api::sessions::RevokedEveryone,
        CreateSession, IssuedSession, PatchData, Revoked, SessionSummary, SessionView,
        TokenRequest, VerifyRequest, ErrorBody, LoginForm, LoginResponse, PasswordForm,
        ReauthForm, CsrfForm, Deadlines, SessionStatus, TokenGrant, RefreshRequest, TokenQuery,
        TokenPair, Introspection, OAuthErrorBody, CheckRequest, CheckResponse, Outcome,
        CheckBatch, CheckBatchResponse, LoginRequest, PresentedToken, Installed, SignedOut, ExpectationFailed,
        CheckPatch, PatchOutcome
    )),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `tessera api-key create NAME`"))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
