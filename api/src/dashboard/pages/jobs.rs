//! The job list (filters, search by id, keyset pages, live rows) and the
//! job detail (payload, every attempt, result link).

use std::convert::Infallible;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use kairos_core::store::{Attempt, JobPageFilter, JobRun, JobState};
use serde::{Deserialize, Serialize};

use super::{decode_cursor, dur, encode_cursor, nonempty, tenants_for, ts, ts_opt, Done, Layout};
use crate::dashboard::live::{Snapshot, WatchGuard};
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// Rows per page.
const PAGE: u32 = 50;

/// The job list's filters, as they travel in the URL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct JobQuery {
    /// Job kind.
    pub kind: Option<String>,
    /// Job state.
    pub state: Option<String>,
    /// Tenant id (ignored for tenant-scoped users: theirs applies).
    pub tenant: Option<String>,
    /// Created at or after (`YYYY-MM-DDTHH:MM`, UTC, or RFC 3339).
    pub from: Option<String>,
    /// Created before.
    pub to: Option<String>,
    /// A job id: go straight to its page.
    pub id: Option<String>,
    /// Keyset cursor of the next page.
    pub before: Option<String>,
}

fn parse_time(field: &str, v: &Option<String>) -> Result<Option<i64>, DashError> {
    let Some(v) = nonempty(v) else { return Ok(None) };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&v) {
        return Ok(Some(t.timestamp_millis()));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&v, fmt) {
            return Ok(Some(t.and_utc().timestamp_millis()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()));
    }
    Err(DashError::BadRequest(format!(
        "{field}: `{v}` is not a time (YYYY-MM-DDTHH:MM in UTC, or RFC 3339)"
    )))
}

impl JobQuery {
    /// The store filter for `user` (the scope always applies).
    pub fn filter(&self, user: &CurrentUser) -> Result<JobPageFilter, DashError> {
        let state = nonempty(&self.state)
            .map(|s| s.parse::<JobState>())
            .transpose()
            .map_err(DashError::BadRequest)?;
        Ok(JobPageFilter {
            tenant_id: user.scope(nonempty(&self.tenant)),
            kind: nonempty(&self.kind),
            state,
            from_ms: parse_time("from", &self.from)?,
            to_ms: parse_time("to", &self.to)?,
            before: nonempty(&self.before).map(|c| decode_cursor(&c)).transpose()?,
            limit: PAGE,
        })
    }

    /// The query string of these filters without the cursor.
    fn without_cursor(&self) -> String {
        let q = JobQuery {
            before: None,
            id: None,
            ..self.clone()
        };
        serde_urlencoded::to_string(&q).unwrap_or_default()
    }
}

/// Whether `j` passes `f` (the live list's in-memory filter).
fn matches(f: &JobPageFilter, j: &JobRun) -> bool {
    f.tenant_id.as_ref().is_none_or(|t| *t == j.tenant_id)
        && f.kind.as_ref().is_none_or(|k| *k == j.kind)
        && f.state.is_none_or(|s| s == j.state)
        && f.from_ms.is_none_or(|t| j.created_at >= t)
        && f.to_ms.is_none_or(|t| j.created_at < t)
        && f.before
            .as_ref()
            .is_none_or(|(at, id)| (j.created_at, j.id.as_str()) < (*at, id.as_str()))
}

/// One row of the list.
pub struct JobRow {
    id: String,
    tenant_id: String,
    kind: String,
    state: &'static str,
    attempts: String,
    created: String,
    finished: String,
    error: String,
}

impl From<&JobRun> for JobRow {
    fn from(j: &JobRun) -> Self {
        let mut error = j.last_error.clone().unwrap_or_default();
        if error.chars().count() > 80 {
            error = error.chars().take(80).collect::<String>() + "…";
        }
        JobRow {
            id: j.id.clone(),
            tenant_id: j.tenant_id.clone(),
            kind: j.kind.clone(),
            state: j.state.as_str(),
            attempts: format!("{}/{}", j.attempts, j.max_attempts),
            created: ts(j.created_at),
            finished: ts_opt(j.finished_at),
            error,
        }
    }
}

