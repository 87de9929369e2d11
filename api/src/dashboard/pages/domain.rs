//! The domain pages of one tenant at a time: accounts at risk (the latest
//! churn score of each account) and sentiment alerts, with "intervene" (an
//! operator plans a nudge through the nudge kind's rules on sentiment
//! alerts, or assigns the alert to the account's success manager — its
//! profile's `owner`; both audited). A tenant-scoped user always sees its
//! own tenant; others pick one.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kairos_core::store::{record_audit_in, AlertFilter, NewAudit};
use serde::Deserialize;

use super::{done, nonempty, pick_tenant, tenants_for, ts, Done, Layout};
use crate::dashboard::auth::Role;
use crate::dashboard::csrf::Posted;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

const PAGE: usize = 50;

/// Which tenant, and where the page starts.
#[derive(Debug, Default, Deserialize)]
pub struct DomainQuery {
    /// Tenant id or name.
    pub tenant: Option<String>,
    /// Keyset cursor (risk: `probability_account`; alerts: `at_id`).
    pub after: Option<String>,
    /// Alerts: only at least this urgency.
    pub min_urgency: Option<i64>,
}

/// One account at risk.
pub struct RiskRow {
    account_id: String,
    level: String,
    probability: String,
    factors: Vec<String>,
    actions: Vec<String>,
    scored: String,
    model: String,
}

/// The accounts-at-risk page.
#[derive(Template)]
#[template(path = "risk.html")]
pub struct RiskPage {
    l: Layout,
    tenants: Vec<(String, String)>,
    tenant: String,
    rows: Vec<RiskRow>,
    next: Option<String>,
}

