//! `kairos jobs list | show | dead | retry | requeue`: inspect job runs,
//! re-queue dead ones, and push again jobs the queue may have lost.

use anyhow::Context;
use kairos_core::store::{JobFilter, JobRun, JobState};
use kairos_core::time::to_rfc3339;
use kairos_core::Store;

use crate::Config;

use super::table::{left, right, Table};

/// `kairos jobs ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum JobsCmd {
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
    /// Re-queue a dead job with more attempts (recorded on the job row,
    /// which decides when it is dead again).
    Retry {
        /// Job run id.
        id: String,
        /// Attempts to grant (default: the kind's `max_attempts`).
        #[arg(long)]
        attempts: Option<u32>,
    },
    /// Push again jobs the store holds as waiting (the queue lost them, or
    /// they were never pushed). A job that is on the queue as well is then
    /// delivered twice, and runs once: the store refuses to start it again
    /// once it has finished. The scheduler does this by itself when the
    /// queue comes back without its data.
    Requeue {
        /// Only jobs in this state: queued, retrying or pending.
        #[arg(long, default_value = "queued")]
        state: String,
        /// Only jobs waiting at least this long (since queued, or created
        /// if never queued), e.g. `10m`, `1h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
    },
}

async fn kind_of(store: &Store, id: &str) -> anyhow::Result<String> {
    Ok(store.job(None, id).await?.with_context(|| format!("no job {id}"))?.kind)
}

fn print_jobs(jobs: &[JobRun]) {
    let mut table = Table::new([
        left("id"),
        left("kind"),
        left("state"),
        right("attempts"),
        left("created"),
        left("last error"),
    ]);
    for j in jobs {
        table.row([
            j.id.clone(),
            j.kind.clone(),
            j.state.to_string(),
            format!("{}/{}", j.attempts, j.max_attempts),
            to_rfc3339(j.created_at),
            j.last_error.clone().unwrap_or_default(),
        ]);
    }
    print!("{table}");
}

/// Runs `kairos jobs ...`.
pub async fn run(config: Config, action: JobsCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
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
            let attempts = store.attempts(&j.id).await?;
            if !attempts.is_empty() {
                let mut table = Table::new([
                    right("attempt"),
                    left("outcome"),
                    left("started"),
                    right("ms"),
                    left("worker"),
                    left("error"),
                ]);
                for a in attempts {
                    table.row([
                        format!("#{}", a.attempt),
                        a.outcome.to_string(),
                        to_rfc3339(a.started_at),
                        (a.finished_at - a.started_at).to_string(),
                        a.worker,
                        a.error.unwrap_or_default(),
                    ]);
                }
                println!("attempts:");
                print!("{table}");
            }
        }
        JobsCmd::Retry { id, attempts } => {
            let extra = match attempts {
                Some(0) => anyhow::bail!("--attempts must be at least 1"),
                Some(n) => n,
                None => config.jobs.get(&kind_of(&store, &id).await?).max_attempts,
            };
            let queue = kairos_core::queue::connect(&config.queue).await?;
            let job = match kairos_core::enqueue::retry_dead(&store, queue.as_ref(), &id, extra).await {
                Ok(job) => job,
                Err(kairos_core::enqueue::EnqueueError::Queue(e)) => {
                    return Err(anyhow::Error::new(e).context(
                        "the queue is unavailable; the job is pending and the scheduler will queue it when the queue is back",
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "job {id} re-queued: {} attempts so far, {extra} more allowed (up to {} in all)",
                job.attempts, job.max_attempts
            );
        }
        JobsCmd::Requeue {
            state,
            older_than,
            kind,
        } => {
            let state: JobState = state.parse().map_err(anyhow::Error::msg)?;
            let age = i64::try_from(older_than.as_millis()).context("--older-than is too long")?;
            let filter = kairos_core::enqueue::RequeueFilter {
                states: vec![state],
                kind,
                before_ms: kairos_core::time::now_ms() - age,
            };
            let queue = kairos_core::queue::connect(&config.queue)
                .await
                .context("connecting to the queue")?;
            let n = kairos_core::enqueue::requeue(&store, queue.as_ref(), &filter)
                .await
                .context("re-queueing jobs")?;
            println!(
                "{n} {state} jobs waiting longer than {} re-queued",
                humantime::format_duration(older_than)
            );
        }
    }
    Ok(())
}
