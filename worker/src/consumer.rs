//! One kind's fetch loop: take as many jobs as there are free slots, check
//! that none has finished already, run each in its own task (a batched
//! kind's together).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kairos_core::config::JobPolicy;
use kairos_core::metrics::KindMetrics;
use kairos_core::{Delivery, QueueError, StoreError};
use kairos_jobs::{JobContext, JobError, JobOutput};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::completer::Outcome;
use crate::leases::Leases;
use crate::presence::Running;
use crate::Shared;

/// Why a consumer stopped; its supervisor restarts it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job kind `{0}` is not registered in this binary")]
    UnknownKind(String),
}

/// Jobs running right now, so shutdown can hand back the ones that outlive
/// the grace period.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashMap<String, (Delivery, AbortHandle)>>>);

impl InFlight {
    fn insert(&self, d: Delivery, h: AbortHandle) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.tag.clone(), (d, h));
    }

    fn remove(&self, tag: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(tag);
    }

    /// Aborts every running job and returns their deliveries.
    pub(crate) fn abort_all(&self) -> Vec<Delivery> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.drain()
            .map(|(_, (d, h))| {
                h.abort();
                d
            })
            .collect()
    }
}

pub(crate) async fn run(
    shared: Shared,
    kind: String,
    slots: Arc<Semaphore>,
    in_flight: InFlight,
    done: mpsc::Sender<Outcome>,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let job = shared
        .registry
        .get(&kind)
        .ok_or_else(|| ConsumerError::UnknownKind(kind.clone()))?;
    let policy = shared.config.policy(&kind);
    // Short, whatever the timeout: the lease task renews it while held.
    let lease = shared.config.queue.lease;
    let batch = shared.config.queue.fetch_batch;
    let metrics = shared.kind_metrics(&kind);
    loop {
        // A paused kind is not fetched; its jobs wait on the queue.
        if shared.paused.is_paused(&kind) {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                () = shared.paused.resumed(&kind) => {}
            }
            // The presence task is gone (shutting down) if still paused.
            if shared.paused.is_paused(&kind) {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(shared.config.worker.pause_poll) => continue,
                }
            }
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return Ok(()) },
        };
        let mut permits = vec![first];
        while permits.len() < batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Not raced against shutdown: a fetch cancelled half-way could leave
        // delivered entries behind. It waits at most `queue.fetch_wait`.
        let deliveries = shared.queue.fetch(&kind, &shared.id, permits.len(), lease).await?;
        if shutdown.is_cancelled() {
            shared.queue.release(&deliveries).await?;
            return Ok(());
        }
        if deliveries.is_empty() {
            continue;
        }
        // Paused while the fetch waited: hand them back unstarted, so a
        // pause holds within one poll whatever `fetch_wait` is.
        if shared.paused.is_paused(&kind) {
            shared.queue.release(&deliveries).await?;
            continue;
        }
        // A paused tenant's jobs are parked in the store, not run.
        let (held, deliveries): (Vec<Delivery>, Vec<Delivery>) = deliveries
            .into_iter()
            .partition(|d| shared.paused.tenant_paused(&d.message.tenant_id, &kind));
        if !held.is_empty() {
            park(&shared, &kind, held).await?;
            if deliveries.is_empty() {
                continue;
            }
        }
        shared.leases.hold(&kind, deliveries.iter().map(|d| &d.tag));
        let ids: Vec<String> = deliveries.iter().map(|d| d.message.id.clone()).collect();
        let started = match shared.store.startable(&ids).await {
            Ok(s) => s,
            Err(e) => {
                // Stop renewing first: if the release fails too, the leases
                // must expire for the jobs to come back.
                shared.leases.drop_tags(&kind, deliveries.iter().map(|d| &d.tag));
                shared.queue.release(&deliveries).await?;
                return Err(e.into());
            }
        };
        let now = kairos_core::time::now_ms();
        let mut attempts: HashMap<String, (u32, u32)> = started
            .into_iter()
            .map(|s| {
                // Every attempt's wait: since it was queued, or since its
                // retry (or `run_after`) came due — the completer records a
                // retry's due time on the row.
                let wait = s
                    .ready_at
                    .map(|ready| Duration::from_millis(u64::try_from(now - ready).unwrap_or(0)));
                metrics.started(wait);
                // Written with the outcome, or as `running` if it lasts.
                shared.unmarked.started(&s.id, s.attempt, now);
                (s.id, (s.attempt, s.max_attempts))
            })
            .collect();
        let mut stale = Vec::new();
        // A batched kind's jobs run together: one task, one attempt each.
        let mut together = Vec::new();
        for delivery in deliveries {
            let Some((attempt, max_attempts)) = attempts.remove(&delivery.message.id) else {
                stale.push(delivery.tag);
                continue;
            };
            let Some(permit) = permits.pop() else {
                // Cannot happen (fetch returns at most permits.len()), but a
                // backend bug must not run jobs beyond the concurrency limit.
                shared.leases.drop_tags(&kind, [&delivery.tag]);
                shared.unmarked.settled([delivery.message.id.as_str()]);
                shared.queue.release(std::slice::from_ref(&delivery)).await?;
                continue;
            };
            let ctx = JobContext {
                job_id: delivery.message.id.clone(),
                tenant_id: delivery.message.tenant_id.clone(),
                attempt,
                max_attempts,
                store: shared.store.clone(),
                queue: shared.queue.clone(),
            };
            if job.batched() {
                together.push((ctx, delivery, permit));
                continue;
            }
            spawn_attempt(
                job.clone(),
                ctx,
                delivery,
                policy.clone(),
                permit,
                Handoff {
                    in_flight: in_flight.clone(),
                    leases: shared.leases.clone(),
                    done: done.clone(),
                    running: shared.running.clone(),
                    metrics: metrics.clone(),
                },
            );
        }
        if !together.is_empty() {
            spawn_batch(
                job.clone(),
                together,
                policy.clone(),
                Handoff {
                    in_flight: in_flight.clone(),
                    leases: shared.leases.clone(),
                    done: done.clone(),
                    running: shared.running.clone(),
                    metrics: metrics.clone(),
                },
            );
        }
        if !stale.is_empty() {
            tracing::warn!(
                kind,
                count = stale.len(),
                "acknowledging deliveries of jobs already finished or unknown"
            );
            shared.leases.drop_tags(&kind, &stale);
            shared.queue.ack(&kind, &stale).await?;
        }
    }
}

