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
//! - [`enqueue_recorded`]: pushes recorded jobs and marks them `queued`;
//!   on a queue failure they stay `pending` for the dispatcher.
//! - [`accept_events`]: rules → jobs → one ingest transaction → push; a
//!   failed push reverts the ingest so the client's 503 means "nothing
//!   recorded".
//! - [`dispatch_pending`] and [`retry_dead`]: the recovery producers, on the
//!   same push path.

use crate::config::JobPolicies;
use crate::event::Event;
use crate::queue::{Message, Queue, QueueError};
use crate::rules::Rules;
use crate::store::{Debounce, IngestOutcome, JobRun, PlannedJob, StoredEvent};
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
/// creator's transaction) and marks them `queued`. If the queue is down the
/// error is returned and the jobs stay `pending`: the dispatcher queues
/// them later, so callers only log it — what was recorded is never lost.
pub async fn enqueue_recorded(store: &Store, queue: &dyn Queue, jobs: &[NewJob]) -> Result<(), QueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    push(queue, jobs).await?;
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    if let Err(e) = store.mark_queued(&ids).await {
        // The jobs are on the queue; a worker's start moves them on from
        // `pending` all the same, and the dispatcher only re-pushes rows
        // still pending after `dispatch_after`.
        tracing::warn!(error = %e, count = ids.len(), "could not mark queued jobs as queued");
    }
    Ok(())
}

/// Everything [`accept_events`] needs to turn events into jobs.
#[derive(Clone, Copy)]
pub struct Producer<'a> {
    /// The store.
    pub store: &'a Store,
    /// The queue.
    pub queue: &'a dyn Queue,
    /// Which events trigger which kinds.
    pub rules: &'a Rules,
    /// Per-kind policies (attempts recorded on each job).
    pub policies: &'a JobPolicies,
}

/// What happened to one accepted event.
pub type EventOutcome = IngestOutcome;

/// Records validated `events` of `tenant_id` with the jobs the rules give
/// them (one transaction), then queues the new jobs. Replayed event ids are
/// reported as duplicates with their original jobs and trigger nothing.
///
/// If the push fails, the ingest is reverted and the error returned: the
/// caller's 503 then means nothing was recorded, and the client's retry is
/// not taken for a duplicate. (If even the revert fails, the jobs stay
/// `pending` and the dispatcher queues them.)
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
    let outcomes = p.store.ingest(tenant_id, &batch).await?;

    let mut jobs = Vec::new();
    let mut new_events = Vec::new();
    for (item, outcome) in batch.into_iter().zip(&outcomes) {
        if let IngestOutcome::Accepted { job_ids } = outcome {
            new_events.push(item.event.id);
            // Debounced jobs whose window was taken are not in `job_ids`.
            jobs.extend(item.jobs.into_iter().map(|j| j.job).filter(|j| job_ids.contains(&j.id)));
        }
    }
    if let Err(e) = enqueue_recorded(p.store, p.queue, &jobs).await {
        tracing::error!(error = %e, tenant = tenant_id, "queue push failed; reverting ingest");
        let job_ids: Vec<String> = jobs.into_iter().map(|j| j.id).collect();
        if let Err(revert) = p.store.revert_ingest(tenant_id, &new_events, &job_ids).await {
            tracing::error!(error = %revert, "revert failed; the dispatcher will queue the pending jobs");
        }
        return Err(e.into());
    }
    Ok(outcomes)
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
