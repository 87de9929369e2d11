//! `kairos bench-sentiment`: event → stored sentiment score, end to end
//! through the HTTP API, the queue, the micro-batching worker and the store
//! (embedded SQLite in a temporary directory), with the configured model.
//!
//! Two measurements, each run with micro-batching as configured and with
//! batching off (`batch_max = 1`) in the same run, so the table reports
//! ratios against a baseline measured on the same machine at the same time:
//! * latency at a fixed event rate (one event per request, like a product
//!   backend emitting comments): p50 / p99 from the POST to the stored score;
//! * throughput on a burst of events posted at once: scored events per second.
//!
//! And scoring on demand: `POST /v1/sentiment:analyze` driven open-loop at a
//! fixed request rate (default 50/s for 20 s) with 1-text and 10-text bodies;
//! each latency runs from the request's *scheduled* send time to its answer,
//! so a server that falls behind is charged for the wait (no coordinated
//! omission). `--analyze-only` skips the event runs.

use std::time::{Duration, Instant};

use crate::Config;
use anyhow::Context;
use serde_json::json;

use super::stats::{load1, percentile};
use super::table::{left, right, Table};
use crate::{start, Roles, Runtime};

/// Options of `kairos bench-sentiment`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSentimentArgs {
    /// Events per second during the latency run.
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
    /// Length of each latency run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Events in the throughput burst.
    #[arg(long, default_value_t = 1000)]
    pub burst: usize,
    /// Requests per second to `POST /v1/sentiment:analyze` (0: skip).
    #[arg(long, default_value_t = 50)]
    pub analyze_rate: u64,
    /// Length of each analyze run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub analyze_seconds: u64,
    /// Texts per analyze request, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10])]
    pub analyze_texts: Vec<usize>,
    /// Only the analyze runs (not the event latency and burst runs).
    #[arg(long)]
    pub analyze_only: bool,
}

const TEXTS: [&str; 10] = [
    "The export to CSV is broken since yesterday and it is blocking our team",
    "El informe semanal llegó tarde otra vez, no funciona",
    "Great dashboard, the new charts are really useful",
    "Me encanta la nueva integración con WhatsApp",
    "¿Pueden añadir filtros por región?",
    "Thanks for the quick fix on the billing page",
    "No funciona el login con Google, es urgente",
    "Support never answers, this is unacceptable",
    "Love the coaching reminders, my team uses them daily",
    "El soporte respondió rápido, gracias",
];

struct Run {
    label: String,
    /// Milliseconds, nearest rank.
    p50: i64,
    p99: i64,
    rate: f64,
    burst_per_s: f64,
}

/// Runs the benchmark and prints the table.
pub async fn run(config: Config, args: BenchSentimentArgs) -> anyhow::Result<()> {
    if !config.sentiment.enabled {
        anyhow::bail!(
            "[sentiment] is disabled in {}; the benchmark needs the model",
            config.source
        );
    }
    if args.rate == 0 || args.seconds == 0 || args.burst == 0 || args.analyze_seconds == 0 {
        anyhow::bail!("--rate, --seconds, --burst and --analyze-seconds must be at least 1");
    }
    if args.analyze_texts.iter().any(|&n| n == 0 || n > MAX_ANALYZE_TEXTS) {
        anyhow::bail!("--analyze-texts must be between 1 and {MAX_ANALYZE_TEXTS}");
    }
    if !args.analyze_only {
        events(&config, &args).await?;
    }
    if args.analyze_rate > 0 {
        analyze(config, &args).await?;
    }
    Ok(())
}

