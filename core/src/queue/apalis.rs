//! Kairos queues as apalis 1.0 backends.
//!
//! The product brief asks for queues "behind apalis's backend interface".
//! Kairos keeps its own [`Queue`] trait and backends (ARCHITECTURE.md says
//! why); this module is the bridge the other way round: [`ApalisQueue`]
//! wraps any `Arc<dyn Queue>` and implements apalis-core 1.0.0's
//! [`Backend`] + [`BackendConfig`], so an apalis `Worker` (built with
//! `WorkerBuilder::new(..).backend(ApalisQueue::new(..)).build(handler)`)
//! consumes one Kairos job kind from Redis Streams or SQLite unchanged.
//!
//! How the two models meet:
//! - **Fetching.** One [`Queue::fetch`] of up to `batch` deliveries per
//!   round trip, buffered; `poll_next` hands them out one by one and starts
//!   the next fetch only when the buffer is empty. The fetch future is
//!   polled from `poll_next` with the worker's waker; when nothing is ready
//!   the backend itself waits up to `queue.fetch_wait` (Redis `BLOCK`,
//!   SQLite `Notify`), so an idle worker costs one round trip per
//!   `fetch_wait`, never a busy loop.
//! - **Tasks.** Each [`Delivery`] becomes a `Task<String>`: the args are the
//!   job payload as the raw JSON text (the queue keeps payloads as text and
//!   never parses them; handlers parse into their own type), the [`TaskId`]
//!   is the Kairos job id, and the whole [`Delivery`] (tenant, kind, tag) is
//!   in the task's data, so a handler can take `Data<Delivery>`.
//! - **Outcomes.** The backend's middleware ([`BackendConfig::Layer`]) is
//!   apalis's own [`AcknowledgeLayer`] with a [`RecordOutcome`] acknowledger:
//!   it sees every task's final result (outside any user middleware such as
//!   retries) and records "ack" or "retry after d". The backend settles the
//!   recorded outcomes in batches from `poll_ready` (one [`Queue::ack`] for
//!   all successes, one [`Queue::retry`] per failure) and flushes the rest
//!   in `poll_close`, the way apalis's own persisted backends batch their
//!   task events.
//! - **Shutdown.** `poll_close` lets an in-flight fetch finish (at most
//!   `fetch_wait`), gives every buffered, not yet started delivery back with
//!   [`Queue::release`], then settles the outstanding outcomes.
//! - **Errors.** A failed fetch, ack, retry or release is logged and tried
//!   again after a backoff (100 ms doubling to 5 s), as Kairos's own worker
//!   does; it is not returned to apalis, for which any backend error ends
//!   the worker's run (dropping the tasks in flight). Only `poll_close`
//!   gives up, after 3 failed attempts.
//!
//! Limits (see also ARCHITECTURE.md): delivery is at least once. A task's
//! outcome is settled on the queue shortly *after* apalis reports the task
//! finished, so a crash in between re-delivers it when its lease expires.
//! The lease is fixed per backend (`lease`); nothing extends it while a
//! long task runs. Attempts are not counted on the queue (Kairos counts
//! them in the store), so a job that always fails is retried forever unless
//! the handler returns [`AbortError`]. Do not enable apalis-core's
//! `task-context` feature: with it apalis panics when two deliveries with
//! the same job id are in flight in one worker, which Kairos's lease
//! re-delivery can produce.

use std::collections::VecDeque;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::task::{ExecutionContext, Task};
use apalis_core::worker::context::WorkerContext;
use apalis_core::worker::ext::ack::{Acknowledge, AcknowledgeLayer};
use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Delivery, Queue, QueueError};

/// Why the adapter failed. Queue errors while running are logged and
/// retried with backoff (Kairos's rule for workers), not returned: apalis
/// treats a backend error as fatal to the worker's run. Only `poll_close`
/// returns one, after 3 failed attempts; the jobs not
/// settled then come back when their lease expires. [`MissingDelivery`]
/// is a task error (the task's result, not the worker's).
///
/// [`MissingDelivery`]: ApalisQueueError::MissingDelivery
#[derive(Debug, thiserror::Error)]
pub enum ApalisQueueError {
    /// [`Queue::fetch`] failed.
    #[error("fetching `{kind}` jobs failed: {source}")]
    Fetch {
        /// Job kind being consumed.
        kind: String,
        /// The queue's error.
        #[source]
        source: QueueError,
    },
    /// [`Queue::ack`] of a batch of finished jobs failed.
    #[error("acknowledging {count} `{kind}` jobs failed: {source}")]
    Ack {
        /// Job kind being consumed.
        kind: String,
        /// How many jobs were in the failed batch.
        count: usize,
        /// The queue's error.
        #[source]
        source: QueueError,
    },
    /// [`Queue::retry`] of a failed job failed.
    #[error("scheduling a retry of job {job_id} failed: {source}")]
    Retry {
        /// Kairos job id.
        job_id: String,
        /// The queue's error.
        #[source]
        source: QueueError,
    },
    /// [`Queue::release`] of buffered jobs at shutdown failed.
    #[error("releasing {count} buffered `{kind}` jobs failed: {source}")]
    Release {
        /// Job kind being consumed.
        kind: String,
        /// How many jobs were given back.
        count: usize,
        /// The queue's error.
        #[source]
        source: QueueError,
    },
    /// A task reached the acknowledger without the [`Delivery`] this backend
    /// put in its data (a middleware rebuilt the task's context). It cannot
    /// be settled; it is left to its lease and re-delivered.
    #[error("task {task_id} has no Kairos delivery in its data; left to its lease")]
    MissingDelivery {
        /// The apalis task id, if any.
        task_id: String,
    },
}

