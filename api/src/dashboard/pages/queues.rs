//! Queues: per job kind, the queue's own depth (ready, in flight, delayed)
//! beside the store's count of unfinished jobs.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::{Done, Layout};
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
}

/// The queues page.
#[derive(Template)]
#[template(path = "queues.html")]
pub struct QueuesPage {
    l: Layout,
    backend: &'static str,
    rows: Vec<QueueRow>,
}

/// `GET /dashboard/queues`. The queue's depth is shared by every tenant,
/// so a tenant-scoped user sees only the store's counts of its own jobs.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(done): Query<Done>,
) -> Result<Response, DashError> {
    let stats = kind_stats(&state.live.snapshot(), |t| user.sees(t));
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
        });
    }
    render(&QueuesPage {
        l: Layout::new(&user, "Queues", "/dashboard/queues", Some(&done)),
        backend: state.app.queue.backend(),
        rows,
    })
}
