//! Churn scores of the calling tenant: one account's latest score and
//! history, and every scored account grouped by risk level.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use kairos_core::time::to_rfc3339;
use kairos_jobs::churn::on_demand::{self, OnDemandError};
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

/// Most rows scored in one `POST /v1/churn:score`.
pub const MAX_SCORE_ROWS: usize = 1000;
/// Most factors explained per row.
pub const MAX_EXPLAIN: usize = 10;
/// Factors per row when `explain` is absent.
const DEFAULT_EXPLAIN: usize = 3;

/// Rows to score with a churn model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChurnScoreRequest {
    /// Model version; default: the model active for the calling tenant.
    /// A version trained for another tenant is not found.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub model: Option<String>,
    /// Rows keyed by the model's input column names (`kairos models show`
    /// lists them). A value is a number, a string (a categorical level, or a
    /// number written as text) or `null` (missing: the training median, or no
    /// level). An absent column counts as missing; an unknown one is a 400.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Factors explained per row (0–10, default 3). Read as a number so that
    /// `5.0`, an integer in JSON Schema's sense, is accepted as 5.
    #[schema(value_type = Option<u8>, minimum = 0, maximum = 10)]
    pub explain: Option<f64>,
}

/// One feature's push towards (positive) or away from churn.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreFactor {
    /// Input column.
    pub feature: String,
    /// The row's value as the model read it (`missing` when absent).
    pub value: String,
    /// Contribution to the log-odds of churn.
    pub contribution: f64,
}

/// A scored row.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowScore {
    /// Churn probability (0 … 1).
    pub probability: f64,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub risk_level: String,
    /// Whether the probability is above the model's decision threshold.
    pub churn: bool,
    /// The largest contributions, largest first.
    pub factors: Vec<ScoreFactor>,
}

/// The scores of `POST /v1/churn:score`, in the order of the rows sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChurnScoreResponse {
    /// The model version used.
    pub model_version: String,
    /// Its decision threshold.
    pub threshold: f64,
    /// One per row.
    pub scores: Vec<RowScore>,
}

/// Score rows with a churn model (nothing is stored).
///
/// The model's stored preprocessing (imputation, scaling, category levels)
/// is applied exactly as in training, so the answer equals `kairos score
/// churn` for the same rows.
#[utoipa::path(
    post,
    path = "/v1/churn:score",
    tag = "churn",
    request_body = ChurnScoreRequest,
    responses(
        (status = 200, description = "One score per row, in order", body = ChurnScoreResponse),
        (status = 400, description = "Malformed body, unknown column (`rows[2].tenure_mnths`) or a value of the wrong type", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "No such model for this tenant, or no active model", body = ErrorBody),
        (status = 413, description = "More than 1,000 rows, or the body is too large", body = ErrorBody),
        (status = 415, description = "Not `application/json` in UTF-8", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn score(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ChurnScoreResponse>, ApiError> {
    super::events::require_json(&headers)?;
    let body = body.map_err(|e| super::events::body_error(e, state.config.api.max_body_bytes))?;
    let request: ChurnScoreRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::field("body", e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    if request.rows.is_empty() {
        return Err(ApiError::field("rows", "no rows sent"));
    }
    if request.rows.len() > MAX_SCORE_ROWS {
        return Err(ApiError::TooLarge(format!(
            "{} rows in one request; at most {MAX_SCORE_ROWS} allowed",
            request.rows.len()
        )));
    }
    let explain = match request.explain {
        None => DEFAULT_EXPLAIN,
        Some(n) if n.fract() == 0.0 && (0.0..=MAX_EXPLAIN as f64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::field(
                "explain",
                format!("{n} is not a whole number from 0 to {MAX_EXPLAIN}"),
            ))
        }
    };
    // Scoring is cheap, but a row is work: it costs what an event costs.
    if let Err(wait) = state
        .limiter
        .check(&tenant.id, tenant.rate_per_second, request.rows.len())
    {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    if let Some(v) = &request.model {
        ApiError::check_ident("model", v)?;
    }
    let scored = on_demand::score(
        &state.store,
        &tenant.id,
        request.model.as_deref(),
        &request.rows,
        explain,
    )
    .await
    .map_err(|e| match e {
        OnDemandError::NoActiveModel | OnDemandError::NotFound(_) => ApiError::NotFound(e.to_string()),
        OnDemandError::Field { field, reason } => ApiError::field(field, reason),
        OnDemandError::Store(e) => unavailable(e),
    })?;
    let scores = scored
        .rows
        .into_iter()
        .map(|r| RowScore {
            probability: r.probability,
            risk_level: r.risk_level,
            churn: r.churn,
            factors: r
                .factors
                .into_iter()
                .map(|f| ScoreFactor {
                    feature: f.feature,
                    value: f.value,
                    contribution: f.contribution,
                })
                .collect(),
        })
        .collect();
    Ok(Json(ChurnScoreResponse {
        model_version: scored.model_version,
        threshold: scored.threshold,
        scores,
    }))
}
