//! Assembly of a Kairos process: opens the store and queue named in config
//! and starts whichever roles were asked for (api, scheduler, worker) on
//! one shutdown signal. The CLI ([`cli`]) and the integration tests both
//! start processes through here, so tests exercise the real wiring.

pub mod cli;
pub mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
pub use config::Config;
use kairos_core::{Queue, Store};
use kairos_jobs::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

/// Loads and validates the config at `path` (or [`DEFAULT_CONFIG`], or the
/// built-in defaults when that file does not exist), with `KAIROS__*`
/// environment overrides.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let path: PathBuf = match path {
        Some(p) => p.to_owned(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            let env = kairos_core::config::env_overrides();
            return Ok(Config::from_toml("", "<built-in defaults>", &env)?);
        }
    };
    Ok(Config::load(&path)?)
}

/// An opened store and queue with the config: what every role needs.
#[derive(Clone)]
pub struct Runtime {
    /// Validated config.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// The queue.
    pub queue: Arc<dyn Queue>,
}

impl Runtime {
    /// Connects to the store and queue, waiting for them as `[startup]`
    /// says (a role started during a database restart comes up once it is
    /// back, instead of exiting); applies migrations when
    /// `store.migrate_on_start` is set.
    pub async fn open(mut config: Config) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + config.startup.wait;
        let store_url = redact(&config.store.url);
        let store = retry_until(
            &config.startup,
            deadline,
            &format!("the store at {store_url}"),
            || Store::connect(&config.store.url, config.store.max_connections),
            |e| !matches!(e, kairos_core::StoreError::Url { .. }),
        )
        .await
        .with_context(|| format!("connecting to the store at {store_url}"))?;
        if config.store.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        resolve_fair_shares(&store, &mut config).await;
        let queue_name = format!("the {:?} queue at {}", config.queue.backend, redact(&config.queue.url));
        let queue = retry_until(
            &config.startup,
            deadline,
            &queue_name,
            || kairos_core::queue::connect(&config.queue),
            |_| true,
        )
        .await
        .with_context(|| format!("connecting to {queue_name}"))?;
        Ok(Self {
            config: Arc::new(config),
            store,
            queue,
        })
    }
}

