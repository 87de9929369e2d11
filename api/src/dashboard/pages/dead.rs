//! Dead letters: the dead jobs of the user's scope, retried (through
//! `kairos_core::enqueue::retry_dead`, the one retry path) or discarded,
//! one at a time or in bulk with a filter. Every action is audited.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kairos_core::store::{JobPageFilter, JobState, NewAudit};
use serde::Deserialize;

use super::{decode_cursor, done, encode_cursor, nonempty, tenants_for, ts_opt, Done, Layout};
use crate::dashboard::auth::Role;
use crate::dashboard::csrf::Posted;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

const PAGE: u32 = 50;
/// Most jobs one bulk action touches (repeat it for more).
const BULK_MAX: u32 = 500;

/// The dead-letter filters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeadQuery {
    /// Job kind.
    pub kind: Option<String>,
    /// Tenant id.
    pub tenant: Option<String>,
    /// Keyset cursor.
    pub before: Option<String>,
}

/// One dead job.
pub struct DeadRow {
    id: String,
    tenant_id: String,
    kind: String,
    attempts: String,
    died: String,
    error: String,
}

/// The dead-letter page.
#[derive(Template)]
#[template(path = "dead.html")]
pub struct DeadPage {
    l: Layout,
    kind: String,
    tenant: String,
    tenants: Vec<(String, String)>,
    rows: Vec<DeadRow>,
    next: Option<String>,
    back: String,
    bulk_max: u32,
}

fn filter(user: &CurrentUser, kind: &Option<String>, tenant: &Option<String>, limit: u32) -> JobPageFilter {
    JobPageFilter {
        tenant_id: user.scope(nonempty(tenant)),
        kind: nonempty(kind),
        state: Some(JobState::Dead),
        limit,
        ..Default::default()
    }
}

/// `GET /dashboard/dead`.
pub async fn list(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<DeadQuery>,
    Query(d): Query<Done>,
) -> Result<Response, DashError> {
    let mut f = filter(&user, &q.kind, &q.tenant, PAGE);
    f.before = nonempty(&q.before).map(|c| decode_cursor(&c)).transpose()?;
    let mut jobs = state.app.store.job_page(&f).await?;
    let next = (jobs.len() > PAGE as usize).then(|| {
        jobs.truncate(PAGE as usize);
        jobs.last().map(|j| encode_cursor(j.created_at, &j.id))
    });
    let kind = nonempty(&q.kind).unwrap_or_default();
    let tenant = nonempty(&q.tenant).unwrap_or_default();
    let qs = serde_urlencoded::to_string([("kind", &kind), ("tenant", &tenant)]).unwrap_or_default();
    render(&DeadPage {
        l: Layout::new(&user, "Dead letters", "/dashboard/dead", Some(&d)),
        tenants: tenants_for(&state, &user)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect(),
        rows: jobs
            .iter()
            .map(|j| DeadRow {
                id: j.id.clone(),
                tenant_id: j.tenant_id.clone(),
                kind: j.kind.clone(),
                attempts: format!("{}/{}", j.attempts, j.max_attempts),
                died: ts_opt(j.finished_at),
                error: j.last_error.clone().unwrap_or_default(),
            })
            .collect(),
        next: next.flatten().map(|c| format!("/dashboard/dead?{qs}&before={c}")),
        back: format!("/dashboard/dead?{qs}"),
        bulk_max: BULK_MAX,
        kind,
        tenant,
    })
}

/// A one-job action's form.
#[derive(Deserialize)]
pub struct OneForm {
    /// Where to go afterwards.
    #[serde(default)]
    back: String,
}

async fn audit(
    state: &DashState,
    user: &CurrentUser,
    tenant: &str,
    action: &str,
    target: &str,
) -> Result<(), DashError> {
    state
        .app
        .store
        .record_audit(&NewAudit {
            tenant_id: Some(tenant),
            actor: &user.actor(),
            action,
            target,
            details: serde_json::json!({ "via": "dashboard" }),
        })
        .await?;
    Ok(())
}

/// Retries one dead job of the user's scope.
async fn retry(state: &DashState, user: &CurrentUser, id: &str) -> Result<(), DashError> {
    let job = state
        .app
        .store
        .job(user.tenant_id.as_deref(), id)
        .await?
        .ok_or_else(|| DashError::NotFound(format!("no job {id}")))?;
    kairos_core::enqueue::retry_dead(&state.app.store, state.app.queue.as_ref(), &job.id, 1)
        .await
        .map_err(|e| match e {
            kairos_core::enqueue::EnqueueError::Store(s) => DashError::from(s),
            other => DashError::Unavailable(other.to_string()),
        })?;
    audit(state, user, &job.tenant_id, "job.retried", &job.id).await
}

/// `POST /dashboard/dead/{id}/retry` (and `/dashboard/jobs/{id}/retry`).
pub async fn retry_one(
    State(state): State<DashState>,
    Path(id): Path<String>,
    posted: Posted<OneForm>,
) -> Result<Response, DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    retry(&state, &user, &id).await?;
    Ok(done(&form.back, "retried", 1))
}

/// `POST /dashboard/dead/{id}/discard`.
pub async fn discard_one(
    State(state): State<DashState>,
    Path(id): Path<String>,
    posted: Posted<OneForm>,
) -> Result<Response, DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    let job = state
        .app
        .store
        .job(user.tenant_id.as_deref(), &id)
        .await?
        .ok_or_else(|| DashError::NotFound(format!("no job {id}")))?;
    if !state.app.store.discard_dead(user.tenant_id.as_deref(), &id).await? {
        return Err(DashError::Conflict(format!("job {id} is {}, not dead", job.state)));
    }
    audit(&state, &user, &job.tenant_id, "job.discarded", &id).await?;
    Ok(done(&form.back, "discarded", 1))
}

/// The bulk action's form: what to do to which dead jobs.
#[derive(Deserialize)]
pub struct BulkForm {
    /// `retry` or `discard`.
    action: String,
    /// Only this kind.
    kind: Option<String>,
    /// Only this tenant.
    tenant: Option<String>,
    /// Where to go afterwards.
    #[serde(default)]
    back: String,
}

/// `POST /dashboard/dead/bulk`: retry or discard up to [`BULK_MAX`] dead
/// jobs matching the filter.
pub async fn bulk(State(state): State<DashState>, posted: Posted<BulkForm>) -> Result<Response, DashError> {
    let (user, form) = posted.require(Role::Operator)?;
    if form.action != "retry" && form.action != "discard" {
        return Err(DashError::BadRequest(format!("unknown action `{}`", form.action)));
    }
    let jobs = state
        .app
        .store
        .job_page(&filter(&user, &form.kind, &form.tenant, BULK_MAX))
        .await?;
    let mut n = 0u64;
    for job in jobs.iter().take(BULK_MAX as usize) {
        let ok = if form.action == "retry" {
            match retry(&state, &user, &job.id).await {
                Ok(()) => true,
                // Retried meanwhile by someone else: not an error of the batch.
                Err(DashError::Conflict(_)) => false,
                Err(e) => return Err(e),
            }
        } else if state.app.store.discard_dead(user.tenant_id.as_deref(), &job.id).await? {
            audit(&state, &user, &job.tenant_id, "job.discarded", &job.id).await?;
            true
        } else {
            false
        };
        n += u64::from(ok);
    }
    Ok(done(
        &form.back,
        if form.action == "retry" { "retried" } else { "discarded" },
        n,
    ))
}
