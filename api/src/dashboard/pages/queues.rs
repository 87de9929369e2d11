//! Queues: per job kind, the queue's own depth (ready, in flight, delayed)
//! beside the store's count of unfinished jobs, and pause / resume through
//! the store's `pause_kind` / `resume_kind` (which every worker honours
//! within `worker.pause_poll`, and which record the audit entry); below,
//! the tenant pauses (`Store::pause_tenant`: one kind of a tenant, or all
//! its kinds — its jobs are parked in the store unstarted and queued again
//! on resume, other tenants' run on).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{done, ts, Done, Layout};
use crate::dashboard::auth::Role;
use crate::dashboard::csrf::Posted;
use crate::dashboard::live::kind_stats;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// One queue.
pub struct QueueRow {
    kind: String,
    ready: String,
    in_flight: String,
    delayed: String,
    stored_ready: i64,
    running: i64,
    /// `paused by X at T (why)`, when paused.
    paused: Option<String>,
}

/// One tenant pause.
pub struct TenantPauseRow {
    tenant_id: String,
    tenant: String,
    /// The kind, or empty for all kinds.
    kind: String,
    /// `paused by X at T (why)`.
    by: String,
    /// Jobs of the tenant (and kind) held in the store now.
    held: i64,
}

/// The queues page.
#[derive(Template)]
#[template(path = "queues.html")]
pub struct QueuesPage {
    l: Layout,
    backend: &'static str,
    rows: Vec<QueueRow>,
    /// A pause is deployment-wide: only unscoped operators pause.
    can_pause: bool,
    /// Tenant pauses the user sees.
    tenant_pauses: Vec<TenantPauseRow>,
    /// Tenants the user may pause: (id, name).
    tenants: Vec<(String, String)>,
    /// Every job kind.
    kinds: &'static [&'static str],
}

/// `GET /dashboard/queues`. The queue's depth is shared by every tenant,
/// so a tenant-scoped user sees only the store's counts of its own jobs.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(done): Query<Done>,
) -> Result<Response, DashError> {
    let snap = state.live.snapshot();
    let stats = kind_stats(&snap, |t| user.sees(t));
    let paused = state.app.store.paused_kinds().await?;
    let mut rows = Vec::new();
    for kind in kairos_jobs::KINDS {
        let (ready, in_flight, delayed) = if user.tenant_id.is_some() {
            ("—".into(), "—".into(), "—".into())
        } else {
            match state.app.queue.depth(kind).await {
                Ok(d) => (d.ready.to_string(), d.in_flight.to_string(), d.delayed.to_string()),
                Err(e) => {
                    tracing::warn!(kind, error = %e, "queue depth unavailable");
                    ("?".into(), "?".into(), "?".into())
                }
            }
        };
        let s = stats.iter().find(|s| s.kind == *kind);
        rows.push(QueueRow {
            kind: (*kind).to_owned(),
            ready,
            in_flight,
            delayed,
            stored_ready: s.map(|s| s.ready()).unwrap_or(0),
            running: s.map(|s| s.running).unwrap_or(0),
            paused: paused.iter().find(|p| p.kind == *kind).map(|p| {
                format!(
                    "paused by {} at {}{}",
                    p.paused_by,
                    ts(p.paused_at),
                    p.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                )
            }),
        });
    }
    let tenants = super::tenants_for(&state, &user).await?;
    let mut tenant_pauses = Vec::new();
    for p in state.app.store.paused_tenants().await? {
        if !user.sees(&p.tenant_id) {
            continue;
        }
        let all = p.kind == kairos_core::store::ALL_KINDS;
        // Parked jobs are `pending` rows of the tenant (from the snapshot).
        let held = snap
            .active
            .iter()
            .filter(|a| {
                a.tenant_id == p.tenant_id
                    && a.state == kairos_core::store::JobState::Pending
                    && (all || a.kind == p.kind)
            })
            .map(|a| a.n)
            .sum::<i64>();
        tenant_pauses.push(TenantPauseRow {
            tenant: tenants
                .iter()
                .find(|t| t.id == p.tenant_id)
                .map_or_else(|| p.tenant_id.clone(), |t| t.name.clone()),
            kind: if all { String::new() } else { p.kind.clone() },
            by: format!(
                "paused by {} at {}{}",
                p.paused_by,
                ts(p.paused_at),
                p.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            held,
            tenant_id: p.tenant_id,
        });
    }
    render(&QueuesPage {
        l: Layout::new(&user, "Queues", "/dashboard/queues", Some(&done)),
        backend: state.app.queue.backend(),
        can_pause: user.can_act() && user.tenant_id.is_none(),
        rows,
        tenant_pauses,
        tenants: tenants.into_iter().map(|t| (t.id, t.name)).collect(),
        kinds: kairos_jobs::KINDS,
    })
}

/// The pause form.
#[derive(Deserialize)]
pub struct PauseForm {
    /// Why (shown on the page and in the audit log).
    #[serde(default)]
    reason: String,
}

fn known(kind: &str) -> Result<(), DashError> {
    if kairos_jobs::KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(DashError::NotFound(format!("no job kind `{kind}`")))
    }
}