/// The rows of the table (also what the live stream sends).
#[derive(Template)]
#[template(path = "jobs_rows.html")]
pub struct JobRows {
    rows: Vec<JobRow>,
    can_act: bool,
    csrf: String,
    back: String,
}

/// The job list page.
#[derive(Template)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    l: Layout,
    kind: String,
    from: String,
    to: String,
    /// (id, name, selected)
    tenants: Vec<(String, String, bool)>,
    /// (state, selected)
    states: Vec<(&'static str, bool)>,
    rows: String,
    next: Option<String>,
    live_url: String,
    total_shown: usize,
}

fn rows_html(jobs: &[JobRun], user: &CurrentUser, back: &str) -> Result<String, DashError> {
    Ok(JobRows {
        rows: jobs.iter().map(JobRow::from).collect(),
        can_act: user.can_act(),
        csrf: user.csrf.clone(),
        back: back.to_owned(),
    }
    .render()?)
}

/// Splits a fetched page (one row more than shown when there is a next
/// page) into the rows and the next cursor.
fn split_page(mut jobs: Vec<JobRun>) -> (Vec<JobRun>, Option<String>) {
    let next = if jobs.len() > PAGE as usize {
        jobs.truncate(PAGE as usize);
        jobs.last().map(|j| encode_cursor(j.created_at, &j.id))
    } else {
        None
    };
    (jobs, next)
}

