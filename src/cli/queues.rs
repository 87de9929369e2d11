//! `kairos queues list | pause KIND | resume KIND`: each job kind's queue
//! (depth, running, oldest ready job, paused), and pausing or resuming a
//! kind for every worker (recorded in the audit log). With `--tenant T`, a
//! pause holds back only that tenant's jobs (of KIND, or of every kind
//! without one): they are parked in the store and queued again on resume.

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
        /// Job kind (with `--tenant`, optional: all of the tenant's kinds).
        kind: Option<String>,
        /// Only this tenant's jobs (name or id); the other tenants' run on.
        #[arg(long)]
        tenant: Option<String>,
        /// Why, for the audit log and the listing.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let workers fetch KIND again (or the tenant's jobs, with `--tenant`).
    Resume {
        /// Job kind (with `--tenant`, optional: the all-kinds pause).
        kind: Option<String>,
        /// Lift this tenant's pause (name or id).
        #[arg(long)]
        tenant: Option<String>,
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
        QueuesCmd::Pause {
            kind,
            tenant: Some(tenant),
            reason,
        } => {
            let tenant = store.find_tenant(&tenant).await?;
            if let Some(k) = &kind {
                check_kind(k)?;
            }
            let what = kind.as_deref().unwrap_or("all kinds");
            if store
                .pause_tenant(&tenant.id, kind.as_deref(), &cli_actor(), reason.as_deref())
                .await?
            {
                println!(
                    "paused {what} of tenant {}: workers hold its jobs back within {:?} plus one fetch",
                    tenant.name, config.worker.pause_poll
                );
            } else {
                println!("{what} of tenant {} was already paused", tenant.name);
            }
        }
        QueuesCmd::Resume {
            kind,
            tenant: Some(tenant),
        } => {
            let tenant = store.find_tenant(&tenant).await?;
            let what = kind.as_deref().unwrap_or("all kinds");
            if store.resume_tenant(&tenant.id, kind.as_deref(), &cli_actor()).await? {
                println!(
                    "resumed {what} of tenant {}: its parked jobs are queued by the dispatcher",
                    tenant.name
                );
            } else {
                println!("{what} of tenant {} was not paused", tenant.name);
            }
        }
        QueuesCmd::Pause {
            kind,
            reason,
            tenant: None,
        } => {
            let kind = kind.context("name a KIND (or pass --tenant to pause a tenant)")?;
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
        QueuesCmd::Resume { kind, tenant: None } => {
            let kind = kind.context("name a KIND (or pass --tenant to resume a tenant)")?;
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
            let tenants = store.paused_tenants().await?;
            if !tenants.is_empty() {
                let names = store.list_tenants().await?;
                let mut t = Table::new([left("paused tenant"), left("kinds"), left("paused by")]);
                for p in tenants {
                    let why = p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                    t.row([
                        names
                            .iter()
                            .find(|n| n.id == p.tenant_id)
                            .map_or(p.tenant_id.clone(), |n| n.name.clone()),
                        if p.kind == kairos_core::store::ALL_KINDS {
                            "all".to_owned()
                        } else {
                            p.kind
                        },
                        format!("{} at {}{why}", p.paused_by, to_rfc3339(p.paused_at)),
                    ]);
                }
                println!();
                print!("{t}");
            }
        }
    }
    Ok(())
}
