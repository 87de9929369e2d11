//! `GET /v1/models/monitor`: the calling tenant's models week by week —
//! churn scorings and input drift, sentiment label mix and confidence, and
//! the champion / challenger decisions — for the dashboard and for a
//! product that wants to show its own users how the models behave.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use kairos_core::time::now_ms;
use kairos_jobs::monitor::{self, MonitorReport};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Which weeks.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MonitorQuery {
    /// Weeks to cover, the current one included (1-52; default `[monitor] weeks`).
    #[param(minimum = 1, maximum = 52)]
    pub weeks: Option<u32>,
}

/// The tenant's model monitoring report.
#[utoipa::path(
    get,
    path = "/v1/models/monitor",
    tag = "models",
    params(MonitorQuery),
    responses(
        (status = 200, description = "Weekly model behaviour and drift", body = MonitorReport),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn monitor(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<MonitorQuery>, QueryRejection>,
) -> Result<Json<MonitorReport>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let config = &state.config.monitor;
    let weeks = q.weeks.unwrap_or(config.weeks);
    if !(1..=monitor::MAX_WEEKS).contains(&weeks) {
        return Err(ApiError::field(
            "weeks",
            format!("must be between 1 and {}", monitor::MAX_WEEKS),
        ));
    }
    let report = monitor::report(&state.store, &tenant.id, config, weeks, now_ms())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "model monitor report failed");
            ApiError::Unavailable("store unavailable".into())
        })?;
    Ok(Json(report))
}
