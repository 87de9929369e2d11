//! `GET /metrics`: Prometheus exposition of this process's metrics and the
//! deployment's queue gauges (see [`crate::metrics`]).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// Metrics in the Prometheus text format (names in README.md).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "A token is configured ([metrics] token_env) and was not presented", body = crate::error::ErrorBody),
        (status = 404, description = "Metrics are disabled ([metrics] enabled = false)", body = crate::error::ErrorBody),
    )
)]
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match &state.metrics {
        Some(exporter) => exporter.respond(&headers).await,
        None => ApiError::NotFound("metrics are disabled ([metrics] enabled = false)".into()).into_response(),
    }
}
