//! Records attempt outcomes in the store, then settles them on the queue.
//!
//! Order matters: the store first, the queue second. A crash in between
//! re-delivers a job whose outcome is already recorded; the store then
//! refuses to start it again and the consumer just acknowledges it.
//! Outcomes are taken in batches (whatever has arrived), so under load one
//! transaction and one pipelined acknowledgement cover many jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use kairos_core::config::JobPolicy;
use kairos_core::store::Finished;
use kairos_core::Delivery;
use kairos_jobs::{JobError, JobOutput};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{backoff, Shared};

const MAX_BATCH: usize = 512;
/// Store write attempts per batch once shutdown has begun.
const SHUTDOWN_TRIES: u32 = 5;

/// The end of one attempt.
pub(crate) struct Outcome {
    pub delivery: Delivery,
    pub attempt: u32,
    pub elapsed: Duration,
    pub result: Result<JobOutput, JobError>,
    pub policy: JobPolicy,
}

enum Settle {
    Ack,
    Retry(Duration),
}

pub(crate) async fn run(shared: Shared, mut rx: mpsc::Receiver<Outcome>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        settle(&shared, std::mem::take(&mut batch), &shutdown).await;
    }
}

async fn settle(shared: &Shared, batch: Vec<Outcome>, shutdown: &CancellationToken) {
    let mut records = Vec::with_capacity(batch.len());
    let mut actions = Vec::with_capacity(batch.len());
    for o in &batch {
        let id = o.delivery.message.id.clone();
        let kind = &o.delivery.message.kind;
        match &o.result {
            Ok(out) => {
                tracing::debug!(job = %id, kind, attempt = o.attempt, elapsed = ?o.elapsed, "job succeeded");
                records.push(Finished::Succeeded {
                    id,
                    result_ref: out.result_ref.clone(),
                });
                actions.push(Settle::Ack);
            }
            Err(err) => {
                let permanent = matches!(err, JobError::Permanent(_));
                if permanent || o.attempt >= o.policy.max_attempts {
                    tracing::error!(job = %id, kind, attempt = o.attempt, error = %err, "job dead-lettered");
                    records.push(Finished::Dead {
                        id,
                        error: err.to_string(),
                    });
                    actions.push(Settle::Ack);
                } else {
                    let delay = backoff::retry_delay(&o.policy, o.attempt);
                    tracing::warn!(job = %id, kind, attempt = o.attempt, error = %err, retry_in = ?delay, "job failed; will retry");
                    records.push(Finished::Retrying {
                        id,
                        error: err.to_string(),
                    });
                    actions.push(Settle::Retry(delay));
                }
            }
        }
    }
    // The store is the record ops rely on: keep trying. Leases protect the
    // jobs meanwhile (they are re-delivered if this process dies).
    // On shutdown, give up after a few tries rather than never exiting: the
    // jobs stay leased and are re-delivered (and re-run idempotently).
    let mut wait = Duration::from_millis(100);
    let mut tries = 0;
    while let Err(e) = shared.store.finish(&records).await {
        tries += 1;
        if shutdown.is_cancelled() && tries >= SHUTDOWN_TRIES {
            tracing::error!(error = %e, count = records.len(), "shutting down without recording these outcomes; the jobs will be re-delivered when their leases expire");
            return;
        }
        tracing::error!(error = %e, retry_in = ?wait, "cannot record job outcomes; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    let mut acks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (o, action) in batch.iter().zip(&actions) {
        match action {
            Settle::Ack => acks
                .entry(o.delivery.message.kind.as_str())
                .or_default()
                .push(o.delivery.tag.clone()),
            Settle::Retry(delay) => {
                if let Err(e) = shared.queue.retry(&o.delivery, *delay).await {
                    tracing::error!(job = %o.delivery.message.id, error = %e, "cannot schedule retry; the lease will expire and re-deliver it");
                }
            }
        }
    }
    for (kind, tags) in acks {
        if let Err(e) = shared.queue.ack(kind, &tags).await {
            tracing::error!(kind, count = tags.len(), error = %e, "cannot acknowledge; the jobs will be re-delivered and skipped as finished");
        }
    }
}
