//! The API role: event ingest, job status, health and the OpenAPI document.
//!
//! Ingest path: authenticate the tenant ([`auth`]), parse and validate the
//! whole batch, check the tenant's rate ([`rate_limit`]), match rules,
//! store events and job runs in one transaction, push the jobs to their
//! queues, answer `202` with the job ids.

pub mod auth;
pub mod body_deadline;
pub mod dashboard;
pub mod error;
pub mod live_rules;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use kairos_core::config::{ApiConfig, JobPolicies, JobPolicy};
use kairos_core::rules::RuleConfig;
use kairos_core::rules::Rules;
use kairos_core::{Queue, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::rate_limit::RateLimiter;

/// What the API role reads from the config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `[api]`: limits, admin token variable.
    pub api: ApiConfig,
    /// `[[rules]]`: which events make which jobs.
    pub rules: Vec<RuleConfig>,
    /// `[jobs.KIND]`: the attempts of the jobs ingest creates.
    pub jobs: JobPolicies,
    /// The schedules, for the admin API's "run now".
    pub scheduling: kairos_scheduler::Settings,
    /// `[profiles]`: language and time-zone defaults of profiles.
    pub profiles: kairos_core::profile::ProfilesConfig,
    /// The event `data` fields that hold a person's free text
    /// (`[sentiment] text_fields`): what an erasure redacts.
    pub text_fields: Vec<String>,
    /// `[dashboard]`: the ops dashboard.
    pub dashboard: dashboard::DashboardConfig,
    /// `[nudges.tracking]`: the open pixel and tracked links (absent: off).
    pub nudge_tracking: Option<kairos_jobs::nudge::tracking::TrackingConfig>,
    /// `[monitor]`: weeks shown and the drift threshold of `/v1/models/monitor`.
    pub monitor: kairos_jobs::monitor::MonitorConfig,
    /// Names of the nudge rules sentiment alerts trigger: what the
    /// dashboard's "intervene" with a nudge would plan (none: not offered).
    pub alert_nudge_rules: Vec<String>,
}

impl Settings {
    /// The policy for `kind`.
    pub fn policy(&self, kind: &str) -> JobPolicy {
        self.jobs.get(kind)
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The queue jobs are pushed to.
    pub queue: Arc<dyn Queue>,
    /// Event rules and the nudge rules sentiment alerts trigger, in force
    /// (hot-reloaded with the config file).
    pub rules: live_rules::LiveRules,
    /// The API's config (limits, job policies, schedules).
    pub config: Arc<Settings>,
    /// Per-tenant rate limits.
    pub limiter: Arc<RateLimiter>,
    /// SHA-256 of the admin token read from the environment at start;
    /// `None` disables the admin API.
    pub admin_token_hash: Option<Vec<u8>>,
    /// What `GET /metrics` serves; `None`: metrics disabled (404).
    pub metrics: Option<metrics::Exporter>,
    /// Checks nudge tracking tokens; `None`: tracking off (404).
    pub tracker: Option<kairos_jobs::nudge::tracking::Tracker>,
    /// Sentiment scoring on demand (`POST /v1/sentiment:analyze`); `None`:
    /// not configured (404).
    pub sentiment: Option<Arc<kairos_jobs::sentiment::OnDemand>>,
}

impl AppState {
    /// State for a config, store and queue.
    pub fn new(config: Arc<Settings>, store: Store, queue: Arc<dyn Queue>) -> Self {
        use sha2::Digest;
        let admin_token_hash = std::env::var(&config.api.admin_token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| sha2::Sha256::digest(t.trim().as_bytes()).to_vec());
        // A missing key turns tracking off here (logged); the worker, which
        // signs, refuses to start without it.
        let tracker = config.nudge_tracking.as_ref().and_then(|t| {
            kairos_jobs::nudge::tracking::Tracker::from_config(t)
                .map_err(|e| tracing::error!(error = %e, "nudge tracking is off"))
                .ok()
        });
        Self {
            tracker,
            admin_token_hash,
            rules: live_rules::LiveRules::fixed(live_rules::InForce {
                rules: Rules::new(config.rules.clone()),
                alert_nudge_rules: config.alert_nudge_rules.clone(),
            }),
            limiter: Arc::new(RateLimiter::new(config.api.rate_per_second, config.api.rate_burst)),
            store,
            queue,
            config,
            metrics: None,
            sentiment: None,
        }
    }

    /// Serves `POST /v1/sentiment:analyze` with `on_demand` (its model is
    /// loaded on the first request unless preloaded).
    pub fn with_sentiment(mut self, on_demand: Arc<kairos_jobs::sentiment::OnDemand>) -> Self {
        self.sentiment = Some(on_demand);
        self
    }

