//! `kairos bench-product`: what a user gets, not what the queue can do.
//! Starts the real processes of one deployment — embedded (`kairos serve`
//! on SQLite) or distributed (`kairos api`, a scheduler and N `kairos
//! worker` processes on a Postgres cluster and a `redis-server` of the
//! benchmark's own) — and measures, with every event making one cheap
//! `activity` job:
//! * `single`, `batch`: a producer posts N events (one per request, or 100
//!   per request) while the workers run: jobs/s from the first POST to the
//!   last job recorded, events/s accepted, job latency (the job row's
//!   `created_at`, taken when the API accepts the event, → `finished_at`,
//!   when its outcome is recorded), CPU seconds per process, statements and
//!   transactions per job (Postgres), Redis commands per job, load average;
//! * `fairness`: tenant B's job latency for one event posted while tenant A
//!   floods N events, against B's latency when idle;
//! * `ingest`: the API alone (no worker) under `wrk`, 1 and 100 events per
//!   request;
//! * `rss`: a worker's memory with and without the sentiment model.
//!
//! Each case is one JSON line (`--out`); `bench/product/run` interleaves
//! reps with the peers' harness and tables the medians.

mod deploy;
mod load;
mod sample;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kairos_core::Store;
use serde_json::{json, Value};

use super::stats::percentile;
use crate::Config;
use deploy::{Backing, Proc};
use sample::Snapshot;

/// Which deployment to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// `kairos serve`: SQLite store and queue, one process.
    Embedded,
    /// `kairos api` + scheduler + N workers: Postgres and Redis.
    Distributed,
}

/// One measurement of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// N events, one per request, posted while the workers run.
    Single,
    /// N events, 100 per request, posted while the workers run.
    Batch,
    /// Tenant B's latency during tenant A's flood of N events.
    Fairness,
    /// The API alone under wrk, 1 and 100 events per request.
    Ingest,
    /// A worker's RSS with the sentiment model loaded (distributed only).
    Rss,
}

/// Options of `kairos bench-product`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchProductArgs {
    /// The deployment to measure.
    #[arg(long, value_enum, default_value = "distributed")]
    pub deployment: Which,
    /// Events (= jobs) per case.
    #[arg(long, default_value_t = 20_000)]
    pub n: usize,
    /// Worker processes (distributed).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrent connections posting single events.
    #[arg(long, default_value_t = 32)]
    pub conns: usize,
    /// Concurrent connections posting 100-event batches.
    #[arg(long, default_value_t = 4)]
    pub batch_conns: usize,
    /// The cases to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "single,batch,fairness,ingest"
    )]
    pub cases: Vec<Case>,
    /// How long each wrk run lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub wrk_duration: Duration,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    pub wrk_conns: usize,
    /// The wrk binary.
    #[arg(long, default_value = "/usr/bin/wrk")]
    pub wrk: PathBuf,
    /// Most time a case may take to finish its jobs.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Repetition number, copied into the JSON lines.
    #[arg(long, default_value_t = 0)]
    pub rep: u32,
    /// Append one JSON line per case to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temporary directory (config, process logs, SQLite file).
    #[arg(long)]
    pub keep: bool,
}

/// A running deployment and what the cases need of it.
struct Ctx {
    args: BenchProductArgs,
    dir: PathBuf,
    config_path: PathBuf,
    backing: Backing,
    store: Store,
    http: reqwest::Client,
    base: String,
    procs: Vec<Proc>,
    redis: Option<redis::aio::MultiplexedConnection>,
    tenants: usize,
}

/// Runs the benchmark of one deployment.
pub async fn run(config: Config, args: BenchProductArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("kairos-bench-product-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    if args.keep {
        println!("keeping {}", dir.display());
    }
    let result = run_in(&config, args.clone(), &dir).await;
    if args.keep {
        let _ = tmp.keep();
    }
    result
}