/// Hands fetched jobs of a paused tenant back to the store (`pending`,
/// unstarted: the dispatcher queues them once the pause is lifted) and
/// acknowledges them on the queue — store first, as everywhere. A job the
/// store would not park (its producer has not marked it queued yet; a
/// duplicate of a running or finished job) goes back on the queue for one
/// pause poll instead, to be looked at again.
async fn park(shared: &Shared, kind: &str, held: Vec<Delivery>) -> Result<(), ConsumerError> {
    let ids: Vec<String> = held.iter().map(|d| d.message.id.clone()).collect();
    let parked: std::collections::HashSet<String> = shared.store.park_jobs(&ids).await?.into_iter().collect();
    let (done, again): (Vec<Delivery>, Vec<Delivery>) = held.into_iter().partition(|d| parked.contains(&d.message.id));
    if !done.is_empty() {
        tracing::debug!(kind, count = done.len(), "parked jobs of paused tenants");
        let tags: Vec<String> = done.into_iter().map(|d| d.tag).collect();
        shared.queue.ack(kind, &tags).await?;
    }
    for d in again {
        shared.queue.retry(&d, shared.config.worker.pause_poll).await?;
    }
    Ok(())
}

/// Where an attempt reports: the map shutdown aborts from, the leases kept
/// alive until the outcome is settled, and the completer.
struct Handoff {
    in_flight: InFlight,
    leases: Leases,
    done: mpsc::Sender<Outcome>,
    running: Running,
    metrics: KindMetrics,
}

fn spawn_attempt(
    job: Arc<dyn kairos_jobs::DynJob>,
    ctx: JobContext,
    delivery: Delivery,
    policy: JobPolicy,
    permit: OwnedSemaphorePermit,
    Handoff {
        in_flight,
        leases,
        done,
        running,
        metrics,
    }: Handoff,
) {
    let tag = delivery.tag.clone();
    let tracker = in_flight.clone();
    let d = delivery.clone();
    running.start();
    let handle = tokio::spawn(async move {
        // Counted down however the task ends (aborted at shutdown too).
        let _running = RunningGuard(running);
        let started = Instant::now();
        let started_at = kairos_core::time::now_ms();
        let attempt = ctx.attempt;
        let max_attempts = ctx.max_attempts;
        let result = execute(job, ctx, &delivery.message.payload, &policy).await;
        metrics.ran(started.elapsed());
        // Once the outcome is handed over, shutdown must not hand the job
        // back as well.
        in_flight.remove(&delivery.tag);
        let outcome = Outcome {
            delivery,
            attempt,
            max_attempts,
            started_at,
            elapsed: started.elapsed(),
            result,
            policy,
        };
        hand_over(&done, &leases, outcome).await;
        drop(permit);
    });
    tracker.insert(d, handle.abort_handle());
    if handle.is_finished() {
        tracker.remove(&tag);
    }
}

