//! Queues jobs left `pending` in the store.

use std::sync::Arc;
use std::time::Duration;

use kairos_core::config::SchedulerConfig;
use kairos_core::enqueue::{dispatch_pending, EnqueueError};
use kairos_core::time::now_ms;
use kairos_core::{Queue, Store};
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 500;

/// Moves stale `pending` jobs onto their queues.
pub struct Dispatcher {
    store: Store,
    queue: Arc<dyn Queue>,
    config: SchedulerConfig,
}

impl Dispatcher {
    /// A dispatcher over an opened store and queue.
    pub fn new(store: Store, queue: Arc<dyn Queue>, config: SchedulerConfig) -> Self {
        Self { store, queue, config }
    }

    /// One round: hands back the jobs of ingests that died between commit
    /// and push (`push_deadline`), then claims up to a batch of jobs pending
    /// longer than `dispatch_after` and queues them. Returns how many were queued.
    /// If the queue fails, the claimed jobs are put back to `pending`.
    pub async fn dispatch_once(&self) -> Result<usize, EnqueueError> {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        // Jobs an ingest committed `queued` but never pushed (its process
        // died in between) become `pending` first, so this round queues them.
        let recovered = self
            .store
            .recover_unpushed(now_ms() - millis(self.config.push_deadline))
            .await?;
        if recovered > 0 {
            tracing::warn!(
                count = recovered,
                "jobs committed by an ingest that never pushed them (its process died?); queueing them"
            );
        }
        let n = dispatch_pending(
            &self.store,
            self.queue.as_ref(),
            now_ms() - millis(self.config.dispatch_after),
            BATCH,
        )
        .await?;
        if n > 0 {
            kairos_core::metrics::dispatched(n as u64);
            tracing::info!(count = n, "dispatched pending jobs");
        }
        Ok(n)
    }

    /// Runs rounds until `shutdown`; a full batch is followed at once by the
    /// next, so a backlog drains without waiting for the interval.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let pause = match self.dispatch_once().await {
                Ok(n) if n as u32 >= BATCH => Duration::ZERO,
                Ok(_) => self.config.dispatch_interval,
                Err(e) => {
                    tracing::error!(error = %e, "dispatch round failed; will retry");
                    self.config.dispatch_interval
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
