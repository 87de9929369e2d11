//! Keeps the queue faithful to the store: the store is the truth.
//!
//! Every `reconcile_interval` each replica runs one
//! [`kairos_core::enqueue::reconcile`] round: a queue that came back
//! without its data (a Redis restarted empty) gets every `queued` and
//! `retrying` job pushed again — by one replica, whichever wins the claim.
//! Consumer groups that vanished with the data are re-created by the
//! workers that meet `NOGROUP`. So after the queue returns empty, every
//! accepted job is back on it within one interval plus the re-push.
//! Jobs `running` at the loss are left to their worker for the kind's
//! `timeout` plus the queue `lease`; one still `running` after that (its
//! worker died) goes back to the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use kairos_core::config::JobPolicies;
use kairos_core::enqueue::{reconcile, EnqueueError, Reconciled};
use kairos_core::{Queue, Store};
use tokio_util::sync::CancellationToken;

/// Re-queues what the queue lost.
pub struct Reconciler {
    store: Store,
    queue: Arc<dyn Queue>,
    interval: Duration,
    jobs: JobPolicies,
    lease: Duration,
}

impl Reconciler {
    /// A reconciler over an opened store and queue, running every
    /// `interval`; `jobs` (each kind's timeout) and the queue's `lease` give
    /// a job running at a loss its grace.
    pub fn new(store: Store, queue: Arc<dyn Queue>, interval: Duration, jobs: JobPolicies, lease: Duration) -> Self {
        Self {
            store,
            queue,
            interval,
            jobs,
            lease,
        }
    }

    /// One round.
    pub async fn reconcile_once(&self) -> Result<Reconciled, EnqueueError> {
        let grace = |kind: &str| self.jobs.get(kind).timeout + self.lease;
        reconcile(&self.store, self.queue.as_ref(), &grace).await
    }

    /// Runs rounds until `shutdown`. A failed round (the queue is still
    /// down) is logged and tried again next interval.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile_once().await {
                tracing::warn!(error = %e, "queue reconciliation failed; will retry");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
