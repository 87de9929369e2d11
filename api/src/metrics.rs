//! Prometheus exposition: the `[metrics]` section, the process-wide
//! recorder, and the exporter behind every `/metrics` endpoint — on the API
//! (`kairos api` / `serve`) and, when `[metrics] listen` is set, on a
//! listener of its own (how worker and scheduler processes are scraped).
//!
//! Per-process counters and histograms are recorded through
//! [`kairos_core::metrics`] (atomic increments; no store round trip). The
//! deployment gauges — queue depth, oldest ready job, jobs running,
//! workers alive, paused kinds — are computed from the store and queue at
//! scrape time by the exporters that have a deployment attached (the API's),
//! so they are true across processes and served once, not once per worker.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kairos_core::metrics::{gauges, names, BATCH_SIZE_BUCKETS, SECONDS_BUCKETS};
use kairos_core::ops::queue_summaries;
use kairos_core::store::WorkerStatus;
use kairos_core::time::now_ms;
use kairos_core::{Queue, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` (on the API, and on `listen` when set).
    pub enabled: bool,
    /// A listener of its own for `/metrics`, e.g. `0.0.0.0:9187`: how a
    /// `kairos worker` or `kairos scheduler` process (which has no API) is
    /// scraped. Unset: only the API serves `/metrics`.
    pub listen: Option<String>,
    /// Name of the environment variable holding a bearer token; when it is
    /// set (non-empty), scrapes must send `Authorization: Bearer <token>`.
    /// Unset variable: `/metrics` is open, as is usual inside a cluster.
    pub token_env: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token_env: "KAIROS_METRICS_TOKEN".into(),
        }
    }
}

impl MetricsConfig {
    /// Checks the listen address and the variable name.
    pub fn validate(&self) -> Result<(), kairos_core::config::KeyError> {
        if let Some(l) = &self.listen {
            if l.parse::<SocketAddr>().is_err() {
                return Err(("listen".into(), format!("`{l}` is not an address like 0.0.0.0:9187")));
            }
        }
        if self.token_env.trim().is_empty() {
            return Err(("token_env".into(), "must name an environment variable".into()));
        }
        Ok(())
    }
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). `None` when another recorder was installed first
/// (then nothing is exported, and that is logged).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(names::MODEL_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
                })
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    gauges::build_info(env!("CARGO_PKG_VERSION"));
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// Drains histogram samples into their buckets every few seconds, so
/// memory stays bounded between scrapes (the recorder does not do it by
/// itself). Runs until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// What a `/metrics` endpoint serves: the process's recorder, the token it
/// requires, and — on the API — the deployment whose gauges it computes.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    token_hash: Option<Vec<u8>>,
    deployment: Option<(Store, Arc<dyn Queue>)>,
}

impl Exporter {
    /// An exporter of `handle`, requiring the token in `config.token_env`
    /// when that variable is set.
    pub fn new(handle: PrometheusHandle, config: &MetricsConfig) -> Self {
        let token_hash = std::env::var(&config.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Sha256::digest(t.trim().as_bytes()).to_vec());
        Self {
            handle,
            token_hash,
            deployment: None,
        }
    }

    /// Also serve the deployment gauges, read from `store` and `queue` at
    /// each scrape.
    pub fn with_deployment(mut self, store: Store, queue: Arc<dyn Queue>) -> Self {
        self.deployment = Some((store, queue));
        self
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_hash else {
            return true;
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        presented.is_some_and(|t| Sha256::digest(t.as_bytes()).as_slice() == expected.as_slice())
    }

    /// Reads the deployment gauges into the recorder. A store or queue
    /// failure is reported by `kairos_scrape_error`, not by failing the
    /// scrape: the process's own counters are still worth having.
    async fn refresh_gauges(&self) {
        let Some((store, queue)) = &self.deployment else {
            return;
        };
        let read = async {
            let summaries = queue_summaries(store, queue.as_ref(), kairos_jobs::KINDS).await?;
            let workers = store.workers().await?;
            Ok::<_, kairos_core::ops::OpsError>((summaries, workers))
        };
        match read.await {
            Ok((summaries, workers)) => {
                let now = now_ms();
                for s in &summaries {
                    gauges::queue_depth(&s.kind, "ready", s.depth.ready);
                    gauges::queue_depth(&s.kind, "leased", s.depth.in_flight);
                    gauges::queue_depth(&s.kind, "delayed", s.depth.delayed);
                    gauges::in_flight(&s.kind, s.running);
                    gauges::oldest_ready_age(&s.kind, s.oldest_ready_age_secs(now));
                    gauges::paused(&s.kind, s.paused.is_some());
                }
                let alive = workers.iter().filter(|w| w.status == WorkerStatus::Alive).count();
                gauges::workers_alive(alive as u64);
                gauges::scrape_error(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics scrape could not read the store or queue");
                gauges::scrape_error(true);
            }
        }
    }

    /// The answer to a scrape: 401 without the configured token, else the
    /// exposition text.
    pub async fn respond(&self, headers: &HeaderMap) -> Response {
        if !self.authorized(headers) {
            return ApiError::Unauthorized("metrics need Authorization: Bearer <token> ([metrics] token_env)")
                .into_response();
        }
        self.refresh_gauges().await;
        (
            StatusCode::OK,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            self.handle.render(),
        )
            .into_response()
    }
}

/// Serves only `/metrics` on `listener` until `shutdown` (the
/// `[metrics] listen` endpoint of worker and scheduler processes).
pub async fn serve(listener: TcpListener, exporter: Exporter, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(e): axum::extract::State<Exporter>, headers: HeaderMap| async move {
                    e.respond(&headers).await
                },
            ),
        )
        .with_state(exporter);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Counts every answered request by method, matched route template and
/// status, and times it (`kairos_http_requests_total`,
/// `kairos_http_request_duration_seconds`). The route template, not the
/// path, keeps the label set small.
pub(crate) async fn track(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    kairos_core::metrics::http_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}
