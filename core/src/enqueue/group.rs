//! Group commit at ingest: concurrent [`super::accept_events`] calls are
//! gathered into one store transaction and one queue push (as the
//! sentiment batcher gathers texts into one inference batch).
//!
//! One gathering task per store takes whatever requests are waiting when a
//! commit slot is free (up to [`MAX_EVENTS`] events), so under load one
//! transaction, one fsync and one push serve many requests, and an idle
//! request waits for nobody. Each request is answered only after its own
//! commit and push. A group whose transaction fails is re-run request by
//! request, so one bad request fails alone; a push that fails is retried
//! per request the same way, each failed request's ingest reverted.
//!
//! Slots: SQLite has one writer, so one group commits at a time; Postgres
//! runs up to half the pool's connections of groups at once (the rest
//! serve reads and the API's other writes).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::{push, EnqueueError, NewJob};
use crate::queue::Queue;
use crate::store::{Engine, IngestOutcome, StoredEvent};
use crate::Store;

/// Events gathered into one transaction at most (a request is never
/// split, so a group may exceed it by one request).
const MAX_EVENTS: usize = 2_000;
/// Requests waiting for a slot before producers wait to hand theirs in.
const CHANNEL: usize = 4_096;

/// One request's events, with where to answer.
struct Request {
    tenant_id: String,
    batch: Vec<StoredEvent>,
    queue: Arc<dyn Queue>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, EnqueueError>>,
}

/// The sending side of a store's gathering task.
#[derive(Debug)]
pub(crate) struct Handle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("tenant_id", &self.tenant_id)
            .field("events", &self.batch.len())
            .finish()
    }
}

impl Handle {
    fn spawn(store: &Store) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let slots = match store.engine() {
            Engine::Sqlite => 1,
            Engine::Postgres => (store.pool().options().get_max_connections() / 2).max(1) as usize,
        };
        tokio::spawn(gather(store.clone(), rx, slots));
        Self { tx }
    }
}

/// Records `batch` (jobs `queued`) and pushes its new jobs, in a group
/// transaction with whatever other requests are waiting.
pub(super) async fn ingest_and_push(
    store: &Store,
    queue: Arc<dyn Queue>,
    tenant_id: &str,
    batch: Vec<StoredEvent>,
) -> Result<Vec<IngestOutcome>, EnqueueError> {
    let handle = store.ingest_group.get_or_init(|| Handle::spawn(store));
    let (reply, answer) = oneshot::channel();
    let request = Request {
        tenant_id: tenant_id.to_owned(),
        batch,
        queue,
        reply,
    };
    match handle.tx.send(request).await {
        Ok(()) => answer.await.unwrap_or_else(|_| {
            Err(crate::StoreError::Conflict("the ingest was interrupted (the process is stopping)".into()).into())
        }),
        // The gathering task is gone (its runtime stopped while this store
        // lives on): commit this request alone.
        Err(mpsc::error::SendError(r)) => commit_alone(store, RequestParts::from(&r)).await,
    }
}

