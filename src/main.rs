//! `kairos`: one binary for every role and every admin task.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos::{load_config, shutdown_signal, start, Roles, Runtime};
use kairos_core::store::{JobFilter, JobRun, JobState};
use kairos_core::time::to_rfc3339;

#[derive(Parser)]
#[command(name = "kairos", version, about = "Kairos: a job/worker engine for AI automation")]
struct Cli {
    /// Config file (TOML). Default: config/default.toml when present.
    /// Any key can be overridden with KAIROS__SECTION__KEY.
    #[arg(long, short, global = true, env = "KAIROS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: API, scheduler and worker.
    Serve,
    /// Run the HTTP API only.
    Api,
    /// Run a worker only.
    Worker,
    /// Run the scheduler only.
    Scheduler,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants and their API keys.
    Tenants {
        #[command(subcommand)]
        action: TenantsCmd,
    },
    /// Inspect and act on job runs.
    Jobs {
        #[command(subcommand)]
        action: JobsCmd,
    },
    /// Cron schedules: list them with their next fire times, or fire one now.
    Schedules {
        #[command(subcommand)]
        action: Option<SchedulesCmd>,
    },
    /// Show the whole product working on the embedded store: starts every
    /// role, creates demo tenants, posts events through the HTTP API, waits
    /// for the jobs and prints a summary.
    Demo(kairos::demo::DemoArgs),
    /// Train models (churn: from the store or a CSV; sentiment: labelled texts) and register them.
    Train {
        #[command(subcommand)]
        action: kairos::train::TrainCmd,
    },
    /// The model registry: list, show and activate versions.
    Models {
        #[command(subcommand)]
        action: kairos::train::ModelsCmd,
    },
    /// Account and person profiles: list and show.
    Accounts {
        #[command(subcommand)]
        action: kairos::cli_accounts::AccountsCmd,
    },
    /// The audit log of admin-side changes, newest first.
    Audit(kairos::cli_audit::AuditArgs),
    /// Check the config file and exit (non-zero with the reason if invalid).
    CheckConfig,
    /// Measure queue throughput and latency per backend; prints a table.
    Bench(kairos::bench::BenchArgs),
    /// Measure sentiment end to end (event → stored score): latency at a
    /// fixed rate and burst throughput, micro-batched vs unbatched.
    BenchSentiment(kairos::bench_sentiment::BenchSentimentArgs),
    /// Internal: a benchmark consumer process started by `kairos bench`.
    #[command(hide = true)]
    BenchWorker(kairos::bench::BenchWorkerArgs),
}