    /// Matches events against the rules published on `rx` (the config
    /// watcher's), and offers the dashboard's "intervene → nudge" by them,
    /// instead of what the config had at start.
    pub fn with_rule_updates(mut self, rx: tokio::sync::watch::Receiver<Arc<live_rules::InForce>>) -> Self {
        self.rules = live_rules::LiveRules::follow(rx);
        self
    }

    /// Serves `exporter` at `GET /metrics`.
    pub fn with_metrics(mut self, exporter: metrics::Exporter) -> Self {
        self.metrics = Some(exporter);
        self
    }
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    router_until(state, CancellationToken::new())
}

/// The router; the dashboard's live streams end when `shutdown` is cancelled.
fn router_until(state: AppState, shutdown: CancellationToken) -> Router {
    let body_limit = state.config.api.max_body_bytes;
    let body_timeout = state.config.api.body_read_timeout;
    // Built once: the document states this process's own limits.
    let doc = Arc::new(openapi::document(&state.config.api));
    let dashboard = state
        .config
        .dashboard
        .enabled
        .then(|| dashboard::router(state.clone(), shutdown));
    let api = Router::new()
        .route("/v1/events", post(routes::events::ingest))
        .route("/v1/jobs/{id}", get(routes::jobs::get_job))
        .route("/v1/accounts", get(routes::accounts::list_accounts))
        .route("/v1/accounts:batch", post(routes::accounts::batch_accounts))
        .route(
            "/v1/accounts/{id}",
            get(routes::accounts::get_account)
                .put(routes::accounts::put_account)
                .patch(routes::accounts::patch_account)
                .delete(routes::accounts::delete_account),
        )
        .route("/v1/accounts/{id}/people", get(routes::accounts::list_people))
        .route(
            "/v1/accounts/{id}/people/{person_id}",
            get(routes::accounts::get_person)
                .put(routes::accounts::put_person)
                .patch(routes::accounts::patch_person)
                .delete(routes::accounts::delete_person),
        )
        .route("/v1/accounts/{id}/churn", get(routes::churn::account_churn))
        .route("/v1/churn", get(routes::churn::churn_overview))
        .route("/v1/churn:score", post(routes::churn::score))
        .route("/v1/accounts/{id}/sentiment", get(routes::sentiment::account_sentiment))
        .route("/v1/sentiment:analyze", post(routes::sentiment_analyze::analyze))
        .route("/v1/alerts", get(routes::alerts::list_alerts))
        .route("/v1/models/monitor", get(routes::models::monitor))
        .route("/v1/reports", get(routes::reports::list_reports))
        .route("/v1/reports/{id}", get(routes::reports::get_report))
        .route("/v1/accounts/{id}/nudges", get(routes::nudges::account_nudges))
        .route("/v1/people/{id}/feed", get(routes::nudges::feed))
        .route("/v1/nudges/stats", get(routes::nudges::stats))
        .route("/v1/people/{id}/feed/{nudge_id}/read", post(routes::nudges::mark_read))
        .route("/t/o/{token}", get(routes::tracking::open))
        .route("/t/c/{token}", get(routes::tracking::click))
        .route("/v1/admin/schedules/{name}/run", post(routes::admin::run_schedule))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::scrape))
        .route("/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            body_deadline::enforce,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(metrics::track));
    // After the JSON error layer: the dashboard answers with HTML pages.
    let api = match dashboard {
        Some(d) => api
            .nest("/dashboard", d)
            .route("/dashboard/", get(dashboard::to_overview)),
        None => api,
    };
    api.with_state(state)
}

/// Serves on `listener` until `shutdown`, then finishes in-flight requests.
///
/// HTTP/1 by hyper directly rather than `axum::serve`, which has no header
/// read timeout: a client that opens a connection and stalls in its headers
/// is dropped after `api.header_read_timeout`, on every route and for every
/// request of a kept-alive connection (the body has its own deadline,
/// `api.body_read_timeout`, also on every route: [`body_deadline`]).
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = state.config.api.header_read_timeout;
    let app = router_until(state, shutdown.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // A client that closes its side once its request is sent still gets
    // that request handled to the end (its events recorded and queued),
    // instead of the handler being dropped at its first await.
    http.half_close(true);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of
                    // spinning; the listener itself is still good.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow for ever.
        while connections.try_join_next().is_some() {}
        // The peer address travels as `ConnectInfo` (the dashboard's login
        // rate limit is per client address).
        let service = TowerToHyperService::new(tower::util::MapRequest::new(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = shutdown.cancelled() => {}
            }
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
