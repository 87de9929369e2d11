//! `kairos bench`: queue throughput and latency per backend, measured on
//! this machine and printed as a table.
//!
//! Why it exists: "Kairos is fast" means nothing without a yardstick, so
//! every run also measures a naive Redis queue (one round trip per job, the
//! way plain Sidekiq/BullMQ-style code uses Redis) on the same machine, in
//! the same run, and reports Kairos as a ratio of it. Ratios survive a
//! change of hardware far better than absolute numbers.
//!
//! How it measures:
//! - throughput: this process pushes no-op jobs while 1..n *separate worker
//!   processes* (`kairos bench-worker`, started from this binary) fetch and
//!   acknowledge them, so the numbers include real cross-process contention;
//!   the clock runs from the first push until the queue is empty, and the
//!   workers' own counts must add up to the number pushed;
//! - latency: a producer pushes at a fixed rate with the enqueue time in the
//!   payload, one consumer records `fetched - enqueued`;
//! - backlog (optional): a large queue is filled first, then drained, which
//!   is where list + Lua designs have been seen to break down.
//!
//! Modules along those lines: [`worker`] is the `bench-worker` child process
//! and its pipe protocol, `procs` the parent's side of it, `naive` the
//! baseline, `throughput`, `latency` and `backlog` the measurements, and
//! `report` the printout. This file holds the options, the shared context
//! and the order the runs go in.

mod backlog;
mod latency;
mod naive;
mod procs;
mod report;
mod throughput;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Config;
use anyhow::{bail, Context};
use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::{Message, Queue};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use backlog::backlog;
use latency::latency;
use procs::Target;
use report::{print_report, Report};
use throughput::{repeated, ThroughputRow};

/// The job kind every benchmark message uses.
const KIND: &str = "bench";
/// Lease of every fetch: far longer than any run, so nothing is re-delivered
/// and a count that does not add up points at a queue bug, not at a lease.
const LEASE: Duration = Duration::from_secs(600);
/// Messages per `push` call of the Kairos producers.
const PUSH_CHUNK: usize = 1000;
/// Redis used when neither `--redis-url` nor a Redis queue config says otherwise.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Which Kairos queue backend(s) `kairos bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The embedded SQLite queue only (needs no services).
    Sqlite,
    /// The Redis Streams queue (and the naive Redis baseline).
    Redis,
    /// Both, plus the naive Redis baseline.
    All,
}

/// Options of `kairos bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Which backend(s) to measure; the naive Redis baseline runs whenever
    /// Redis is measured, so every Kairos row gets a ratio.
    #[arg(long, value_enum, default_value_t = BackendChoice::All)]
    pub backend: BackendChoice,
    /// No-op jobs per Redis throughput run.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// No-op jobs per SQLite throughput run (smaller than --jobs: SQLite is
    /// slower and the benchmark should stay short).
    #[arg(long, default_value_t = 20_000)]
    pub sqlite_jobs: u64,
    /// Jobs per naive-baseline run (one round trip per job is slow; jobs/s
    /// is compared, so the counts need not match).
    #[arg(long, default_value_t = 20_000)]
    pub naive_jobs: u64,
    /// Worker process counts to measure throughput with (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub workers: Vec<usize>,
    /// Jobs per second pushed during the latency run.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Length of each latency run, in seconds.
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
    /// Queue this many jobs on Redis first, then drain them with
    /// --backlog-workers processes (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,
    /// Worker processes that drain the backlog.
    #[arg(long, default_value_t = 2)]
    pub backlog_workers: usize,
    /// Run each throughput measurement this many times and report the
    /// median (with the range): on a shared or small machine single runs
    /// vary by tens of percent.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Most jobs per fetch (and per ack). Default: queue.fetch_batch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Redis server to use. Default: queue.url when queue.backend is redis,
    /// else redis://127.0.0.1:6379. Keys live under a random `kbench:` prefix
    /// and are deleted at the end.
    #[arg(long)]
    pub redis_url: Option<String>,
}