async fn gather(store: Store, mut rx: mpsc::Receiver<Request>, slots: usize) {
    let slots = Arc::new(Semaphore::new(slots));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut events = first.batch.len();
        let mut group = vec![first];
        while events < MAX_EVENTS {
            match rx.try_recv() {
                Ok(r) => {
                    events += r.batch.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(commit_group(store, group, permit));
    }
}

async fn commit_group(store: Store, group: Vec<Request>, _slot: OwnedSemaphorePermit) {
    if group.len() == 1 {
        for r in group {
            let answer = commit_alone(&store, RequestParts::from(&r)).await;
            let _ = r.reply.send(answer);
        }
        return;
    }
    let requests: Vec<(&str, &[StoredEvent])> = group.iter().map(|r| (r.tenant_id.as_str(), &r.batch[..])).collect();
    let intent = new_intent();
    let outcomes = match store.ingest_requests(&requests, Some(&intent)).await {
        Ok(o) => o,
        Err(e) => {
            // All at once, so a store that is down answers each request
            // within one timeout.
            tracing::warn!(error = %e, requests = group.len(), "group ingest failed; committing its requests one by one");
            let answers =
                futures::future::join_all(group.iter().map(|r| commit_alone(&store, RequestParts::from(r)))).await;
            for (r, answer) in group.into_iter().zip(answers) {
                let _ = r.reply.send(answer);
            }
            return;
        }
    };
    let jobs: Vec<Vec<NewJob>> = group
        .iter()
        .zip(&outcomes)
        .map(|(r, o)| new_jobs(&r.batch, o))
        .collect();
    let any_jobs = jobs.iter().any(|j| !j.is_empty());
    // One push for the group when its requests share the queue (there is
    // one per deployment; compared by address).
    let one_queue = group.iter().all(|r| Arc::ptr_eq(&r.queue, &group[0].queue));
    let pushed_all = one_queue && {
        let all: Vec<NewJob> = jobs.iter().flatten().cloned().collect();
        push(group[0].queue.as_ref(), &all).await.is_ok()
    };
    if pushed_all {
        for (r, o) in group.into_iter().zip(outcomes) {
            let _ = r.reply.send(Ok(o));
        }
        if any_jobs {
            push_done(&store, &intent).await;
        }
        return;
    }
    // Push each request's jobs on its own (all at once: a queue that is
    // down answers each in one timeout, not one after the other); those
    // that fail are reverted and answered with their own error. A job
    // that the failed group push did land is delivered twice (delivery is
    // at least once; the store refuses to start it once finished).
    let store = &store;
    let answers = futures::future::join_all(group.iter().zip(&outcomes).zip(&jobs).map(|((r, o), jobs)| async move {
        match push(r.queue.as_ref(), jobs).await {
            Ok(()) => Ok(()),
            Err(e) => {
                super::revert(store, &r.tenant_id, &r.batch, o, jobs).await;
                Err(e)
            }
        }
    }))
    .await;
    for ((r, o), answer) in group.into_iter().zip(outcomes).zip(answers) {
        let _ = r.reply.send(answer.map(|()| o).map_err(EnqueueError::from));
    }
    if any_jobs {
        push_done(store, &intent).await;
    }
}

/// A new push intent's id ([`Store::recover_unpushed`]).
fn new_intent() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Every job of the intent is pushed, reverted or handed back `pending`:
/// its row goes. Answered requests do not wait for this, and a failure
/// only costs a second message for jobs still queued when the dispatcher
/// finds the row past its deadline.
async fn push_done(store: &Store, intent: &str) {
    if let Err(e) = store.push_done(intent).await {
        tracing::warn!(error = %e, intent, "cannot clear a push intent; its queued jobs will be pushed again after push_deadline");
    }
}

/// What [`commit_alone`] needs of a request (borrowed or owned).
struct RequestParts<'a> {
    tenant_id: &'a str,
    batch: &'a [StoredEvent],
    queue: &'a dyn Queue,
}

impl<'a> From<&'a Request> for RequestParts<'a> {
    fn from(r: &'a Request) -> Self {
        Self {
            tenant_id: &r.tenant_id,
            batch: &r.batch,
            queue: r.queue.as_ref(),
        }
    }
}

/// One request in its own transaction, then its push (reverted if the
/// push fails).
async fn commit_alone(store: &Store, r: RequestParts<'_>) -> Result<Vec<IngestOutcome>, EnqueueError> {
    let intent = new_intent();
    let outcomes = store
        .ingest_requests(&[(r.tenant_id, r.batch)], Some(&intent))
        .await?
        .pop()
        .unwrap_or_default();
    let jobs = new_jobs(r.batch, &outcomes);
    let pushed = push(r.queue, &jobs).await;
    if let Err(e) = &pushed {
        tracing::error!(error = %e, tenant = r.tenant_id, "queue push failed; reverting ingest");
        super::revert(store, r.tenant_id, r.batch, &outcomes, &jobs).await;
    }
    if !jobs.is_empty() {
        push_done(store, &intent).await;
    }
    pushed?;
    Ok(outcomes)
}

/// The jobs a request's accepted events created (debounced ones whose
/// window was taken are not in the outcome's ids).
fn new_jobs(batch: &[StoredEvent], outcomes: &[IngestOutcome]) -> Vec<NewJob> {
    let mut jobs = Vec::new();
    for (item, outcome) in batch.iter().zip(outcomes) {
        if let IngestOutcome::Accepted { job_ids } = outcome {
            jobs.extend(
                item.jobs
                    .iter()
                    .map(|p| &p.job)
                    .filter(|j| job_ids.contains(&j.id))
                    .cloned(),
            );
        }
    }
    jobs
}
