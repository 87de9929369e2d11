//! Throughput: this process pushes no-op jobs while N worker processes
//! fetch and acknowledge them, concurrently; the clock runs from the first
//! push until the queue is empty, and the workers' own counts must add up
//! to the number pushed. `--repeat` keeps the median run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::queue::Queue;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;

use super::procs::{start_workers, stop_workers, wait_drained, Probe, Target};
use super::worker::WorkerReport;
use super::{naive, push_all, redis_conn, run_deadline, Ctx, KIND};

/// How often the parent looks whether the queue is empty once all is pushed.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How often the parent checks its workers are alive while it pushes.
const ALIVE_POLL: Duration = Duration::from_millis(100);

/// One throughput measurement.
pub(super) struct ThroughputRow {
    pub(super) backend: String,
    pub(super) workers: usize,
    pub(super) jobs: u64,
    pub(super) secs: f64,
    pub(super) reports: Vec<WorkerReport>,
    /// Correctness failures (counts, errors): the command exits non-zero.
    pub(super) problems: Vec<String>,
    /// Observations that do not invalidate the count (a starved worker).
    pub(super) warnings: Vec<String>,
    /// Slowest and fastest jobs/s over the repetitions, when repeated.
    pub(super) range: Option<(f64, f64)>,
}

impl ThroughputRow {
    /// Jobs per second.
    pub(super) fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.jobs as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Producer and `workers` worker processes concurrently; seconds from the
/// first push until the queue is empty.
async fn throughput(
    ctx: &Ctx,
    target: &Target,
    label: &str,
    run: &str,
    workers: usize,
    jobs: u64,
) -> anyhow::Result<ThroughputRow> {
    eprintln!("bench: {label}, {workers} worker process(es), {jobs} jobs ...");
    let (mut probe, producer_target) = match target {
        Target::Kairos(qc) => {
            let q = kairos_core::queue::connect(qc)
                .await
                .with_context(|| format!("connecting to the {label} queue"))?;
            (Probe::Kairos(q.clone()), Producer::Kairos(q))
        }
        Target::Naive { url, prefix } => {
            let conn = redis_conn(url).await?;
            let mut keys = vec![naive::keys(prefix, KIND, "").0];
            for i in 1..=workers {
                keys.push(naive::keys(prefix, KIND, &format!("{run}-w{i}")).1);
            }
            let main = keys[0].clone();
            (
                Probe::Naive {
                    conn: conn.clone(),
                    keys,
                },
                Producer::Naive { conn, main },
            )
        }
    };
    let mut procs = start_workers(ctx, target, run, workers).await?;
    let deadline = Instant::now() + run_deadline(jobs);
    let start = Instant::now();
    for p in procs.iter_mut() {
        p.go().await?;
    }
    let mut producer = producer_target.spawn(jobs);
    loop {
        tokio::select! {
            res = &mut producer => {
                res.context("producer task")??;
                break;
            }
            _ = tokio::time::sleep(ALIVE_POLL) => {
                for p in procs.iter_mut() {
                    p.check_alive()?;
                }
                if Instant::now() >= deadline {
                    producer.abort();
                    bail!("the producer did not finish before the deadline");
                }
            }
        }
    }
    wait_drained(&mut probe, &mut procs, deadline, DRAIN_POLL).await?;
    let secs = start.elapsed().as_secs_f64();
    let (reports, problems, warnings) = stop_workers(procs, ctx, jobs).await?;
    eprintln!("bench:   {secs:.2} s, {:.0} jobs/s", jobs as f64 / secs);
    Ok(ThroughputRow {
        backend: label.to_owned(),
        workers,
        jobs,
        secs,
        reports,
        problems,
        warnings,
        range: None,
    })
}

/// Runs one throughput configuration `--repeat` times (each on a fresh
/// queue from `target(rep)`) and keeps the median run; a problem in any
/// repetition is kept too.
pub(super) async fn repeated(
    ctx: &Ctx,
    label: &str,
    workers: usize,
    jobs: u64,
    target: impl Fn(usize) -> Target,
) -> anyhow::Result<ThroughputRow> {
    let reps = ctx.args.repeat.max(1);
    let mut rows = Vec::with_capacity(reps);
    for rep in 0..reps {
        let run = format!("{label}-{workers}w-{rep}");
        rows.push(throughput(ctx, &target(rep), label, &run, workers, jobs).await?);
    }
    rows.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let range = (rows.len() > 1).then(|| (rows[0].rate(), rows[rows.len() - 1].rate()));
    let mut median = rows.swap_remove(rows.len() / 2);
    for other in &rows {
        median.problems.extend(other.problems.iter().cloned());
        median.warnings.extend(other.warnings.iter().cloned());
    }
    median.warnings.dedup();
    median.range = range;
    Ok(median)
}

/// The pushing side of a throughput run.
enum Producer {
    Kairos(Arc<dyn Queue>),
    Naive { conn: MultiplexedConnection, main: String },
}

impl Producer {
    fn spawn(self, jobs: u64) -> JoinHandle<anyhow::Result<()>> {
        match self {
            Producer::Kairos(q) => tokio::spawn(async move { push_all(q, jobs, "t").await }),
            Producer::Naive { mut conn, main } => {
                tokio::spawn(async move { naive::push(&mut conn, &main, jobs).await })
            }
        }
    }
}
