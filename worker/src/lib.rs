//! The worker role: pulls jobs of each kind off the queue and runs them
//! under the kind's policy (concurrency, timeout, retries with backoff,
//! dead-lettering), recording every attempt in the store.
//!
//! Shape of a worker process:
//! - one [`supervisor`] per job kind, which keeps a [`consumer`] alive —
//!   a consumer whose queue stream errors is restarted with backoff and the
//!   failure is logged, never left silently dead;
//! - each job attempt runs in its own task, so a panic is a failed attempt,
//!   not a dead worker;
//! - one [`completer`] that records outcomes in the store and then
//!   acknowledges them on the queue, in batches;
//! - one [`leases`] task that renews the leases of every delivery held
//!   (heartbeat) and moves dead workers' expired deliveries back onto the
//!   queue;
//! - one [`marks`] task that records `running` for the attempts still
//!   running half a second after they started (a quick attempt's start is
//!   written with its outcome, in one write);
//! - one [`presence`] task that registers the process in the store's
//!   `workers` table, heartbeats there, and reads the paused kinds every
//!   `worker.pause_poll`: a consumer of a paused kind stops fetching; the
//!   jobs of a paused tenant it fetches are parked in the store unstarted.

mod backoff;
mod completer;
mod consumer;
mod leases;
mod marks;
mod presence;
mod supervisor;

use std::sync::Arc;

use kairos_core::config::{JobPolicies, JobPolicy, QueueConfig, WorkerConfig};
use kairos_core::{Queue, Store};
use kairos_jobs::Registry;
use tokio_util::sync::CancellationToken;

pub use backoff::retry_delay;

/// A worker process's identity: unique per process (host-pid-random), so
/// two workers never share a lease and logs say who ran what.
pub fn worker_id() -> String {
    let host = presence::host_name();
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// What the worker role reads from the config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `[worker]`: kinds run here, shutdown grace.
    pub worker: WorkerConfig,
    /// `[queue]`: lease margin, fetch batch.
    pub queue: QueueConfig,
    /// `[jobs.KIND]`: concurrency, timeout, retries.
    pub jobs: JobPolicies,
}

impl Settings {
    /// The policy for `kind`.
    pub fn policy(&self, kind: &str) -> JobPolicy {
        self.jobs.get(kind)
    }
}

/// Everything the parts of a worker share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub id: String,
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub registry: Registry,
    pub config: Arc<Settings>,
    /// Deliveries held (fetched, not yet settled), renewed by heartbeat.
    pub leases: leases::Leases,
    /// Kinds paused deployment-wide and paused tenants, as last read from
    /// the store.
    pub paused: presence::Paused,
    /// Attempts running in this process.
    pub running: presence::Running,
    /// Attempts started whose `running` is not written yet.
    pub unmarked: marks::Unmarked,
    /// Each kind's job metrics, resolved once.
    pub metrics: Arc<std::collections::BTreeMap<String, kairos_core::metrics::KindMetrics>>,
}

impl Shared {
    /// `kind`'s job metrics (resolved now for a kind not built at start).
    pub(crate) fn kind_metrics(&self, kind: &str) -> kairos_core::metrics::KindMetrics {
        self.metrics
            .get(kind)
            .cloned()
            .unwrap_or_else(|| kairos_core::metrics::KindMetrics::new(kind))
    }
}

/// Outcomes waiting for the completer. Small on purpose: a finished job
/// waits here holding its concurrency slot, so the jobs started but not yet
/// recorded (re-run if the process dies) stay at most the kinds'
/// concurrency plus this plus one completer batch.
const OUTCOME_BUFFER: usize = 256;

/// A worker: runs every configured kind until shut down.
pub struct Worker {
    shared: Shared,
    paused_tx: tokio::sync::watch::Sender<Arc<kairos_core::store::Pauses>>,
}

impl Worker {
    /// Builds a worker over an opened store and queue.
    pub fn new(store: Store, queue: Arc<dyn Queue>, registry: Registry, config: Arc<Settings>) -> Self {
        let (paused_tx, paused) = presence::Paused::channel();
        let metrics = registry
            .kinds()
            .into_iter()
            .map(|k| (k.to_owned(), kairos_core::metrics::KindMetrics::new(k)))
            .collect();
        Self {
            shared: Shared {
                id: worker_id(),
                store,
                queue,
                registry,
                config,
                leases: leases::Leases::default(),
                paused,
                running: presence::Running::default(),
                unmarked: marks::Unmarked::default(),
                metrics: Arc::new(metrics),
            },
            paused_tx,
        }
    }

    /// This worker's id, as recorded on the job runs it executes.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Runs until `shutdown` is cancelled, then stops fetching, lets
    /// in-flight jobs finish within the configured grace period, hands the
    /// rest back to the queue, records every outcome and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Worker { shared, paused_tx } = self;
        let kinds: Vec<String> = if shared.config.worker.kinds.is_empty() {
            shared.registry.kinds().into_iter().map(String::from).collect()
        } else {
            shared.config.worker.kinds.clone()
        };
        tracing::info!(worker = %shared.id, kinds = ?kinds, queue = shared.queue.backend(), lease = ?shared.config.queue.lease, "worker started");
        if shared.config.queue.lease_margin.is_some() {
            tracing::warn!(
                "queue.lease_margin is deprecated and ignored: leases are renewed by heartbeats (queue.lease)"
            );
        }
        // Stopped only once the completer has settled the last outcome, so
        // leases are renewed for as long as anything is held.
        let stop_leases = CancellationToken::new();
        let maintenance = tokio::spawn(leases::maintain(
            shared.clone(),
            shared.leases.clone(),
            kinds.clone(),
            stop_leases.clone(),
        ));
        let marks = tokio::spawn(marks::run(shared.clone(), stop_leases.clone()));
        // Before any consumer fetches: a kind paused before this worker
        // started is never fetched by it.
        match shared.store.pauses().await {
            Ok(pauses) => {
                paused_tx.send_replace(Arc::new(pauses));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read paused kinds at start; will poll"),
        }
        let presence = tokio::spawn(presence::run(
            shared.clone(),
            kinds.clone(),
            env!("CARGO_PKG_VERSION").to_owned(),
            paused_tx,
            stop_leases.clone(),
        ));
        let (done_tx, done_rx) = tokio::sync::mpsc::channel(OUTCOME_BUFFER);
        let completer = tokio::spawn(completer::run(shared.clone(), done_rx, shutdown.clone()));
        let mut supervisors = Vec::new();
        for kind in kinds {
            supervisors.push(tokio::spawn(supervisor::run(
                shared.clone(),
                kind,
                done_tx.clone(),
                shutdown.clone(),
            )));
        }
        drop(done_tx);
        for s in supervisors {
            if let Err(e) = s.await {
                tracing::error!(error = %e, "supervisor task failed");
            }
        }
        if let Err(e) = completer.await {
            tracing::error!(error = %e, "completer task failed");
        }
        stop_leases.cancel();
        if let Err(e) = maintenance.await {
            tracing::error!(error = %e, "lease task failed");
        }
        if let Err(e) = marks.await {
            tracing::error!(error = %e, "running-marks task failed");
        }
        if let Err(e) = presence.await {
            tracing::error!(error = %e, "presence task failed");
        }
        let held = shared.leases.len();
        if held > 0 {
            tracing::warn!(
                count = held,
                "stopping with unsettled deliveries; they come back when their leases expire"
            );
        }
        tracing::info!(worker = %shared.id, "worker stopped");
    }
}