/// `[queue.fairness.tenants]` may name tenants; messages carry ids.
async fn resolve_fair_shares(store: &Store, config: &mut Config) {
    if config.queue.fairness.tenants.is_empty() {
        return;
    }
    match store.list_tenants().await {
        Ok(tenants) => {
            let pairs = tenants.iter().map(|t| (t.name.as_str(), t.id.as_str()));
            for key in config.queue.fairness.resolve_names(pairs) {
                tracing::warn!(tenant = %key, "queue.fairness.tenants: no tenant has this name or id; it applies to a tenant with this id only");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read tenants to resolve queue.fairness.tenants names; ids only"),
    }
}

/// Runs `attempt` until it succeeds, it fails in a way `transient` says
/// will not pass, or `deadline` is reached; logs each failure with the
/// delay before the next try.
async fn retry_until<T, E, F, Fut>(
    startup: &kairos_core::config::StartupConfig,
    deadline: tokio::time::Instant,
    what: &str,
    mut attempt: F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut n = 0u32;
    loop {
        n += 1;
        match attempt().await {
            Ok(v) => {
                if n > 1 {
                    tracing::info!(attempts = n, "connected to {what}");
                }
                return Ok(v);
            }
            Err(e) => {
                let delay = startup.delay(n);
                let now = tokio::time::Instant::now();
                if !transient(&e) || now + delay > deadline {
                    return Err(e);
                }
                tracing::warn!(
                    attempt = n,
                    retry_in = ?delay,
                    gives_up_in = ?deadline.saturating_duration_since(now),
                    error = %e,
                    "{what} is not reachable yet; waiting for it ([startup] wait)"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Builds the job kinds this process's worker runs (`worker.kinds`, or
/// all): each with its own config section; `sentiment`, when enabled, loads
/// its model and registers its default head.
pub async fn job_registry(config: &Config, store: &Store) -> anyhow::Result<Registry> {
    Ok(Registry::from_config(&config.kinds(), &config.worker.kinds, store).await?)
}

/// Follows one part of the config file (`part` of each valid new file),
/// the way the schedules are followed: file change (checked every
/// `scheduler.reload_interval`) or SIGHUP, the whole file validated, a bad
/// edit logged with file, line and key and ignored. Returns `None` when
/// there is no file, or when what is in force did not come from it (the
/// demo's and the benchmarks' composed configs): the file must not
/// replace those.
fn follow_config_part<T>(
    rt: &Runtime,
    what: &'static str,
    part: fn(Config) -> T,
    in_force: Arc<T>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Option<tokio::sync::watch::Receiver<Arc<T>>>
where
    T: PartialEq + Send + Sync + 'static,
{
    let path = PathBuf::from(&rt.config.source);
    if !path.is_file() {
        return None;
    }
    if Config::load(&path).map(part).ok().as_ref() != Some(&*in_force) {
        tracing::info!(file = %path.display(), "the {what} in force are not the file's; not reloaded from it");
        return None;
    }
    let interval = rt.config.scheduler.reload_interval;
    let (tx, rx) = tokio::sync::watch::channel(in_force);
    let load = move |p: &Path| Config::load(p).map(part);
    tasks.spawn(kairos_scheduler::reload::watch_file(
        path,
        load,
        move |_| interval,
        what,
        tx,
        shutdown.clone(),
    ));
    Some(rx)
}

/// What the API follows from the file: the event rules it matches at
/// ingest (`[[rules]]` and the ones nudge event triggers derive) and the
/// nudge rules sentiment alerts trigger (the dashboard's "intervene").
fn event_rules(config: Config) -> kairos_api::live_rules::InForce {
    kairos_api::live_rules::InForce {
        rules: kairos_core::rules::Rules::new(config.all_rules()),
        alert_nudge_rules: config.alert_nudge_rules(),
    }
}

/// `[nudges]`: what the worker's nudge kind follows.
fn nudge_config(config: Config) -> kairos_jobs::nudge::NudgesConfig {
    config.kinds().nudges
}

/// Hides a password in a URL before it reaches a log or an error.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// HTTP API.
    pub api: bool,
    /// Dispatcher (and, later, cron).
    pub scheduler: bool,
    /// Job execution.
    pub worker: bool,
}

impl Roles {
    /// Everything in one process (`kairos serve`).
    pub const ALL: Roles = Roles {
        api: true,
        scheduler: true,
        worker: true,
    };
}

/// A started process: its roles run until [`Running::shutdown`].
pub struct Running {
    /// Where the API listens, when it runs.
    pub addr: Option<SocketAddr>,
    /// Where the `[metrics] listen` endpoint listens, when configured.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// The token that stops every role.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops fetching and serving; waits for in-flight work (workers honour
    /// their grace period) and returns.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the roles stop (after the token is cancelled elsewhere).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts `roles` on `rt`. The API binds `config.server.listen` (port 0
/// picks a free port; see [`Running::addr`]).
pub async fn start(rt: Runtime, roles: Roles) -> anyhow::Result<Running> {
    // Before anything starts, so a wrong model path or a missing secret
    // stops the process with the path or variable named.
    let registry = if roles.worker {
        Some(job_registry(&rt.config, &rt.store).await?)
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut addr = None;
    let metrics = &rt.config.metrics;
    // Installed only where something serves it: elsewhere the recording
    // calls hit the facade's no-op recorder and cost nothing.
    let metrics_handle = if metrics.enabled && (roles.api || metrics.listen.is_some()) {
        kairos_api::metrics::install()
    } else {
        None
    };
    // The deployment gauges are computed by the processes that run the API
    // (every replica serves the same values), not by each worker.
    let exporter = metrics_handle.as_ref().map(|h| {
        let e = kairos_api::metrics::Exporter::new(h.clone(), metrics);
        if roles.api {
            e.with_deployment(rt.store.clone(), rt.queue.clone())
        } else {
            e
        }
    });
    if let Some(h) = metrics_handle {
        tasks.spawn(kairos_api::metrics::upkeep(h, shutdown.clone()));
    }
    let mut metrics_addr = None;
    if let (Some(exporter), Some(listen)) = (&exporter, &metrics.listen) {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the metrics endpoint to {listen} (metrics.listen)"))?;
        metrics_addr = Some(listener.local_addr()?);
        let (exporter, token) = (exporter.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = kairos_api::metrics::serve(listener, exporter, token).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    if roles.api {
        let listener = TcpListener::bind(&rt.config.server.listen)
            .await
            .with_context(|| format!("binding the API to {} (server.listen)", rt.config.server.listen))?;
        addr = Some(listener.local_addr()?);
        let mut state = kairos_api::AppState::new(Arc::new(rt.config.api()), rt.store.clone(), rt.queue.clone());
        if let Some(e) = exporter {
            state = state.with_metrics(e);
        }
        let in_force = state.rules.current();
        if let Some(rx) = follow_config_part(&rt, "event rules", event_rules, in_force, &mut tasks, &shutdown) {
            state = state.with_rule_updates(rx);
        }
        if rt.config.sentiment.enabled {
            let on_demand = Arc::new(kairos_jobs::sentiment::OnDemand::new(
                rt.config.sentiment.clone(),
                rt.store.clone(),
            ));
            if on_demand.preload() {
                on_demand
                    .scorer()
                    .await
                    .context("loading the sentiment model for the API (sentiment.api_preload)")?;
            }
            state = state.with_sentiment(on_demand);
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = kairos_api::serve(listener, state, token).await {
                tracing::error!(error = %e, "API server failed");
            }
        });
    }
    // Jobs left `pending` (a push that failed and could not be reverted,
    // a producer that died after its commit) are queued by every process
    // that accepts events, not only by a scheduler: the claim is a
    // conditional update, so dispatchers never push the same job twice.
    if roles.scheduler || roles.api {
        let dispatcher =
            kairos_scheduler::Dispatcher::new(rt.store.clone(), rt.queue.clone(), rt.config.scheduler.clone());
        tasks.spawn(dispatcher.run(shutdown.clone()));
    }
    if roles.scheduler {
        let reconciler = kairos_scheduler::Reconciler::new(
            rt.store.clone(),
            rt.queue.clone(),
            rt.config.scheduler.reconcile_interval,
            rt.config.jobs.clone(),
            rt.config.queue.lease,
        );
        tasks.spawn(reconciler.run(shutdown.clone()));
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(rt.config.scheduling()));
        let path = PathBuf::from(&rt.config.source);
        if path.is_file() {
            let load = |p: &Path| Config::load(p).map(|c| c.scheduling());
            tasks.spawn(kairos_scheduler::reload::watch_config(path, load, tx, shutdown.clone()));
        }
        let firer = kairos_scheduler::Firer {
            store: rt.store.clone(),
            queue: rt.queue.clone(),
            replica: kairos_worker::worker_id(),
        };
        tasks.spawn(kairos_scheduler::Ticker::new(firer, rx).run(shutdown.clone()));
    }
    if let Some(rules) = registry.as_ref().and_then(Registry::nudge_rules) {
        if let Some(rx) = follow_config_part(&rt, "nudge rules", nudge_config, rules.current(), &mut tasks, &shutdown) {
            tasks.spawn(kairos_jobs::nudge::reload::follow(rules, rx));
        }
    }
    if let Some(registry) = registry {
        let worker = kairos_worker::Worker::new(
            rt.store.clone(),
            rt.queue.clone(),
            registry,
            Arc::new(rt.config.worker()),
        );
        tasks.spawn(worker.run(shutdown.clone()));
    }
    Ok(Running {
        addr,
        metrics_addr,
        shutdown,
        tasks,
    })
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
