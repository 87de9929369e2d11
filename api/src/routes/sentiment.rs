//! `GET /v1/accounts/{id}/sentiment`: an account's recent comment and
//! ticket scores and its rolling average, so a product backend can show
//! "how does this customer feel lately" next to the account.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use kairos_core::time::{now_ms, to_rfc3339};
use kairos_jobs::sentiment::scores::{self, ScoreRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SentimentQuery {
    /// How many recent scores to return (1-100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Days in the rolling window (1-365, default 30).
    #[param(minimum = 1, maximum = 365)]
    pub window_days: Option<u32>,
}

/// One scored comment or ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SentimentScoreView {
    /// The event scored.
    pub event_id: String,
    /// Its type, e.g. `ticket.created`.
    pub event_type: String,
    /// `negative`, `neutral` or `positive`.
    pub label: String,
    /// Confidence of the label (0-1).
    pub score: f64,
    /// P(positive) - P(negative), in [-1, 1].
    pub polarity: f64,
    /// Probability of each label.
    #[schema(value_type = Object)]
    pub probabilities: serde_json::Value,
    /// Detected language (`es`, `en`), absent when undetermined.
    pub language: Option<String>,
    /// 0-100: negative confidence plus urgency keywords.
    pub urgency: i64,
    /// Urgency keywords found.
    #[schema(value_type = Vec<String>)]
    pub keywords: serde_json::Value,
    /// The model (head) version that scored it.
    pub model_version: String,
    /// The job that scored it.
    pub job_id: String,
    /// RFC 3339.
    pub scored_at: String,
}

impl From<ScoreRow> for SentimentScoreView {
    fn from(s: ScoreRow) -> Self {
        Self {
            event_id: s.event_id,
            event_type: s.event_type,
            label: s.label,
            score: s.score,
            polarity: s.polarity,
            probabilities: s.probabilities,
            language: s.language,
            urgency: s.urgency,
            keywords: s.keywords,
            model_version: s.model_version,
            job_id: s.job_id,
            scored_at: to_rfc3339(s.scored_at),
        }
    }
}

/// An average polarity over some scores.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentimentAverage {
    /// Mean polarity in [-1, 1]; absent when no score falls in the window.
    pub polarity: Option<f64>,
    /// Scores averaged.
    pub count: i64,
}

/// An account's sentiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSentiment {
    /// Account id.
    pub account_id: String,
    /// Days in `rolling`.
    pub window_days: u32,
    /// Average over the last `window_days`.
    pub rolling: SentimentAverage,
    /// Average over every score.
    pub overall: SentimentAverage,
    /// Most recent scores, newest first.
    pub recent: Vec<SentimentScoreView>,
}

/// An account's recent sentiment scores and rolling average.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/sentiment",
    tag = "sentiment",
    params(("id" = String, Path, description = "Account id", min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"), SentimentQuery),
    responses(
        (status = 200, description = "Recent scores and averages", body = AccountSentiment),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "The account has no sentiment score for this tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn account_sentiment(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    query: Result<Query<SentimentQuery>, QueryRejection>,
) -> Result<Json<AccountSentiment>, ApiError> {
    ApiError::check_ident("id", &id)?;
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 100"));
    }
    let window_days = q.window_days.unwrap_or(30);
    if !(1..=365).contains(&window_days) {
        return Err(ApiError::field("window_days", "must be between 1 and 365"));
    }
    let recent = scores::recent(&state.store, &tenant.id, &id, i64::from(limit))
        .await
        .map_err(unavailable)?;
    if recent.is_empty() {
        return Err(ApiError::NotFound(format!("no sentiment score for account {id}")));
    }
    let window_ms = i64::from(window_days) * 24 * 3600 * 1000;
    let [(rolling, rolling_n), (overall, overall_n)] =
        scores::averages(&state.store, &tenant.id, &id, now_ms(), window_ms)
            .await
            .map_err(unavailable)?;
    Ok(Json(AccountSentiment {
        account_id: id,
        window_days,
        rolling: SentimentAverage {
            polarity: rolling,
            count: rolling_n,
        },
        overall: SentimentAverage {
            polarity: overall,
            count: overall_n,
        },
        recent: recent.into_iter().map(Into::into).collect(),
    }))
}

fn unavailable(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "sentiment store error");
    ApiError::Unavailable("store unavailable".into())
}
