//! apalis 1.0.0 backends used plainly (default Config, default worker), timed.
//!
//! Pushing: `TaskSink::push_bulk` (apalis's bulk API: one `push_tasks` call per
//! chunk; for Redis one batch_push.lua EVALSHA, for SQLite one insert batch).
use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicUsize, Ordering},
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "apalis-bench")]
struct Args {
    /// Jobs per backend (concurrent push + consume).
    #[arg(long, default_value_t = 20000)]
    jobs: usize,
    /// Jobs per push_bulk call.
    #[arg(long, default_value_t = 500)]
    push_batch: usize,
    /// redis | sqlite | all
    #[arg(long, default_value = "all")]
    backend: String,
    /// Redis backlog mode: push N first, then start the worker (Redis only).
    #[arg(long)]
    backlog: Option<usize>,
    /// Give up after this many seconds per run.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// 0 = plain (no poll strategy: apalis parks the worker after an empty
    /// fetch); N = wrap the worker's backend in `.poll_with_interval(N ms)`.
    #[arg(long, default_value_t = 0)]
    poll_ms: u64,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

struct Outcome {
    backend: &'static str,
    jobs: usize,
    handled: usize,
    secs: f64,
    push_secs: f64,
    note: String,
}

#[derive(Clone)]
struct Shared {
    target: usize,
    handled: Arc<AtomicUsize>,
    done_at: Arc<OnceLock<Instant>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Shared {
    fn new(target: usize) -> Self {
        Self {
            target,
            handled: Arc::new(AtomicUsize::new(0)),
            done_at: Arc::new(OnceLock::new()),
            errors: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// No-op handler: count, stop the worker after the last job.
async fn noop(_job: u32, wrk: WorkerContext, shared: Data<Shared>) -> Result<(), BoxDynError> {
    let n = shared.handled.fetch_add(1, Ordering::Relaxed) + 1;
    if n >= shared.target {
        let _ = shared.done_at.set(Instant::now());
        let _ = wrk.stop();
    }
    Ok(())
}

/// One worker, default settings, no-op handler; optionally with an interval poll strategy.
macro_rules! spawn_worker {
    ($storage:expr, $shared:expr, $poll_ms:expr) => {{
        let shared: Shared = $shared;
        let name = format!("bench-{}", unique());
        if $poll_ms == 0 {
            tokio::spawn(
                WorkerBuilder::new(name)
                    .backend($storage)
                    .data(shared.clone())
                    .on_event(on_event_fn(shared))
                    .build(noop)
                    .run(),
            )
        } else {
            tokio::spawn(
                WorkerBuilder::new(name)
                    .backend($storage.poll_with_interval(Duration::from_millis($poll_ms)))
                    .data(shared.clone())
                    .on_event(on_event_fn(shared))
                    .build(noop)
                    .run(),
            )
        }
    }};
}

fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}", std::process::id(), nanos)
}

/// Waits for the worker task (bounded), then builds the outcome.
async fn finish(
    backend: &'static str,
    jobs: usize,
    start: Instant,
    push_secs: f64,
    shared: &Shared,
    worker: tokio::task::JoinHandle<Result<(), WorkerError>>,
    pusher_err: Option<String>,
    timeout: Duration,
) -> Outcome {
    let deadline = start + timeout;
    let mut worker = worker;
    let mut note = String::new();
    let res = tokio::time::timeout_at(deadline.into(), &mut worker).await;
    match res {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => note.push_str(&format!("worker error: {e} | {e:?}; ")),
        Ok(Err(e)) => note.push_str(&format!("worker task panicked: {e}; ")),
        Err(_) => {
            worker.abort();
            note.push_str(&format!("TIMEOUT after {}s; ", timeout.as_secs()));
        }
    }
    if let Some(e) = pusher_err {
        note.push_str(&format!("push error: {e}; "));
    }
    let errs = shared.errors.lock().unwrap().clone();
    if !errs.is_empty() {
        note.push_str(&format!("{} error event(s), first: {}; ", errs.len(), errs[0]));
    }
    let handled = shared.handled.load(Ordering::Relaxed);
    let end = shared.done_at.get().copied().unwrap_or_else(Instant::now);
    if note.is_empty() {
        note.push_str("ok");
    }
    Outcome {
        backend,
        jobs,
        handled,
        secs: (end - start).as_secs_f64(),
        push_secs,
        note,
    }
}

fn on_event_fn(shared: Shared) -> impl Fn(&WorkerContext, &Event) + Send + Sync + 'static {
    move |_ctx, ev| {
        if let Event::Error(e) = ev {
            shared.errors.lock().unwrap().push(format!("{e}"));
        }
    }
}

async fn push_all<S, K>(sink: &mut S, jobs: usize, batch: usize) -> Result<(), String>
where
    S: TaskSink<u32, K> + Send,
    S::Error: std::fmt::Debug,
{
    let mut i = 0usize;
    while i < jobs {
        let end = (i + batch).min(jobs);
        let chunk: Vec<u32> = (i as u32..end as u32).collect();
        sink.push_bulk(chunk).await.map_err(|e| format!("{e:?}"))?;
        i = end;
    }
    Ok(())
}

async fn bench_redis(args: &Args, jobs: usize, backlog: bool) -> anyhow::Result<Outcome> {
    let ns = format!("apalis-bench:{}", unique());
    let conn = apalis_redis::connect(args.redis_url.as_str())
        .await
        .context("connect redis")?;
    let config = apalis_redis::Config::default().queue(&ns);
    let storage: RedisStorage<u32> = RedisStorage::new(conn.clone()).with_config(config);
    let shared = Shared::new(jobs);
    let timeout = Duration::from_secs(args.timeout_s);
    let label = if backlog { "redis (backlog)" } else { "redis" };

    let poll_ms = args.poll_ms;
    let build_worker = |storage: RedisStorage<u32>, shared: Shared| spawn_worker!(storage, shared, poll_ms);

    let out = if backlog {
        let mut pusher = storage.clone();
        let t0 = Instant::now();
        let perr = push_all(&mut pusher, jobs, args.push_batch).await.err();
        let push_secs = t0.elapsed().as_secs_f64();
        eprintln!("redis backlog: pushed {jobs} in {push_secs:.2}s, starting worker");
        let start = Instant::now();
        let w = build_worker(storage, shared.clone());
        let mut o = finish(label, jobs, start, push_secs, &shared, w, perr, timeout).await;
        o.note = format!("{} (seconds = worker start -> last job)", o.note);
        o
    } else {
        let mut pusher = storage.clone();
        let start = Instant::now();
        let w = build_worker(storage, shared.clone());
        let batch = args.push_batch;
        let p = tokio::spawn(async move {
            let t0 = Instant::now();
            let r = push_all(&mut pusher, jobs, batch).await;
            (r, t0.elapsed().as_secs_f64())
        });
        let (perr, push_secs) = match p.await {
            Ok((r, s)) => (r.err(), s),
            Err(e) => (Some(format!("pusher panicked: {e}")), 0.0),
        };
        finish(label, jobs, start, push_secs, &shared, w, perr, timeout).await
    };

    // Cleanup every key under our namespace.
    let mut c = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut c).await;
    }
    // task meta keys are "{ns}:meta:<id>" and covered by the pattern above.
    Ok(out)
}

