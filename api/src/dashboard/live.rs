//! Live data: one refresher task per API process reads the store every
//! `dashboard.refresh` and publishes a [`Snapshot`] on a watch channel.
//! The overview renders from it, and every SSE stream (one per open page)
//! waits on the channel and renders its user's view of the snapshot — so a
//! hundred open dashboards cost the store one set of queries per second,
//! not a hundred.
//!
//! Job lists stay live the same way: each open list registers the job ids it
//! shows ([`Live::watch`]); the refresher reads the union of those ids (one
//! bounded query) plus the newest jobs, and each stream picks its rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kairos_core::store::{ActiveCount, FinishedMinute, JobRun, JobState, PausedKind, RecentTiming, WorkerInfo};
use kairos_core::time::now_ms;
use kairos_core::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How far back the overview's counts and sparklines reach.
pub const WINDOW_MINUTES: i64 = 30;
/// "Succeeded / dead in the last N minutes" on the overview.
pub const RECENT_MINUTES: i64 = 5;
/// At most this many finished jobs feed the wait / run percentiles.
const TIMING_SAMPLE: u32 = 5_000;
/// The newest jobs every snapshot carries (new rows of live job lists).
const NEWEST: u32 = 100;
/// At most this many watched ids are re-read per refresh.
const WATCH_MAX: usize = 2_000;

/// What the refresher saw at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// When it was taken (epoch ms); 0 before the first refresh.
    pub at_ms: i64,
    /// The last refresh's error, if it failed (the data is then older).
    pub error: Option<String>,
    /// How long the last refresh took.
    pub took: Duration,
    /// Unfinished jobs per tenant, kind and state.
    pub active: Vec<ActiveCount>,
    /// Finished jobs per tenant, kind and minute over the window.
    pub minutes: Vec<FinishedMinute>,
    /// Timings of recently finished jobs.
    pub timings: Vec<RecentTiming>,
    /// The newest jobs.
    pub newest: Vec<JobRun>,
    /// The current rows of the jobs open pages show.
    pub watched: HashMap<String, JobRun>,
    /// Registered workers, alive first.
    pub workers: Vec<WorkerInfo>,
    /// Paused job kinds.
    pub paused: Vec<PausedKind>,
}

/// The handle pages and streams hold.
#[derive(Clone)]
pub struct Live {
    rx: watch::Receiver<Arc<Snapshot>>,
    watches: Arc<Mutex<HashMap<u64, Vec<String>>>>,
    next: Arc<AtomicU64>,
}

/// A registration of watched job ids; dropped when its stream ends.
pub struct WatchGuard {
    id: u64,
    watches: Arc<Mutex<HashMap<u64, Vec<String>>>>,
}

impl WatchGuard {
    /// Replaces the ids this stream watches.
    pub fn set(&self, ids: Vec<String>) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        w.insert(self.id, ids);
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(&self.id);
    }
}

impl Live {
    /// Starts the refresher (when a runtime is running) and returns the
    /// handle. The task ends when every handle is dropped.
    pub fn start(store: Store, every: Duration, shutdown: CancellationToken) -> Self {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let live = Live {
            rx,
            watches: Arc::new(Mutex::new(HashMap::new())),
            next: Arc::new(AtomicU64::new(1)),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let watches = live.watches.clone();
            rt.spawn(refresher(store, every, tx, watches, shutdown));
        }
        live
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.rx.clone()
    }

    /// Registers a stream's watched job ids.
    pub fn watch(&self) -> WatchGuard {
        WatchGuard {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            watches: self.watches.clone(),
        }
    }
}

async fn refresher(
    store: Store,
    every: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    watches: Arc<Mutex<HashMap<u64, Vec<String>>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
            // Dropping the sender ends every live stream, so a graceful
            // shutdown does not wait for open pages.
            () = shutdown.cancelled() => return,
        }
        let ids: Vec<String> = {
            let w = watches.lock().unwrap_or_else(|e| e.into_inner());
            let mut ids: Vec<String> = w.values().flatten().cloned().collect();
            ids.sort_unstable();
            ids.dedup();
            ids.truncate(WATCH_MAX);
            ids
        };
        let started = Instant::now();
        let snapshot = match read(&store, &ids).await {
            Ok(mut s) => {
                s.took = started.elapsed();
                s
            }
            Err(e) => {
                let old = tx.borrow().clone();
                tracing::warn!(error = %e, "dashboard refresh failed");
                Snapshot {
                    at_ms: old.at_ms,
                    error: Some(e.to_string()),
                    took: started.elapsed(),
                    active: old.active.clone(),
                    minutes: old.minutes.clone(),
                    timings: old.timings.clone(),
                    newest: old.newest.clone(),
                    watched: old.watched.clone(),
                    workers: old.workers.clone(),
                    paused: old.paused.clone(),
                }
            }
        };
        if tx.send(Arc::new(snapshot)).is_err() {
            return;
        }
    }
}

async fn read(store: &Store, watched: &[String]) -> Result<Snapshot, kairos_core::StoreError> {
    let now = now_ms();
    let since = now - WINDOW_MINUTES * 60_000;
    let active = store.active_counts(None).await?;
    let minutes = store.finished_per_minute(None, since).await?;
    let timings = store
        .recent_timings(None, now - RECENT_MINUTES * 60_000 * 3, TIMING_SAMPLE)
        .await?;
    let newest = store
        .job_page(&kairos_core::store::JobPageFilter {
            limit: NEWEST,
            ..Default::default()
        })
        .await?;
    let watched = store
        .jobs_by_ids(watched)
        .await?
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    let workers = store.workers().await?;
    let paused = store.paused_kinds().await?;
    Ok(Snapshot {
        at_ms: now,
        error: None,
        took: Duration::ZERO,
        active,
        minutes,
        timings,
        newest,
        watched,
        workers,
        paused,
    })
}

