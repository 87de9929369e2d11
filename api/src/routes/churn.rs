//! Churn scores of the calling tenant: one account's latest score and
//! history, and every scored account grouped by risk level.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use kairos_core::time::to_rfc3339;
use kairos_jobs::churn::scores::{self, ScoreRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Most history entries returned for one account.
const HISTORY_LIMIT: i64 = 100;
/// Risk levels, lowest first.
const LEVELS: [&str; 4] = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// One scoring of an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChurnScoreView {
    /// Account id.
    pub account_id: String,
    /// Churn probability (0 … 1).
    pub probability: f64,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub risk_level: String,
    /// Top factors: feature, value, contribution (log-odds), description in the tenant's language.
    #[schema(value_type = Vec<Object>)]
    pub factors: serde_json::Value,
    /// Recommended actions: action, priority, estimated_impact, because (factor).
    #[schema(value_type = Vec<Object>)]
    pub actions: serde_json::Value,
    /// Model version that produced it.
    pub model_version: String,
    /// `event` or `schedule`.
    pub trigger_kind: String,
    /// Event id, or `schedule@tick`.
    pub trigger_ref: String,
    /// RFC 3339.
    pub scored_at: String,
}

impl From<ScoreRow> for ChurnScoreView {
    fn from(s: ScoreRow) -> Self {
        Self {
            account_id: s.account_id,
            probability: s.probability,
            risk_level: s.risk_level,
            factors: s.factors,
            actions: s.actions,
            model_version: s.model_version,
            trigger_kind: s.trigger_kind,
            trigger_ref: s.trigger_ref,
            scored_at: to_rfc3339(s.scored_at),
        }
    }
}

/// An account's latest churn score and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountChurn {
    /// Account id.
    pub account_id: String,
    /// The most recent score.
    pub latest: ChurnScoreView,
    /// Every score, newest first (at most 100).
    pub history: Vec<ChurnScoreView>,
}

/// Accounts of one risk level.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskGroup {
    /// `CRITICAL`, `HIGH`, `MEDIUM` or `LOW`.
    pub risk_level: String,
    /// How many accounts.
    pub count: usize,
    /// Their latest scores, highest probability first.
    pub accounts: Vec<ChurnScoreView>,
}

/// Scored accounts grouped by risk level, most urgent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChurnOverview {
    /// The `min_risk` applied.
    pub min_risk: String,
    /// Groups from CRITICAL down to `min_risk` (empty groups included).
    pub groups: Vec<RiskGroup>,
}

/// Query of `GET /v1/churn`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChurnQuery {
    /// Lowest risk level to include: `low` (default), `medium`, `high` or
    /// `critical` (the upper-case forms are accepted too).
    #[param(inline, value_type = Option<MinRisk>)]
    pub min_risk: Option<String>,
}

/// The values of `min_risk`, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum MinRisk {
    /// Every scored account.
    Low,
    /// MEDIUM and above.
    Medium,
    /// HIGH and above.
    High,
    /// CRITICAL only.
    Critical,
}

/// One account's latest churn score and history.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/churn",
    tag = "churn",
    params(("id" = String, Path, description = "Account id", min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")),
    responses(
        (status = 200, description = "Latest score and history", body = AccountChurn),
        (status = 400, description = "Not a valid account id (control characters, too long)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "The account has no churn score for this tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn account_churn(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<AccountChurn>, ApiError> {
    ApiError::check_ident("id", &id)?;
    let history = scores::history(&state.store, &tenant.id, &id, HISTORY_LIMIT)
        .await
        .map_err(unavailable)?;
    let history: Vec<ChurnScoreView> = history.into_iter().map(Into::into).collect();
    if history.is_empty() {
        return Err(ApiError::NotFound(format!("no churn score for account {id}")));
    }
    let latest = history[0].clone();
    Ok(Json(AccountChurn {
        account_id: id,
        latest,
        history,
    }))
}

/// Every scored account's latest score, grouped by risk level.
#[utoipa::path(
    get,
    path = "/v1/churn",
    tag = "churn",
    params(ChurnQuery),
    responses(
        (status = 200, description = "Accounts grouped by risk level", body = ChurnOverview),
        (status = 400, description = "Bad min_risk", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn churn_overview(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<ChurnQuery>, QueryRejection>,
) -> Result<Json<ChurnOverview>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let min = query.min_risk.as_deref().unwrap_or("low").to_ascii_uppercase();
    let min_rank = LEVELS.iter().position(|l| *l == min).ok_or_else(|| {
        ApiError::field(
            "min_risk",
            format!(
                "`{}` is not a risk level (use low, medium, high or critical)",
                query.min_risk.unwrap_or_default()
            ),
        )
    })?;
    let latest = scores::latest(&state.store, &tenant.id).await.map_err(unavailable)?;
    let mut groups: Vec<RiskGroup> = LEVELS[min_rank..]
        .iter()
        .rev()
        .map(|l| RiskGroup {
            risk_level: (*l).into(),
            count: 0,
            accounts: Vec::new(),
        })
        .collect();
    for s in latest {
        if let Some(g) = groups.iter_mut().find(|g| g.risk_level == s.risk_level) {
            g.accounts.push(s.into());
        }
    }
    for g in &mut groups {
        g.accounts.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        g.count = g.accounts.len();
    }
    Ok(Json(ChurnOverview {
        min_risk: min.to_ascii_lowercase(),
        groups,
    }))
}

fn unavailable(e: kairos_jobs::churn::ChurnStoreError) -> ApiError {
    tracing::error!(error = %e, "churn store error");
    ApiError::Unavailable("store unavailable".into())
}