async fn bench_sqlite(args: &Args, jobs: usize) -> anyhow::Result<Outcome> {
    let path = std::env::temp_dir().join(format!("apalis-bench-{}.db", unique()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = SqlitePool::connect(&url).await.context("open sqlite")?;
    SqliteStorage::setup(&pool).await.context("sqlite setup")?;
    let storage: SqliteStorage<u32> = SqliteStorage::new(&pool);
    let shared = Shared::new(jobs);
    let timeout = Duration::from_secs(args.timeout_s);

    let mut pusher = storage.clone();
    let start = Instant::now();
    let w = spawn_worker!(storage, shared.clone(), args.poll_ms);
    let batch = args.push_batch;
    let p = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = push_all(&mut pusher, jobs, batch).await;
        (r, t0.elapsed().as_secs_f64())
    });
    let (perr, push_secs) = match p.await {
        Ok((r, s)) => (r.err(), s),
        Err(e) => (Some(format!("pusher panicked: {e}")), 0.0),
    };
    let out = finish("sqlite", jobs, start, push_secs, &shared, w, perr, timeout).await;
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(out)
}

fn print_table(rows: &[Outcome]) {
    println!(
        "{:<16} | {:>7} | {:>7} | {:>8} | {:>9} | {:>7} | note",
        "backend", "jobs", "handled", "seconds", "jobs/s", "push_s"
    );
    println!("{}", "-".repeat(80));
    for r in rows {
        let rate = if r.secs > 0.0 { r.handled as f64 / r.secs } else { 0.0 };
        println!(
            "{:<16} | {:>7} | {:>7} | {:>8.3} | {:>9.0} | {:>7.3} | {}",
            r.backend, r.jobs, r.handled, r.secs, rate, r.push_secs, r.note
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    if let Some(n) = args.backlog {
        println!("apalis 1.0.0 redis backlog: push {n} first (push_bulk x{}), then one default worker, poll_ms={}", args.push_batch, args.poll_ms);
        rows.push(bench_redis(&args, n, true).await?);
    } else {
        println!(
            "apalis 1.0.0: {} no-op jobs, push_bulk x{} concurrent with one default worker, poll_ms={}",
            args.jobs, args.push_batch, args.poll_ms
        );
        if args.backend == "redis" || args.backend == "all" {
            rows.push(bench_redis(&args, args.jobs, false).await?);
        }
        if args.backend == "sqlite" || args.backend == "all" {
            rows.push(bench_sqlite(&args, args.jobs).await?);
        }
    }
    print_table(&rows);
    Ok(())
}
