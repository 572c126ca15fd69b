//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
