//! Reports: a tenant's stored executive reports, newest first (keyset pages
//! through `report::store::list`), and one report — its facts about how it
//! was made, its deliveries, and the stored HTML itself in a sandboxed
//! frame (served with a CSP `sandbox`, so a report's content can run no
//! script and reach nothing of the dashboard).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use kairos_jobs::report::store;
use serde::Deserialize;

use super::{dur, nonempty, pick_tenant, tenants_for, ts, Layout};
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

const PAGE: u32 = 50;

/// Which tenant, filters and page.
#[derive(Debug, Default, Deserialize)]
pub struct ReportsQuery {
    /// Tenant id or name.
    pub tenant: Option<String>,
    /// Only this account.
    pub account: Option<String>,
    /// Only this period (`2026-W48`).
    pub period: Option<String>,
    /// The previous page's cursor.
    pub after: Option<String>,
}

/// One report in the list.
pub struct ReportRow {
    id: String,
    account: String,
    period: String,
    version: i64,
    language: String,
    source: String,
    delivery: String,
    created: String,
}

/// The reports list.
#[derive(Template)]
#[template(path = "reports.html")]
pub struct ReportsPage {
    l: Layout,
    tenants: Vec<(String, String)>,
    tenant: String,
    account: String,
    period: String,
    rows: Vec<ReportRow>,
    next: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> DashError {
    DashError::Unavailable(e.to_string())
}

/// `GET /dashboard/reports`.
pub async fn list(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<ReportsQuery>,
) -> Result<Response, DashError> {
    let tenants = tenants_for(&state, &user).await?;
    let tenant = pick_tenant(&tenants, nonempty(&q.tenant).as_deref());
    let account = nonempty(&q.account);
    let period = nonempty(&q.period);
    let mut rows = Vec::new();
    let mut next = None;
    if let Some(t) = &tenant {
        let filter = store::ReportFilter {
            account_id: account.clone(),
            scope: None,
            period: period.clone(),
            limit: PAGE,
            cursor: nonempty(&q.after),
        };
        let (items, cursor) = store::list(&state.app.store, &t.id, &filter)
            .await
            .map_err(|e| match e {
                store::ListError::Cursor(why) => DashError::BadRequest(why),
                store::ListError::Store(e) => unavailable(e),
            })?;
        rows = items
            .into_iter()
            .map(|r| ReportRow {
                account: if r.account_id.is_empty() {
                    "(portfolio)".into()
                } else {
                    r.account_id
                },
                period: r.period,
                version: r.version,
                language: r.language,
                source: r.narrative_source,
                delivery: r.delivery_state,
                created: ts(r.created_at),
                id: r.id,
            })
            .collect();
        next = cursor.map(|c| {
            let mut url = format!("/dashboard/reports?tenant={}&after={c}", t.id);
            for (k, v) in [("account", &account), ("period", &period)] {
                if let Some(v) = v {
                    url.push_str(&format!("&{k}={}", urlencoding(v)));
                }
            }
            url
        });
    }
    render(&ReportsPage {
        l: Layout::new(&user, "Reports", "/dashboard/reports", None),
        tenants: tenants.into_iter().map(|t| (t.id, t.name)).collect(),
        tenant: tenant.map(|t| t.id).unwrap_or_default(),
        account: account.unwrap_or_default(),
        period: period.unwrap_or_default(),
        rows,
        next,
    })
}

fn urlencoding(v: &str) -> String {
    serde_urlencoded::to_string([("", v)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// The tenant of a report request: the scoped user's own, else `?tenant=`.
#[derive(Debug, Default, Deserialize)]
pub struct TenantQuery {
    /// Tenant id.
    pub tenant: Option<String>,
}

async fn load(
    state: &DashState,
    user: &CurrentUser,
    id: &str,
    q: &TenantQuery,
) -> Result<store::StoredReport, DashError> {
    let tenant = user
        .scope(q.tenant.clone())
        .ok_or_else(|| DashError::BadRequest("which tenant's report? (?tenant=)".into()))?;
    store::get(&state.app.store, &tenant, id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| DashError::NotFound(format!("no report {id}")))
}

/// One report.
#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    l: Layout,
    r: store::StoredReport,
    facts: Vec<(&'static str, String)>,
    deliveries: Vec<store::DeliveryRow>,
    frame: String,
}

/// `GET /dashboard/reports/{id}?tenant=…`.
pub async fn view(
    State(state): State<DashState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, DashError> {
    let r = load(&state, &user, &id, &q).await?;
    let deliveries = store::deliveries(&state.app.store, &r.id).await.map_err(unavailable)?;
    let facts = vec![
        (
            "Account",
            if r.account_id.is_empty() {
                "(portfolio)".to_owned()
            } else {
                r.account_id.clone()
            },
        ),
        ("Period", format!("{} (version {})", r.period, r.version)),
        ("From", format!("{} UTC", ts(r.period_start))),
        ("To", format!("{} UTC", ts(r.period_end))),
        ("Time zone", r.time_zone.clone()),
        ("Language", r.language.clone()),
        (
            "Narrative",
            match &r.llm_model {
                Some(m) => format!(
                    "{} ({m}, {} + {} tokens)",
                    r.narrative_source,
                    r.tokens_prompt.unwrap_or(0),
                    r.tokens_completion.unwrap_or(0)
                ),
                None => r.narrative_source.clone(),
            },
        ),
        ("Generated in", dur(Some(r.generation_ms))),
        (
            "Delivery",
            match &r.delivery_error {
                Some(e) => format!("{} ({e})", r.delivery_state),
                None => r.delivery_state.clone(),
            },
        ),
        ("Job", r.job_id.clone()),
        ("Stored (UTC)", ts(r.created_at)),
    ];
    render(&ReportPage {
        l: Layout::new(&user, format!("Report {}", r.period), "/dashboard/reports", None),
        frame: format!("/dashboard/reports/{}/html?tenant={}", r.id, r.tenant_id),
        facts,
        deliveries,
        r,
    })
}

/// `GET /dashboard/reports/{id}/html?tenant=…`: the stored HTML document,
/// sandboxed: no script runs and nothing is fetched but inline images.
pub async fn html(
    State(state): State<DashState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, DashError> {
    let r = load(&state, &user, &id, &q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        r.html,
    )
        .into_response())
}
