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
//! Workers talk to the parent over pipes: a worker prints `ready` once
//! connected, starts on a `go` line, stops at end of input (so a worker
//! whose parent died stops too), and prints its counts as its last line.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Config;
use anyhow::{bail, Context};
use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::{Message, Queue};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

/// The job kind every benchmark message uses.
const KIND: &str = "bench";
/// Lease of every fetch: far longer than any run, so nothing is re-delivered
/// and a count that does not add up points at a queue bug, not at a lease.
const LEASE: Duration = Duration::from_secs(600);
/// Messages per `push` call of the Kairos producers.
const PUSH_CHUNK: usize = 1000;
/// Redis used when neither `--redis-url` nor a Redis queue config says otherwise.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How long a worker process may take to connect.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the parent looks whether the queue is empty once all is pushed.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How often the parent checks its workers are alive while it pushes.
const ALIVE_POLL: Duration = Duration::from_millis(100);
/// A worker gives up after this many failed queue calls.
const MAX_WORKER_ERRORS: u64 = 20;
/// BLMOVE timeout of the naive consumer, in seconds.
const NAIVE_BLOCK_SECS: f64 = 0.5;

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

/// Queue backend of a `bench-worker` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerBackend {
    /// Kairos SQLite queue.
    Sqlite,
    /// Kairos Redis Streams queue (or the naive lists with `--naive`).
    Redis,
}

/// Options of the hidden `kairos bench-worker`: everything a worker process
/// needs to find the queue its parent pushes to.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchWorkerArgs {
    /// Queue backend.
    #[arg(long, value_enum)]
    pub backend: WorkerBackend,
    /// Consume the naive Redis list baseline instead of a Kairos queue.
    #[arg(long)]
    pub naive: bool,
    /// Queue URL (`sqlite://FILE` or `redis://HOST:PORT`).
    #[arg(long)]
    pub url: String,
    /// Redis key prefix of this run.
    #[arg(long)]
    pub prefix: String,
    /// Job kind to consume.
    #[arg(long, default_value = KIND)]
    pub kind: String,
    /// Most jobs per fetch.
    #[arg(long)]
    pub batch: usize,
    /// Consumer name (unique per process).
    #[arg(long)]
    pub consumer: String,
}

// ---------------------------------------------------------------------------
// Worker process

/// What a worker process did, printed as its last stdout line.
#[derive(Debug, Clone, Default)]
struct WorkerReport {
    consumed: u64,
    fetches: u64,
    empty: u64,
    errors: u64,
    /// Time in fetches that returned jobs.
    fetch_us: u64,
    /// Time in fetches that returned nothing (idle, waiting for work).
    wait_us: u64,
    ack_us: u64,
}

impl WorkerReport {
    fn line(&self) -> String {
        format!(
            "done consumed={} fetches={} empty={} errors={} fetch_us={} wait_us={} ack_us={}",
            self.consumed, self.fetches, self.empty, self.errors, self.fetch_us, self.wait_us, self.ack_us
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("done ")?;
        let mut r = Self::default();
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "consumed" => r.consumed = v,
                "fetches" => r.fetches = v,
                "empty" => r.empty = v,
                "errors" => r.errors = v,
                "fetch_us" => r.fetch_us = v,
                "wait_us" => r.wait_us = v,
                "ack_us" => r.ack_us = v,
                _ => return None,
            }
        }
        Some(r)
    }
}

/// Where a worker takes jobs from.
enum Source {
    Kairos {
        queue: Arc<dyn Queue>,
        kind: String,
        consumer: String,
    },
    Naive {
        conn: MultiplexedConnection,
        main: String,
        processing: String,
    },
}

