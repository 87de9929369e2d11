//! The leases a worker holds, kept alive by a heartbeat, and the reclaim of
//! dead workers' jobs.
//!
//! A delivery is held from its fetch until its outcome is settled on the
//! queue (acknowledged, scheduled for retry, or released) — not only while
//! the job runs, so an outcome waiting in the completer is not re-delivered
//! meanwhile. Every `lease / 3` the heartbeat renews the leases of
//! everything held; so the lease is short whatever a job's timeout, and a
//! worker that dies stops renewing: its jobs expire one lease after its
//! last heartbeat. Every `reclaim_interval` the same task moves every
//! expired delivery of its kinds back onto the queue, in bulk.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Deliveries this process holds, per kind (by tag).
#[derive(Clone, Default)]
pub(crate) struct Leases(Arc<Mutex<BTreeMap<String, HashSet<String>>>>);

impl Leases {
    /// Records that `tags` of `kind` are held from now on.
    pub(crate) fn hold<'a>(&self, kind: &str, tags: impl IntoIterator<Item = &'a String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(kind.to_owned())
            .or_default()
            .extend(tags.into_iter().cloned());
    }

    /// Records that `tags` of `kind` are settled: no more renewals.
    pub(crate) fn drop_tags<'a>(&self, kind: &str, tags: impl IntoIterator<Item = &'a String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(kind) {
            for t in tags {
                held.remove(t);
            }
        }
    }

    /// How many deliveries are held, all kinds together.
    pub(crate) fn len(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(HashSet::len).sum()
    }

    fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, tags)| !tags.is_empty())
            .map(|(k, tags)| (k.clone(), tags.iter().cloned().collect()))
            .collect()
    }
}

/// Renews held leases every `lease / 3` and reclaims expired deliveries of
/// `kinds` every `reclaim_interval`, until `stop`. Errors are logged: a
/// missed heartbeat is covered by the next (the lease lasts three).
pub(crate) async fn maintain(shared: Shared, leases: Leases, kinds: Vec<String>, stop: CancellationToken) {
    let lease = shared.config.queue.lease;
    let beat_every = (lease / 3).max(Duration::from_millis(50));
    let reclaim_every = shared.config.queue.reclaim_interval;
    let mut beat = tokio::time::interval(beat_every);
    let mut reclaim = tokio::time::interval(reclaim_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reclaim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = beat.tick() => {
                for (kind, tags) in leases.snapshot() {
                    if let Err(e) = shared.queue.heartbeat(&kind, &shared.id, &tags, lease).await {
                        tracing::warn!(kind, count = tags.len(), error = %e, "lease heartbeat failed; will try again");
                    }
                }
            }
            _ = reclaim.tick() => {
                for kind in &kinds {
                    if let Err(e) = shared.queue.reclaim(kind, &shared.id, lease).await {
                        tracing::warn!(kind, error = %e, "reclaiming expired leases failed; will try again");
                    }
                }
            }
        }
    }
}
