//! The one way a job comes to be — for every producer (the ingest API,
//! schedule ticks, jobs that raise alerts, the dispatcher, `kairos jobs
//! retry`, and whatever comes next).
//!
//! The rule, as in River's `Insert`/`InsertTx`: **record first, queue
//! second**. A job is a `job_runs` row before it is a queue message, so a
//! crash or a queue outage between the two can delay a job but never lose
//! it: rows left `pending` are queued by [`dispatch_pending`]. The stored
//! row — not the producer's config — then decides how many attempts the job
//! gets.
//!
//! - [`NewJob`]: the one shape of a job to create; [`NewJob::message`] is
//!   the one place a queue [`Message`] is built from it.
//! - [`insert_jobs`]: records jobs `pending` inside the caller's
//!   transaction, so a job commits with whatever created it (a tick, an
//!   alert).
//! - [`enqueue_recorded`]: claims recorded jobs (`pending` → `queued`),
//!   then pushes them; on a queue failure they go back to `pending` for the
//!   dispatcher.
//! - [`accept_events`]: rules → jobs → one ingest transaction (shared with
//!   concurrent requests: [`group`]) that stores the jobs `queued` → push;
//!   a failed push reverts the ingest so the client's 503 means "nothing
//!   recorded".
//! - [`dispatch_pending`] and [`retry_dead`]: the recovery producers, on the
//!   same push path.
//! - [`reconcile`]: the store is the truth. When the queue comes back
//!   without its data (its epoch marker is gone), every job the store holds
//!   `queued` or `retrying` is pushed again; [`requeue`] does the same on an
//!   operator's request (`kairos jobs requeue`).

pub(crate) mod group;

use std::sync::Arc;

use crate::config::JobPolicies;
use crate::event::Event;
use crate::queue::{Message, Queue, QueueError};
use crate::rules::Rules;
use crate::store::{Debounce, IngestOutcome, JobRun, JobState, PlannedJob, StoredEvent};
use crate::time::now_ms;
use crate::{Store, StoreError};

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Job run id: UUIDv7 for new work; deterministic (UUIDv5) where a
    /// retried producer must not create a second copy (ticks, alerts).
    pub id: String,
    /// The tenant the job works for.
    pub tenant_id: String,
    /// Job kind (selects the queue).
    pub kind: String,
    /// The event that triggered it, if any.
    pub event_id: Option<String>,
    /// Input, JSON text.
    pub payload: String,
    /// Attempts before dead-lettering; stored on the row, which decides.
    pub max_attempts: u32,
    /// Not before (epoch ms): rule delays, schedule jitter.
    pub run_after: Option<i64>,
}

impl NewJob {
    /// The queue message that carries this job.
    pub fn message(&self) -> Message {
        Message {
            id: self.id.clone(),
            kind: self.kind.clone(),
            tenant_id: self.tenant_id.clone(),
            payload: self.payload.clone(),
        }
    }
}

impl From<JobRun> for NewJob {
    fn from(j: JobRun) -> Self {
        Self {
            id: j.id,
            tenant_id: j.tenant_id,
            kind: j.kind,
            event_id: j.event_id,
            payload: j.payload,
            max_attempts: j.max_attempts,
            run_after: j.run_after,
        }
    }
}

/// Why a producer could not create its jobs. Both mean "try again later";
/// the API answers 503.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The store failed: nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Records `jobs` as `pending` inside the caller's transaction. An id that
/// exists already is left alone, which is what makes deterministic ids
/// idempotent.
pub async fn insert_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[NewJob],
    now: i64,
) -> Result<(), sqlx::Error> {
    crate::store::insert_job_rows(tx, jobs, now).await
}

/// Pushes each job now, or at its `run_after` when that is in the future.
/// The only place job messages go onto a queue.
async fn push(queue: &dyn Queue, jobs: &[NewJob]) -> Result<(), QueueError> {
    let now = now_ms();
    let (later, due): (Vec<&NewJob>, Vec<&NewJob>) = jobs.iter().partition(|j| j.run_after.is_some_and(|t| t > now));
    if !due.is_empty() {
        let messages: Vec<Message> = due.iter().map(|j| j.message()).collect();
        queue.push(&messages).await?;
    }
    for j in later {
        queue
            .push_delayed(std::slice::from_ref(&j.message()), j.run_after.unwrap_or(now))
            .await?;
    }
    Ok(())
}

