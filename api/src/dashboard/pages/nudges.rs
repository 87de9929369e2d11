//! Nudges of one tenant: each experimenting rule's variants against its
//! holdout (the numbers of `GET /v1/nudges/stats` and `kairos nudges stats`,
//! from the same `funnel`, `experiment_counts` and `stats::report`), and every
//! (rule, variant, channel) with what became of its nudges.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use kairos_core::time::now_ms;
use kairos_jobs::nudge::store;
use serde::Deserialize;

use super::{nonempty, pick_tenant, tenants_for, Layout};
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};
use crate::routes::nudges::{rule_stats, GroupStats, RuleStatsView};

/// Which tenant and windows.
#[derive(Debug, Default, Deserialize)]
pub struct NudgesQuery {
    /// Tenant id or name.
    pub tenant: Option<String>,
    /// Re-engagement window of the experiments, days (1–90, default 7).
    pub window_days: Option<u32>,
    /// How far back the channel table looks, days (1–365, default 30).
    pub since_days: Option<u32>,
}

/// One variant against its rule's holdout, as shown.
pub struct ExperimentRow {
    rule: String,
    variant: String,
    group: String,
    holdout: String,
    interval: String,
    verdict: String,
}

/// One (rule, variant, channel), as shown.
pub struct ChannelRow {
    rule: String,
    variant: String,
    channel: String,
    c: store::ChannelCounts,
}

/// The nudges page.
#[derive(Template)]
#[template(path = "nudges.html")]
pub struct NudgesPage {
    l: Layout,
    tenants: Vec<(String, String)>,
    tenant: String,
    window_days: u32,
    since_days: u32,
    experiments: Vec<ExperimentRow>,
    channels: Vec<ChannelRow>,
}

fn group(g: &GroupStats) -> String {
    match g.rate {
        Some(r) => format!("{}/{} ({:.1} %)", g.re_engaged, g.assigned, r * 100.0),
        None => "—".into(),
    }
}

fn experiments(rules: Vec<RuleStatsView>) -> Vec<ExperimentRow> {
    let mut out = Vec::new();
    for r in rules {
        for v in r.variants {
            out.push(ExperimentRow {
                rule: r.rule.clone(),
                group: group(&v.group),
                holdout: group(&r.holdout),
                interval: match (v.difference, v.ci_low, v.ci_high) {
                    (Some(d), Some(lo), Some(hi)) => {
                        format!("{:+.1} pp [{:+.1}, {:+.1}]", d * 100.0, lo * 100.0, hi * 100.0)
                    }
                    _ => "—".into(),
                },
                verdict: v.verdict,
                variant: v.variant,
            });
        }
    }
    out
}

/// `GET /dashboard/nudges`.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<NudgesQuery>,
) -> Result<Response, DashError> {
    let window_days = q.window_days.unwrap_or(7);
    if !(1..=90).contains(&window_days) {
        return Err(DashError::BadRequest("window_days must be between 1 and 90".into()));
    }
    let since_days = q.since_days.unwrap_or(30);
    if !(1..=365).contains(&since_days) {
        return Err(DashError::BadRequest("since_days must be between 1 and 365".into()));
    }
    let tenants = tenants_for(&state, &user).await?;
    let tenant = pick_tenant(&tenants, nonempty(&q.tenant).as_deref());
    let (mut rules, mut channels) = (Vec::new(), Vec::new());
    if let Some(t) = &tenant {
        let unavailable = |e: sqlx::Error| DashError::Unavailable(e.to_string());
        let now = now_ms();
        let funnel = store::funnel(&state.app.store, &t.id, i64::from(window_days) * 86_400_000, now)
            .await
            .map_err(unavailable)?;
        rules = rule_stats(&store::experiment_counts(&funnel));
        channels = store::channel_counts(&state.app.store, &t.id, now - i64::from(since_days) * 86_400_000)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|c| ChannelRow {
                rule: c.rule.clone(),
                variant: c.variant.clone().unwrap_or_else(|| "—".into()),
                channel: c.channel.clone().unwrap_or_else(|| "—".into()),
                c,
            })
            .collect();
    }
    render(&NudgesPage {
        l: Layout::new(&user, "Nudges", "/dashboard/nudges", None),
        tenants: tenants.into_iter().map(|t| (t.id, t.name)).collect(),
        tenant: tenant.map(|t| t.id).unwrap_or_default(),
        window_days,
        since_days,
        experiments: experiments(rules),
        channels,
    })
}
