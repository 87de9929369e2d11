//! `GET /v1/alerts`: the calling tenant's alerts (churn CRITICAL, upset
//! customers from sentiment), newest first, so a product backend or an ops tool can poll what needs a
//! human.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use kairos_core::store::AlertFilter;
use kairos_core::time::{now_ms, to_rfc3339};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Only alerts raised at or after this RFC 3339 time (default: 7 days ago).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only this kind, e.g. `churn_critical` or `client_dissatisfaction`.
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub kind: Option<String>,
    /// Only alerts at least this urgent (0-100); alerts without an urgency
    /// (churn) are left out when set.
    #[param(minimum = 0, maximum = 100)]
    pub min_urgency: Option<i64>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Alert id.
    pub id: String,
    /// The account it is about.
    pub account_id: String,
    /// What raised it.
    pub kind: String,
    /// `critical`, `high`, ...
    pub severity: String,
    /// Why, in words.
    pub reason: String,
    /// Details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The event that raised it (sentiment alerts).
    pub event_id: Option<String>,
    /// How urgent, 0-100 (sentiment alerts).
    pub urgency: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
}

/// The tenant's alerts, newest first.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts", body = [AlertView]),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let since = match q.since.as_deref() {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| ApiError::field("since", format!("`{s}` is not an RFC 3339 time ({e})")))?
            .timestamp_millis(),
        None => now_ms() - 7 * 24 * 3600 * 1000,
    };
    if let Some(kind) = &q.kind {
        ApiError::check_ident("kind", kind)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    if let Some(u) = q.min_urgency {
        if !(0..=100).contains(&u) {
            return Err(ApiError::field("min_urgency", "must be between 0 and 100"));
        }
    }
    let filter = AlertFilter {
        since_ms: since,
        kind: q.kind,
        min_urgency: q.min_urgency,
        limit,
    };
    let alerts = state.store.alerts(&tenant.id, &filter).await?;
    Ok(Json(
        alerts
            .into_iter()
            .map(|a| AlertView {
                details: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
                id: a.id,
                account_id: a.account_id,
                kind: a.kind,
                severity: a.severity,
                reason: a.reason,
                event_id: a.event_id,
                urgency: a.urgency,
                created_at: to_rfc3339(a.created_at),
            })
            .collect(),
    ))
}