async fn run_in(config: &Config, args: BenchProductArgs, dir: &Path) -> anyhow::Result<()> {
    if args.n == 0 || args.workers == 0 || args.conns == 0 || args.batch_conns == 0 {
        anyhow::bail!("--n, --workers, --conns and --batch-conns must be at least 1");
    }
    let backing = Backing::start(args.deployment, dir).await?;
    let port = deploy::free_port()?;
    let config_path = dir.join("kairos.toml");
    std::fs::write(&config_path, backing.config_toml(port))?;
    let store = Store::connect(&backing.store_url(), 2).await?;
    store.migrate().await.context("migrating the benchmark store")?;
    let redis = match &backing {
        Backing::Distributed { redis, .. } => Some(redis.connection().await?),
        Backing::Embedded { .. } => None,
    };
    let mut ctx = Ctx {
        dir: dir.to_path_buf(),
        config_path,
        backing,
        store,
        http: reqwest::Client::builder().pool_max_idle_per_host(256).build()?,
        base: format!("http://127.0.0.1:{port}"),
        procs: Vec::new(),
        redis,
        tenants: 0,
        args,
    };
    println!(
        "kairos bench-product: {:?}, N = {}, {} worker process(es), load average {:.2}",
        ctx.args.deployment,
        ctx.args.n,
        if ctx.args.deployment == Which::Embedded {
            1
        } else {
            ctx.args.workers
        },
        sample::load1()
    );
    ctx.start_full().await?;
    // Warm-up: connections, prepared statements, first fetches.
    let (tenant, key) = ctx.tenant().await?;
    load::produce(&ctx.http, &ctx.base, &key, "warm", 200, 1, 8, Arc::default()).await?;
    ctx.wait(&tenant, 200).await?;

    let cases = ctx.args.cases.clone();
    for case in cases {
        let row = match case {
            Case::Single => ctx.throughput("single", 1, ctx.args.conns).await,
            Case::Batch => ctx.throughput("batch", 100, ctx.args.batch_conns).await,
            Case::Fairness => ctx.fairness().await,
            Case::Ingest => ctx.ingest().await,
            Case::Rss => ctx.rss_case(config).await,
        };
        let rows = match row {
            Ok(rows) => rows,
            Err(e) => {
                let row = ctx.row(
                    &format!("{case:?}").to_lowercase(),
                    json!({"ok": false, "error": format!("{e:#}")}),
                );
                ctx.emit(&row)?;
                for p in ctx.procs.drain(..) {
                    p.kill().await;
                }
                return Err(e.context(format!("case {case:?} (logs in {})", ctx.dir.display())));
            }
        };
        for row in rows {
            ctx.emit(&row)?;
        }
    }
    for p in ctx.procs.drain(..) {
        p.kill().await;
    }
    ctx.store.close().await;
    Ok(())
}

fn ms(v: Option<f64>) -> Value {
    v.map(|v| json!((v * 10.0).round() / 10.0)).unwrap_or(Value::Null)
}