/// Gives an attempt's outcome to the completer. If the completer is gone
/// no one will settle it: stop renewing its lease so the job comes back.
async fn hand_over(done: &mpsc::Sender<Outcome>, leases: &Leases, outcome: Outcome) {
    if let Err(lost) = done.send(outcome).await {
        let d = &lost.0.delivery;
        leases.drop_tags(&d.message.kind, [&d.tag]);
        tracing::error!("completer gone; outcome dropped (the job's lease will expire and it will be re-run)");
    }
}

/// Runs a batched kind's fetched jobs together ([`kairos_jobs::Job::run_batch`]):
/// one task under the kind's timeout, one outcome per job for the
/// completer. A panic or the timeout fails every attempt of the batch.
fn spawn_batch(
    job: Arc<dyn kairos_jobs::DynJob>,
    items: Vec<(JobContext, Delivery, OwnedSemaphorePermit)>,
    policy: JobPolicy,
    Handoff {
        in_flight,
        leases,
        done,
        running,
        metrics,
    }: Handoff,
) {
    let tracker = in_flight.clone();
    let mut jobs = Vec::with_capacity(items.len());
    let mut deliveries = Vec::with_capacity(items.len());
    let mut permits = Vec::with_capacity(items.len());
    for (ctx, delivery, permit) in items {
        running.start();
        jobs.push((ctx, delivery.message.payload.clone()));
        deliveries.push(delivery);
        permits.push(permit);
    }
    let tracked = deliveries.clone();
    let handle = tokio::spawn(async move {
        let _running: Vec<RunningGuard> = (0..jobs.len()).map(|_| RunningGuard(running.clone())).collect();
        let started = Instant::now();
        let started_at = kairos_core::time::now_ms();
        let attempts: Vec<(u32, u32)> = jobs.iter().map(|(c, _)| (c.attempt, c.max_attempts)).collect();
        let results = execute_batch(job, jobs, &policy).await;
        let elapsed = started.elapsed();
        for ((delivery, result), (attempt, max_attempts)) in deliveries.into_iter().zip(results).zip(attempts) {
            metrics.ran(elapsed);
            in_flight.remove(&delivery.tag);
            let outcome = Outcome {
                delivery,
                attempt,
                max_attempts,
                started_at,
                elapsed,
                result,
                policy: policy.clone(),
            };
            hand_over(&done, &leases, outcome).await;
        }
        drop(permits);
    });
    for d in tracked {
        let tag = d.tag.clone();
        tracker.insert(d, handle.abort_handle());
        if handle.is_finished() {
            tracker.remove(&tag);
        }
    }
}

/// [`execute`] for a batch: its own task (a panic fails the batch's
/// attempts, not the consumer), the kind's timeout over the whole batch.
async fn execute_batch(
    job: Arc<dyn kairos_jobs::DynJob>,
    jobs: Vec<(JobContext, String)>,
    policy: &JobPolicy,
) -> Vec<Result<JobOutput, JobError>> {
    let n = jobs.len();
    let task = tokio::spawn(async move { job.run_batch(&jobs).await });
    let abort = task.abort_handle();
    let failed = |msg: String| -> Vec<Result<JobOutput, JobError>> {
        (0..n).map(|_| Err(JobError::Retryable(msg.clone()))).collect()
    };
    match tokio::time::timeout(policy.timeout, task).await {
        Ok(Ok(results)) if results.len() == n => results,
        Ok(Ok(results)) => failed(format!("batch returned {} results for {n} jobs", results.len())),
        Ok(Err(e)) if e.is_panic() => failed(format!("panicked: {}", panic_message(e))),
        Ok(Err(e)) => failed(format!("attempt aborted: {e}")),
        Err(_) => {
            abort.abort();
            failed(format!("timed out after {}", humantime_like(policy.timeout)))
        }
    }
}

/// Counts an attempt as running until dropped.
struct RunningGuard(Running);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Runs one attempt in a task of its own so that a panic is caught and
/// reported as a failed attempt, and the timeout really stops the work.
async fn execute(
    job: Arc<dyn kairos_jobs::DynJob>,
    ctx: JobContext,
    payload: &str,
    policy: &JobPolicy,
) -> Result<JobOutput, JobError> {
    let payload = payload.to_owned();
    let task = tokio::spawn(async move { job.run(&ctx, &payload).await });
    let abort = task.abort_handle();
    match tokio::time::timeout(policy.timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) if e.is_panic() => Err(JobError::Retryable(format!("panicked: {}", panic_message(e)))),
        Ok(Err(e)) => Err(JobError::Retryable(format!("attempt aborted: {e}"))),
        Err(_) => {
            abort.abort();
            Err(JobError::Retryable(format!(
                "timed out after {}",
                humantime_like(policy.timeout)
            )))
        }
    }
}

fn humantime_like(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic payload".into()),
        Err(e) => e.to_string(),
    }
}