impl Source {
    /// One fetch and its ack.
    async fn round(&mut self, batch: usize, report: &mut WorkerReport) -> anyhow::Result<()> {
        match self {
            Source::Kairos { queue, kind, consumer } => {
                let t = Instant::now();
                let got = queue.fetch(kind, consumer, batch, LEASE).await.context("fetch")?;
                report.fetches += 1;
                if got.is_empty() {
                    report.empty += 1;
                    report.wait_us += micros(t.elapsed());
                    return Ok(());
                }
                report.fetch_us += micros(t.elapsed());
                let tags: Vec<String> = got.into_iter().map(|d| d.tag).collect();
                let t = Instant::now();
                // The fetched jobs stay leased until acknowledged: retry the
                // ack rather than leave them to stall the drain.
                let mut attempt = 0;
                loop {
                    match queue.ack(kind, &tags).await {
                        Ok(()) => break,
                        Err(e) if attempt < 4 => {
                            attempt += 1;
                            report.errors += 1;
                            eprintln!("bench-worker {consumer}: ack failed, retrying: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(anyhow::Error::new(e).context("ack")),
                    }
                }
                report.ack_us += micros(t.elapsed());
                report.consumed += tags.len() as u64;
            }
            Source::Naive { conn, main, processing } => {
                let t = Instant::now();
                let got: Option<String> = redis::cmd("BLMOVE")
                    .arg(&*main)
                    .arg(&*processing)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(NAIVE_BLOCK_SECS)
                    .query_async(conn)
                    .await
                    .context("BLMOVE")?;
                report.fetches += 1;
                let Some(job) = got else {
                    report.empty += 1;
                    report.wait_us += micros(t.elapsed());
                    return Ok(());
                };
                report.fetch_us += micros(t.elapsed());
                let t = Instant::now();
                let _: i64 = redis::cmd("LREM")
                    .arg(&*processing)
                    .arg(1)
                    .arg(&job)
                    .query_async(conn)
                    .await
                    .context("LREM")?;
                report.ack_us += micros(t.elapsed());
                report.consumed += 1;
            }
        }
        Ok(())
    }
}

/// Runs one benchmark consumer process: connects, says `ready`, waits for
/// `go`, then fetches and acknowledges until its stdin closes, and prints
/// its counts as the last stdout line.
pub async fn worker(config: Config, args: BenchWorkerArgs) -> anyhow::Result<()> {
    let batch = args.batch.max(1);
    let mut source = if args.naive {
        let (main, processing) = naive_keys(&args.prefix, &args.kind, &args.consumer);
        Source::Naive {
            conn: redis_conn(&args.url).await?,
            main,
            processing,
        }
    } else {
        let mut qc = config.queue.clone();
        qc.backend = match args.backend {
            WorkerBackend::Sqlite => QueueBackendKind::Sqlite,
            WorkerBackend::Redis => QueueBackendKind::Redis,
        };
        qc.url = args.url.clone();
        qc.prefix = args.prefix.clone();
        let queue = kairos_core::queue::connect(&qc)
            .await
            .with_context(|| format!("connecting to the queue at {}", crate::redact(&qc.url)))?;
        queue.ping().await.context("queue ping")?;
        Source::Kairos {
            queue,
            kind: args.kind.clone(),
            consumer: args.consumer.clone(),
        }
    };

    // Stdin is read on a plain thread: a blocking read cannot be cancelled,
    // and a runtime-owned one would hold up the exit of this process.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<bool>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let go = matches!(lines.next(), Some(Ok(l)) if l.trim() == "go");
        let _ = go_tx.send(go);
        while let Some(Ok(_)) = lines.next() {}
        stop_flag.store(true, Ordering::SeqCst);
    });
    say("ready")?;
    if !go_rx.await.unwrap_or(false) {
        // The parent gave up before starting us: nothing to do.
        say(&WorkerReport::default().line())?;
        return Ok(());
    }