/// Queues jobs already recorded as `pending` (by [`insert_jobs`] in their
/// creator's transaction): claims them (`pending` → `queued`, a conditional
/// update), then pushes the ones it claimed. A job the dispatcher claimed
/// first is its to push, so no job is pushed twice. If the queue is down
/// the error is returned and the jobs go back to `pending` for the
/// dispatcher, so callers only log it — what was recorded is never lost.
pub async fn enqueue_recorded(store: &Store, queue: &dyn Queue, jobs: &[NewJob]) -> Result<(), EnqueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let claimed: std::collections::HashSet<String> = store.claim(&ids).await?.into_iter().collect();
    let mine: Vec<NewJob> = jobs.iter().filter(|j| claimed.contains(&j.id)).cloned().collect();
    if let Err(e) = push(queue, &mine).await {
        let ids: Vec<String> = mine.into_iter().map(|j| j.id).collect();
        if let Err(undo) = store.unclaim(&ids).await {
            tracing::error!(error = %undo, count = ids.len(), "cannot hand unpushed jobs back to the dispatcher; `kairos jobs requeue --state queued` pushes them");
        }
        return Err(e.into());
    }
    Ok(())
}

/// Everything [`accept_events`] needs to turn events into jobs.
#[derive(Clone, Copy)]
pub struct Producer<'a> {
    /// The store.
    pub store: &'a Store,
    /// The queue.
    pub queue: &'a Arc<dyn Queue>,
    /// Which events trigger which kinds.
    pub rules: &'a Rules,
    /// Per-kind policies (attempts recorded on each job).
    pub policies: &'a JobPolicies,
}

/// What happened to one accepted event.
pub type EventOutcome = IngestOutcome;

/// Records validated `events` of `tenant_id` with the jobs the rules give
/// them, then queues the new jobs. Replayed event ids are reported as
/// duplicates with their original jobs and trigger nothing.
///
/// Concurrent calls are committed together (group commit, see
/// [`group`]): one transaction stores their events and their jobs —
/// already `queued`, claimed by this producer, so the dispatcher never
/// pushes them as well — and one push queues the jobs; each call returns
/// after its own commit and push.
///
/// If the push fails, the ingest is reverted and the error returned: the
/// caller's 503 then means nothing was recorded, and the client's retry is
/// not taken for a duplicate. (If even the revert fails, the jobs are
/// handed back to the dispatcher as `pending`.)
pub async fn accept_events(
    p: Producer<'_>,
    tenant_id: &str,
    events: Vec<Event>,
) -> Result<Vec<EventOutcome>, EnqueueError> {
    let now = now_ms();
    let batch: Vec<StoredEvent> = events
        .into_iter()
        .map(|event| plan_event(&p, tenant_id, event, now))
        .collect::<Result<_, _>>()?;
    group::ingest_and_push(p.store, p.queue.clone(), tenant_id, batch).await
}

/// Undoes an ingest whose jobs could not be pushed. If that fails too,
/// the jobs go back to `pending`, so the dispatcher queues them.
async fn revert(store: &Store, tenant_id: &str, batch: &[StoredEvent], outcomes: &[IngestOutcome], jobs: &[NewJob]) {
    let new_events: Vec<String> = batch
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, IngestOutcome::Accepted { .. }))
        .map(|(item, _)| item.event.id.clone())
        .collect();
    let job_ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    if let Err(e) = store.revert_ingest(tenant_id, &new_events, &job_ids).await {
        tracing::error!(error = %e, "revert failed; handing the jobs to the dispatcher");
        if let Err(e) = store.unclaim(&job_ids).await {
            tracing::error!(error = %e, count = job_ids.len(), "cannot hand unpushed jobs back to the dispatcher; `kairos jobs requeue --state queued` pushes them");
        }
    }
}

