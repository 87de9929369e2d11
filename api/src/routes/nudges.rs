//! Nudges as people and the tenant see them: `GET /v1/people/{id}/feed`
//! (a person's in-app nudges; `POST …/feed/{nudge_id}/read` marks one
//! read) and `GET /v1/accounts/{id}/nudges` (every nudge of an account
//! with why it was sent, delayed, skipped or capped, and each delivery
//! attempt). The SQL stays with the `nudge` kind.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use kairos_core::time::{now_ms, to_rfc3339};
use kairos_jobs::nudge::store::{self, DeliveryRow, NudgeRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Feed filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Only nudges not yet marked read (default false).
    pub unread: Option<bool>,
    /// At most this many, newest first (1-100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// History filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// At most this many, newest first (1-200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One in-app nudge.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItem {
    /// Nudge id (for `…/read`).
    pub id: String,
    /// The rule that sent it.
    pub rule: String,
    /// The account it is about.
    pub account_id: String,
    /// `es` or `en`.
    pub language: Option<String>,
    /// Title.
    pub subject: Option<String>,
    /// Text.
    pub body: Option<String>,
    /// The rule's priority (higher first).
    pub priority: i64,
    /// RFC 3339.
    pub sent_at: Option<String>,
    /// RFC 3339; absent while unread.
    pub read_at: Option<String>,
}

/// A person's feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feed {
    /// Person id.
    pub person_id: String,
    /// Newest first.
    pub items: Vec<FeedItem>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The delivery job's attempt (from 1).
    pub attempt: i64,
    /// `email`, `webhook`, `in_app` or `success_manager`.
    pub channel: String,
    /// `sent`, `queued` (webhook job created), `failed`, `no_consent`,
    /// `no_address`, `not_configured` or `dry_run`.
    pub outcome: String,
    /// Why, or the server's answer.
    pub detail: String,
    /// RFC 3339.
    pub at: String,
}

/// A nudge and why it went the way it did.
#[derive(Debug, Serialize, ToSchema)]
pub struct NudgeView {
    /// Id.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// The person.
    pub person_id: String,
    /// What fired the rule (`type`: event, sentiment_alert, churn_level, inactivity).
    #[schema(value_type = Object)]
    pub trigger: serde_json::Value,
    /// `planned`, `delayed` (quiet hours; sent at `run_after`), `sending`
    /// (claimed, going out now), `sent`, `unknown` (its sender died
    /// mid-send: it may have gone out, and is never sent again), `skipped`
    /// (kill switch, no consent on any channel, ...), `capped`
    /// (a frequency cap was full), `dry_run` or `holdout` (the A/B
    /// baseline: sent nothing on purpose).
    pub status: String,
    /// The A/B variant (stable per rule and person); absent without variants.
    pub variant: Option<String>,
    /// Why it was delayed, skipped or capped; empty when sent as planned.
    pub reason: String,
    /// The channel it went (or would have gone) out on.
    pub channel: Option<String>,
    /// `es` or `en`.
    pub language: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// The rule's priority.
    pub priority: i64,
    /// Whether the rule may bypass quiet hours.
    pub urgent: bool,
    /// Whether the rule records without sending.
    pub dry_run: bool,
    /// Not before, RFC 3339.
    pub run_after: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub sent_at: Option<String>,
    /// RFC 3339 (in-app).
    pub read_at: Option<String>,
    /// First `nudge.opened` event for it (`data.nudge_id`), RFC 3339.
    pub opened_at: Option<String>,
    /// First `nudge.clicked`.
    pub clicked_at: Option<String>,
    /// First `nudge.replied`.
    pub replied_at: Option<String>,
    /// `template` or `llm` (a rule with `personalise = true` whose LLM
    /// text passed the grounding check); absent before a text was chosen.
    pub text_source: Option<String>,
    /// Why the template was used on a personalised rule (LLM down, over
    /// quota, a number not in the facts).
    pub text_note: Option<String>,
    /// Every attempt, in order.
    pub deliveries: Vec<DeliveryView>,
}

/// An account's nudges.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountNudges {
    /// Account id.
    pub account_id: String,
    /// Newest first.
    pub nudges: Vec<NudgeView>,
}

