//! What operators see of each queue, read one way for every reader:
//! `kairos queues list`, the `/metrics` gauges and the dashboard. Each
//! summary is a few cheap reads (the queue's depth, one index probe for the
//! oldest ready job, one grouped count of running jobs, the paused table),
//! made concurrently; nothing scans the job table.

use futures::future::try_join_all;

use crate::queue::Depth;
use crate::store::PausedKind;
use crate::time::now_ms;
use crate::{Queue, QueueError, Store, StoreError};

/// Why a summary could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// One job kind's queue as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSummary {
    /// The job kind.
    pub kind: String,
    /// Set while the kind is paused: who, when, why.
    pub paused: Option<PausedKind>,
    /// On the queue: ready, leased (fetched, not yet acknowledged), delayed (retries, `run_after`).
    pub depth: Depth,
    /// Jobs running now, all workers (from the store).
    pub running: u64,
    /// When the oldest queued, due, unstarted job became ready (epoch ms).
    pub oldest_ready_at: Option<i64>,
}

impl QueueSummary {
    /// Age of the oldest ready job at `now_ms`, in seconds (0 when none waits).
    pub fn oldest_ready_age_secs(&self, now_ms: i64) -> f64 {
        self.oldest_ready_at
            .map(|t| (now_ms - t).max(0) as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

/// The summary of each of `kinds`, in that order.
pub async fn queue_summaries(store: &Store, queue: &dyn Queue, kinds: &[&str]) -> Result<Vec<QueueSummary>, OpsError> {
    let (paused, running) = tokio::try_join!(store.paused_kinds(), store.running_by_kind())?;
    let per_kind = try_join_all(kinds.iter().map(|kind| async move {
        let (depth, oldest) = tokio::try_join!(async { queue.depth(kind).await.map_err(OpsError::from) }, async {
            store.oldest_ready(kind).await.map_err(OpsError::from)
        },)?;
        Ok::<_, OpsError>((depth, oldest))
    }))
    .await?;
    Ok(kinds
        .iter()
        .zip(per_kind)
        .map(|(kind, (depth, oldest_ready_at))| QueueSummary {
            kind: (*kind).to_owned(),
            paused: paused.iter().find(|p| p.kind == *kind).cloned(),
            depth,
            running: running.get(*kind).copied().unwrap_or(0),
            oldest_ready_at,
        })
        .collect())
}

/// Seconds since `at_ms`, for "last heartbeat 3 s ago" displays.
pub fn age_secs(at_ms: i64) -> f64 {
    (now_ms() - at_ms).max(0) as f64 / 1000.0
}
