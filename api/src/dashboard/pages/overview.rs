//! The overview: per kind, what waits, runs, succeeded and died recently,
//! wait and run percentiles and a sparkline — all from the live snapshot,
//! so rendering it never queries the store, and its SSE stream re-renders
//! the same table on every new snapshot.

use std::convert::Infallible;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;

use super::{dur, ts, Done, Layout};
use crate::dashboard::live::{kind_stats, KindStats, Snapshot, RECENT_MINUTES, WINDOW_MINUTES};
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// One kind's line, formatted.
pub struct KindLine {
    kind: String,
    ready: i64,
    running: i64,
    succeeded: i64,
    dead: i64,
    wait: String,
    run: String,
    sparkline: String,
    paused: bool,
}

impl From<&KindStats> for KindLine {
    fn from(k: &KindStats) -> Self {
        KindLine {
            kind: k.kind.clone(),
            ready: k.ready(),
            running: k.running,
            succeeded: k.succeeded,
            dead: k.dead,
            wait: format!("{} / {}", dur(k.wait_p50), dur(k.wait_p95)),
            run: format!("{} / {}", dur(k.run_p50), dur(k.run_p95)),
            sparkline: k.sparkline(),
            paused: false,
        }
    }
}

/// One worker process.
pub struct WorkerLine {
    id: String,
    host: String,
    pid: u32,
    version: String,
    kinds: String,
    in_flight: u64,
    last_heartbeat: String,
    status: &'static str,
}

/// The per-kind table and the workers (the page's live part).
#[derive(Template)]
#[template(path = "overview_table.html")]
pub struct OverviewTable {
    kinds: Vec<KindLine>,
    workers: Vec<WorkerLine>,
    at: String,
    error: Option<String>,
    recent: i64,
    window: i64,
}

impl OverviewTable {
    fn new(snap: &Snapshot, user: &CurrentUser) -> Self {
        OverviewTable {
            kinds: kind_stats(snap, |t| user.sees(t))
                .iter()
                .map(|k| KindLine {
                    paused: snap.paused.iter().any(|p| p.kind == k.kind),
                    ..KindLine::from(k)
                })
                .collect(),
            // Workers and pauses are deployment-wide, not tenant data.
            workers: snap
                .workers
                .iter()
                .map(|w| WorkerLine {
                    id: w.id.clone(),
                    host: w.host.clone(),
                    pid: w.pid,
                    version: w.version.clone(),
                    kinds: w.kinds.join(", "),
                    in_flight: w.in_flight,
                    last_heartbeat: ts(w.last_heartbeat),
                    status: w.status.as_str(),
                })
                .collect(),
            at: if snap.at_ms == 0 {
                "not yet".into()
            } else {
                ts(snap.at_ms)
            },
            error: snap.error.clone(),
            recent: RECENT_MINUTES,
            window: WINDOW_MINUTES,
        }
    }
}

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    l: Layout,
    table: String,
}

/// `GET /dashboard`.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(done): Query<Done>,
) -> Result<Response, DashError> {
    let table = OverviewTable::new(&state.live.snapshot(), &user).render()?;
    render(&OverviewPage {
        l: Layout::new(&user, "Overview", "/dashboard", Some(&done)),
        table,
    })
}

/// `GET /dashboard/live/overview`: the table again on every snapshot.
pub async fn live(
    State(state): State<DashState>,
    user: CurrentUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.subscribe();
    let stream = futures::stream::unfold((rx, user), |(mut rx, user)| async move {
        rx.changed().await.ok()?;
        let snap = rx.borrow_and_update().clone();
        let html = OverviewTable::new(&snap, &user).render().unwrap_or_default();
        Some((Ok(Event::default().event("overview").data(html)), (rx, user)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