fn view((n, d): (NudgeRow, Vec<DeliveryRow>)) -> NudgeView {
    NudgeView {
        id: n.id,
        rule: n.rule,
        person_id: n.person_id,
        trigger: n.trigger,
        status: n.status,
        variant: n.variant,
        reason: n.reason,
        channel: n.channel,
        language: n.language,
        subject: n.subject,
        body: n.body,
        priority: n.priority,
        urgent: n.urgent,
        dry_run: n.dry_run,
        run_after: to_rfc3339(n.run_after),
        created_at: to_rfc3339(n.created_at),
        sent_at: n.sent_at.map(to_rfc3339),
        read_at: n.read_at.map(to_rfc3339),
        opened_at: n.opened_at.map(to_rfc3339),
        clicked_at: n.clicked_at.map(to_rfc3339),
        replied_at: n.replied_at.map(to_rfc3339),
        text_source: n.text_source,
        text_note: n.text_note,
        deliveries: d
            .into_iter()
            .map(|d| DeliveryView {
                attempt: d.attempt,
                channel: d.channel,
                outcome: d.outcome,
                detail: d.detail,
                at: to_rfc3339(d.at),
            })
            .collect(),
    }
}

/// A person's in-app nudges, newest first.
#[utoipa::path(
    get,
    path = "/v1/people/{id}/feed",
    tag = "nudges",
    params(("id" = String, Path, description = "Person id (the `user_id` of their events)", min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"), FeedQuery),
    responses(
        (status = 200, description = "The feed (empty when the person has none)", body = Feed),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn feed(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Feed>, ApiError> {
    ApiError::check_ident("id", &id)?;
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 100"));
    }
    let rows = store::feed(
        &state.store,
        &tenant.id,
        &id,
        q.unread.unwrap_or(false),
        i64::from(limit),
    )
    .await
    .map_err(unavailable)?;
    Ok(Json(Feed {
        person_id: id,
        items: rows
            .into_iter()
            .map(|n| FeedItem {
                id: n.id,
                rule: n.rule,
                account_id: n.account_id,
                language: n.language,
                subject: n.subject,
                body: n.body,
                priority: n.priority,
                sent_at: n.sent_at.map(to_rfc3339),
                read_at: n.read_at.map(to_rfc3339),
            })
            .collect(),
    }))
}

/// Marks one of a person's in-app nudges read (idempotent: the first time is kept).
#[utoipa::path(
    post,
    path = "/v1/people/{id}/feed/{nudge_id}/read",
    tag = "nudges",
    params(
        ("id" = String, Path, description = "Person id", min_length = 1, max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"),
        ("nudge_id" = String, Path, description = "Nudge id from the feed", min_length = 1, max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"),
    ),
    responses(
        (status = 204, description = "Marked read"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "No such in-app nudge for this person", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, nudge_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ApiError::check_ident("id", &id)?;
    ApiError::check_ident("nudge_id", &nudge_id)?;
    if store::mark_read(&state.store, &tenant.id, &id, &nudge_id, now_ms())
        .await
        .map_err(unavailable)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no in-app nudge {nudge_id} for person {id}"
        )))
    }
}

/// An account's nudges, newest first, with why each was sent, delayed,
/// skipped or capped, and every delivery attempt.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/nudges",
    tag = "nudges",
    params(("id" = String, Path, description = "Account id", min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"), HistoryQuery),
    responses(
        (status = 200, description = "The history (empty when a known account has none)", body = AccountNudges),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "No such account: no profile and no nudges (an erased or never-created account)", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn account_nudges(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<AccountNudges>, ApiError> {
    ApiError::check_ident("id", &id)?;
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 200"));
    }
    let rows = store::for_account(&state.store, &tenant.id, &id, i64::from(limit))
        .await
        .map_err(unavailable)?;
    // Like the account's other sub-resources: an account we know nothing of is a 404, not an empty list.
    if rows.is_empty() {
        let profile = state.store.account(&tenant.id, &id).await.map_err(|e| {
            tracing::error!(error = %e, "nudge history: reading the account");
            ApiError::Unavailable("store unavailable".into())
        })?;
        if profile.is_none() {
            return Err(ApiError::NotFound(format!("no account {id}: no profile and no nudges")));
        }
    }
    Ok(Json(AccountNudges {
        account_id: id,
        nudges: rows.into_iter().map(view).collect(),
    }))
}

fn unavailable(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "nudge store error");
    ApiError::Unavailable("store unavailable".into())
}

/// Stats filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Re-engagement window in days (1-90, default 7): a person re-engaged
    /// when they have an event on the same account within this many days
    /// after the nudge was decided. Only nudges at least this old count.
    #[param(minimum = 1, maximum = 90)]
    pub window_days: Option<u32>,
}

/// A group's re-engagement.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupStats {
    /// People assigned (intention to treat: sent, skipped and capped alike).
    pub assigned: u64,
    /// Of them, active again within the window.
    pub re_engaged: u64,
    /// `re_engaged / assigned`; absent for an empty group.
    pub rate: Option<f64>,
}

/// A variant against the rule's holdout.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantStatsView {
    /// Variant name.
    pub variant: String,
    /// Its group.
    pub group: GroupStats,
    /// Variant rate − holdout rate; absent without a holdout.
    pub difference: Option<f64>,
    /// 95% interval of the difference (Wald), low end.
    pub ci_low: Option<f64>,
    /// 95% interval, high end.
    pub ci_high: Option<f64>,
    /// `better` or `worse` than the holdout only when the interval
    /// excludes zero; otherwise `no difference shown` (or `no holdout`).
    pub verdict: String,
}

/// A rule's experiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleStatsView {
    /// Rule name.
    pub rule: String,
    /// The holdout group (sent nothing).
    pub holdout: GroupStats,
    /// Each variant.
    pub variants: Vec<VariantStatsView>,
}