/// Settings of one [`ApalisQueue`]: which kind it consumes, as whom, and how.
/// It is the backend's [`BackendConfig::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApalisQueueConfig {
    /// Job kind (one Kairos queue) this backend consumes.
    pub kind: String,
    /// Consumer name passed to [`Queue::fetch`] (the Redis consumer in the
    /// group); unique per worker so leases are attributed correctly.
    pub consumer: String,
    /// Lease taken on each fetched job: an unsettled job is re-delivered
    /// after it. Must exceed the longest task plus the settle delay.
    pub lease: Duration,
    /// Most jobs fetched per round trip (at least 1).
    pub batch: usize,
    /// Delay before a failed job is delivered again, unless the handler
    /// returned apalis's [`RetryAfterError`] with its own duration.
    pub retry_delay: Duration,
}

impl ApalisQueueConfig {
    /// Settings for consuming `kind` as `consumer`, with a 60 s lease,
    /// batches of 32 and a 5 s retry delay.
    pub fn new(kind: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            consumer: consumer.into(),
            lease: Duration::from_secs(60),
            batch: 32,
            retry_delay: Duration::from_secs(5),
        }
    }

    /// Sets [`lease`](Self::lease).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`batch`](Self::batch) (0 is taken as 1).
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Sets [`retry_delay`](Self::retry_delay).
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
}

/// What to do with a finished delivery on the Kairos queue.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    /// Remove it (success, or aborted by the handler).
    Ack(Delivery),
    /// Re-enqueue it after the delay (failure).
    Retry(Delivery, Duration),
}

/// Outcomes recorded by the middleware, settled by the backend.
type Outcomes = Arc<Mutex<Vec<Settle>>>;

fn take_outcomes(outcomes: &Outcomes) -> Vec<Settle> {
    std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Queue writes still to do. A failed settle hands back only what it had
/// not done yet, so nothing is applied twice (a second `release` would
/// duplicate a Redis entry).
#[derive(Debug, Default)]
struct Work {
    acks: Vec<Delivery>,
    retries: VecDeque<(Delivery, Duration)>,
    release: Vec<Delivery>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.retries.is_empty() && self.release.is_empty()
    }

    fn add(&mut self, outcomes: Vec<Settle>) {
        for outcome in outcomes {
            match outcome {
                Settle::Ack(d) => self.acks.push(d),
                Settle::Retry(d, delay) => self.retries.push_back((d, delay)),
            }
        }
    }
}

/// First wait after a failed queue call; doubles per consecutive failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Failed settle attempts `poll_close` makes before giving up (the jobs are
/// then re-delivered when their lease expires).
const CLOSE_ATTEMPTS: u32 = 3;

fn backoff(failures: u32) -> Option<Duration> {
    (failures > 0).then(|| {
        BACKOFF_FIRST
            .saturating_mul(1 << failures.saturating_sub(1).min(8))
            .min(BACKOFF_MAX)
    })
}

type FetchFuture = BoxFuture<'static, Result<Vec<Delivery>, ApalisQueueError>>;
type SettleFuture = BoxFuture<'static, Result<(), (ApalisQueueError, Work)>>;

/// The acknowledger the backend installs (inside apalis's
/// [`AcknowledgeLayer`]): it maps each task's result to a queue outcome and
/// records it for the backend to settle in batches.
///
/// `Ok` → ack. [`AbortError`] → ack too: apalis means "never retry", and
/// the queue has no dead-letter list of its own (Kairos's worker records
/// dead letters in the store; an apalis handler must do so itself before
/// aborting). [`RetryAfterError`] → retry after its duration. Any other
/// error (including apalis's `DeferredError`) → retry after
/// [`ApalisQueueConfig::retry_delay`].
#[derive(Clone)]
pub struct RecordOutcome {
    outcomes: Outcomes,
    retry_delay: Duration,
}

