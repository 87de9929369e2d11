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
use kairos_core::metrics::JobOutcome;
use kairos_core::store::{Finish, Finished};
use kairos_core::Delivery;
use kairos_jobs::{JobError, JobOutput};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{backoff, Shared};

/// Outcomes recorded per transaction. Bounded so that outcomes are
/// recorded promptly and few jobs are started-but-unrecorded at any time
/// (all re-run if the process dies).
const MAX_BATCH: usize = 128;
/// Store write attempts per batch once shutdown has begun.
const SHUTDOWN_TRIES: u32 = 5;

/// The end of one attempt.
pub(crate) struct Outcome {
    pub delivery: Delivery,
    pub attempt: u32,
    /// Attempts allowed, as stored on the job row when the attempt started.
    pub max_attempts: u32,
    /// When the attempt started (epoch ms).
    pub started_at: i64,
    pub elapsed: Duration,
    pub result: Result<JobOutput, JobError>,
    pub policy: JobPolicy,
}

/// What becomes of a job after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It succeeded: record and acknowledge.
    Succeeded,
    /// It failed and has attempts left: record, retry after the delay.
    Retry(Duration),
    /// It failed for good (permanent error, or its last attempt): dead.
    Dead,
}

/// Retry or dead-letter, decided by the **stored** job row's attempts
/// (`attempt` of `max_attempts`, as `Store::start` returned them) — never
/// by the kind's current config, so `kairos jobs retry` granting more
/// attempts, or a config change, is honoured. The policy only shapes the
/// backoff.
pub(crate) fn decide(
    result: &Result<JobOutput, JobError>,
    attempt: u32,
    max_attempts: u32,
    policy: &JobPolicy,
) -> Decision {
    match result {
        Ok(_) => Decision::Succeeded,
        Err(JobError::Permanent(_)) => Decision::Dead,
        Err(JobError::Retryable(_)) if attempt >= max_attempts => Decision::Dead,
        Err(JobError::Retryable(_)) => Decision::Retry(backoff::retry_delay(policy, attempt)),
    }
}

pub(crate) async fn run(shared: Shared, mut rx: mpsc::Receiver<Outcome>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        settle(&shared, std::mem::take(&mut batch), &shutdown).await;
    }
}

async fn settle(shared: &Shared, batch: Vec<Outcome>, shutdown: &CancellationToken) {
    let mut records = Vec::with_capacity(batch.len());
    let mut decisions = Vec::with_capacity(batch.len());
    for o in &batch {
        let id = &o.delivery.message.id;
        let kind = &o.delivery.message.kind;
        let decision = decide(&o.result, o.attempt, o.max_attempts, &o.policy);
        let finish = match (&o.result, decision) {
            (Ok(out), _) => {
                tracing::debug!(job = %id, kind, attempt = o.attempt, elapsed = ?o.elapsed, "job succeeded");
                Finish::Succeeded {
                    result_ref: out.result_ref.clone(),
                }
            }
            (Err(err), Decision::Retry(delay)) => {
                tracing::warn!(job = %id, kind, attempt = o.attempt, max_attempts = o.max_attempts, error = %err, retry_in = ?delay, "job failed; will retry");
                Finish::Retrying {
                    error: err.to_string(),
                    retry_at: kairos_core::time::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
                }
            }
            (Err(err), _) => {
                tracing::error!(job = %id, kind, attempt = o.attempt, max_attempts = o.max_attempts, error = %err, "job dead-lettered");
                Finish::Dead { error: err.to_string() }
            }
        };
        records.push(Finished {
            id: id.clone(),
            attempt: o.attempt,
            worker: shared.id.clone(),
            started_at: o.started_at,
            finish,
        });
        decisions.push(decision);
    }
    // The store is the record ops rely on: keep trying. Leases protect the
    // jobs meanwhile (they are re-delivered if this process dies).
    // On shutdown, give up after a few tries rather than never exiting: the
    // jobs stay leased and are re-delivered (and re-run idempotently).
    // Their outcome write records their start: no `running` write now.
    shared.unmarked.settled(records.iter().map(|r| r.id.as_str()));
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
    for (o, decision) in batch.iter().zip(&decisions) {
        let outcome = match decision {
            Decision::Succeeded => JobOutcome::Succeeded,
            Decision::Retry(_) => JobOutcome::Retried,
            Decision::Dead => JobOutcome::Dead,
        };
        match shared.metrics.get(o.delivery.message.kind.as_str()) {
            Some(m) => m.settled(outcome),
            None => shared.kind_metrics(&o.delivery.message.kind).settled(outcome),
        }
    }
    let mut acks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (o, decision) in batch.iter().zip(&decisions) {
        match decision {
            Decision::Succeeded | Decision::Dead => acks
                .entry(o.delivery.message.kind.as_str())
                .or_default()
                .push(o.delivery.tag.clone()),
            Decision::Retry(delay) => {
                if let Err(e) = shared.queue.retry(&o.delivery, *delay).await {
                    tracing::error!(job = %o.delivery.message.id, error = %e, "cannot schedule retry; the lease will expire and re-deliver it");
                }
                shared.leases.drop_tags(&o.delivery.message.kind, [&o.delivery.tag]);
            }
        }
    }
    for (kind, tags) in acks {
        if let Err(e) = shared.queue.ack(kind, &tags).await {
            tracing::error!(kind, count = tags.len(), error = %e, "cannot acknowledge; the jobs will be re-delivered and skipped as finished");
        }
        // Acknowledged or not, stop renewing: an unacknowledged delivery
        // must expire so it is re-delivered and skipped as finished.
        shared.leases.drop_tags(kind, &tags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> JobPolicy {
        JobPolicy {
            max_attempts: 3,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(100),
            ..JobPolicy::default()
        }
    }

    fn retryable() -> Result<JobOutput, JobError> {
        Err(JobError::Retryable("down".into()))
    }

    #[test]
    fn success_is_recorded_whatever_the_attempt() {
        assert_eq!(decide(&Ok(JobOutput::default()), 9, 1, &policy()), Decision::Succeeded);
    }

    #[test]
    fn a_retryable_failure_retries_until_the_stored_limit() {
        assert!(matches!(decide(&retryable(), 1, 3, &policy()), Decision::Retry(_)));
        assert!(matches!(decide(&retryable(), 2, 3, &policy()), Decision::Retry(_)));
        assert_eq!(decide(&retryable(), 3, 3, &policy()), Decision::Dead);
    }

    #[test]
    fn the_stored_row_wins_over_the_config_policy() {
        // `jobs retry` granted 2 more attempts after 3: the row says 5.
        assert!(matches!(decide(&retryable(), 4, 5, &policy()), Decision::Retry(_)));
        assert_eq!(decide(&retryable(), 5, 5, &policy()), Decision::Dead);
        // A config that allows more does not keep a job whose row is spent.
        let generous = JobPolicy {
            max_attempts: 10,
            ..policy()
        };
        assert_eq!(decide(&retryable(), 2, 2, &generous), Decision::Dead);
    }

    #[test]
    fn a_permanent_failure_is_dead_at_once() {
        let err = Err(JobError::Permanent("bad input".into()));
        assert_eq!(decide(&err, 1, 5, &policy()), Decision::Dead);
    }

    #[test]
    fn the_retry_delay_follows_the_policy_backoff() {
        match decide(&retryable(), 1, 3, &policy()) {
            Decision::Retry(d) => assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            ),
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
