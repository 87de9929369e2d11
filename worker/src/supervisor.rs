//! Keeps one kind's consumer alive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::completer::Outcome;
use crate::consumer::{self, InFlight};
use crate::Shared;

const MIN_RESTART: Duration = Duration::from_millis(100);
const MAX_RESTART: Duration = Duration::from_secs(10);
/// A consumer that ran this long before failing is considered healthy: the
/// restart delay starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Runs `kind`'s consumer until shutdown, restarting it when it fails or
/// panics, then drains in-flight jobs within the grace period.
pub(crate) async fn run(shared: Shared, kind: String, done: mpsc::Sender<Outcome>, shutdown: CancellationToken) {
    let policy = shared.config.policy(&kind);
    let slots = Arc::new(Semaphore::new(policy.concurrency));
    let in_flight = InFlight::default();
    let mut delay = MIN_RESTART;
    loop {
        let started = Instant::now();
        let task = tokio::spawn(consumer::run(
            shared.clone(),
            kind.clone(),
            slots.clone(),
            in_flight.clone(),
            done.clone(),
            shutdown.clone(),
        ));
        match task.await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::error!(kind, error = %e, restart_in = ?delay, "consumer failed; restarting"),
            Err(e) => tracing::error!(kind, error = %e, restart_in = ?delay, "consumer panicked; restarting"),
        }
        if started.elapsed() > HEALTHY_RUN {
            delay = MIN_RESTART;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RESTART);
    }
    drain(&shared, &kind, &slots, policy.concurrency, &in_flight).await;
}

/// Waits for in-flight jobs up to the grace period; hands back the rest.
async fn drain(shared: &Shared, kind: &str, slots: &Arc<Semaphore>, concurrency: usize, in_flight: &InFlight) {
    let grace = shared.config.worker.shutdown_grace;
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all)).await.is_ok() {
        return;
    }
    let left = in_flight.abort_all();
    if left.is_empty() {
        return;
    }
    tracing::warn!(
        kind,
        count = left.len(),
        ?grace,
        "grace period over; handing unfinished jobs back to the queue"
    );
    let ids: Vec<String> = left.iter().map(|d| d.message.id.clone()).collect();
    // Handed back unfinished: no `running` to write for them any more.
    shared.unmarked.settled(ids.iter().map(String::as_str));
    if let Err(e) = shared.store.release(&ids).await {
        tracing::error!(kind, error = %e, "could not mark released jobs; their leases will expire instead");
    }
    if let Err(e) = shared.queue.release(&left).await {
        tracing::error!(kind, error = %e, "could not release jobs; they come back when their leases expire");
    }
    // Released or not, stop renewing them: the next worker gets them.
    shared.leases.drop_tags(kind, left.iter().map(|d| &d.tag));
}
