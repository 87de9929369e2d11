//! Liveness and readiness, for load balancers and orchestrators.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Readiness of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or the error.
    pub store: String,
    /// `ok` or the error.
    pub queue: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store and the queue answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, HeaderMap, Json<Readiness>) {
    let (store, queue) = tokio::join!(state.store.ping(), state.queue.ping());
    let ok = store.is_ok() && queue.is_ok();
    let show = |r: Result<(), String>| r.map(|()| "ok".to_string()).unwrap_or_else(|e| e);
    let body = Readiness {
        store: show(store.map_err(|e| e.to_string())),
        queue: show(queue.map_err(|e| e.to_string())),
    };
    let mut headers = HeaderMap::new();
    let status = if ok {
        StatusCode::OK
    } else {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::error::UNAVAILABLE_RETRY_AFTER_SECS),
        );
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, headers, Json(body))
}
