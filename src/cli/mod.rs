//! The `kairos` command line: the clap definitions and one module per
//! command. Only this module sees flags; the process assembly it calls
//! (`Runtime`, `start`, ...) lives in the crate root and is shared with the
//! integration tests.

mod accounts;
mod audit;
mod bench;
mod bench_product;
mod bench_sentiment;
pub mod demo;
mod jobs;
mod migrate;
mod models;
mod models_monitor;
mod nudges;
mod queues;
mod reports;
mod schedules;
mod score;
mod serve;
mod stats;
mod table;
mod tenants;
mod train;
mod users;
mod workers;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos_core::Store;

use crate::Config;

use crate::load_config;

/// `kairos`: one binary for every role and every admin task.
#[derive(Parser)]
#[command(name = "kairos", version, about = "Kairos: a job/worker engine for AI automation")]
pub struct Cli {
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
    Serve(serve::WorkerArgs),
    /// Run the HTTP API only.
    Api,
    /// Run a worker only.
    Worker(serve::WorkerArgs),
    /// Run the scheduler only.
    Scheduler,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants and their API keys.
    Tenants {
        #[command(subcommand)]
        action: tenants::TenantsCmd,
    },
    /// Inspect and act on job runs.
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsCmd,
    },
    /// Job kinds' queues: list them (depth, running, oldest ready, paused), pause or resume one.
    Queues {
        #[command(subcommand)]
        action: Option<queues::QueuesCmd>,
    },
    /// Worker processes registered in the store: alive, dead or stopped, with host, pid, kinds and in-flight jobs.
    Workers,
    /// Cron schedules: list them with their next fire times, or fire one now.
    Schedules {
        #[command(subcommand)]
        action: Option<schedules::SchedulesCmd>,
    },
    /// Show the whole product working on the embedded store: starts every
    /// role, creates demo tenants, posts events through the HTTP API, waits
    /// for the jobs and prints a summary.
    Demo(demo::DemoArgs),
    /// Train models (churn: from the store or a CSV; sentiment: labelled texts) and register them.
    Train {
        #[command(subcommand)]
        action: train::TrainCmd,
    },
    /// Account and person profiles: list and show.
    Accounts {
        #[command(subcommand)]
        action: accounts::AccountsCmd,
    },
    /// Executive reports: make (backfill, re-send) and list them.
    Reports {
        #[command(subcommand)]
        action: reports::ReportsCmd,
    },
    /// The audit log of admin-side changes, newest first.
    Audit(audit::AuditArgs),
    /// Proactive nudges: A/B stats.
    Nudges {
        #[command(subcommand)]
        action: nudges::NudgesCmd,
    },
    /// The model registry: list, show and activate versions.
    Models {
        #[command(subcommand)]
        action: models::ModelsCmd,
    },
    /// Apply a model to new rows (churn: a CSV in, scored CSV out).
    Score {
        #[command(subcommand)]
        action: score::ScoreCmd,
    },
    /// Dashboard users: create one (viewer, operator or admin; optionally one tenant's).
    Users {
        #[command(subcommand)]
        action: users::UsersCmd,
    },
    /// Check the config file and exit (non-zero with the reason if invalid).
    CheckConfig,
    /// Measure queue throughput and latency per backend; prints a table.
    Bench(bench::BenchArgs),
    /// Measure sentiment end to end (event → stored score): latency at a
    /// fixed rate and burst throughput, micro-batched vs unbatched.
    BenchSentiment(bench_sentiment::BenchSentimentArgs),
    /// Measure the product path (events posted to the API → jobs recorded)
    /// on the real processes of one deployment; one JSON line per case.
    BenchProduct(bench_product::BenchProductArgs),
    /// Internal: a benchmark consumer process started by `kairos bench`.
    #[command(hide = true)]
    BenchWorker(bench::worker::BenchWorkerArgs),
}

impl Cli {
    /// Whether the command runs roles (in-process or as child processes):
    /// a long-lived process, as opposed to a one-shot command that prints
    /// its answer and exits.
    pub fn runs_roles(&self) -> bool {
        matches!(
            self.command,
            Command::Serve(_)
                | Command::Api
                | Command::Worker(_)
                | Command::Scheduler
                | Command::Demo(_)
                | Command::Bench(_)
                | Command::BenchSentiment(_)
                | Command::BenchProduct(_)
                | Command::BenchWorker(_)
        )
    }

    /// The log filter when `KAIROS_LOG` is not set.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            // The demo prints its own summary; its deliberate retries need no log.
            Command::Demo(_) => "error",
            _ => "info,sqlx=warn",
        }
    }
}

/// Runs the parsed command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(args.apply(config)?, crate::Roles::ALL).await,
        Command::Api => serve::run(config, serve::API).await,
        Command::Worker(args) => serve::run(args.apply(config)?, serve::WORKER).await,
        Command::Scheduler => serve::run(config, serve::SCHEDULER).await,
        Command::CheckConfig => {
            println!("config ok ({})", config.source);
            Ok(())
        }
        Command::Migrate => migrate::run(config).await,
        Command::Tenants { action } => tenants::run(config, action).await,
        Command::Jobs { action } => jobs::run(config, action).await,
        Command::Queues { action } => queues::run(config, action.unwrap_or(queues::QueuesCmd::List)).await,
        Command::Workers => workers::run(config).await,
        Command::Schedules { action } => schedules::run(config, action.unwrap_or(schedules::SchedulesCmd::List)).await,
        Command::Demo(args) => demo::run(config, args).await,
        Command::Train { action } => train::run(config, action).await,
        Command::Models { action } => models::run(config, action).await,
        Command::Score { action } => score::run(config, action).await,
        Command::Accounts { action } => accounts::run(config, action).await,
        Command::Reports { action } => reports::run(config, action).await,
        Command::Audit(args) => audit::run(config, args).await,
        Command::Users { action } => users::run(config, action).await,
        Command::Nudges { action } => nudges::run(config, action).await,
        Command::Bench(args) => bench::run(config, args).await,
        Command::BenchWorker(args) => bench::worker::run(config, args).await,
        Command::BenchSentiment(args) => bench_sentiment::run(config, args).await,
        Command::BenchProduct(args) => bench_product::run(config, args).await,
    }
}

/// The store for an admin command: a small pool, migrated first when
/// `store.migrate_on_start` is set.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.store.url, 2)
        .await
        .with_context(|| format!("connecting to {}", crate::redact(&config.store.url)))?;
    if config.store.migrate_on_start {
        store.migrate().await?;
    }
    Ok(store)
}