impl fmt::Debug for RecordOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOutcome")
            .field("retry_delay", &self.retry_delay)
            .finish_non_exhaustive()
    }
}

impl<Res> Acknowledge<Res> for RecordOutcome {
    type Error = ApalisQueueError;
    type Future = Ready<Result<(), ApalisQueueError>>;

    fn ack(&mut self, res: &Result<Res, BoxDynError>, ctx: &ExecutionContext) -> Self::Future {
        let Some(delivery) = ctx.data().get::<Delivery>().cloned() else {
            return ready(Err(ApalisQueueError::MissingDelivery {
                task_id: ctx.task_id().map(ToString::to_string).unwrap_or_default(),
            }));
        };
        let settle = match res {
            Ok(_) => Settle::Ack(delivery),
            Err(e) if e.downcast_ref::<AbortError>().is_some() => Settle::Ack(delivery),
            Err(e) => {
                let delay = e
                    .downcast_ref::<RetryAfterError>()
                    .map_or(self.retry_delay, RetryAfterError::get_duration);
                Settle::Retry(delivery, delay)
            }
        };
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(settle);
        ready(Ok(()))
    }
}

/// A Kairos [`Queue`] (one job kind) as an apalis 1.0 backend. Tasks are
/// `Task<String>` (payload JSON text, id = Kairos job id, [`Delivery`] in
/// the task data); see the module documentation for the semantics.
pub struct ApalisQueue {
    queue: Arc<dyn Queue>,
    config: ApalisQueueConfig,
    /// Fetched deliveries not yet handed to the worker.
    buffer: VecDeque<Delivery>,
    /// The fetch in flight (after a backoff wait if the last one failed),
    /// polled from `poll_next` / `poll_close`.
    fetching: Option<FetchFuture>,
    fetch_failures: u32,
    /// Shared with the [`RecordOutcome`] middleware.
    outcomes: Outcomes,
    /// Acks/retries/releases in flight.
    settling: Option<SettleFuture>,
    /// Work a failed settle handed back, tried again after a backoff.
    carry: Work,
    settle_failures: u32,
    closing: bool,
}

impl fmt::Debug for ApalisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApalisQueue")
            .field("backend", &self.queue.backend())
            .field("config", &self.config)
            .field("buffered", &self.buffer.len())
            .field("fetching", &self.fetching.is_some())
            .field("settling", &self.settling.is_some())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl ApalisQueue {
    /// Wraps `queue` to consume `config.kind` as an apalis backend. Use one
    /// per worker: the backend owns its buffer and in-flight outcomes.
    pub fn new(queue: Arc<dyn Queue>, mut config: ApalisQueueConfig) -> Self {
        config.batch = config.batch.max(1);
        Self {
            queue,
            config,
            buffer: VecDeque::new(),
            fetching: None,
            fetch_failures: 0,
            outcomes: Arc::default(),
            settling: None,
            carry: Work::default(),
            settle_failures: 0,
            closing: false,
        }
    }

    fn start_fetch(&self, wait: Option<Duration>) -> FetchFuture {
        let queue = Arc::clone(&self.queue);
        let ApalisQueueConfig {
            kind,
            consumer,
            lease,
            batch,
            ..
        } = self.config.clone();
        async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            queue
                .fetch(&kind, &consumer, batch, lease)
                .await
                .map_err(|source| ApalisQueueError::Fetch { kind, source })
        }
        .boxed()
    }

    /// One ack for all successes, one retry per failure, one release for
    /// the buffered rest; on error, hands back what is not done.
    fn start_settle(&self, mut work: Work, wait: Option<Duration>) -> SettleFuture {
        let queue = Arc::clone(&self.queue);
        let kind = self.config.kind.clone();
        async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            if !work.acks.is_empty() {
                let tags: Vec<String> = work.acks.iter().map(|d| d.tag.clone()).collect();
                if let Err(source) = queue.ack(&kind, &tags).await {
                    let count = tags.len();
                    return Err((ApalisQueueError::Ack { kind, count, source }, work));
                }
                work.acks.clear();
            }
            while let Some((delivery, delay)) = work.retries.front() {
                if let Err(source) = queue.retry(delivery, *delay).await {
                    let job_id = delivery.message.id.clone();
                    return Err((ApalisQueueError::Retry { job_id, source }, work));
                }
                work.retries.pop_front();
            }
            if !work.release.is_empty() {
                if let Err(source) = queue.release(&work.release).await {
                    let count = work.release.len();
                    return Err((ApalisQueueError::Release { kind, count, source }, work));
                }
                work.release.clear();
            }
            Ok(())
        }
        .boxed()
    }

    /// Drives the settle in flight and starts the next one while work is
    /// waiting. `Pending`: a settle (or its backoff wait) is in flight and
    /// holds the waker. Errors are logged and retried with backoff; only
    /// while closing, after [`CLOSE_ATTEMPTS`] failures, is one returned.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApalisQueueError>> {
        loop {
            if let Some(fut) = self.settling.as_mut() {
                let res = futures::ready!(fut.poll_unpin(cx));
                self.settling = None;
                match res {
                    Ok(()) => self.settle_failures = 0,
                    Err((error, rest)) => {
                        self.settle_failures += 1;
                        self.carry = rest;
                        if self.closing && self.settle_failures >= CLOSE_ATTEMPTS {
                            return Poll::Ready(Err(error));
                        }
                        tracing::warn!(kind = %self.config.kind, error = %error, "apalis adapter: settling jobs failed; retrying");
                    }
                }
            }
            let mut work = std::mem::take(&mut self.carry);
            work.add(take_outcomes(&self.outcomes));
            if work.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.settling = Some(self.start_settle(work, backoff(self.settle_failures)));
        }
    }

    fn to_task(&self, delivery: Delivery) -> Task<String> {
        TaskBuilder::new(delivery.message.payload.clone())
            .task_id(TaskId::from_string(delivery.message.id.clone()))
            .queue(self.config.kind.as_str().into())
            .lock_by(Some(self.config.consumer.clone()))
            .data(delivery)
            .build()
    }
}

