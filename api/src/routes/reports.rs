//! The calling tenant's executive reports: a list (newest first, a page at
//! a time) and one report as JSON (facts, narrative, deliveries), HTML or
//! Markdown (`/v1/reports/{id}.html`, `.md`, `.json`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kairos_core::time::to_rfc3339;
use kairos_jobs::report::store::{self, ListError, ReportFilter, StoredReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Report list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    /// Only this account's reports.
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub account_id: Option<String>,
    /// Only portfolio (`tenant`) or account (`account`) reports.
    #[param(inline, value_type = Option<ScopeParam>)]
    pub scope: Option<String>,
    /// Only this period (`2026-W48`, `2026-11`).
    #[param(min_length = 7, max_length = 8, pattern = r"^[0-9]{4}-(W[0-9]{2}|[0-9]{2})$")]
    pub period: Option<String>,
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a hex string; one this API did
    /// not return lists nothing).
    #[param(min_length = 2, max_length = 1024, pattern = "^([0-9a-f]{2})+$")]
    pub cursor: Option<String>,
}

/// Lower-case hex pairs, as the OpenAPI pattern says.
fn is_hex_cursor(c: &str) -> bool {
    !c.is_empty()
        && c.len().is_multiple_of(2)
        && c.len() <= 1024
        && c.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `YYYY-Www` or `YYYY-MM`, as the OpenAPI pattern says.
fn period_shape(p: &str) -> bool {
    let b = p.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        7 => digits(&b[..4]) && b[4] == b'-' && digits(&b[5..]),
        8 => digits(&b[..4]) && b[4] == b'-' && b[5] == b'W' && digits(&b[6..]),
        _ => false,
    }
}

/// The values of `scope`, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum ScopeParam {
    /// One account's report.
    Account,
    /// The tenant's portfolio report.
    Tenant,
}

/// Where a report's documents are.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportLinks {
    /// HTML.
    pub html: String,
    /// Markdown.
    pub markdown: String,
    /// JSON (this view with facts, narrative and deliveries).
    pub json: String,
}

/// A report, without its documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    /// Report id.
    pub id: String,
    /// The account (absent for the portfolio report).
    pub account_id: Option<String>,
    /// `account` or `tenant`.
    pub scope: String,
    /// `2026-W48` or `2026-11`.
    pub period: String,
    /// 1 for the scheduled report; each explicit re-run adds one.
    pub version: i64,
    /// RFC 3339, inclusive.
    pub period_start: String,
    /// RFC 3339, exclusive.
    pub period_end: String,
    /// The recipient's zone the period was cut in.
    pub time_zone: String,
    /// `es` or `en`.
    pub language: String,
    /// `template` or `llm`.
    pub narrative_source: String,
    /// The model, when one wrote the narrative.
    pub llm_model: Option<String>,
    /// Prompt tokens used.
    pub tokens_prompt: Option<i64>,
    /// Completion tokens used.
    pub tokens_completion: Option<i64>,
    /// Generation time, ms.
    pub generation_ms: i64,
    /// `pending`, `delivered`, `partial`, `failed`, `unknown` or `none`.
    pub delivery_state: String,
    /// The last delivery problem.
    pub delivery_error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Its documents.
    pub links: ReportLinks,
}

impl From<&StoredReport> for ReportView {
    fn from(r: &StoredReport) -> Self {
        Self {
            id: r.id.clone(),
            account_id: (!r.account_id.is_empty()).then(|| r.account_id.clone()),
            scope: r.scope.clone(),
            period: r.period.clone(),
            version: r.version,
            period_start: to_rfc3339(r.period_start),
            period_end: to_rfc3339(r.period_end),
            time_zone: r.time_zone.clone(),
            language: r.language.clone(),
            narrative_source: r.narrative_source.clone(),
            llm_model: r.llm_model.clone(),
            tokens_prompt: r.tokens_prompt,
            tokens_completion: r.tokens_completion,
            generation_ms: r.generation_ms,
            delivery_state: r.delivery_state.clone(),
            delivery_error: r.delivery_error.clone(),
            created_at: to_rfc3339(r.created_at),
            links: ReportLinks {
                html: format!("/v1/reports/{}.html", r.id),
                markdown: format!("/v1/reports/{}.md", r.id),
                json: format!("/v1/reports/{}.json", r.id),
            },
        }
    }
}