/// The event runs: latency at a fixed event rate and burst throughput, batched and unbatched.
async fn events(config: &Config, args: &BenchSentimentArgs) -> anyhow::Result<()> {
    let batched = config.sentiment.batch_max;
    println!(
        "sentiment end to end on embedded SQLite: {} inference thread(s), batch_max {batched}, batch_wait {:?}; rate {} ev/s for {} s, burst {}",
        config.sentiment.inference_threads, config.sentiment.batch_wait, args.rate, args.seconds, args.burst
    );
    let mut runs = Vec::new();
    for (label, batch_max) in [("micro-batched", batched), ("unbatched (batch_max 1)", 1)] {
        let mut c = config.clone();
        c.sentiment.batch_max = batch_max;
        runs.push(one(c, label, args).await?);
    }
    let base = &runs[1];
    println!();
    let mut table = Table::new([
        left("mode"),
        right("p50 ms"),
        right("p99 ms"),
        right("sent ev/s"),
        right("burst ev/s"),
        right("vs unbatched"),
    ]);
    for r in &runs {
        table.row([
            r.label.clone(),
            r.p50.to_string(),
            r.p99.to_string(),
            format!("{:.1}", r.rate),
            format!("{:.1}", r.burst_per_s),
            format!("{:.2}x", r.burst_per_s / base.burst_per_s),
        ]);
    }
    print!("{table}");
    println!(
        "(latency = POST sent → score row stored; burst = events scored per second when {} arrive at once)",
        args.burst
    );
    Ok(())
}

/// A started product on embedded SQLite in a temporary directory, with one tenant.
struct Bench {
    running: crate::Running,
    store: kairos_core::Store,
    base: String,
    key: kairos_core::store::ApiKey,
    _dir: tempfile::TempDir,
}

async fn start_bench(mut config: Config) -> anyhow::Result<Bench> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    config.store.url = db.clone();
    config.store.migrate_on_start = true;
    config.queue.backend = kairos_core::config::QueueBackendKind::Sqlite;
    config.queue.url = db;
    config.server.listen = "127.0.0.1:0".into();
    config.schedules.clear();
    config.rules = vec![kairos_core::rules::RuleConfig {
        on: "comment.created".into(),
        run: vec!["sentiment".into()],
        filter: Default::default(),
        delay: None,
        debounce: None,
        debounce_key: None,
        name: None,
    }];
    let rt = Runtime::open(config).await?;
    let store = rt.store.clone();
    let running = start(rt, Roles::ALL).await?;
    let base = format!("http://{}", running.addr.context("API did not start")?);
    let key = store.create_tenant("bench", None).await?;
    Ok(Bench {
        running,
        store,
        base,
        key,
        _dir: dir,
    })
}

async fn one(config: Config, label: &str, args: &BenchSentimentArgs) -> anyhow::Result<Run> {
    let Bench {
        running,
        store,
        base,
        key,
        _dir,
    } = start_bench(config).await?;
    let http = reqwest::Client::new();
    let post = |id: String, i: usize| {
        let http = http.clone();
        let url = format!("{base}/v1/events");
        let secret = key.secret.clone();
        async move {
            let body = json!({"id": id, "type": "comment.created", "account_id": format!("a{}", i % 50),
                              "occurred_at": "2026-11-20T10:00:00Z", "data": {"text": TEXTS[i % TEXTS.len()]}});
            let r = http.post(url).bearer_auth(secret).json(&body).send().await?;
            anyhow::ensure!(
                r.status() == reqwest::StatusCode::ACCEPTED,
                "ingest answered {}",
                r.status()
            );
            Ok::<_, anyhow::Error>(())
        }
    };
    // Warm-up: the first inference initialises the session.
    post("warm".into(), 0).await?;
    wait_scored(&store, &key.tenant.id, 1, Duration::from_secs(60)).await?;

    // Fixed rate.
    let total = (args.rate * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let mut sent_at = Vec::with_capacity(total);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let id = format!("lat-{i}");
        sent_at.push((id.clone(), kairos_core::time::now_ms()));
        tasks.spawn(post(id, i));
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    wait_scored(&store, &key.tenant.id, 1 + total, Duration::from_secs(120)).await?;
    let mut latencies = Vec::with_capacity(total);
    for (id, at) in &sent_at {
        let s = kairos_jobs::sentiment::scores::for_event(&store, &key.tenant.id, id)
            .await?
            .with_context(|| format!("event {id} was not scored"))?;
        latencies.push(s.scored_at - at);
    }
    latencies.sort_unstable();

    // Burst.
    let burst_start = Instant::now();
    for chunk in (0..args.burst).collect::<Vec<_>>().chunks(100) {
        let events: Vec<_> = chunk
            .iter()
            .map(|i| {
                json!({"id": format!("burst-{i}"), "type": "comment.created", "account_id": format!("a{}", i % 50),
                            "occurred_at": "2026-11-20T10:00:00Z", "data": {"text": TEXTS[i % TEXTS.len()]}})
            })
            .collect();
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key.secret)
            .json(&json!({ "events": events }))
            .send()
            .await?;
        anyhow::ensure!(
            r.status() == reqwest::StatusCode::ACCEPTED,
            "ingest answered {}",
            r.status()
        );
    }
    wait_scored(&store, &key.tenant.id, 1 + total + args.burst, Duration::from_secs(600)).await?;
    let burst_per_s = args.burst as f64 / burst_start.elapsed().as_secs_f64();
    running.shutdown().await;
    let run = Run {
        label: label.into(),
        p50: percentile(&latencies, 50.0).context("no latency measured")?,
        p99: percentile(&latencies, 99.0).context("no latency measured")?,
        rate,
        burst_per_s,
    };
    println!(
        "  {label}: p50 {} ms, p99 {} ms at {:.1} ev/s; burst {:.1} ev/s",
        run.p50, run.p99, run.rate, run.burst_per_s
    );
    Ok(run)
}

