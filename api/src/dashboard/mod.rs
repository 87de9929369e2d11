//! The ops dashboard at `/dashboard`: server-rendered HTML (askama
//! templates in `api/templates/`, checked at compile time), readable
//! without JavaScript; the vendored htmx and its SSE extension
//! (`api/assets/`) only make the overview and the job list live.
//!
//! - [`auth`]: users, roles, password hashing (argon2id), the login rate limit.
//! - [`session`]: the session cookie and the [`session::CurrentUser`] extractor.
//! - [`csrf`]: the per-session token every POST carries ([`csrf::Action`]).
//! - [`live`]: one refresher task per API process publishes a snapshot on a
//!   `tokio::sync::watch` every `dashboard.refresh`; every page and SSE
//!   stream reads that snapshot, never the store, for live data.
//! - [`pages`]: one module per page; handlers stay thin.

pub mod assets;
pub mod auth;
#[cfg(test)]
mod contrast;
pub mod csrf;
pub mod live;
pub mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::AppState;

/// `[dashboard]`: the ops dashboard served by the API role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve `/dashboard` at all.
    pub enabled: bool,
    /// Mark the session cookie `Secure` (set it when the dashboard is
    /// reached over TLS, e.g. behind a terminating proxy).
    pub secure_cookie: bool,
    /// How long a session lasts after login.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Failed logins allowed per client address and per user name within
    /// `login_window` before further attempts are refused.
    pub login_attempts: u32,
    /// The window of `login_attempts`.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// How often the shared refresher reads the store for live pages.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookie: false,
            session_ttl: Duration::from_secs(12 * 3600),
            login_attempts: 10,
            login_window: Duration::from_secs(300),
            refresh: Duration::from_secs(1),
        }
    }
}

impl DashboardConfig {
    /// Checks what serde cannot; the error names the key within `[dashboard]`.
    pub fn validate(&self) -> Result<(), kairos_core::config::KeyError> {
        if self.login_attempts == 0 {
            return Err(("login_attempts".into(), "must be at least 1".into()));
        }
        if self.refresh < Duration::from_millis(100) {
            return Err(("refresh".into(), "must be at least 100ms".into()));
        }
        if self.session_ttl < Duration::from_secs(60) {
            return Err(("session_ttl".into(), "must be at least 1m".into()));
        }
        Ok(())
    }
}

/// What the dashboard's handlers reach: the API state plus the live
/// snapshot and the login limiter.
#[derive(Clone)]
pub struct DashState {
    /// The API's state (store, queue, config).
    pub app: AppState,
    /// The latest snapshot of the refresher.
    pub live: live::Live,
    /// Failed-login counters.
    pub logins: Arc<auth::LoginLimiter>,
}

impl DashState {
    /// The dashboard's config.
    pub fn config(&self) -> &DashboardConfig {
        &self.app.config.dashboard
    }
}

/// The `/dashboard` routes (to be nested there); starts the refresher,
/// which (and with it every live stream) ends when `shutdown` is cancelled.
pub fn router<S>(app: AppState, shutdown: tokio_util::sync::CancellationToken) -> Router<S> {
    let live = live::Live::start(app.store.clone(), app.config.dashboard.refresh, shutdown);
    let dash = app.config.dashboard.clone();
    let state = DashState {
        live,
        logins: Arc::new(auth::LoginLimiter::new(dash.login_attempts, dash.login_window)),
        app,
    };
    use pages::*;
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/live/overview", get(overview::live))
        .route("/jobs", get(jobs::list))
        .route("/jobs/live", get(jobs::live))
        .route("/jobs/{id}", get(jobs::detail))
        .route("/jobs/{id}/retry", post(dead::retry_one))
        .route("/dead", get(dead::list))
        .route("/dead/{id}/retry", post(dead::retry_one))
        .route("/dead/{id}/discard", post(dead::discard_one))
        .route("/dead/bulk", post(dead::bulk))
        .route("/queues", get(queues::page))
        .route("/queues/{kind}/pause", post(queues::pause))
        .route("/queues/{kind}/resume", post(queues::resume))
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/run", post(schedules::run_now))
        .route("/schedules/{key}/enable", post(schedules::enable))
        .route("/schedules/{key}/disable", post(schedules::disable))
        .route("/tenant-pauses/pause", post(queues::pause_tenant))
        .route("/tenant-pauses/resume", post(queues::resume_tenant))
        .route("/reports", get(reports::list))
        .route("/reports/{id}", get(reports::view))
        .route("/reports/{id}/html", get(reports::html))
        .route("/nudges", get(nudges::page))
        .route("/alerts/{id}/intervene", post(domain::intervene))
        .route("/rules", get(rules::page))
        .route("/models", get(models::page))
        .route("/models/{version}/activate", post(models::activate))
        .route("/risk", get(domain::risk))
        .route("/alerts", get(domain::alerts))
        .route("/audit", get(audit::page))
        .route("/assets/{file}", get(assets::serve))
        .fallback(not_found)
        .with_state(state)
}

/// `/dashboard/` (the nested router never sees it): the overview.
pub async fn to_overview() -> Redirect {
    Redirect::permanent("/dashboard")
}

/// No such page — except a page's path with a trailing slash
/// (`/dashboard/jobs/`), which is sent to the page without it. `uri` is the
/// path within `/dashboard`.
async fn not_found(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') && !path.contains("//") {
        let trimmed = path.trim_end_matches('/');
        let target = match uri.query() {
            Some(q) => format!("/dashboard{trimmed}?{q}"),
            None => format!("/dashboard{trimmed}"),
        };
        return Redirect::permanent(&target).into_response();
    }
    DashError::NotFound("no such page".into()).into_response()
}

/// Everything a dashboard handler can fail with, as an HTML page.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// No (valid) session: redirect to the login form.
    #[error("login required")]
    LoginRequired,
    /// 403: the role does not allow it, or the CSRF token is missing or wrong.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400: a filter or form value is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 429: too many failed logins.
    #[error("too many failed logins; try again later")]
    TooManyAttempts,
    /// 409: the action does not apply (a job that is no longer dead).
    #[error("{0}")]
    Conflict(String),
    /// 503: the store or queue is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a template failed to render.
    #[error("rendering failed: {0}")]
    Render(#[from] askama::Error),
}

impl From<kairos_core::StoreError> for DashError {
    fn from(e: kairos_core::StoreError) -> Self {
        match e {
            kairos_core::StoreError::NotFound(what) => DashError::NotFound(format!("{what} not found")),
            kairos_core::StoreError::Conflict(why) => DashError::Conflict(why),
            other => DashError::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let status = match &self {
            DashError::LoginRequired => return Redirect::to("/dashboard/login").into_response(),
            DashError::Forbidden(_) => StatusCode::FORBIDDEN,
            DashError::NotFound(_) => StatusCode::NOT_FOUND,
            DashError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            DashError::Conflict(_) => StatusCode::CONFLICT,
            DashError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DashError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "dashboard request failed");
        }
        let page = pages::ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("error"),
            message: self.to_string(),
        };
        let body = askama::Template::render(&page).unwrap_or_else(|_| self.to_string());
        (status, Html(body)).into_response()
    }
}

/// Renders a template as an HTML response.
pub(crate) fn render<T: askama::Template>(t: &T) -> Result<Response, DashError> {
    Ok(Html(t.render()?).into_response())
}