fn plan_event(p: &Producer<'_>, tenant_id: &str, event: Event, now: i64) -> Result<StoredEvent, StoreError> {
    let payload = serde_json::to_string(&event)
        .map_err(|e| StoreError::Conflict(format!("event {} cannot be serialized: {e}", event.id)))?;
    let jobs = p
        .rules
        .triggers_for(&event)
        .into_iter()
        .map(|t| PlannedJob {
            debounce: t.debounce.map(|(rule, key, window)| Debounce {
                rule,
                key,
                window_ms: millis(window),
            }),
            job: NewJob {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: tenant_id.to_owned(),
                max_attempts: p.policies.get(&t.kind).max_attempts,
                kind: t.kind,
                event_id: Some(event.id.clone()),
                payload: payload.clone(),
                run_after: t.delay.map(|d| now + millis(d)),
            },
        })
        .collect();
    Ok(StoredEvent { event, jobs })
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// One dispatch round: claims up to `limit` jobs still `pending` since
/// before `cutoff_ms` (their producer died after commit, or the queue was
/// down) and queues them. The claim is a conditional UPDATE, so concurrent
/// dispatchers take disjoint sets; if the push fails the claim is undone.
/// Returns how many were queued.
pub async fn dispatch_pending(
    store: &Store,
    queue: &dyn Queue,
    cutoff_ms: i64,
    limit: u32,
) -> Result<usize, EnqueueError> {
    let jobs: Vec<NewJob> = store
        .claim_pending(cutoff_ms, limit)
        .await?
        .into_iter()
        .map(NewJob::from)
        .collect();
    if jobs.is_empty() {
        return Ok(0);
    }
    if let Err(e) = push(queue, &jobs).await {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        store.unclaim(&ids).await?;
        return Err(e.into());
    }
    Ok(jobs.len())
}

/// Re-queues a dead job with `extra_attempts` more attempts recorded on its
/// row (its history and attempt count are kept). If the queue is down the
/// job is left `pending` for the dispatcher and the error says so.
pub async fn retry_dead(
    store: &Store,
    queue: &dyn Queue,
    id: &str,
    extra_attempts: u32,
) -> Result<JobRun, EnqueueError> {
    let job = store.requeue_dead(id, extra_attempts).await?;
    let new = NewJob::from(job.clone());
    if let Err(e) = push(queue, std::slice::from_ref(&new)).await {
        store.unclaim(std::slice::from_ref(&job.id)).await?;
        return Err(e.into());
    }
    Ok(job)
}

/// Which stored jobs [`requeue`] pushes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequeueFilter {
    /// Only jobs in these states (`queued`, `retrying`; `pending` ones are
    /// the dispatcher's and are marked `queued` once pushed).
    pub states: Vec<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs queued (or, never queued, created) before this (epoch ms).
    pub before_ms: i64,
}

/// Pages of re-queued jobs; a full page is followed at once by the next.
const REQUEUE_PAGE: u32 = 1000;

/// Pushes again every stored job matching `filter` (in pages, in id
/// order) and returns how many. A job that is on the queue as well is then
/// delivered twice; the store refuses to start it once it has finished,
/// so the second delivery is acknowledged, not re-run.
pub async fn requeue(store: &Store, queue: &dyn Queue, filter: &RequeueFilter) -> Result<u64, EnqueueError> {
    if let Some(bad) = filter
        .states
        .iter()
        .find(|s| !matches!(s, JobState::Pending | JobState::Queued | JobState::Retrying))
    {
        return Err(StoreError::Conflict(format!(
            "jobs that are {bad} cannot be re-queued (only pending, queued or retrying)"
        ))
        .into());
    }
    let mut after = String::new();
    let mut total = 0u64;
    loop {
        let page = store
            .jobs_to_requeue(
                &filter.states,
                filter.kind.as_deref(),
                filter.before_ms,
                &after,
                REQUEUE_PAGE,
            )
            .await?;
        let Some(last) = page.last() else {
            return Ok(total);
        };
        after = last.id.clone();
        let full = page.len() as u32 >= REQUEUE_PAGE;
        let pending: Vec<String> = page
            .iter()
            .filter(|j| j.state == JobState::Pending)
            .map(|j| j.id.clone())
            .collect();
        // Pending jobs are claimed first: one the dispatcher took is its
        // to push.
        let claimed: std::collections::HashSet<String> = if pending.is_empty() {
            Default::default()
        } else {
            store.claim(&pending).await?.into_iter().collect()
        };
        let jobs: Vec<NewJob> = page
            .into_iter()
            .filter(|j| j.state != JobState::Pending || claimed.contains(&j.id))
            .map(NewJob::from)
            .collect();
        push(queue, &jobs).await?;
        total += jobs.len() as u64;
        if !full {
            return Ok(total);
        }
    }
}

/// The store's name for the queue epoch a reconciler last saw.
const EPOCH_META: &str = "queue_epoch";
/// The store's name for when the queue was last found without its data
/// (epoch ms), kept while jobs `running` from before then remain.
const LOST_AT_META: &str = "queue_lost_at";
/// How long a reconciler's claim to re-queue after a loss lasts: if it dies
/// half-way, another takes over once the claim expires.
const RECOVERY_CLAIM: std::time::Duration = std::time::Duration::from_secs(120);

/// What one [`reconcile`] round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reconciled {
    /// The queue had lost its data (its epoch marker was gone).
    pub lost: bool,
    /// Jobs pushed again.
    pub requeued: u64,
    /// Jobs `running` when the queue lost its data, whose worker recorded
    /// no outcome within their grace (it died): handed back to the
    /// dispatcher.
    pub released: u64,
}

