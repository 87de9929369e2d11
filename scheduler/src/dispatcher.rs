//! Queues jobs left `pending` in the store.

use std::sync::Arc;
use std::time::Duration;

use kairos_core::config::SchedulerConfig;
use kairos_core::time::now_ms;
use kairos_core::{Queue, QueueError, Store, StoreError};
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 500;

/// Why one dispatch round failed (the loop logs it and tries again).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed; the claimed jobs were put back to `pending`.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

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

    /// One round: claims up to a batch of jobs pending longer than
    /// `dispatch_after` and queues them. Returns how many were queued.
    pub async fn dispatch_once(&self) -> Result<usize, DispatchError> {
        let after = i64::try_from(self.config.dispatch_after.as_millis()).unwrap_or(i64::MAX);
        let jobs = self.store.claim_pending(now_ms() - after, BATCH).await?;
        if jobs.is_empty() {
            return Ok(0);
        }
        let messages: Vec<_> = jobs.iter().map(|j| (j.message(), j.run_after)).collect();
        if let Err(e) = kairos_core::queue::push_due(self.queue.as_ref(), &messages).await {
            let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
            self.store.unclaim(&ids).await?;
            return Err(e.into());
        }
        tracing::info!(count = jobs.len(), "dispatched pending jobs");
        Ok(jobs.len())
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