fn strings(v: &serde_json::Value, field: &str) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get(field).and_then(|d| d.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /dashboard/risk`: accounts by churn probability, highest first.
pub async fn risk(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<DomainQuery>,
) -> Result<Response, DashError> {
    let tenants = tenants_for(&state, &user).await?;
    let tenant = pick_tenant(&tenants, nonempty(&q.tenant).as_deref());
    let mut rows = Vec::new();
    let mut next = None;
    if let Some(t) = &tenant {
        let mut scores = kairos_jobs::churn::scores::latest(&state.app.store, &t.id)
            .await
            .map_err(|e| DashError::Unavailable(e.to_string()))?;
        scores.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then_with(|| a.account_id.cmp(&b.account_id))
        });
        // Cursor: the last row shown, as `probability_account`.
        if let Some(after) = nonempty(&q.after) {
            let (p, acc) = after
                .split_once('_')
                .and_then(|(p, a)| Some((p.parse::<f64>().ok()?, a.to_owned())))
                .ok_or_else(|| DashError::BadRequest(format!("invalid cursor `{after}`")))?;
            scores.retain(|s| (s.probability < p) || (s.probability == p && s.account_id > acc));
        }
        if scores.len() > PAGE {
            scores.truncate(PAGE);
            next = scores.last().map(|s| {
                format!(
                    "/dashboard/risk?tenant={}&after={}_{}",
                    t.id, s.probability, s.account_id
                )
            });
        }
        rows = scores
            .iter()
            .map(|s| RiskRow {
                account_id: s.account_id.clone(),
                level: s.risk_level.clone(),
                probability: format!("{:.1} %", s.probability * 100.0),
                factors: strings(&s.factors, "description"),
                actions: strings(&s.actions, "action"),
                scored: ts(s.scored_at),
                model: s.model_version.clone(),
            })
            .collect();
    }
    render(&RiskPage {
        l: Layout::new(&user, "Accounts at risk", "/dashboard/risk", None),
        tenants: tenants.into_iter().map(|t| (t.id, t.name)).collect(),
        tenant: tenant.map(|t| t.id).unwrap_or_default(),
        rows,
        next,
    })
}

/// One alert.
pub struct AlertRow {
    id: String,
    at: String,
    account_id: String,
    urgency: String,
    severity: String,
    text: String,
    reason: String,
}

/// The sentiment alerts page.
#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    l: Layout,
    tenants: Vec<(String, String)>,
    tenant: String,
    min_urgency: String,
    rows: Vec<AlertRow>,
    /// The nudge rules an intervention would plan (empty: no nudge button).
    nudge_rules: String,
    /// Where the intervention forms come back to.
    back: String,
}

/// `GET /dashboard/alerts`: the tenant's newest dissatisfaction alerts.
pub async fn alerts(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<DomainQuery>,
    Query(d): Query<Done>,
) -> Result<Response, DashError> {
    let tenants = tenants_for(&state, &user).await?;
    let tenant = pick_tenant(&tenants, nonempty(&q.tenant).as_deref());
    let mut rows = Vec::new();
    if let Some(t) = &tenant {
        let alerts = state
            .app
            .store
            .alerts(
                &t.id,
                &AlertFilter {
                    since_ms: 0,
                    kind: Some(kairos_jobs::sentiment::ALERT_KIND.to_owned()),
                    min_urgency: q.min_urgency,
                    limit: 100,
                },
            )
            .await?;
        rows = alerts
            .iter()
            .map(|a| {
                let payload: serde_json::Value = serde_json::from_str(&a.payload).unwrap_or_default();
                AlertRow {
                    id: a.id.clone(),
                    at: ts(a.created_at),
                    account_id: a.account_id.clone(),
                    urgency: a.urgency.map(|u| u.to_string()).unwrap_or_default(),
                    severity: a.severity.clone(),
                    text: payload["text"].as_str().unwrap_or_default().to_owned(),
                    reason: a.reason.clone(),
                }
            })
            .collect();
    }
    let tenant = tenant.map(|t| t.id).unwrap_or_default();
    render(&AlertsPage {
        l: Layout::new(&user, "Sentiment alerts", "/dashboard/alerts", Some(&d)),
        tenants: tenants.into_iter().map(|t| (t.id, t.name)).collect(),
        back: format!("/dashboard/alerts?tenant={tenant}"),
        tenant,
        min_urgency: q.min_urgency.map(|u| u.to_string()).unwrap_or_default(),
        rows,
        nudge_rules: state.app.rules.current().alert_nudge_rules.join(", "),
    })
}

/// The "intervene" form of an alert.
#[derive(Deserialize)]
pub struct InterveneForm {
    /// The alert's tenant.
    tenant: String,
    /// `nudge` or `assign`.
    action: String,
    /// The page to come back to.
    #[serde(default)]
    back: String,
}

/// `POST /dashboard/alerts/{id}/intervene` (operator or admin): `nudge`
/// records and queues a `nudge` job with the alert (the nudge kind plans
/// what its rules on sentiment alerts say, for the account's people: dedupe
/// window, caps, consent and quiet hours included); `assign` hands the
/// alert to the account's success manager (its profile's `owner`). Either
/// is written to the audit log — the nudge job in the same transaction.
pub async fn intervene(
    State(state): State<DashState>,
    Path(id): Path<String>,
    posted: Posted<InterveneForm>,
) -> Result<Response, DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    if !user.sees(&form.tenant) {
        return Err(DashError::NotFound("no such alert".into()));
    }
    let store = &state.app.store;
    let alert = store
        .alert(&form.tenant, &id)
        .await?
        .ok_or_else(|| DashError::NotFound("no such alert".into()))?;
    let back = if form.back.is_empty() {
        format!("/dashboard/alerts?tenant={}", form.tenant)
    } else {
        form.back
    };
    let actor = user.actor();
    match form.action.as_str() {
        "nudge" => {
            let in_force = state.app.rules.current();
            let rules = &in_force.alert_nudge_rules;
            if rules.is_empty() {
                return Err(DashError::Conflict(
                    "no nudge rule is triggered by sentiment alerts ([[nudges.rules]] with trigger.sentiment_alert)"
                        .into(),
                ));
            }
            let job = kairos_jobs::nudge::intervention(
                &form.tenant,
                &alert,
                &actor,
                state.app.config.policy(kairos_jobs::nudge::KIND).max_attempts,
            );
            let unavailable = |e: sqlx::Error| DashError::Unavailable(e.to_string());
            let mut tx = store.pool().begin().await.map_err(unavailable)?;
            kairos_core::enqueue::insert_jobs(&mut tx, std::slice::from_ref(&job), kairos_core::time::now_ms())
                .await
                .map_err(unavailable)?;
            record_audit_in(
                &mut tx,
                &NewAudit {
                    tenant_id: Some(&form.tenant),
                    actor: &actor,
                    action: "alert.nudged",
                    target: &alert.id,
                    details: serde_json::json!({
                        "account_id": alert.account_id,
                        "job_id": job.id,
                        "rules": rules.as_slice(),
                    }),
                },
            )
            .await
            .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            if let Err(e) =
                kairos_core::enqueue::enqueue_recorded(store, state.app.queue.as_ref(), std::slice::from_ref(&job))
                    .await
            {
                // Recorded: the dispatcher queues it once the queue is back.
                tracing::warn!(error = %e, job = %job.id, "intervention nudge left pending for the dispatcher");
            }
            Ok(done(&back, "nudged", 1))
        }
        "assign" => {
            let owner = store
                .account(&form.tenant, &alert.account_id)
                .await?
                .and_then(|a| a.owner)
                .ok_or_else(|| {
                    DashError::Conflict(format!(
                        "account {} has no success manager (its profile has no owner)",
                        alert.account_id
                    ))
                })?;
            store
                .record_audit(&NewAudit {
                    tenant_id: Some(&form.tenant),
                    actor: &actor,
                    action: "alert.assigned",
                    target: &alert.id,
                    details: serde_json::json!({
                        "account_id": alert.account_id,
                        "success_manager": owner,
                    }),
                })
                .await?;
            Ok(done(&back, "assigned", 1))
        }
        other => Err(DashError::BadRequest(format!(
            "unknown intervention `{other}` (nudge or assign)"
        ))),
    }
}