/// One reconciliation of the queue with the store — safe with any number of
/// schedulers running it at once.
///
/// The queue carries an epoch marker that lives and dies with its data (a
/// Redis key). The store remembers the last epoch seen. A marker that is
/// missing while the store remembers one means the queue lost its data:
/// the one reconciler that wins the claim on a new marker pushes again
/// every job the store holds `queued` or `retrying` (a `retrying` job's
/// backoff wait is cut short), then makes the marker permanent. With no
/// remembered epoch (a fresh deployment) the marker is just set. Nothing is
/// pushed while the marker is there, so jobs genuinely on the queue are
/// never pushed twice in normal operation.
///
/// Jobs `running` at the loss lost their lease with it: no pending entry
/// is left to expire if their worker dies. Their worker may well be alive,
/// though, and will record the outcome, so they are not pushed at once:
/// one still `running` `grace(kind)` after its start (the kind's timeout
/// plus the lease — a live worker has recorded an outcome by then, the
/// timeout ends every attempt) is handed back to the dispatcher
/// (`pending`), which queues it on its next round.
pub async fn reconcile(
    store: &Store,
    queue: &dyn Queue,
    grace: &(dyn Fn(&str) -> std::time::Duration + Sync),
) -> Result<Reconciled, EnqueueError> {
    let mut round = match queue.epoch().await? {
        // Another reconciler is re-queueing after a loss.
        Some(current) if current.starts_with("recovering:") => return Ok(Reconciled::default()),
        Some(current) => {
            if store.meta(EPOCH_META).await?.as_deref() != Some(current.as_str()) {
                store.set_meta(EPOCH_META, &current).await?;
            }
            Reconciled::default()
        }
        None => {
            let remembered = store.meta(EPOCH_META).await?;
            let epoch = uuid::Uuid::now_v7().to_string();
            let claim = format!("recovering:{epoch}");
            if !queue.claim_epoch(&claim, Some(RECOVERY_CLAIM)).await? {
                return Ok(Reconciled::default());
            }
            let lost = remembered.is_some();
            let requeued = if lost {
                tracing::warn!("the queue lost its data (its epoch marker is gone); re-queueing from the store");
                // Before the re-push: a reconciler dying half-way leaves
                // the running jobs' recovery recorded all the same.
                store.set_meta(LOST_AT_META, &now_ms().to_string()).await?;
                let filter = RequeueFilter {
                    states: vec![JobState::Queued, JobState::Retrying],
                    kind: None,
                    before_ms: i64::MAX,
                };
                requeue(store, queue, &filter).await?
            } else {
                0
            };
            store.set_meta(EPOCH_META, &epoch).await?;
            if !queue.confirm_epoch(&claim, &epoch).await? {
                tracing::warn!("queue recovery outlived its claim; another reconciler may have re-queued as well");
            }
            if lost {
                tracing::warn!(count = requeued, "re-queued jobs the queue had lost");
            }
            Reconciled {
                lost,
                requeued,
                released: 0,
            }
        }
    };
    round.released = release_lost_running(store, grace).await?;
    Ok(round)
}

/// The running half of [`reconcile`]: jobs `running` since before the last
/// loss whose grace is over go back to `pending`. Once none is left from
/// before the loss, the loss is forgotten.
async fn release_lost_running(
    store: &Store,
    grace: &(dyn Fn(&str) -> std::time::Duration + Sync),
) -> Result<u64, EnqueueError> {
    let Some(lost_at) = store.meta(LOST_AT_META).await?.and_then(|v| v.parse::<i64>().ok()) else {
        return Ok(0);
    };
    let kinds = store.running_started_before(lost_at).await?;
    if kinds.is_empty() {
        store.delete_meta(LOST_AT_META).await?;
        return Ok(0);
    }
    let now = now_ms();
    let mut released = 0;
    for (kind, oldest) in kinds {
        let grace_ms = i64::try_from(grace(&kind).as_millis()).unwrap_or(i64::MAX);
        let cutoff = lost_at.min(now.saturating_sub(grace_ms));
        if oldest >= cutoff {
            continue;
        }
        let ids = store.release_running_started_before(&kind, cutoff).await?;
        if !ids.is_empty() {
            tracing::warn!(
                kind,
                count = ids.len(),
                "jobs running when the queue lost its data recorded no outcome within their timeout; re-queueing them"
            );
        }
        released += ids.len() as u64;
    }
    Ok(released)
}
