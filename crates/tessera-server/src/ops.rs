//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.
//!
//! **Metrics are never public by accident.** They show sign-in failures,
//! refresh-token reuse and store latencies: useful to an attacker probing
//! the limiter. The main listener serves `GET /metrics` only when
//! `metrics_token` is set, and then only to `Authorization: Bearer <token>`
//! (compared in constant time); without it the route answers 404. A
//! scraper on a private network can use `metrics_listen` instead: a second
//! listener serving only `/metrics`, which requires the token too when one
//! is set (OWASP REST Security Cheat Sheet, "Management endpoints": not
//! exposed to the Internet, strong authentication).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the session store and the user database answer; 503
/// otherwise, so a load balancer takes the instance out of rotation.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "store not answering")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.manager.store().ping().await;
    let users = state.users.count().await;
    match (store, users) {
        (Ok(()), Ok(_)) => "ready".into_response(),
        (store, users) => {
            if let Err(e) = store {
                tracing::warn!(error = %e, "readiness: session store not answering");
            }
            if let Err(e) = users {
                tracing::warn!(error = %e, "readiness: user database not answering");
            }
            ApiError::unavailable().into_response()
        }
    }
}

pub use crate::config::values::MetricsToken;

/// True if `headers` carry `Authorization: Bearer <token>`.
fn bearer_matches(headers: &HeaderMap, token: &MetricsToken) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .take(8)
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.trim().split_once(' '))
        // RFC 9110 §11.1: the scheme is case-insensitive.
        .any(|(scheme, credential)| {
            scheme.eq_ignore_ascii_case("bearer") && token.matches(credential.trim())
        })
}

/// `GET /metrics` on the main listener: only with `metrics_token` set and
/// presented (see the module docs); 404 without a token configured, 401
/// with a wrong or missing one.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text"),
        (status = 401, description = "metrics_token is set and was not presented as a bearer token"),
        (status = 404, description = "no metrics_token configured: metrics are not served on this listener")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.config.metrics_token() {
        None => ApiError::not_found()
            .message("metrics are served with metrics_token or on metrics_listen")
            .into_response(),
        Some(token) => guarded(&state, &headers, Some(token)),
    }
}

/// `GET /metrics` on `metrics_listen`: the token is required when set.
pub async fn metrics_listener(State(state): State<AppState>, headers: HeaderMap) -> Response {
    guarded(&state, &headers, state.config.metrics_token())
}

fn guarded(state: &AppState, headers: &HeaderMap, token: Option<&MetricsToken>) -> Response {
    if let Some(token) = token
        && !bearer_matches(headers, token)
    {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated")
            .message("send Authorization: Bearer <metrics_token>")
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tessera metrics\""),
        );
        return response;
    }
    render(state)
}

/// The Prometheus text of the installed recorder (404 when none is).
fn render(state: &AppState) -> Response {
    match &state.metrics {
        Some(handle) => {
            if let Some(cache) = &state.cache {
                crate::metrics::export_cache(&cache.stats());
            }
            if let Some(stats) = state.keys.memory_stats() {
                crate::metrics::export_api_keys(stats.hits, stats.misses, stats.entries);
            }
            render_text(handle)
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn render_text(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}