impl Backend for ApalisQueue {
    type Task = Task<String>;
    type Error = ApalisQueueError;

    /// Settles recorded outcomes. Always ready: a settle in flight does not
    /// hold back the next task (its future keeps the worker's waker and is
    /// driven on the next poll).
    fn poll_ready(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        match self.poll_settle(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(())),
        }
    }

    /// Hands out buffered deliveries; when the buffer is empty, drives one
    /// batched fetch (which itself waits up to `fetch_wait` for work). A
    /// failed fetch is logged and tried again after a backoff.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        let mut empty_fetches = 0;
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(self.to_task(delivery))));
            }
            let fut = match self.fetching.as_mut() {
                Some(fut) => fut,
                None if empty_fetches > 0 => {
                    // A fetch came back empty after its wait. Yield once
                    // (so the worker can settle outcomes and notice a stop)
                    // and start the next long poll when polled again.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => self.fetching.insert(self.start_fetch(None)),
            };
            let res = futures::ready!(fut.poll_unpin(cx));
            self.fetching = None;
            match res {
                Ok(batch) => {
                    self.fetch_failures = 0;
                    if batch.is_empty() {
                        empty_fetches += 1;
                    }
                    self.buffer.extend(batch);
                }
                Err(error) => {
                    self.fetch_failures += 1;
                    tracing::warn!(kind = %self.config.kind, error = %error, "apalis adapter: fetch failed; retrying");
                    self.fetching = Some(self.start_fetch(backoff(self.fetch_failures)));
                }
            }
        }
    }

    /// Finishes an in-flight fetch, gives back every buffered delivery
    /// ([`Queue::release`]: immediate re-delivery to another worker), then
    /// settles the outstanding outcomes. Gives up after `CLOSE_ATTEMPTS`
    /// failed attempts (the jobs come back when their lease expires).
    fn poll_close(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        if let Some(fut) = self.fetching.as_mut() {
            let res = futures::ready!(fut.poll_unpin(cx));
            self.fetching = None;
            match res {
                Ok(batch) => self.buffer.extend(batch),
                Err(error) => {
                    tracing::warn!(kind = %self.config.kind, error = %error, "apalis adapter: fetch failed while closing")
                }
            }
        }
        self.closing = true;
        self.carry.release.extend(self.buffer.drain(..));
        self.poll_settle(cx)
    }
}

impl BackendConfig for ApalisQueue {
    /// The job payload, JSON text as pushed (not parsed on the queue path).
    type Args = String;
    /// Kairos job ids are strings (UUIDs).
    type Id = String;
    /// Used as is: the payload is already the args, no apalis codec.
    type Kind = Ephemeral;
    type Config = ApalisQueueConfig;
    /// apalis's acknowledgement middleware, recording outcomes for this
    /// backend to settle.
    type Layer = AcknowledgeLayer<RecordOutcome>;

    fn config(&self) -> &Self::Config {
        &self.config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AcknowledgeLayer::new(RecordOutcome {
            outcomes: Arc::clone(&self.outcomes),
            retry_delay: self.config.retry_delay,
        })
    }
}