/// A page of reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportPage {
    /// Newest first.
    pub items: Vec<ReportView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One delivery of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `email` or `webhook`.
    pub channel: String,
    /// Address (or `tenant` for the webhook).
    pub recipient: String,
    /// Language sent in.
    pub language: String,
    /// Message-ID (webhook: `X-Kairos-Delivery`).
    pub message_id: String,
    /// `sending`, `sent`, `failed`, `rejected` or `unknown`.
    pub state: String,
    /// Send attempts.
    pub attempts: i64,
    /// Last error.
    pub error: Option<String>,
}

/// A report with its facts, narrative and deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDetail {
    /// The report.
    #[serde(flatten)]
    pub report: ReportView,
    /// Everything the report says, as data.
    #[schema(value_type = Object)]
    pub facts: serde_json::Value,
    /// Executive summary, highlights, areas of attention, next steps.
    #[schema(value_type = Object)]
    pub narrative: serde_json::Value,
    /// Who it was sent to.
    pub deliveries: Vec<DeliveryView>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "reports store error");
    ApiError::Unavailable("store unavailable".into())
}

/// The tenant's reports, newest first.
#[utoipa::path(
    get,
    path = "/v1/reports",
    tag = "reports",
    params(ReportsQuery),
    responses(
        (status = 200, description = "A page", body = ReportPage),
        (status = 400, description = "Bad filter or cursor", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn list_reports(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<ReportsQuery>, QueryRejection>,
) -> Result<Json<ReportPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    if let Some(a) = &q.account_id {
        ApiError::check_ident("account_id", a)?;
    }
    match q.scope.as_deref() {
        // Filters combine: `tenant` with an account_id lists nothing.
        None | Some("account") | Some("tenant") => {}
        Some(other) => {
            return Err(ApiError::field(
                "scope",
                format!("`{other}` is not a scope (use account or tenant)"),
            ))
        }
    }
    // The shape only: a week or month that does not exist lists nothing.
    if let Some(p) = &q.period {
        if !period_shape(p) {
            return Err(ApiError::field(
                "period",
                format!("`{p}` is not a period: use an ISO week (2026-W48) or a month (2026-11)"),
            ));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 200"));
    }
    let filter = ReportFilter {
        account_id: q.account_id,
        scope: q.scope,
        period: q.period,
        limit,
        cursor: q.cursor,
    };
    let (items, next) = match store::list(&state.store, &tenant.id, &filter).await {
        Ok(page) => page,
        // Hex that is not one of our cursors points nowhere: an empty page.
        Err(ListError::Cursor(_)) if filter.cursor.as_deref().is_some_and(is_hex_cursor) => (Vec::new(), None),
        Err(ListError::Cursor(e)) => return Err(ApiError::field("cursor", e)),
        Err(ListError::Store(e)) => return Err(unavailable(e)),
    };
    Ok(Json(ReportPage {
        items: items.iter().map(ReportView::from).collect(),
        next_cursor: next,
    }))
}

/// One report: JSON (`{id}` or `{id}.json`), HTML (`{id}.html`) or
/// Markdown (`{id}.md`).
#[utoipa::path(
    get,
    path = "/v1/reports/{id}",
    tag = "reports",
    params(("id" = String, Path, description = "Report id, optionally ending in `.html`, `.md` or `.json`",
        min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")),
    responses(
        (status = 200, description = "The report", content(
            (ReportDetail = "application/json"),
            (String = "text/html"),
            (String = "text/markdown"))),
        (status = 400, description = "Not a valid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "No such report for this tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn get_report(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    ApiError::check_ident("id", &id)?;
    let (bare, format) = match id.rsplit_once('.') {
        Some((b, ext @ ("html" | "md" | "json"))) => (b, ext),
        _ => (id.as_str(), "json"),
    };
    let report = store::get(&state.store, &tenant.id, bare)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("report `{bare}` not found")))?;
    Ok(match format {
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], report.html).into_response(),
        "md" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.markdown,
        )
            .into_response(),
        _ => {
            let deliveries = store::deliveries(&state.store, &report.id)
                .await
                .map_err(unavailable)?
                .into_iter()
                .map(|d| DeliveryView {
                    channel: d.channel,
                    recipient: d.recipient,
                    language: d.language,
                    message_id: d.message_id,
                    state: d.state,
                    attempts: d.attempts,
                    error: d.error,
                })
                .collect();
            Json(ReportDetail {
                report: ReportView::from(&report),
                facts: serde_json::from_str(&report.facts).unwrap_or(serde_json::Value::Null),
                narrative: serde_json::from_str(&report.narrative).unwrap_or(serde_json::Value::Null),
                deliveries,
            })
            .into_response()
        }
    })
}