/// Re-engagement per rule and variant against the holdout, and the funnel
/// per rule, variant and channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct NudgeStats {
    /// The window used.
    pub window_days: u32,
    /// Rules with variants or a holdout, by name.
    pub rules: Vec<RuleStatsView>,
    /// Per rule, variant and channel: decided, sent, opened, clicked,
    /// replied, re-engaged, churned (nudges at least `window_days` old).
    pub funnel: Vec<store::FunnelRow>,
}

fn group(c: kairos_jobs::nudge::stats::Counts) -> GroupStats {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let rate = (c.n > 0).then(|| c.k as f64 / c.n as f64);
    GroupStats {
        assigned: c.n,
        re_engaged: c.k,
        rate,
    }
}

/// Each experimenting rule's variants against its holdout: re-engagement
/// rates, their difference and its 95% interval, and a winner only when
/// the interval excludes zero.
#[utoipa::path(
    get,
    path = "/v1/nudges/stats",
    tag = "nudges",
    params(StatsQuery),
    responses(
        (status = 200, description = "Per rule and variant", body = NudgeStats),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<NudgeStats>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let window_days = q.window_days.unwrap_or(7);
    if !(1..=90).contains(&window_days) {
        return Err(ApiError::field("window_days", "must be between 1 and 90"));
    }
    let window_ms = i64::from(window_days) * 86_400_000;
    let funnel = store::funnel(&state.store, &tenant.id, window_ms, now_ms())
        .await
        .map_err(unavailable)?;
    let rows = store::experiment_counts(&funnel);
    Ok(Json(NudgeStats {
        window_days,
        rules: rule_stats(&rows),
        funnel,
    }))
}

/// Each rule's variants against its holdout, from `experiment_counts`'
/// rows, with the verdict in words — the API's answer and the dashboard's
/// nudges page.
pub(crate) fn rule_stats(rows: &[(String, String, u64, u64)]) -> Vec<RuleStatsView> {
    kairos_jobs::nudge::stats::report(rows)
        .into_iter()
        .map(|r| RuleStatsView {
            rule: r.rule,
            holdout: group(r.holdout),
            variants: r
                .variants
                .into_iter()
                .map(|v| {
                    let c = v.vs_holdout;
                    let verdict = match c.map(|c| c.variant_wins) {
                        None => "no holdout",
                        Some(Some(true)) => "better",
                        Some(Some(false)) => "worse",
                        Some(None) => "no difference shown",
                    };
                    VariantStatsView {
                        variant: v.variant,
                        group: group(v.counts),
                        difference: c.map(|c| c.difference),
                        ci_low: c.map(|c| c.ci_low),
                        ci_high: c.map(|c| c.ci_high),
                        verdict: verdict.to_owned(),
                    }
                })
                .collect(),
        })
        .collect()
}