impl Ctx {
    /// The processes a user runs: `serve`, or api + scheduler + workers.
    async fn start_full(&mut self) -> anyhow::Result<()> {
        let (cfg, dir) = (&self.config_path, &self.dir);
        match self.args.deployment {
            Which::Embedded => self.procs.push(Proc::spawn(cfg, "serve", "serve", dir)?),
            Which::Distributed => {
                self.procs.push(Proc::spawn(cfg, "api", "api", dir)?);
                self.procs.push(Proc::spawn(cfg, "scheduler", "scheduler", dir)?);
                for i in 1..=self.args.workers {
                    self.procs
                        .push(Proc::spawn(cfg, "worker", &format!("worker-{i}"), dir)?);
                }
            }
        }
        deploy::wait_healthy(&self.http, &self.base, &mut self.procs).await?;
        let want = match self.args.deployment {
            Which::Embedded => 1,
            Which::Distributed => self.args.workers as i64,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL")
                .fetch_one(self.store.pool())
                .await?;
            if n >= want {
                break;
            }
            for p in &mut self.procs {
                p.check_alive()?;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "workers did not register within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Like the peers' harness: let consumers reach their fetch loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    /// A fresh tenant (its rate limit as high as the config's): (id, key).
    async fn tenant(&mut self) -> anyhow::Result<(String, String)> {
        self.tenants += 1;
        let key = self
            .store
            .create_tenant(&format!("t{}", self.tenants), Some(100_000_000))
            .await?;
        Ok((key.tenant.id.clone(), key.secret.clone()))
    }

    async fn snapshot(&mut self) -> Snapshot {
        let mut s = Snapshot::default();
        for p in &self.procs {
            if let Some(cpu) = p.pid().and_then(sample::cpu_s) {
                s.cpu.insert(p.name.clone(), cpu);
            }
        }
        s.cpu
            .insert("producer".into(), sample::cpu_s(std::process::id()).unwrap_or(0.0));
        if let Backing::Distributed { pg, redis } = &self.backing {
            if let Some(cpu) = pg.postmaster_pid().and_then(sample::cluster_cpu_s) {
                s.cpu.insert("postgres".into(), cpu);
            }
            if let Some(cpu) = redis.pid().and_then(sample::cpu_s) {
                s.cpu.insert("redis".into(), cpu);
            }
            let (st, x, w) = sample::pg_counters(&self.store).await;
            (s.pg_statements, s.pg_xacts, s.pg_rows_written) = (st, x, w);
        }
        if let Some(c) = &mut self.redis {
            s.redis_ops = sample::redis_ops(c).await;
        }
        s
    }

    async fn wait(&mut self, tenant: &str, n: usize) -> anyhow::Result<u64> {
        let procs = &mut self.procs;
        load::wait_succeeded(&self.store, tenant, n, self.args.timeout, &mut || {
            procs.iter_mut().try_for_each(|p| p.check_alive())
        })
        .await
    }

    fn rss(&self) -> Value {
        let mut m = serde_json::Map::new();
        for p in &self.procs {
            if let Some((rss, peak)) = p.pid().and_then(sample::rss_mb) {
                m.insert(p.name.clone(), json!({"rss_mb": rss.round(), "peak_mb": peak.round()}));
            }
        }
        Value::Object(m)
    }

    fn row(&self, case: &str, fields: Value) -> Value {
        let mut row = json!({
            "bench": "kairos-product",
            "deployment": format!("{:?}", self.args.deployment).to_lowercase(),
            "case": case,
            "n": self.args.n,
            "rep": self.args.rep,
            "workers": if self.args.deployment == Which::Embedded { 1 } else { self.args.workers },
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "ok": true,
        });
        if let (Value::Object(r), Value::Object(f)) = (&mut row, fields) {
            r.extend(f);
        }
        row
    }

    fn emit(&self, row: &Value) -> anyhow::Result<()> {
        println!("{row}");
        if let Some(path) = &self.args.out {
            use std::io::Write;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            writeln!(f, "{row}")?;
        }
        Ok(())
    }

    /// CPU seconds per process and per 1,000 jobs, statements per job.
    fn costs(&self, d: &Snapshot, jobs: usize, probes: u64) -> Value {
        let per_job = |v: Option<f64>| {
            v.map(|v| json!(((v / jobs as f64) * 100.0).round() / 100.0))
                .unwrap_or(Value::Null)
        };
        let cpu: BTreeMap<&str, f64> = d
            .cpu
            .iter()
            .map(|(k, v)| (k.as_str(), (v * 100.0).round() / 100.0))
            .collect();
        let kairos: f64 = d
            .cpu
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "postgres" | "redis" | "producer"))
            .map(|(_, v)| v)
            .sum();
        json!({
            "cpu_s": cpu,
            "cpu_s_kairos": (kairos * 100.0).round() / 100.0,
            "pg_statements_per_job": per_job(d.pg_statements),
            // Each store probe of the benchmark is one transaction.
            "pg_xacts_per_job": per_job(d.pg_xacts.map(|x| (x - probes as f64).max(0.0))),
            "pg_rows_written_per_job": per_job(d.pg_rows_written),
            "redis_ops_per_job": per_job(d.redis_ops),
        })
    }

    /// `single` / `batch`: N events posted while the workers run.
    async fn throughput(&mut self, case: &str, batch: usize, conns: usize) -> anyhow::Result<Vec<Value>> {
        let n = self.args.n;
        let (tenant, key) = self.tenant().await?;
        let load0 = sample::load1();
        let s0 = self.snapshot().await;
        let produced = load::produce(&self.http, &self.base, &key, case, n, batch, conns, Arc::default()).await?;
        let probes = self.wait(&tenant, n).await?;
        let s1 = self.snapshot().await;
        let jobs = load::jobs(&self.store, &tenant).await?;
        anyhow::ensure!(jobs.len() == n, "{} jobs recorded for {n} events", jobs.len());
        let last = jobs.iter().map(|j| j.2).max().unwrap_or(produced.last_ms);
        let mut lat: Vec<i64> = jobs.iter().map(|j| j.2 - j.1).collect();
        lat.sort_unstable();
        let secs = (last - produced.first_ms) as f64 / 1000.0;
        let ingest_s = (produced.last_ms - produced.first_ms) as f64 / 1000.0;
        let d = Snapshot::delta(&s0, &s1);
        let mut fields = json!({
            "events_per_request": batch,
            "conns": conns,
            "seconds": secs,
            "jobs_per_s": (n as f64 / secs).round(),
            "events_per_s": (n as f64 / ingest_s).round(),
            "request_p50_ms": ms(percentile(&produced.request_ms, 50.0)),
            "request_p99_ms": ms(percentile(&produced.request_ms, 99.0)),
            "job_p50_ms": percentile(&lat, 50.0),
            "job_p99_ms": percentile(&lat, 99.0),
            "load1_start": load0,
            "load1_end": sample::load1(),
            "rss": self.rss(),
        });
        if let (Value::Object(f), Value::Object(c)) = (&mut fields, self.costs(&d, n, probes)) {
            f.extend(c);
        }
        Ok(vec![self.row(case, fields)])
    }

    /// Tenant B's job latency: idle (median of 5), then one event posted
    /// when half of tenant A's flood (N events, 100 per request) has been
    /// accepted.
    async fn fairness(&mut self) -> anyhow::Result<Vec<Value>> {
        let n = self.args.n;
        let (tenant_b, key_b) = self.tenant().await?;
        let (tenant_a, key_a) = self.tenant().await?;
        let mut idle = Vec::new();
        for i in 0..5 {
            let id = format!("idle-{i}");
            post_one(&self.http, &self.base, &key_b, &id).await?;
            self.wait(&tenant_b, i + 1).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (event, created, finished) in load::jobs(&self.store, &tenant_b).await? {
            if event.starts_with("idle-") {
                idle.push(finished - created);
            }
        }
        idle.sort_unstable();
        let load0 = sample::load1();
        let accepted = Arc::new(AtomicUsize::new(0));
        let flood = {
            let (http, base, acc) = (self.http.clone(), self.base.clone(), accepted.clone());
            let conns = self.args.batch_conns;
            tokio::spawn(async move { load::produce(&http, &base, &key_a, "flood", n, 100, conns, acc).await })
        };
        while accepted.load(std::sync::atomic::Ordering::Relaxed) < n / 2 && !flood.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let b_posted = kairos_core::time::now_ms();
        post_one(&self.http, &self.base, &key_b, "mid-flood").await?;
        let produced = flood.await.context("the flood task panicked")??;
        self.wait(&tenant_b, 6).await?;
        self.wait(&tenant_a, n).await?;
        let b = load::jobs(&self.store, &tenant_b)
            .await?
            .into_iter()
            .find(|j| j.0 == "mid-flood")
            .context("tenant B's job is missing")?;
        let a = load::jobs(&self.store, &tenant_a).await?;
        let last = a.iter().map(|j| j.2).max().unwrap_or(produced.last_ms);
        let mut lat: Vec<i64> = a.iter().map(|j| j.2 - j.1).collect();
        lat.sort_unstable();
        let b_idle = percentile(&idle, 50.0).context("no idle latency")?;
        let b_flood = b.2 - b.1;
        Ok(vec![self.row(
            "fairness",
            json!({
                "events_per_request": 100,
                "conns": self.args.batch_conns,
                "b_idle_ms": b_idle,
                "b_flood_ms": b_flood,
                "b_flood_over_idle": (b_flood as f64 / (b_idle.max(1)) as f64 * 10.0).round() / 10.0,
                "b_posted_after_ms": b_posted - produced.first_ms,
                "a_jobs_per_s": (n as f64 / ((last - produced.first_ms) as f64 / 1000.0)).round(),
                "a_job_p50_ms": percentile(&lat, 50.0),
                "a_job_p99_ms": percentile(&lat, 99.0),
                "load1_start": load0,
                "load1_end": sample::load1(),
            }),
        )])
    }

    /// The API alone (no worker, no scheduler) under wrk.
    async fn ingest(&mut self) -> anyhow::Result<Vec<Value>> {
        let keep = match self.args.deployment {
            Which::Embedded => None,
            Which::Distributed => Some("api"),
        };
        let mut kept = Vec::new();
        for p in self.procs.drain(..) {
            if Some(p.name.as_str()) == keep {
                kept.push(p);
            } else {
                p.kill().await;
            }
        }
        self.procs = kept;
        if self.procs.is_empty() {
            self.procs
                .push(Proc::spawn(&self.config_path, "api", "api", &self.dir)?);
            deploy::wait_healthy(&self.http, &self.base, &mut self.procs).await?;
        }
        let mut rows = Vec::new();
        for batch in [1usize, 100] {
            let (_, key) = self.tenant().await?;
            let load0 = sample::load1();
            let s0 = self.snapshot().await;
            let prefix = format!("wrk{}-r{}-b{batch}", self.tenants, self.args.rep);
            let r = wrk::run(
                &self.args.wrk,
                &self.dir,
                &self.base,
                &key,
                &prefix,
                batch,
                self.args.wrk_threads,
                self.args.wrk_conns,
                self.args.wrk_duration,
            )
            .await?;
            let s1 = self.snapshot().await;
            let secs = r.duration_us as f64 / 1e6;
            let rps = r.requests as f64 / secs;
            let errors = r.errors_status + r.errors_connect + r.errors_read + r.errors_write + r.errors_timeout;
            let events = (r.requests - r.errors_status.min(r.requests)) as usize * batch;
            let mut fields = json!({
                "case": if batch == 1 { "ingest-1" } else { "ingest-100" },
                "events_per_request": batch,
                "wrk": format!("-t{} -c{} -d{}s", self.args.wrk_threads, self.args.wrk_conns, self.args.wrk_duration.as_secs()),
                "requests_per_s": (rps * 10.0).round() / 10.0,
                "events_per_s": (rps * batch as f64).round(),
                "request_p50_ms": r.p50_us as f64 / 1000.0,
                "request_p99_ms": r.p99_us as f64 / 1000.0,
                "request_max_ms": r.max_us as f64 / 1000.0,
                "errors": errors,
                "errors_status": r.errors_status,
                "load1_start": load0,
                "load1_end": sample::load1(),
                "rss": self.rss(),
            });
            let d = Snapshot::delta(&s0, &s1);
            if let (Value::Object(f), Value::Object(c)) = (&mut fields, self.costs(&d, events.max(1), 0)) {
                f.extend(c);
            }
            rows.push(self.row("ingest", fields));
        }
        Ok(rows)
    }

    /// A worker's memory with the sentiment model (all kinds, as a worker
    /// built from the shipped config carries) against one of the
    /// activity-only workers of this run.
    async fn rss_case(&mut self, config: &Config) -> anyhow::Result<Vec<Value>> {
        anyhow::ensure!(
            self.args.deployment == Which::Distributed,
            "the rss case needs separate worker processes (--deployment distributed)"
        );
        let cwd = std::env::current_dir()?;
        let abs = |p: &Path| cwd.join(p).display().to_string();
        let s = &config.sentiment;
        let mut toml = std::fs::read_to_string(&self.config_path)?;
        toml.push_str(&format!(
            "\n[sentiment]\nenabled = true\nencoder = \"{}\"\ninference_threads = {}\n",
            abs(&s.encoder),
            s.inference_threads
        ));
        if let Some(head) = &s.head {
            toml.push_str(&format!("head = \"{}\"\n", abs(head)));
        }
        if let Some(lib) = &s.runtime_library {
            toml.push_str(&format!("runtime_library = \"{}\"\n", abs(lib)));
        }
        let path = self.dir.join("kairos-sentiment.toml");
        std::fs::write(&path, toml)?;
        let before: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workers")
            .fetch_one(self.store.pool())
            .await?;
        let mut w = Proc::spawn(&path, "worker", "worker-sentiment", &self.dir)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workers")
                .fetch_one(self.store.pool())
                .await?;
            if n > before.0 {
                break;
            }
            w.check_alive()?;
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the sentiment worker did not register"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let with = w.pid().and_then(sample::rss_mb);
        w.kill().await;
        let without = self
            .procs
            .iter()
            .find(|p| p.name.starts_with("worker-"))
            .and_then(|p| p.pid())
            .and_then(sample::rss_mb);
        Ok(vec![self.row(
            "rss",
            json!({
                "worker_sentiment_rss_mb": with.map(|v| v.0.round()),
                "worker_sentiment_peak_mb": with.map(|v| v.1.round()),
                "worker_activity_rss_mb": without.map(|v| v.0.round()),
                "worker_activity_peak_mb": without.map(|v| v.1.round()),
            }),
        )])
    }
}

async fn post_one(http: &reqwest::Client, base: &str, key: &str, id: &str) -> anyhow::Result<()> {
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(&load::event(id, 0))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
    Ok(())
}