/// One kind's line on the overview.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindStats {
    /// Job kind.
    pub kind: String,
    /// Stored, not yet on a queue.
    pub pending: i64,
    /// On a queue, waiting for a worker.
    pub queued: i64,
    /// Waiting for their next attempt.
    pub retrying: i64,
    /// Being run.
    pub running: i64,
    /// Succeeded in the last [`RECENT_MINUTES`].
    pub succeeded: i64,
    /// Dead-lettered in the last [`RECENT_MINUTES`].
    pub dead: i64,
    /// Wait (queued → started) percentiles, ms.
    pub wait_p50: Option<i64>,
    /// See `wait_p50`.
    pub wait_p95: Option<i64>,
    /// Run (started → finished) percentiles, ms.
    pub run_p50: Option<i64>,
    /// See `run_p50`.
    pub run_p95: Option<i64>,
    /// Finished per minute over the window, oldest first.
    pub per_minute: Vec<i64>,
}

impl KindStats {
    /// Ready to run: pending + queued + retrying.
    pub fn ready(&self) -> i64 {
        self.pending + self.queued + self.retrying
    }

    /// An inline SVG sparkline of `per_minute` (finished jobs per minute).
    pub fn sparkline(&self) -> String {
        sparkline(&self.per_minute)
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The overview's per-kind lines for the tenants `visible` accepts.
pub fn kind_stats(snap: &Snapshot, visible: impl Fn(&str) -> bool) -> Vec<KindStats> {
    let mut by_kind: BTreeMap<String, KindStats> = BTreeMap::new();
    let entry = |m: &mut BTreeMap<String, KindStats>, kind: &str| -> KindStats {
        m.remove(kind).unwrap_or_else(|| KindStats {
            kind: kind.to_owned(),
            per_minute: vec![0; WINDOW_MINUTES as usize],
            ..Default::default()
        })
    };
    for a in snap.active.iter().filter(|a| visible(&a.tenant_id)) {
        let mut k = entry(&mut by_kind, &a.kind);
        match a.state {
            JobState::Pending => k.pending += a.n,
            JobState::Queued => k.queued += a.n,
            JobState::Retrying => k.retrying += a.n,
            JobState::Running => k.running += a.n,
            JobState::Succeeded | JobState::Dead => {}
        }
        by_kind.insert(a.kind.clone(), k);
    }
    let now_minute = snap.at_ms / 60_000;
    for m in snap.minutes.iter().filter(|m| visible(&m.tenant_id)) {
        let mut k = entry(&mut by_kind, &m.kind);
        let age = now_minute - m.minute;
        if age < RECENT_MINUTES {
            k.succeeded += m.succeeded;
            k.dead += m.dead;
        }
        if (0..WINDOW_MINUTES).contains(&age) {
            let slot = (WINDOW_MINUTES - 1 - age) as usize;
            k.per_minute[slot] += m.succeeded + m.dead;
        }
        by_kind.insert(m.kind.clone(), k);
    }
    let mut waits: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut runs: HashMap<&str, Vec<i64>> = HashMap::new();
    for t in snap.timings.iter().filter(|t| visible(&t.tenant_id)) {
        if let Some(w) = t.wait_ms {
            waits.entry(t.kind.as_str()).or_default().push(w);
        }
        if let Some(r) = t.run_ms {
            runs.entry(t.kind.as_str()).or_default().push(r);
        }
    }
    for (kind, mut w) in waits {
        w.sort_unstable();
        let mut k = entry(&mut by_kind, kind);
        k.wait_p50 = percentile(&w, 50.0);
        k.wait_p95 = percentile(&w, 95.0);
        by_kind.insert(kind.to_owned(), k);
    }
    for (kind, mut r) in runs {
        r.sort_unstable();
        let mut k = entry(&mut by_kind, kind);
        k.run_p50 = percentile(&r, 50.0);
        k.run_p95 = percentile(&r, 95.0);
        by_kind.insert(kind.to_owned(), k);
    }
    by_kind.into_values().collect()
}

/// A 120×24 polyline of `values`, with a title for screen readers.
pub fn sparkline(values: &[i64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * 120.0 / n, 22.0 - (*v as f64 / max) * 20.0))
        .collect();
    let total: i64 = values.iter().sum();
    format!(
        "<svg class=\"spark\" width=\"120\" height=\"24\" viewBox=\"0 0 120 24\" role=\"img\" \
         aria-label=\"{total} finished in the last {WINDOW_MINUTES} minutes\"><polyline fill=\"none\" \
         stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn stats_respect_the_tenant_scope() {
        let snap = Snapshot {
            at_ms: 60_000 * 100,
            active: vec![
                ActiveCount {
                    tenant_id: "a".into(),
                    kind: "probe".into(),
                    state: JobState::Queued,
                    n: 3,
                },
                ActiveCount {
                    tenant_id: "b".into(),
                    kind: "probe".into(),
                    state: JobState::Queued,
                    n: 5,
                },
            ],
            minutes: vec![FinishedMinute {
                tenant_id: "a".into(),
                kind: "probe".into(),
                minute: 99,
                succeeded: 4,
                dead: 1,
            }],
            ..Default::default()
        };
        let all = kind_stats(&snap, |_| true);
        assert_eq!(all[0].queued, 8);
        let a = kind_stats(&snap, |t| t == "a");
        assert_eq!((a[0].queued, a[0].succeeded, a[0].dead), (3, 4, 1));
        assert_eq!(a[0].per_minute[WINDOW_MINUTES as usize - 2], 5);
        assert!(kind_stats(&snap, |t| t == "c").is_empty());
    }
}