async fn wait_scored(store: &kairos_core::Store, tenant: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sentiment_scores WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(store.pool())
            .await?;
        if row.0 as usize >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} events scored within {timeout:?}",
            row.0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /v1/sentiment:analyze` accepts at most this many texts.
const MAX_ANALYZE_TEXTS: usize = 100;

/// The analyze runs: for each body size, requests sent open-loop at `--analyze-rate` for `--analyze-seconds`.
async fn analyze(config: Config, args: &BenchSentimentArgs) -> anyhow::Result<()> {
    let bench = start_bench(config).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/sentiment:analyze", bench.base);
    let request = |texts: usize, first: usize| {
        let (http, url, secret) = (http.clone(), url.clone(), bench.key.secret.clone());
        async move {
            let texts: Vec<&str> = (first..first + texts).map(|i| TEXTS[i % TEXTS.len()]).collect();
            let r = http
                .post(url)
                .bearer_auth(secret)
                .json(&json!({ "texts": texts }))
                .send()
                .await?;
            let status = r.status();
            let body = r.text().await?;
            anyhow::ensure!(status == reqwest::StatusCode::OK, "analyze answered {status}: {body}");
            Ok::<_, anyhow::Error>(())
        }
    };
    // Warm-up: the first request loads the model.
    request(10, 0).await?;
    println!(
        "\nPOST /v1/sentiment:analyze, open loop at {} requests/s for {} s (latency from the scheduled send to the answer):",
        args.analyze_rate, args.analyze_seconds
    );
    let mut table = Table::new([
        left("texts/request"),
        right("requests"),
        right("p50 ms"),
        right("p99 ms"),
        right("max ms"),
        right("sent req/s"),
        right("texts/s"),
        right("load 1 min (start → end)"),
    ]);
    for &n in &args.analyze_texts {
        let load_start = load1();
        let total = (args.analyze_rate * args.analyze_seconds) as usize;
        let interval = Duration::from_secs_f64(1.0 / args.analyze_rate as f64);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let scheduled = started + interval * i as u32;
            tokio::time::sleep_until(scheduled.into()).await;
            let call = request(n, i * n);
            tasks.spawn(async move {
                call.await?;
                Ok::<_, anyhow::Error>(scheduled.elapsed())
            });
        }
        let sent = total as f64 / started.elapsed().as_secs_f64();
        let mut latencies = Vec::with_capacity(total);
        while let Some(r) = tasks.join_next().await {
            latencies.push(r??.as_secs_f64() * 1000.0);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable_by(f64::total_cmp);
        let load_end = load1();
        let at = |p: f64| percentile(&latencies, p).map_or("-".to_string(), |v| format!("{v:.1}"));
        table.row([
            n.to_string(),
            total.to_string(),
            at(50.0),
            at(99.0),
            at(100.0),
            format!("{sent:.1}"),
            format!("{:.1}", (total * n) as f64 / elapsed),
            format!("{load_start:.2} → {load_end:.2}"),
        ]);
    }
    print!("{table}");
    bench.running.shutdown().await;
    Ok(())
}
