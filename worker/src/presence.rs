//! The worker's presence in the store: it registers when it starts,
//! heartbeats every `worker.heartbeat_interval` (with its jobs in flight),
//! marks itself stopped on a graceful shutdown, and prunes the rows of
//! workers silent for a day. The same task reads the pauses (kinds and
//! tenants) every `worker.pause_poll` and publishes them to the consumers.
//!
//! Why polling and not a notification: it is the same on both deployments
//! (SQLite has no LISTEN/NOTIFY, and a Redis pub/sub message missed during
//! a reconnect would leave a kind running), it needs no second connection
//! per worker, and it costs one read of a table of a few rows per process
//! per `pause_poll` (500 ms by default), which bounds how late a pause takes
//! hold: the poll interval plus one fetch already in progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos_core::store::{Pauses, WorkerRegistration, WORKER_RETENTION};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// How often a worker prunes the rows of long-silent workers.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The kinds paused deployment-wide and the paused tenants, as last read
/// from the store.
#[derive(Clone)]
pub(crate) struct Paused(watch::Receiver<Arc<Pauses>>);

impl Paused {
    /// A channel of paused kinds: the sender for the presence task, the
    /// receiver for the consumers.
    pub(crate) fn channel() -> (watch::Sender<Arc<Pauses>>, Self) {
        let (tx, rx) = watch::channel(Arc::new(Pauses::default()));
        (tx, Self(rx))
    }

    /// Whether `kind` is paused now.
    pub(crate) fn is_paused(&self, kind: &str) -> bool {
        self.0.borrow().kind_paused(kind)
    }

    /// Whether `tenant`'s jobs of `kind` are held back now.
    pub(crate) fn tenant_paused(&self, tenant: &str, kind: &str) -> bool {
        self.0.borrow().tenant_paused(tenant, kind)
    }

    /// Waits until `kind` is not paused. Returns at once when the presence
    /// task is gone (its last word stands; the caller re-checks).
    pub(crate) async fn resumed(&self, kind: &str) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|p| !p.kind_paused(kind)).await;
    }
}

/// Attempts running in this process, reported with each heartbeat.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<AtomicU64>);

impl Running {
    pub(crate) fn start(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The host name, for the registration and the worker id.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Runs until `stop`: registration, heartbeats, pause polls; then marks
/// the worker stopped. Store errors are logged and retried at the next
/// tick: a worker keeps running its jobs (and its last known pauses) while
/// the store is away.
pub(crate) async fn run(
    shared: Shared,
    kinds: Vec<String>,
    version: String,
    paused: watch::Sender<Arc<Pauses>>,
    stop: CancellationToken,
) {
    let cfg = &shared.config.worker;
    let registration = WorkerRegistration {
        id: shared.id.clone(),
        host: host_name(),
        pid: std::process::id(),
        version,
        kinds,
        heartbeat: cfg.heartbeat_interval,
    };
    let mut registered = false;
    let mut last_prune: Option<Instant> = None;
    let mut beat = tokio::time::interval(cfg.heartbeat_interval);
    let mut poll = tokio::time::interval(cfg.pause_poll);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = beat.tick() => {
                registered = beat_once(&shared, &registration, registered).await;
                if registered && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                    last_prune = Some(Instant::now());
                    match shared.store.prune_workers(WORKER_RETENTION).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(count = n, "pruned workers silent for a day"),
                        Err(e) => tracing::warn!(error = %e, "pruning silent workers failed; will try again"),
                    }
                }
            }
            _ = poll.tick() => match shared.store.pauses().await {
                Ok(now) => {
                    paused.send_if_modified(|cur| {
                        if **cur == now {
                            return false;
                        }
                        tracing::info!(kinds = ?now.kinds, tenants = ?now.tenants, "pauses changed");
                        *cur = Arc::new(now);
                        true
                    });
                }
                Err(e) => tracing::warn!(error = %e, "reading paused kinds failed; keeping the last known"),
            },
        }
    }
    if registered {
        if let Err(e) = shared.store.stop_worker(&shared.id).await {
            tracing::warn!(error = %e, "could not mark this worker stopped; it will show as dead");
        }
    }
}

/// One heartbeat (registering first if needed); returns whether the worker
/// is registered afterwards.
async fn beat_once(shared: &Shared, registration: &WorkerRegistration, registered: bool) -> bool {
    if registered {
        match shared.store.heartbeat_worker(&shared.id, shared.running.get()).await {
            Ok(true) => return true,
            // Pruned while this process stalled: register again below.
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "worker heartbeat failed; will try again");
                return true;
            }
        }
    }
    match shared.store.register_worker(registration).await {
        Ok(()) => {
            if let Err(e) = shared.store.heartbeat_worker(&shared.id, shared.running.get()).await {
                tracing::warn!(error = %e, "worker heartbeat failed; will try again");
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "registering this worker failed; will try again");
            false
        }
    }
}
