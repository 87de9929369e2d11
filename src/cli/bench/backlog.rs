//! Backlog (`--backlog N`): N jobs are queued on Redis first, then drained
//! by worker processes — where list + Lua queue designs have been seen to
//! break down.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::config::QueueBackendKind;

use super::procs::{start_workers, stop_workers, wait_drained, Probe, Target};
use super::worker::WorkerReport;
use super::{push_all, run_deadline, Ctx, KIND};

/// The backlog measurement.
pub(super) struct BacklogRow {
    pub(super) jobs: u64,
    pub(super) push_secs: f64,
    pub(super) drain_secs: f64,
    pub(super) workers: usize,
    pub(super) reports: Vec<WorkerReport>,
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
}

/// Queues `jobs` jobs on Redis, then drains them with worker processes.
pub(super) async fn backlog(ctx: &Ctx, jobs: u64, workers: usize) -> anyhow::Result<BacklogRow> {
    let qc = ctx.queue_config(QueueBackendKind::Redis, "backlog");
    let queue = kairos_core::queue::connect(&qc)
        .await
        .context("connecting to the Redis queue")?;
    eprintln!("bench: backlog: pushing {jobs} jobs to Redis ...");
    let t = Instant::now();
    push_all(queue.clone(), jobs, "b").await?;
    let push_secs = t.elapsed().as_secs_f64();
    let depth = queue.depth(KIND).await.context("queue depth")?;
    if depth.ready != jobs {
        bail!("after pushing {jobs} jobs the queue holds {depth:?}");
    }
    eprintln!("bench:   pushed in {push_secs:.2} s; draining with {workers} worker process(es) ...");
    let target = Target::Kairos(qc);
    let mut procs = start_workers(ctx, &target, "backlog", workers).await?;
    let deadline = Instant::now() + run_deadline(jobs);
    let start = Instant::now();
    for p in procs.iter_mut() {
        p.go().await?;
    }
    let mut probe = Probe::Kairos(queue);
    wait_drained(&mut probe, &mut procs, deadline, Duration::from_millis(20)).await?;
    let drain_secs = start.elapsed().as_secs_f64();
    let (reports, problems, warnings) = stop_workers(procs, ctx, jobs).await?;
    eprintln!("bench:   drained in {drain_secs:.2} s");
    Ok(BacklogRow {
        jobs,
        push_secs,
        drain_secs,
        workers,
        reports,
        problems,
        warnings,
    })
}
