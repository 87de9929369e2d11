//! `kairos queues list | pause KIND | resume KIND`: each job kind's queue
//! (depth, running, oldest ready job, paused), and pausing or resuming a
//! kind for every worker (recorded in the audit log).

use anyhow::Context;
use kairos_core::ops::queue_summaries;
use kairos_core::time::{now_ms, to_rfc3339};

use super::audit::cli_actor;
use super::table::{left, right, Table};
use crate::Config;

/// `kairos queues ...` (no action: `list`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueuesCmd {
    /// Every job kind: paused or not, jobs ready / leased / delayed on the
    /// queue, running, and the age of the oldest ready job.
    List,
    /// Stop every worker from fetching KIND (within `worker.pause_poll`
    /// plus one fetch); its jobs stay queued.
    Pause {
        /// Job kind.
        kind: String,
        /// Why, for the audit log and the listing.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let workers fetch KIND again.
    Resume {
        /// Job kind.
        kind: String,
    },
}

fn check_kind(kind: &str) -> anyhow::Result<()> {
    if kairos_jobs::KINDS.contains(&kind) {
        Ok(())
    } else {
        anyhow::bail!("unknown job kind `{kind}` (known: {})", kairos_jobs::KINDS.join(", "))
    }
}

/// Runs `kairos queues ...`.
pub async fn run(config: Config, action: QueuesCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    match action {
        QueuesCmd::Pause { kind, reason } => {
            check_kind(&kind)?;
            if store.pause_kind(&kind, &cli_actor(), reason.as_deref()).await? {
                println!(
                    "paused {kind}: workers stop fetching it within {:?} plus one fetch",
                    config.worker.pause_poll
                );
            } else {
                println!("{kind} was already paused");
            }
        }
        QueuesCmd::Resume { kind } => {
            check_kind(&kind)?;
            if store.resume_kind(&kind, &cli_actor()).await? {
                println!("resumed {kind}");
            } else {
                println!("{kind} was not paused");
            }
        }
        QueuesCmd::List => {
            let queue = kairos_core::queue::connect(&config.queue)
                .await
                .with_context(|| format!("connecting to the queue at {}", crate::redact(&config.queue.url)))?;
            let summaries = queue_summaries(&store, queue.as_ref(), kairos_jobs::KINDS).await?;
            let now = now_ms();
            let mut t = Table::new([
                left("kind"),
                left("state"),
                right("ready"),
                right("leased"),
                right("delayed"),
                right("running"),
                right("oldest ready"),
                left("paused by"),
            ]);
            for s in &summaries {
                t.row([
                    s.kind.clone(),
                    if s.paused.is_some() { "paused" } else { "active" }.to_owned(),
                    s.depth.ready.to_string(),
                    s.depth.in_flight.to_string(),
                    s.depth.delayed.to_string(),
                    s.running.to_string(),
                    s.oldest_ready_at
                        .map(|_| format!("{:.1}s", s.oldest_ready_age_secs(now)))
                        .unwrap_or_else(|| "-".into()),
                    s.paused
                        .as_ref()
                        .map(|p| {
                            let why = p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                            format!("{} at {}{why}", p.paused_by, to_rfc3339(p.paused_at))
                        })
                        .unwrap_or_default(),
                ]);
            }
            print!("{t}");
        }
    }
    Ok(())
}
