//! Assembly of a Kairos process: opens the store and queue named in config
//! and starts whichever roles were asked for (api, scheduler, worker) on
//! one shutdown signal. The CLI (`main.rs`) and the integration tests both
//! start processes through here, so tests exercise the real wiring.

pub mod bench;
pub mod bench_sentiment;
pub mod cli_accounts;
pub mod cli_audit;
pub mod demo;
pub mod demo_churn;
pub mod demo_profiles;
pub mod train;
pub mod train_sentiment;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kairos_core::{Config, Queue, Store};
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
    let kinds = kairos_jobs::KNOWN_KINDS;
    let path: PathBuf = match path {
        Some(p) => p.to_owned(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            let env: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with(kairos_core::config::ENV_PREFIX))
                .collect();
            return Ok(Config::from_toml("", "<built-in defaults>", &env, kinds)?);
        }
    };
    Ok(Config::load(&path, kinds)?)
}

/// An opened store and queue with the config and job registry: what every
/// role needs.
#[derive(Clone)]
pub struct Runtime {
    /// Validated config.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// Job kinds this binary runs.
    pub registry: Registry,
}

impl Runtime {
    /// Connects to the store and queue; applies migrations when
    /// `store.migrate_on_start` is set.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.store.url, config.store.max_connections)
            .await
            .with_context(|| format!("connecting to the store at {}", redact(&config.store.url)))?;
        if config.store.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        let queue = kairos_core::queue::connect(&config.queue).await.with_context(|| {
            format!(
                "connecting to the {:?} queue at {}",
                config.queue.backend,
                redact(&config.queue.url)
            )
        })?;
        let mut registry = Registry::standard();
        registry.register(Arc::new(kairos_jobs::churn::ChurnScore::new(config.churn.clone())));
        Ok(Self {
            config: Arc::new(config),
            store,
            queue,
            registry,
        })
    }
}

/// Registers the job kinds that need config, files or secrets: `webhook`
/// (secrets from the environment) and, when enabled, `sentiment` (loads
/// the text model and makes sure a head is active).
pub async fn register_configured_jobs(rt: &mut Runtime) -> anyhow::Result<()> {
    let webhook = kairos_jobs::webhook::Webhook::from_config(&rt.config.webhooks)?;
    rt.registry.register(Arc::new(webhook));
    if rt.config.sentiment.enabled {
        let job = load_sentiment(&rt.config, &rt.store).await?;
        rt.registry.register(Arc::new(job));
    }
    Ok(())
}

/// Loads the sentiment model (off the async runtime: it reads and
/// initialises ONNX files) and registers the configured default head.
pub async fn load_sentiment(config: &Config, store: &Store) -> anyhow::Result<kairos_jobs::sentiment::Sentiment> {
    use kairos_jobs::sentiment;
    let s = config.sentiment.clone();
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || sentiment::load_model(&s))
        .await
        .context("loading the sentiment model")??;
    if let (Some(head), Some(path)) = (&loaded.default_head, &config.sentiment.head) {
        let source = format!("file {}", path.display());
        let active = sentiment::registry::ensure_default(store, head, &source)
            .await
            .context("registering the default sentiment head")?;
        tracing::info!(head = %head.version(), active = %active, "sentiment head ready");
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        encoder = %config.sentiment.encoder.display(),
        "sentiment model loaded"
    );
    Ok(sentiment::Sentiment::new(config, loaded))
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
pub async fn start(mut rt: Runtime, roles: Roles) -> anyhow::Result<Running> {
    if roles.worker {
        // Before anything starts, so a wrong model path or a missing secret
        // stops the process with the path or variable named.
        register_configured_jobs(&mut rt).await?;
    }
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut addr = None;
    if roles.api {
        let listener = TcpListener::bind(&rt.config.server.listen)
            .await
            .with_context(|| format!("binding the API to {} (server.listen)", rt.config.server.listen))?;
        addr = Some(listener.local_addr()?);
        let state = kairos_api::AppState::new(rt.config.clone(), rt.store.clone(), rt.queue.clone());
        let token = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = kairos_api::serve(listener, state, token).await {
                tracing::error!(error = %e, "API server failed");
            }
        });
    }
    if roles.scheduler {
        let dispatcher =
            kairos_scheduler::Dispatcher::new(rt.store.clone(), rt.queue.clone(), rt.config.scheduler.clone());
        tasks.spawn(dispatcher.run(shutdown.clone()));
        let (tx, rx) = tokio::sync::watch::channel(rt.config.clone());
        let path = PathBuf::from(&rt.config.source);
        if path.is_file() {
            tasks.spawn(kairos_scheduler::reload::watch_config(
                path,
                kairos_jobs::KNOWN_KINDS.to_vec(),
                tx,
                shutdown.clone(),
            ));
        }
        let firer = kairos_scheduler::Firer {
            store: rt.store.clone(),
            queue: rt.queue.clone(),
            replica: kairos_worker::worker_id(),
        };
        tasks.spawn(kairos_scheduler::Ticker::new(firer, rx).run(shutdown.clone()));
    }
    if roles.worker {
        let worker = kairos_worker::Worker::new(
            rt.store.clone(),
            rt.queue.clone(),
            rt.registry.clone(),
            rt.config.clone(),
        );
        tasks.spawn(worker.run(shutdown.clone()));
    }
    Ok(Running { addr, shutdown, tasks })
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
