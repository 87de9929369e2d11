//! Schedules: next fire times in each schedule's zone, the last ticks with
//! their outcome, "run now" through the scheduler's `run_now`, and switching
//! a schedule on or off — a stored switch (`Store::switch_schedule`) every
//! scheduler replica reads each round, never an edit of the config file.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kairos_core::store::NewAudit;
use kairos_core::time::now_ms;
use serde::Deserialize;

use super::{done, ts, Done, Layout};
use crate::dashboard::auth::Role;
use crate::dashboard::csrf::Posted;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// Ticks shown per schedule.
const LAST_TICKS: usize = 5;

/// One planned schedule (a base schedule or a tenant override).
pub struct ScheduleRow {
    key: String,
    name: String,
    cron: String,
    zone: String,
    job: String,
    enabled: bool,
    /// `switched off by X at T (config: on)`, when an operator switched it.
    switch: Option<String>,
    next: Vec<String>,
    ticks: Vec<(String, String, i64)>,
}

/// The schedules page.
#[derive(Template)]
#[template(path = "schedules.html")]
pub struct SchedulesPage {
    l: Layout,
    rows: Vec<ScheduleRow>,
    /// Only unscoped operators fire schedules (a tick fans out to every tenant).
    can_fire: bool,
}

/// `GET /dashboard/schedules`.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(d): Query<Done>,
) -> Result<Response, DashError> {
    let tenants = state.app.store.list_tenants().await?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    let mut plans = kairos_scheduler::plan::plan(&state.app.config.scheduling.schedules, &tenants);
    let configured: Vec<bool> = plans.iter().map(|p| p.enabled).collect();
    kairos_scheduler::plan::apply_switches(&mut plans, &state.app.store.schedule_switches().await?);
    for (p, configured) in plans.into_iter().zip(configured) {
        // A scoped user sees the base schedules and its own overrides.
        if let kairos_scheduler::plan::Targets::Tenant(t) = &p.targets {
            if !user.sees(&t.id) {
                continue;
            }
        }
        let mut ticks = state
            .app
            .store
            .ticks_since(&p.key, now_ms() - 7 * 24 * 3_600_000)
            .await?;
        ticks.sort_by_key(|t| std::cmp::Reverse(t.tick_at));
        rows.push(ScheduleRow {
            name: p.config.name.clone(),
            cron: p.cron.expr().to_owned(),
            zone: p.cron.tz().to_string(),
            job: p.config.job.clone(),
            enabled: p.enabled,
            switch: p.switch.as_ref().map(|sw| {
                format!(
                    "switched {} by {} at {} (config: {})",
                    if sw.enabled { "on" } else { "off" },
                    sw.set_by,
                    ts(sw.set_at),
                    if configured { "on" } else { "off" }
                )
            }),
            next: p
                .cron
                .upcoming(now, 3)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
                .collect(),
            ticks: ticks
                .iter()
                .take(LAST_TICKS)
                .map(|t| (ts(t.tick_at), t.outcome.clone(), t.jobs))
                .collect(),
            key: p.key,
        });
    }
    render(&SchedulesPage {
        l: Layout::new(&user, "Schedules", "/dashboard/schedules", Some(&d)),
        can_fire: user.can_act() && user.tenant_id.is_none(),
        rows,
    })
}

/// The "run now" form.
#[derive(Deserialize)]
pub struct RunForm {}

/// `POST /dashboard/schedules/{name}/run`.
pub async fn run_now(
    State(state): State<DashState>,
    Path(name): Path<String>,
    posted: Posted<RunForm>,
) -> Result<Response, DashError> {
    let (user, _) = posted.require(Role::Operator)?;
    if user.tenant_id.is_some() {
        return Err(DashError::Forbidden(
            "a schedule fires for every tenant; a tenant-scoped user cannot run it",
        ));
    }
    let firer = kairos_scheduler::Firer {
        store: state.app.store.clone(),
        queue: state.app.queue.clone(),
        replica: format!("dashboard-{}", std::process::id()),
    };
    let fired = match kairos_scheduler::run_now(&firer, &state.app.config.scheduling, &name).await {
        Ok(f) => f,
        Err(kairos_scheduler::RunError::Unknown(n)) => return Err(DashError::NotFound(format!("no schedule `{n}`"))),
        Err(kairos_scheduler::RunError::Store(e)) => return Err(e.into()),
    };
    let details: serde_json::Map<String, serde_json::Value> =
        fired.iter().map(|(k, n)| (k.clone(), serde_json::json!(n))).collect();
    state
        .app
        .store
        .record_audit(&NewAudit {
            tenant_id: None,
            actor: &user.actor(),
            action: "schedule.run",
            target: &name,
            details: serde_json::Value::Object(details),
        })
        .await?;
    Ok(done("/dashboard/schedules", "fired", fired.len() as u64))
}

/// `POST /dashboard/schedules/{key}/enable`.
pub async fn enable(
    State(state): State<DashState>,
    Path(key): Path<String>,
    posted: Posted<RunForm>,
) -> Result<Response, DashError> {
    switch(state, key, posted, true).await
}

/// `POST /dashboard/schedules/{key}/disable`.
pub async fn disable(
    State(state): State<DashState>,
    Path(key): Path<String>,
    posted: Posted<RunForm>,
) -> Result<Response, DashError> {
    switch(state, key, posted, false).await
}

/// Stores the switch of schedule `key` (a base name or `name@tenant`),
/// with its audit entry; every scheduler replica honours it from its next
/// round (a quarter of a second).
async fn switch(state: DashState, key: String, posted: Posted<RunForm>, on: bool) -> Result<Response, DashError> {
    let (user, _) = posted.require(Role::Operator)?;
    if user.tenant_id.is_some() {
        return Err(DashError::Forbidden(
            "schedules belong to the deployment; a tenant-scoped user cannot switch them",
        ));
    }
    let tenants = state.app.store.list_tenants().await?;
    if !kairos_scheduler::plan::plan(&state.app.config.scheduling.schedules, &tenants)
        .iter()
        .any(|p| p.key == key)
    {
        return Err(DashError::NotFound(format!("no schedule `{key}`")));
    }
    state.app.store.switch_schedule(&key, on, &user.actor()).await?;
    Ok(done("/dashboard/schedules", if on { "enabled" } else { "disabled" }, 1))
}
