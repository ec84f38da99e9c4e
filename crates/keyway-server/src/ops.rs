//! Operations endpoints: health, readiness, metrics, the OpenAPI document.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.broker.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database does not answer",
            );
            err.extra.retry_after = Some(2);
            err.into_response()
        }
    }
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