/// Everything the runs share.
struct Ctx {
    config: Config,
    args: BenchArgs,
    batch: usize,
    redis_url: String,
    /// Redis key prefix of this invocation; every key is under `{prefix}:`.
    prefix: String,
    /// Temp dir for the SQLite files of this invocation.
    dir: PathBuf,
    exe: PathBuf,
    config_path: Option<PathBuf>,
}

impl Ctx {
    fn queue_config(&self, backend: QueueBackendKind, run: &str) -> QueueConfig {
        let mut qc = self.config.queue.clone();
        qc.backend = backend;
        qc.prefix = format!("{}:{run}", self.prefix);
        qc.url = match backend {
            QueueBackendKind::Redis => self.redis_url.clone(),
            QueueBackendKind::Sqlite => {
                format!("sqlite://{}", self.dir.join(format!("{run}.db")).display())
            }
        };
        qc
    }
}

/// Runs the benchmark: the naive baseline, Kairos throughput per backend and
/// worker count, latency per backend and (if asked) the backlog drain, then
/// prints the tables. Redis keys and temp files are removed at the end, also
/// after a failure; a failed check makes the command exit non-zero after the
/// tables are printed.
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.sqlite_jobs == 0 || args.naive_jobs == 0 {
        bail!("--jobs, --sqlite-jobs and --naive-jobs must be at least 1");
    }
    if args.rate == 0 || args.latency_secs == 0 {
        bail!("--rate and --latency-secs must be at least 1");
    }
    if args.workers.is_empty() || args.workers.contains(&0) || args.backlog_workers == 0 || args.repeat == 0 {
        bail!("--workers, --backlog-workers and --repeat must be at least 1");
    }
    let batch = args.batch.unwrap_or(config.queue.fetch_batch).max(1);
    let redis_url = match &args.redis_url {
        Some(u) => u.clone(),
        None if config.queue.backend == QueueBackendKind::Redis => config.queue.url.clone(),
        None => DEFAULT_REDIS_URL.to_owned(),
    };
    let tag = format!("{:08x}", rand::random::<u32>());
    let dir = std::env::temp_dir().join(format!("kairos-bench-{tag}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("locating this executable to start worker processes")?;
    let config_path = Path::new(&config.source)
        .is_file()
        .then(|| PathBuf::from(&config.source));
    let ctx = Ctx {
        config,
        args,
        batch,
        redis_url,
        prefix: format!("kbench:{tag}"),
        dir,
        exe,
        config_path,
    };

    let started = chrono::Utc::now();
    // Ctrl-C still cleans up: dropping the runs kills the worker processes
    // (kill_on_drop), and the keys and files go below.
    let outcome = tokio::select! {
        r = run_all(&ctx) => r,
        _ = crate::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let cleanup = cleanup(&ctx).await;
    let report = outcome?;
    print_report(&ctx, &report, started);
    if let Err(e) = cleanup {
        eprintln!("warning: cleanup incomplete: {e:#}");
    }
    let problems = report.problems();
    if !problems.is_empty() {
        bail!("benchmark checks failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

async fn run_all(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let use_redis = matches!(args.backend, BackendChoice::Redis | BackendChoice::All);
    let use_sqlite = matches!(args.backend, BackendChoice::Sqlite | BackendChoice::All);
    let mut report = Report {
        load_at_start: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned)),
        ..Report::default()
    };
    if use_redis || args.backlog > 0 {
        let mut conn = redis_conn(&ctx.redis_url)
            .await
            .context("Redis is needed for --backend redis/all and --backlog (use --backend sqlite without it)")?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .context("Redis INFO")?;
        report.redis_version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned());
    }

    // The baseline first; every run gets a fresh key prefix, so no state
    // carries over from one run to the next.
    if use_redis {
        for &w in &args.workers {
            let target = |rep: usize| Target::Naive {
                url: ctx.redis_url.clone(),
                prefix: format!("{}:naive-{w}w-{rep}", ctx.prefix),
            };
            record(
                &mut report,
                format!("{} x{w}", naive::NAIVE),
                repeated(ctx, naive::NAIVE, w, args.naive_jobs, target).await,
            );
        }
    }
    for (enabled, backend, label, jobs) in [
        (use_redis, QueueBackendKind::Redis, "kairos-redis", args.jobs),
        (use_sqlite, QueueBackendKind::Sqlite, "kairos-sqlite", args.sqlite_jobs),
    ] {
        if !enabled {
            continue;
        }
        for &w in &args.workers {
            let target = |rep: usize| Target::Kairos(ctx.queue_config(backend, &format!("{label}-{w}w-{rep}")));
            record(
                &mut report,
                format!("{label} x{w}"),
                repeated(ctx, label, w, jobs, target).await,
            );
        }
    }
    for (enabled, backend, label) in [
        (use_redis, QueueBackendKind::Redis, "kairos-redis"),
        (use_sqlite, QueueBackendKind::Sqlite, "kairos-sqlite"),
    ] {
        if !enabled {
            continue;
        }
        let qc = ctx.queue_config(backend, &format!("{label}-latency"));
        let res = async {
            let q = kairos_core::queue::connect(&qc)
                .await
                .with_context(|| format!("connecting to the {label} queue"))?;
            latency(label, q, args.rate, args.latency_secs, ctx.batch).await
        }
        .await;
        match res {
            Ok(row) => report.latency.push(row),
            Err(e) => fail(&mut report, format!("{label} latency"), e),
        }
    }
    if args.backlog > 0 {
        match backlog(ctx, args.backlog, args.backlog_workers).await {
            Ok(row) => report.backlog = Some(row),
            Err(e) => fail(&mut report, "backlog".into(), e),
        }
    }
    Ok(report)
}

/// Keeps a throughput row, or reports its failure.
fn record(report: &mut Report, what: String, res: anyhow::Result<ThroughputRow>) {
    match res {
        Ok(row) => report.throughput.push(row),
        Err(e) => fail(report, what, e),
    }
}

/// A failed run is reported, and the other runs still go ahead.
fn fail(report: &mut Report, what: String, e: anyhow::Error) {
    eprintln!("bench: {what} FAILED: {e:#}");
    report.failures.push((what, format!("{e:#}")));
}

/// Deletes this invocation's Redis keys and temp dir.
async fn cleanup(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = if ctx.dir.exists() {
        std::fs::remove_dir_all(&ctx.dir).with_context(|| format!("removing {}", ctx.dir.display()))
    } else {
        Ok(())
    };
    let uses_redis = matches!(ctx.args.backend, BackendChoice::Redis | BackendChoice::All) || ctx.args.backlog > 0;
    if uses_redis {
        let mut conn = redis_conn(&ctx.redis_url).await?;
        let pattern = format!("{}:*", ctx.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .context("SCAN")?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .context("UNLINK")?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    dir
}

/// A duration in whole microseconds (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before it).
fn epoch_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A plain multiplexed Redis connection with a response timeout longer than
/// the naive consumer's blocking pop.
async fn redis_conn(url: &str) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(url).with_context(|| format!("invalid Redis URL {}", crate::redact(url)))?;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .with_context(|| format!("connecting to Redis at {}", crate::redact(url)))
}

/// A no-op message of the benchmark kind.
fn bench_message(id: String, payload: String) -> Message {
    Message {
        id,
        kind: KIND.to_owned(),
        tenant_id: "bench".to_owned(),
        payload,
    }
}

/// Pushes `jobs` no-op messages in chunks of [`PUSH_CHUNK`].
async fn push_all(queue: Arc<dyn Queue>, jobs: u64, id_prefix: &str) -> anyhow::Result<()> {
    let mut start = 0u64;
    while start < jobs {
        let end = (start + PUSH_CHUNK as u64).min(jobs);
        let msgs: Vec<Message> = (start..end)
            .map(|i| bench_message(format!("{id_prefix}{i}"), "{}".to_owned()))
            .collect();
        queue
            .push(&msgs)
            .await
            .with_context(|| format!("pushing jobs {start}..{end}"))?;
        start = end;
    }
    Ok(())
}

/// Time allowed for a run of `jobs` jobs before it is declared stalled:
/// a minute plus 2 ms per job (i.e. it must beat 500 jobs/s).
fn run_deadline(jobs: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_micros(jobs.saturating_mul(2000))
}
