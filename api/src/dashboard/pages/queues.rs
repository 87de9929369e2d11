//! Queues: per job kind, the queue's own depth (ready, in flight, delayed)
//! beside the store's count of unfinished jobs, and pause / resume through
//! the store's `pause_kind` / `resume_kind` (which every worker honours
//! within `worker.pause_poll`, and which record the audit entry).

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

/// The queues page.
#[derive(Template)]
#[template(path = "queues.html")]
pub struct QueuesPage {
    l: Layout,
    backend: &'static str,
    rows: Vec<QueueRow>,
    /// A pause is deployment-wide: only unscoped operators pause.
    can_pause: bool,
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
    render(&QueuesPage {
        l: Layout::new(&user, "Queues", "/dashboard/queues", Some(&done)),
        backend: state.app.queue.backend(),
        can_pause: user.can_act() && user.tenant_id.is_none(),
        rows,
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