/// `GET /dashboard/jobs`.
pub async fn list(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<JobQuery>,
    Query(done): Query<Done>,
) -> Result<Response, DashError> {
    if let Some(id) = nonempty(&q.id) {
        return Ok(Redirect::to(&format!("/dashboard/jobs/{}", urlencode(&id))).into_response());
    }
    let filter = q.filter(&user)?;
    let (jobs, next) = split_page(state.app.store.job_page(&filter).await?);
    let qs = q.without_cursor();
    let back = format!("/dashboard/jobs?{qs}");
    let live_query = serde_urlencoded::to_string(&JobQuery { id: None, ..q.clone() }).unwrap_or_default();
    let tenant = nonempty(&q.tenant).unwrap_or_default();
    let st = nonempty(&q.state).unwrap_or_default();
    render(&JobsPage {
        l: Layout::new(&user, "Jobs", "/dashboard/jobs", Some(&done)),
        tenants: tenants_for(&state, &user)
            .await?
            .into_iter()
            .map(|t| {
                let selected = t.id == tenant;
                (t.id, t.name, selected)
            })
            .collect(),
        states: JobState::ALL.iter().map(|s| (s.as_str(), s.as_str() == st)).collect(),
        kind: nonempty(&q.kind).unwrap_or_default(),
        from: nonempty(&q.from).unwrap_or_default(),
        to: nonempty(&q.to).unwrap_or_default(),
        rows: rows_html(&jobs, &user, &back)?,
        total_shown: jobs.len(),
        next: next.map(|c| format!("/dashboard/jobs?{qs}&before={c}")),
        live_url: format!("/dashboard/jobs/live?{live_query}"),
    })
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|v| v.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// One live list's state between snapshots.
struct LiveList {
    rx: tokio::sync::watch::Receiver<std::sync::Arc<Snapshot>>,
    guard: WatchGuard,
    filter: JobPageFilter,
    rows: Vec<JobRun>,
    user: CurrentUser,
    back: String,
    last: String,
    /// When the stream read its rows: an older snapshot (its read began
    /// before ours) would put stale rows back.
    read_ms: i64,
}

impl LiveList {
    /// The rows after `snap`: current versions of the shown jobs, plus
    /// newer matching jobs on the first page, newest first.
    fn apply(&mut self, snap: &Snapshot) {
        if snap.at_ms < self.read_ms {
            return;
        }
        let mut rows: Vec<JobRun> = self
            .rows
            .iter()
            .map(|j| snap.watched.get(&j.id).cloned().unwrap_or_else(|| j.clone()))
            .filter(|j| matches(&self.filter, j))
            .collect();
        if self.filter.before.is_none() {
            for j in &snap.newest {
                if matches(&self.filter, j) && !rows.iter().any(|r| r.id == j.id) {
                    rows.push(j.clone());
                }
            }
        }
        rows.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        rows.truncate(PAGE as usize);
        self.guard.set(rows.iter().map(|j| j.id.clone()).collect());
        self.rows = rows;
    }
}

/// `GET /dashboard/jobs/live?<filters>`: the list's rows on every change.
pub async fn live(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<JobQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, DashError> {
    let filter = q.filter(&user)?;
    // One read when the page connects: the rows it shows. From then on
    // the shared refresher keeps them current.
    let read_ms = kairos_core::time::now_ms();
    let (rows, _) = split_page(state.app.store.job_page(&filter).await?);
    let guard = state.live.watch();
    guard.set(rows.iter().map(|j| j.id.clone()).collect());
    let back = format!("/dashboard/jobs?{}", q.without_cursor());
    let last = rows_html(&rows, &user, &back)?;
    let list = LiveList {
        rx: state.live.subscribe(),
        guard,
        filter,
        rows,
        user,
        back,
        last,
        read_ms,
    };
    let stream = futures::stream::unfold(list, |mut list| async move {
        loop {
            list.rx.changed().await.ok()?;
            let snap = list.rx.borrow_and_update().clone();
            list.apply(&snap);
            let Ok(html) = rows_html(&list.rows, &list.user, &list.back) else {
                continue;
            };
            if html != list.last {
                list.last = html.clone();
                return Some((Ok(Event::default().event("rows").data(html)), list));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One attempt of the detail page.
pub struct AttemptRow {
    attempt: u32,
    worker: String,
    started: String,
    took: String,
    outcome: &'static str,
    error: String,
}

impl From<&Attempt> for AttemptRow {
    fn from(a: &Attempt) -> Self {
        AttemptRow {
            attempt: a.attempt,
            worker: a.worker.clone(),
            started: ts(a.started_at),
            took: dur(Some(a.finished_at - a.started_at)),
            outcome: a.outcome.as_str(),
            error: a.error.clone().unwrap_or_default(),
        }
    }
}

/// The job detail page.
#[derive(Template)]
#[template(path = "job.html")]
pub struct JobPage {
    l: Layout,
    job: JobRun,
    state: &'static str,
    payload: String,
    attempts: Vec<AttemptRow>,
    times: Vec<(&'static str, String)>,
    result_link: Option<String>,
}

/// Where a job's result can be seen on the dashboard, if anywhere.
fn result_link(job: &JobRun) -> Option<String> {
    let r = job.result_ref.as_deref()?;
    if r.starts_with("churn_scores") {
        Some(format!("/dashboard/risk?tenant={}", urlencode(&job.tenant_id)))
    } else if r.starts_with("sentiment_scores") && r.contains("alert raised") {
        Some(format!("/dashboard/alerts?tenant={}", urlencode(&job.tenant_id)))
    } else {
        None
    }
}

/// `GET /dashboard/jobs/{id}`.
pub async fn detail(
    State(state): State<DashState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, DashError> {
    let job = state
        .app
        .store
        .job(user.tenant_id.as_deref(), &id)
        .await?
        .ok_or_else(|| DashError::NotFound(format!("no job {id}")))?;
    let attempts = state.app.store.attempts(&job.id).await?;
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| job.payload.clone());
    render(&JobPage {
        l: Layout::new(&user, format!("Job {}", job.id), "/dashboard/jobs", Some(&done)),
        state: job.state.as_str(),
        payload,
        attempts: attempts.iter().map(AttemptRow::from).collect(),
        times: vec![
            ("Created", ts(job.created_at)),
            ("Queued", ts_opt(job.queued_at)),
            ("Not before", ts_opt(job.run_after)),
            ("Last started", ts_opt(job.started_at)),
            ("Finished", ts_opt(job.finished_at)),
        ],
        result_link: result_link(&job),
        job,
    })
}
