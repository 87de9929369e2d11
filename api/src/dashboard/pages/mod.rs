//! One module per page. Each handler extracts the user (the login and the
//! tenant scope), reads what it shows through the store's functions (or the
//! live snapshot) and renders one template.

pub mod audit;
pub mod dead;
pub mod domain;
pub mod jobs;
pub mod login;
pub mod models;
pub mod nudges;
pub mod overview;
pub mod queues;
pub mod reports;
pub mod rules;
pub mod schedules;

use askama::Template;
use axum::response::{IntoResponse, Redirect, Response};
use kairos_core::store::Tenant;

use super::assets;
use super::session::CurrentUser;
use super::{DashError, DashState};

/// The pages of the navigation: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/dashboard", "Overview"),
    ("/dashboard/jobs", "Jobs"),
    ("/dashboard/dead", "Dead letters"),
    ("/dashboard/queues", "Queues"),
    ("/dashboard/schedules", "Schedules"),
    ("/dashboard/rules", "Rules"),
    ("/dashboard/models", "Models"),
    ("/dashboard/risk", "Accounts at risk"),
    ("/dashboard/alerts", "Sentiment alerts"),
    ("/dashboard/reports", "Reports"),
    ("/dashboard/nudges", "Nudges"),
    ("/dashboard/audit", "Audit log"),
];

/// What every page's frame shows: who is logged in, the navigation, the
/// CSRF token for the forms, and a message about the last action.
pub struct Layout {
    /// Page title.
    pub title: String,
    /// The current page's path (marked `aria-current`).
    pub active: &'static str,
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: &'static str,
    /// The user's tenant scope.
    pub scope: Option<String>,
    /// The session's CSRF token.
    pub csrf: String,
    /// Whether action buttons are shown.
    pub can_act: bool,
    /// Message about the last action (from a fixed vocabulary).
    pub flash: Option<String>,
    /// Style sheet URL.
    pub style: String,
    /// htmx URL.
    pub htmx: String,
    /// htmx SSE extension URL.
    pub htmx_sse: String,
}

impl Layout {
    /// The frame for `user` on page `active`.
    pub fn new(user: &CurrentUser, title: impl Into<String>, active: &'static str, done: Option<&Done>) -> Self {
        Layout {
            title: title.into(),
            active,
            user: user.name.clone(),
            role: user.role.as_str(),
            scope: user.tenant_id.clone(),
            csrf: user.csrf.clone(),
            can_act: user.can_act(),
            flash: done.and_then(Done::message),
            style: format!("/dashboard/assets/{}", assets::STYLE),
            htmx: format!("/dashboard/assets/{}", assets::HTMX),
            htmx_sse: format!("/dashboard/assets/{}", assets::HTMX_SSE),
        }
    }

    /// The navigation entries.
    pub fn nav(&self) -> &'static [(&'static str, &'static str)] {
        NAV
    }
}

/// `?done=...&n=...` after an action (Post/Redirect/Get): which message to
/// show. A fixed vocabulary, so a link cannot make the page say anything.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    /// What was done.
    pub done: Option<String>,
    /// How many.
    pub n: Option<u64>,
}

impl Done {
    fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(1);
        Some(match self.done.as_deref()? {
            "retried" => format!("{n} job(s) sent back to their queue."),
            "discarded" => format!("{n} dead job(s) discarded."),
            "fired" => "Schedule fired.".to_owned(),
            "activated" => "Model version activated.".to_owned(),
            "paused" => "Queue paused.".to_owned(),
            "resumed" => "Queue resumed.".to_owned(),
            "tenant-paused" => "Tenant paused: its jobs are held back.".to_owned(),
            "tenant-resumed" => "Tenant resumed: its held jobs are queued again.".to_owned(),
            "enabled" => "Schedule switched on.".to_owned(),
            "disabled" => "Schedule switched off.".to_owned(),
            "nudged" => "Nudge planned for the account's people (see Nudges).".to_owned(),
            "assigned" => "Assigned to the account's success manager.".to_owned(),
            _ => return None,
        })
    }
}

/// Redirects after an action to `back` (a dashboard path) with a message.
pub(crate) fn done(back: &str, what: &str, n: u64) -> Response {
    // Only dashboard paths: the form's `back` must not become an open redirect.
    let back = if back.starts_with("/dashboard") && !back.starts_with("/dashboard//") {
        back
    } else {
        "/dashboard"
    };
    let sep = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{sep}done={what}&n={n}")).into_response()
}

/// An error page (no frame: the user may not be logged in).
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Epoch ms as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Optional epoch ms, `—` when absent.
pub fn ts_opt(ms: Option<i64>) -> String {
    ms.map(ts).unwrap_or_else(|| "—".into())
}

/// Milliseconds for humans.
pub fn dur(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// A keyset cursor `(at, id)` as it travels in a URL.
pub fn encode_cursor(at: i64, id: &str) -> String {
    format!("{at}_{id}")
}

/// The cursor of a URL.
pub fn decode_cursor(c: &str) -> Result<(i64, String), DashError> {
    c.split_once('_')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .ok_or_else(|| DashError::BadRequest(format!("invalid cursor `{c}`")))
}

/// An empty form value is no value.
pub fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The tenants the user may pick (just its own when scoped).
pub async fn tenants_for(state: &DashState, user: &CurrentUser) -> Result<Vec<Tenant>, DashError> {
    let all = state.app.store.list_tenants().await?;
    Ok(all.into_iter().filter(|t| user.sees(&t.id)).collect())
}

/// The tenant a per-tenant page shows: the scoped user's own, the requested
/// one (by id or name), or the first.
pub fn pick_tenant(tenants: &[Tenant], requested: Option<&str>) -> Option<Tenant> {
    match requested.filter(|r| !r.is_empty()) {
        Some(r) => tenants.iter().find(|t| t.id == r || t.name == r).cloned(),
        None => tenants.first().cloned(),
    }
}