    let mut report = WorkerReport::default();
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = source.round(batch, &mut report).await {
            report.errors += 1;
            eprintln!("bench-worker {}: {e:#}", args.consumer);
            if report.errors >= MAX_WORKER_ERRORS {
                failure = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    say(&report.line())?;
    match failure {
        Some(e) => Err(e.context(format!(
            "bench-worker {} gave up after {} errors",
            args.consumer, report.errors
        ))),
        None => Ok(()),
    }
}

/// Prints one protocol line to stdout, flushed.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("flushing stdout")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared helpers

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn epoch_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// List keys of the naive baseline: the queue and one consumer's
/// processing list (where a job sits between fetch and ack).
fn naive_keys(prefix: &str, kind: &str, consumer: &str) -> (String, String) {
    (
        format!("{prefix}:naive:{kind}"),
        format!("{prefix}:naive:{kind}:processing:{consumer}"),
    )
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

// ---------------------------------------------------------------------------
// Parent side

/// What a throughput run measures against.
enum Target {
    Kairos(QueueConfig),
    Naive { url: String, prefix: String },
}

impl Target {
    fn worker_args(&self) -> Vec<String> {
        match self {
            Target::Kairos(qc) => {
                let backend = match qc.backend {
                    QueueBackendKind::Sqlite => "sqlite",
                    QueueBackendKind::Redis => "redis",
                };
                vec![
                    "--backend".into(),
                    backend.into(),
                    "--url".into(),
                    qc.url.clone(),
                    "--prefix".into(),
                    qc.prefix.clone(),
                ]
            }
            Target::Naive { url, prefix } => vec![
                "--backend".into(),
                "redis".into(),
                "--naive".into(),
                "--url".into(),
                url.clone(),
                "--prefix".into(),
                prefix.clone(),
            ],
        }
    }
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

/// A running `bench-worker` child and its pipes.
struct WorkerProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl WorkerProc {
    async fn spawn(ctx: &Ctx, target: &Target, name: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(&ctx.exe);
        if let Some(p) = &ctx.config_path {
            cmd.arg("--config").arg(p);
        }
        cmd.arg("bench-worker")
            .args(target.worker_args())
            .args(["--kind", KIND, "--batch"])
            .arg(ctx.batch.to_string())
            .args(["--consumer", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} bench-worker", ctx.exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin not piped")?;
        let stdout = child.stdout.take().context("worker stdout not piped")?;
        let mut me = Self {
            name: name.to_owned(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
        };
        let line = tokio::time::timeout(READY_TIMEOUT, me.stdout.next_line())
            .await
            .with_context(|| format!("worker {name} did not connect within {READY_TIMEOUT:?}"))?
            .with_context(|| format!("reading from worker {name}"))?;
        if line.as_deref() != Some("ready") {
            let status = me.child.try_wait().ok().flatten();
            bail!("worker {name} failed to start (said {line:?}, exit {status:?}); see its stderr above");
        }
        Ok(me)
    }

    async fn go(&mut self) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker already stopped")?;
        stdin
            .write_all(b"go\n")
            .await
            .with_context(|| format!("starting worker {}", self.name))?;
        stdin
            .flush()
            .await
            .with_context(|| format!("starting worker {}", self.name))?;
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking a worker")? {
            bail!("worker {} exited early ({status}); see its stderr above", self.name);
        }
        Ok(())
    }

    /// Closes stdin (the stop signal) and reads the final report. A worker
    /// that exited non-zero still has its report returned, with `ok = false`.
    async fn finish(mut self, wait: Duration) -> anyhow::Result<(WorkerReport, bool)> {
        drop(self.stdin.take());
        let mut last = None;
        let stdout = &mut self.stdout;
        let read = async {
            while let Some(l) = stdout.next_line().await? {
                last = Some(l);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(wait, read)
            .await
            .with_context(|| format!("worker {} did not stop within {wait:?}", self.name))?
            .with_context(|| format!("reading from worker {}", self.name))?;
        let status = tokio::time::timeout(wait, self.child.wait())
            .await
            .with_context(|| format!("worker {} did not exit within {wait:?}", self.name))?
            .with_context(|| format!("waiting for worker {}", self.name))?;
        let report = last
            .as_deref()
            .and_then(WorkerReport::parse)
            .with_context(|| format!("worker {} printed no final count (exit {status})", self.name))?;
        Ok((report, status.success()))
    }
}

/// How the parent sees how many jobs are left.
enum Probe {
    Kairos(Arc<dyn Queue>),
    Naive {
        conn: MultiplexedConnection,
        keys: Vec<String>,
    },
}

impl Probe {
    async fn remaining(&mut self) -> anyhow::Result<u64> {
        match self {
            Probe::Kairos(q) => {
                let d = q.depth(KIND).await.context("queue depth")?;
                Ok(d.ready + d.in_flight + d.delayed)
            }
            Probe::Naive { conn, keys } => {
                let mut pipe = redis::pipe();
                for k in keys.iter() {
                    pipe.cmd("LLEN").arg(k);
                }
                let lens: Vec<u64> = pipe.query_async(conn).await.context("LLEN")?;
                Ok(lens.iter().sum())
            }
        }
    }
}

/// One throughput measurement.
struct ThroughputRow {
    backend: String,
    workers: usize,
    jobs: u64,
    secs: f64,
    reports: Vec<WorkerReport>,
    /// Correctness failures (counts, errors): the command exits non-zero.
    problems: Vec<String>,
    /// Observations that do not invalidate the count (a starved worker).
    warnings: Vec<String>,
    /// Slowest and fastest jobs/s over the repetitions, when repeated.
    range: Option<(f64, f64)>,
}

impl ThroughputRow {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.jobs as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Starts `n` workers and waits until all are connected.
async fn start_workers(ctx: &Ctx, target: &Target, run: &str, n: usize) -> anyhow::Result<Vec<WorkerProc>> {
    let mut procs = Vec::with_capacity(n);
    for i in 1..=n {
        procs.push(WorkerProc::spawn(ctx, target, &format!("{run}-w{i}")).await?);
    }
    Ok(procs)
}

/// Stops the workers and checks their counts add up to `jobs`.
async fn stop_workers(
    procs: Vec<WorkerProc>,
    ctx: &Ctx,
    jobs: u64,
) -> anyhow::Result<(Vec<WorkerReport>, Vec<String>, Vec<String>)> {
    let wait = ctx.config.queue.fetch_wait + Duration::from_secs(15);
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for p in procs {
        let name = p.name.clone();
        let (r, ok) = p.finish(wait).await?;
        if !ok {
            problems.push(format!("{name} exited with an error"));
        }
        reports.push(r);
    }
    let sum: u64 = reports.iter().map(|r| r.consumed).sum();
    if sum != jobs {
        problems.push(format!("consumed {sum} != pushed {jobs}"));
    }
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    if errors > 0 {
        problems.push(format!("{errors} queue errors"));
    }
    // Counted as a warning: the jobs were all processed exactly once, but
    // the row does not measure the process count it claims.
    let mut warnings = Vec::new();
    if reports.len() > 1 && reports.iter().any(|r| r.consumed == 0) {
        warnings.push("a worker consumed nothing".into());
    }
    Ok((reports, problems, warnings))
}

/// Waits until the queue is empty, checking the workers stay alive.
async fn wait_drained(
    probe: &mut Probe,
    procs: &mut [WorkerProc],
    deadline: Instant,
    poll: Duration,
) -> anyhow::Result<()> {
    loop {
        if probe.remaining().await? == 0 {
            return Ok(());
        }
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if Instant::now() >= deadline {
            let left = probe.remaining().await?;
            bail!("stalled: {left} jobs still queued or in flight at the deadline");
        }
        tokio::time::sleep(poll).await;
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
            let mut keys = vec![naive_keys(prefix, KIND, "").0];
            for i in 1..=workers {
                keys.push(naive_keys(prefix, KIND, &format!("{run}-w{i}")).1);
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
async fn repeated(
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
            // One LPUSH per job, each awaited: the per-job round trip that
            // makes the baseline naive.
            Producer::Naive { mut conn, main } => tokio::spawn(async move {
                for i in 0..jobs {
                    let _: i64 = redis::cmd("LPUSH")
                        .arg(&main)
                        .arg(format!("n{i}"))
                        .query_async(&mut conn)
                        .await
                        .context("LPUSH")?;
                }
                Ok(())
            }),
        }
    }
}

/// One latency measurement.
struct LatencyRow {
    backend: String,
    rate: u64,
    secs: u64,
    sent: u64,
    /// Sorted, microseconds.
    lat_us: Vec<u64>,
    problems: Vec<String>,
}

/// Pushes at `rate` jobs/s for `secs` s (each message carries its enqueue
/// time) while one consumer fetches, records `now - enqueued` and acks.
async fn latency(label: &str, queue: Arc<dyn Queue>, rate: u64, secs: u64, batch: usize) -> anyhow::Result<LatencyRow> {
    eprintln!("bench: {label} latency at {rate} jobs/s for {secs} s ...");
    let total = rate.saturating_mul(secs);
    let pq = queue.clone();
    let mut producer: JoinHandle<anyhow::Result<()>> = tokio::spawn(async move {
        // One tick per millisecond; the number due is computed from the
        // elapsed time, so late ticks catch up and the rate stays exact.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if due <= sent {
                continue;
            }
            let t = epoch_micros().to_string();
            let msgs: Vec<Message> = (sent..due).map(|i| bench_message(format!("l{i}"), t.clone())).collect();
            pq.push(&msgs).await.context("latency push")?;
            sent = due;
        }
        Ok(())
    });
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    let mut lat_us = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut producer_done = false;
    let mut problems = Vec::new();
    while (lat_us.len() as u64) < total {
        if !producer_done && producer.is_finished() {
            (&mut producer).await.context("latency producer task")??;
            producer_done = true;
        }
        if Instant::now() >= deadline {
            producer.abort();
            bail!("stalled: received {} of {total} jobs at the deadline", lat_us.len());
        }
        let got = queue
            .fetch(KIND, "latency", batch, LEASE)
            .await
            .context("latency fetch")?;
        let now = epoch_micros();
        for d in &got {
            let t: i64 = d
                .message
                .payload
                .parse()
                .with_context(|| format!("latency payload {:?}", d.message.payload))?;
            lat_us.push(u64::try_from(now - t).unwrap_or(0));
        }
        let tags: Vec<String> = got.into_iter().map(|d| d.tag).collect();
        queue.ack(KIND, &tags).await.context("latency ack")?;
    }
    if !producer_done {
        producer.await.context("latency producer task")??;
    }
    let left = queue.depth(KIND).await.context("queue depth")?;
    if left.ready + left.in_flight + left.delayed != 0 || lat_us.len() as u64 != total {
        problems.push(format!("received {} of {total}, {left:?} left", lat_us.len()));
    }
    lat_us.sort_unstable();
    Ok(LatencyRow {
        backend: label.to_owned(),
        rate,
        secs,
        sent: total,
        lat_us,
        problems,
    })
}

/// The backlog measurement.
struct BacklogRow {
    jobs: u64,
    push_secs: f64,
    drain_secs: f64,
    workers: usize,
    reports: Vec<WorkerReport>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

/// Queues `jobs` jobs on Redis, then drains them with worker processes.
async fn backlog(ctx: &Ctx, jobs: u64, workers: usize) -> anyhow::Result<BacklogRow> {
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

/// Everything measured, for printing.
#[derive(Default)]
struct Report {
    redis_version: Option<String>,
    /// 1-minute load average before the first run: other work on the
    /// machine skews every number, and this shows whether there was any.
    load_at_start: Option<String>,
    throughput: Vec<ThroughputRow>,
    latency: Vec<LatencyRow>,
    backlog: Option<BacklogRow>,
    /// Runs that failed outright: (what, error).
    failures: Vec<(String, String)>,
}

impl Report {
    fn naive_rate(&self, workers: usize) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.backend == NAIVE && r.workers == workers && r.problems.is_empty())
            .map(ThroughputRow::rate)
    }

    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.failures.iter().map(|(w, e)| format!("{w}: {e}")).collect();
        for r in &self.throughput {
            for p in &r.problems {
                out.push(format!("{} x{}: {p}", r.backend, r.workers));
            }
        }
        for r in &self.latency {
            for p in &r.problems {
                out.push(format!("{} latency: {p}", r.backend));
            }
        }
        if let Some(b) = &self.backlog {
            for p in &b.problems {
                out.push(format!("backlog: {p}"));
            }
        }
        out
    }
}

const NAIVE: &str = "naive-redis";

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
                format!("{NAIVE} x{w}"),
                repeated(ctx, NAIVE, w, args.naive_jobs, target).await,
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

// ---------------------------------------------------------------------------
// Output

fn print_report(ctx: &Ctx, report: &Report, started: chrono::DateTime<chrono::Utc>) {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "this machine".into());
    println!();
    println!(
        "Kairos queue benchmark — kairos {} on {host}: {nproc} CPUs ({cpu}){}",
        env!("CARGO_PKG_VERSION"),
        match &report.redis_version {
            Some(v) => format!(", Redis {v}"),
            None => String::new(),
        }
    );
    println!(
        "started {} (load average {}); fetch batch {}, push batch {PUSH_CHUNK}, queue.fetch_wait {:?}",
        started.format("%Y-%m-%d %H:%M:%S UTC"),
        report.load_at_start.as_deref().unwrap_or("unknown"),
        ctx.batch,
        ctx.config.queue.fetch_wait
    );

    let repeated = ctx.args.repeat > 1;
    if repeated {
        println!(
            "each throughput row is the median of {} runs (by jobs/s); the range is slowest-fastest",
            ctx.args.repeat
        );
    }
    if !report.throughput.is_empty() {
        println!();
        println!("Throughput: no-op jobs; this process pushes while N worker processes fetch+ack, concurrently.");
        println!(
            "seconds = first push until the queue is empty; vs naive = jobs/s over naive-redis jobs/s with the same N."
        );
        let mut rows = Vec::new();
        for r in &report.throughput {
            let vs = match report.naive_rate(r.workers) {
                Some(n) if n > 0.0 => format!("{:.1}x", r.rate() / n),
                _ => "-".into(),
            };
            let per: Vec<String> = r.reports.iter().map(|w| w.consumed.to_string()).collect();
            let mut row = vec![
                r.backend.clone(),
                r.workers.to_string(),
                r.jobs.to_string(),
                format!("{:.2}", r.secs),
                format!("{:.0}", r.rate()),
            ];
            if repeated {
                row.push(match r.range {
                    Some((lo, hi)) => format!("{lo:.0}-{hi:.0}"),
                    None => "-".into(),
                });
            }
            row.extend([vs, per.join(" + "), check(&r.problems, &r.warnings)]);
            rows.push(row);
        }
        let mut headers = vec!["backend", "workers", "jobs", "seconds", "jobs/s"];
        if repeated {
            headers.push("jobs/s range");
        }
        headers.extend(["vs naive", "consumed per process", "check"]);
        print!("{}", table(&headers, &rows));
        println!("naive-redis: Redis lists, one round trip per job: LPUSH to enqueue; BLMOVE to a processing list");
        println!("then LREM to fetch and ack (per-job Sidekiq/BullMQ-style usage). Kairos: batched pushes (XADD");
        println!(
            "pipelines), XREADGROUP COUNT {} fetches, pipelined XACK+XDEL acks / one SQL statement per batch.",
            ctx.batch
        );

        println!();
        println!("Worker processes: where their time went (fetch = fetches that returned jobs; idle = empty fetches,");
        println!("waiting for work, including the last one after the queue drained).");
        let mut rows = Vec::new();
        for r in &report.throughput {
            for (i, w) in r.reports.iter().enumerate() {
                rows.push(worker_row(&format!("{} x{}", r.backend, r.workers), i + 1, w));
            }
        }
        print!("{}", table(&WORKER_HEADERS, &rows));
    }

    if !report.latency.is_empty() {
        println!();
        println!("Latency: one producer at a fixed rate, one consumer in the same process; enqueue -> fetched.");
        let rows: Vec<Vec<String>> = report
            .latency
            .iter()
            .map(|r| {
                vec![
                    r.backend.clone(),
                    r.rate.to_string(),
                    r.secs.to_string(),
                    r.sent.to_string(),
                    ms(percentile(&r.lat_us, 50.0)),
                    ms(percentile(&r.lat_us, 99.0)),
                    ms(r.lat_us.last().copied().unwrap_or(0)),
                    check(&r.problems, &[]),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["backend", "rate/s", "secs", "jobs", "p50 ms", "p99 ms", "max ms", "check"],
                &rows
            )
        );
    }

    if let Some(b) = &report.backlog {
        println!();
        println!(
            "Backlog: {} jobs queued on Redis first, then drained by {} worker processes.",
            b.jobs, b.workers
        );
        let per: Vec<String> = b.reports.iter().map(|w| w.consumed.to_string()).collect();
        let rows = vec![vec![
            "kairos-redis".to_owned(),
            b.jobs.to_string(),
            format!("{:.2}", b.push_secs),
            format!("{:.0}", b.jobs as f64 / b.push_secs.max(1e-9)),
            b.workers.to_string(),
            format!("{:.2}", b.drain_secs),
            format!("{:.0}", b.jobs as f64 / b.drain_secs.max(1e-9)),
            per.join(" + "),
            check(&b.problems, &b.warnings),
        ]];
        print!(
            "{}",
            table(
                &[
                    "backend",
                    "jobs",
                    "push s",
                    "push jobs/s",
                    "workers",
                    "drain s",
                    "drain jobs/s",
                    "consumed per process",
                    "check"
                ],
                &rows
            )
        );
        let rows: Vec<Vec<String>> = b
            .reports
            .iter()
            .enumerate()
            .map(|(i, w)| worker_row("backlog", i + 1, w))
            .collect();
        print!("{}", table(&WORKER_HEADERS, &rows));
    }

    if !report.failures.is_empty() {
        println!();
        println!("Failed runs:");
        for (what, e) in &report.failures {
            println!("  {what}: {e}");
        }
    }
    println!();
    let argv: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    println!("Reproduce: {}", argv.join(" "));
}

const WORKER_HEADERS: [&str; 9] = [
    "run", "process", "consumed", "fetches", "empty", "fetch ms", "ack ms", "idle ms", "errors",
];

fn worker_row(run: &str, i: usize, w: &WorkerReport) -> Vec<String> {
    vec![
        run.to_owned(),
        i.to_string(),
        w.consumed.to_string(),
        w.fetches.to_string(),
        w.empty.to_string(),
        (w.fetch_us / 1000).to_string(),
        (w.ack_us / 1000).to_string(),
        (w.wait_us / 1000).to_string(),
        w.errors.to_string(),
    ]
}

fn check(problems: &[String], warnings: &[String]) -> String {
    if !problems.is_empty() {
        format!("FAIL: {}", problems.join("; "))
    } else if !warnings.is_empty() {
        format!("ok, WARN: {}", warnings.join("; "))
    } else {
        "ok".into()
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Aligned plain-text table: numeric columns right-aligned, text left.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![true; headers.len()];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(headers.len()) {
            widths[i] = widths[i].max(cell.chars().count());
            numeric[i] &= cell == "-" || cell.starts_with(|c: char| c.is_ascii_digit());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let parts: Vec<String> = cells
            .zip(widths.iter().zip(&numeric))
            .map(
                |(c, (&w, &right))| {
                    if right {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                },
            )
            .collect();
        parts.join(" | ").trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    let sep: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&sep.join("-+-"));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_report_round_trips() {
        let r = WorkerReport {
            consumed: 5,
            fetches: 3,
            empty: 1,
            errors: 0,
            fetch_us: 1200,
            wait_us: 7,
            ack_us: 300,
        };
        let back = WorkerReport::parse(&r.line()).expect("parses");
        assert_eq!(
            (back.consumed, back.fetches, back.empty, back.fetch_us, back.ack_us),
            (5, 3, 1, 1200, 300)
        );
        assert!(WorkerReport::parse("ready").is_none());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a   | bb\n----+---\nxyz |  1\n");
    }
}
