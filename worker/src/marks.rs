//! `running` for the attempts that last: a started attempt is not written
//! to the store when it starts (the consumer only reads that its job is not
//! finished). Most attempts end within milliseconds, and the completer then
//! records the start with the outcome, in one write. This task records
//! `running` for the attempts still going [`MARK_AFTER`] after they
//! started, so the dashboard, `kairos jobs` and the queue stats see long
//! jobs as running.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// How long an attempt runs before its start is written on its own. Short
/// next to a human looking at a dashboard, long next to a no-op job.
pub(crate) const MARK_AFTER: Duration = Duration::from_millis(500);

/// Attempts started whose start is not written yet, by job id.
#[derive(Clone, Default)]
pub(crate) struct Unmarked(Arc<Mutex<HashMap<String, Start>>>);

#[derive(Clone, Copy)]
struct Start {
    attempt: u32,
    started_at: i64,
    since: Instant,
}

impl Unmarked {
    /// An attempt of `id` started (epoch ms `started_at`).
    pub(crate) fn started(&self, id: &str, attempt: u32, started_at: i64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.to_owned(),
            Start {
                attempt,
                started_at,
                since: Instant::now(),
            },
        );
    }

    /// The attempts of these jobs ended: their outcome write records the
    /// start.
    pub(crate) fn settled<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            map.remove(id);
        }
    }

    /// Takes the attempts running for [`MARK_AFTER`] or more, grouped by
    /// start time (one per fetched batch).
    fn take_due(&self) -> BTreeMap<i64, Vec<(String, u32)>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.since.elapsed() >= MARK_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: BTreeMap<i64, Vec<(String, u32)>> = BTreeMap::new();
        for id in due {
            if let Some(s) = map.remove(&id) {
                out.entry(s.started_at).or_default().push((id, s.attempt));
            }
        }
        out
    }
}

/// Writes `running` for the attempts that outlast [`MARK_AFTER`], until
/// `stop` (once the completer has settled the last outcome).
pub(crate) async fn run(shared: Shared, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(MARK_AFTER / 4) => {}
        }
        for (started_at, attempts) in shared.unmarked.take_due() {
            // Only what ops see depends on it: the outcome write records the
            // start whatever happens here.
            if let Err(e) = shared.store.mark_running(&attempts, &shared.id, started_at).await {
                tracing::warn!(error = %e, count = attempts.len(), "cannot record long-running attempts as running");
            }
        }
    }
}