fn unscoped_operator(posted: Posted<PauseForm>) -> Result<(CurrentUser, PauseForm), DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    if user.tenant_id.is_some() {
        return Err(DashError::Forbidden(
            "a pause stops the kind for every tenant; a tenant-scoped user cannot pause",
        ));
    }
    Ok((user, form))
}

/// `POST /dashboard/queues/{kind}/pause`.
pub async fn pause(
    State(state): State<DashState>,
    Path(kind): Path<String>,
    posted: Posted<PauseForm>,
) -> Result<Response, DashError> {
    let (user, form) = unscoped_operator(posted)?;
    known(&kind)?;
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    state.app.store.pause_kind(&kind, &user.actor(), reason).await?;
    Ok(done("/dashboard/queues", "paused", 1))
}

/// `POST /dashboard/queues/{kind}/resume`.
pub async fn resume(
    State(state): State<DashState>,
    Path(kind): Path<String>,
    posted: Posted<PauseForm>,
) -> Result<Response, DashError> {
    let (user, _) = unscoped_operator(posted)?;
    known(&kind)?;
    state.app.store.resume_kind(&kind, &user.actor()).await?;
    Ok(done("/dashboard/queues", "resumed", 1))
}

/// The tenant pause and resume form.
#[derive(Deserialize)]
pub struct TenantPauseForm {
    /// Tenant id.
    tenant: String,
    /// Job kind; empty: all kinds.
    #[serde(default)]
    kind: String,
    /// Why.
    #[serde(default)]
    reason: String,
}

/// The tenant and kind of a tenant-pause form, checked: an operator, a
/// tenant the user sees (a scoped operator pauses only its own), a known kind.
async fn tenant_form(
    state: &DashState,
    posted: Posted<TenantPauseForm>,
) -> Result<(CurrentUser, String, Option<String>, TenantPauseForm), DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    if !user.sees(&form.tenant) {
        return Err(DashError::NotFound("no such tenant".into()));
    }
    let tenant = state
        .app
        .store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.id == form.tenant)
        .ok_or_else(|| DashError::NotFound("no such tenant".into()))?;
    let kind = Some(form.kind.trim().to_owned()).filter(|k| !k.is_empty());
    if let Some(k) = &kind {
        known(k)?;
    }
    Ok((user, tenant.id, kind, form))
}

/// `POST /dashboard/tenant-pauses/pause`: hold back a tenant's jobs (one
/// kind, or all): workers park them within `worker.pause_poll`.
pub async fn pause_tenant(
    State(state): State<DashState>,
    posted: Posted<TenantPauseForm>,
) -> Result<Response, DashError> {
    let (user, tenant, kind, form) = tenant_form(&state, posted).await?;
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    state
        .app
        .store
        .pause_tenant(&tenant, kind.as_deref(), &user.actor(), reason)
        .await?;
    Ok(done("/dashboard/queues", "tenant-paused", 1))
}

/// `POST /dashboard/tenant-pauses/resume`: the dispatcher queues the
/// tenant's parked jobs in its next round.
pub async fn resume_tenant(
    State(state): State<DashState>,
    posted: Posted<TenantPauseForm>,
) -> Result<Response, DashError> {
    let (user, tenant, kind, _) = tenant_form(&state, posted).await?;
    state
        .app
        .store
        .resume_tenant(&tenant, kind.as_deref(), &user.actor())
        .await?;
    Ok(done("/dashboard/queues", "tenant-resumed", 1))
}