#[derive(Subcommand)]
enum TenantsCmd {
    /// Create a tenant and print its API key (shown once).
    Create {
        /// Unique name.
        name: String,
        /// Events per second (default: api.rate_per_second).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List tenants.
    List,
    /// Revoke the tenant's keys and print a new one.
    RotateKey {
        /// Tenant name or id.
        tenant: String,
    },
}

#[derive(Subcommand)]
enum SchedulesCmd {
    /// Every schedule (and tenant override) with its next 5 fire times in
    /// its own zone and its last run.
    List,
    /// Fire a schedule now (its base and every tenant override).
    Run {
        /// Schedule name.
        name: String,
    },
}

#[derive(Subcommand)]
enum JobsCmd {
    /// List job runs, newest first.
    List {
        /// Only this state (pending, queued, running, retrying, succeeded, dead).
        #[arg(long)]
        state: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this tenant (name or id).
        #[arg(long)]
        tenant: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one job run in full.
    Show {
        /// Job run id.
        id: String,
    },
    /// List dead-lettered jobs with their last error.
    Dead {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Re-queue a dead job with a fresh set of attempts.
    Retry {
        /// Job run id.
        id: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo prints its own summary; its deliberate retries need no log.
    let default_filter = match cli.command {
        Command::Demo(_) => "error",
        _ => "info,sqlx=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAIROS_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(cli.config.as_deref())?;
    let roles = match &cli.command {
        Command::Serve => Some(Roles::ALL),
        Command::Api => Some(Roles {
            api: true,
            scheduler: false,
            worker: false,
        }),
        Command::Worker => Some(Roles {
            api: false,
            scheduler: false,
            worker: true,
        }),
        Command::Scheduler => Some(Roles {
            api: false,
            scheduler: true,
            worker: false,
        }),
        _ => None,
    };
    if let Some(roles) = roles {
        return serve(config, roles).await;
    }
    match cli.command {
        Command::CheckConfig => {
            println!("config ok ({})", config.source);
            Ok(())
        }
        Command::Migrate => {
            let store = kairos_core::Store::connect(&config.store.url, 1)
                .await
                .with_context(|| format!("connecting to {}", kairos::redact(&config.store.url)))?;
            store.migrate().await?;
            println!("migrations applied to {}", kairos::redact(&config.store.url));
            Ok(())
        }
        Command::Tenants { action } => tenants(config, action).await,
        Command::Jobs { action } => jobs(config, action).await,
        Command::Schedules { action } => schedules(config, action.unwrap_or(SchedulesCmd::List)).await,
        Command::Demo(args) => kairos::demo::run(config, args).await,
        Command::Train { action } => kairos::train::train(config, action).await,
        Command::Models { action } => kairos::train::models(config, action).await,
        Command::Accounts { action } => kairos::cli_accounts::run(config, action).await,
        Command::Audit(args) => kairos::cli_audit::run(config, args).await,
        Command::Bench(args) => kairos::bench::run(config, args).await,
        Command::BenchWorker(args) => kairos::bench::worker(config, args).await,
        Command::BenchSentiment(args) => kairos::bench_sentiment::run(config, args).await,
        Command::Serve | Command::Api | Command::Worker | Command::Scheduler => unreachable_roles(),
    }
}

fn unreachable_roles() -> anyhow::Result<()> {
    anyhow::bail!("internal: role commands are handled before this point")
}

async fn serve(config: kairos_core::Config, roles: Roles) -> anyhow::Result<()> {
    let rt = Runtime::open(config).await?;
    let running = start(rt, roles).await?;
    if let Some(addr) = running.addr {
        tracing::info!("API listening on http://{addr}");
    }
    let token = running.shutdown_token();
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown requested; finishing in-flight work"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}

async fn open_store(config: &kairos_core::Config) -> anyhow::Result<kairos_core::Store> {
    let store = kairos_core::Store::connect(&config.store.url, 2)
        .await
        .with_context(|| format!("connecting to {}", kairos::redact(&config.store.url)))?;
    if config.store.migrate_on_start {
        store.migrate().await?;
    }
    Ok(store)
}

async fn tenants(config: kairos_core::Config, action: TenantsCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        TenantsCmd::Create { name, rate } => {
            let key = store.create_tenant(&name, rate).await?;
            let details = serde_json::json!({ "rate_per_second": rate });
            kairos::cli_audit::record(&store, Some(&key.tenant.id), "tenant.created", &name, details).await?;
            println!("tenant {} created (id {})", key.tenant.name, key.tenant.id);
            println!("API key (shown once, store it now): {}", key.secret);
        }
        TenantsCmd::List => {
            println!("{:<38} {:<24} {:>10}  created", "id", "name", "rate/s");
            for t in store.list_tenants().await? {
                let rate = t
                    .rate_per_second
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "default".into());
                println!("{:<38} {:<24} {:>10}  {}", t.id, t.name, rate, to_rfc3339(t.created_at));
            }
        }
        TenantsCmd::RotateKey { tenant } => {
            let key = store.rotate_key(&tenant).await?;
            let details = serde_json::json!({ "prefix": &key.secret[..14] });
            kairos::cli_audit::record(&store, Some(&key.tenant.id), "key.rotated", &key.tenant.name, details).await?;
            println!("old keys of {} revoked", key.tenant.name);
            println!("new API key (shown once, store it now): {}", key.secret);
        }
    }
    Ok(())
}

async fn schedules(config: kairos_core::Config, action: SchedulesCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        SchedulesCmd::List => {
            if config.schedules.is_empty() {
                println!("no schedules in {}", config.source);
                return Ok(());
            }
            let tenants = store.list_tenants().await?;
            let now = chrono::Utc::now();
            for p in kairos_scheduler::plan::plan(&config.schedules, &tenants) {
                let s = &p.config;
                let last = match store.last_tick(&p.key).await? {
                    Some(t) => format!(
                        "{} ({}, {} jobs, by {})",
                        to_rfc3339(t.tick_at),
                        t.outcome,
                        t.jobs,
                        t.replica
                    ),
                    None => "never".into(),
                };
                println!(
                    "{}{}  [{}]  cron `{}` in {}  → job `{}`, fan-out {:?}, misfire {:?}",
                    p.key,
                    if p.enabled { "" } else { " (disabled)" },
                    if p.enabled { "on" } else { "off" },
                    p.cron.expr(),
                    p.cron.tz(),
                    s.job,
                    s.fan_out,
                    s.misfire
                );
                println!("    last run: {last}");
                let next: Vec<String> = p.cron.upcoming(now, 5).iter().map(|t| t.to_rfc3339()).collect();
                println!("    next:     {}", next.join(", "));
            }
        }
        SchedulesCmd::Run { name } => {
            let queue = kairos_core::queue::connect(&config.queue).await?;
            let firer = kairos_scheduler::Firer {
                store,
                queue,
                replica: format!("cli-{}", kairos_worker::worker_id()),
            };
            for (key, jobs) in kairos_scheduler::run_now(&firer, &config, &name).await? {
                println!("{key}: fired now, {jobs} jobs created");
            }
        }
    }
    Ok(())
}

async fn kind_of(store: &kairos_core::Store, id: &str) -> anyhow::Result<String> {
    Ok(store.job(None, id).await?.with_context(|| format!("no job {id}"))?.kind)
}

fn print_jobs(jobs: &[JobRun]) {
    println!(
        "{:<36} {:<10} {:<9} {:>8}  {:<24} last error",
        "id", "kind", "state", "attempts", "created"
    );
    for j in jobs {
        println!(
            "{:<36} {:<10} {:<9} {:>4}/{:<3}  {:<24} {}",
            j.id,
            j.kind,
            j.state,
            j.attempts,
            j.max_attempts,
            to_rfc3339(j.created_at),
            j.last_error.as_deref().unwrap_or("")
        );
    }
}

async fn jobs(config: kairos_core::Config, action: JobsCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        JobsCmd::List {
            state,
            kind,
            tenant,
            limit,
        } => {
            let state = state
                .map(|s| s.parse::<JobState>())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let tenant_id = match tenant {
                Some(t) => Some(store.find_tenant(&t).await?.id),
                None => None,
            };
            print_jobs(
                &store
                    .jobs(&JobFilter {
                        tenant_id,
                        state,
                        kind,
                        limit,
                    })
                    .await?,
            );
        }
        JobsCmd::Dead { limit } => {
            print_jobs(
                &store
                    .jobs(&JobFilter {
                        state: Some(JobState::Dead),
                        limit,
                        ..JobFilter::default()
                    })
                    .await?,
            );
        }
        JobsCmd::Show { id } => {
            let j = store.job(None, &id).await?.with_context(|| format!("no job {id}"))?;
            let t = |v: Option<i64>| v.map(to_rfc3339).unwrap_or_else(|| "-".into());
            println!("id:          {}", j.id);
            println!("kind:        {}", j.kind);
            println!("tenant:      {}", j.tenant_id);
            println!("state:       {}", j.state);
            println!("attempts:    {}/{}", j.attempts, j.max_attempts);
            println!("event:       {}", j.event_id.as_deref().unwrap_or("-"));
            println!("created:     {}", to_rfc3339(j.created_at));
            println!("queued:      {}", t(j.queued_at));
            println!("started:     {}", t(j.started_at));
            println!("finished:    {}", t(j.finished_at));
            println!("worker:      {}", j.worker.as_deref().unwrap_or("-"));
            println!("last error:  {}", j.last_error.as_deref().unwrap_or("-"));
            println!("result:      {}", j.result_ref.as_deref().unwrap_or("-"));
            println!("payload:     {}", j.payload);
        }
        JobsCmd::Retry { id } => {
            let job = store
                .requeue_dead(&id, config.policy(&kind_of(&store, &id).await?).max_attempts)
                .await?;
            let details = serde_json::json!({ "kind": job.kind, "attempts": job.attempts });
            kairos::cli_audit::record(&store, Some(&job.tenant_id), "job.retried", &id, details).await?;
            let queue = kairos_core::queue::connect(&config.queue).await?;
            if let Err(e) = queue.push(&[job.message()]).await {
                store.unclaim(std::slice::from_ref(&job.id)).await?;
                return Err(anyhow::Error::new(e).context(
                    "the queue is unavailable; the job is pending and the scheduler will queue it when the queue is back",
                ));
            }
            println!(
                "job {id} re-queued: attempts {} so far, up to {} allowed",
                job.attempts, job.max_attempts
            );
        }
    }
    Ok(())
}
