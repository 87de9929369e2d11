//! `kairos reports run | list`: generate (backfill) or re-send a tenant's
//! executive reports through the job system, with a progress bar over the
//! fan-out, and list what is stored.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::store::{AccountFilter, JobState};
use kairos_core::time::to_rfc3339;
use kairos_jobs::report::store::{self as reports, ReportFilter};
use kairos_jobs::report::Reporter;

use crate::Config;

use super::table::{left, right, Table};

/// `kairos reports ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReportsCmd {
    /// Make the reports of a tenant's accounts (and its portfolio report)
    /// for a period, as `report` jobs. Reports that exist are not made or
    /// sent again unless `--rerun` (a new version, sent again).
    Run {
        /// Tenant (name or id).
        #[arg(long)]
        tenant: String,
        /// Only this account (default: every account with reports on, plus
        /// the portfolio report).
        #[arg(long)]
        account: Option<String>,
        /// `2026-W48` or `2026-11` (default: the last complete period in
        /// each account's time zone).
        #[arg(long)]
        period: Option<String>,
        /// Write a new version even where one exists, and deliver it.
        #[arg(long)]
        rerun: bool,
        /// Record the jobs and return without waiting for them.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait for the jobs (a worker must be running).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The tenant's stored reports, newest first.
    List {
        /// Tenant (name or id).
        #[arg(long)]
        tenant: String,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Runs `kairos reports ...`.
pub async fn run(config: Config, action: ReportsCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    let kinds = config.kinds();
    let reporter = Reporter::new(
        kinds.reports.clone(),
        kinds.profiles.clone(),
        kinds.sentiment.text_fields.clone(),
        &kinds.policies,
    );
    match action {
        ReportsCmd::List { tenant, account, limit } => {
            let tenant = store.find_tenant(&tenant).await?;
            let filter = ReportFilter {
                account_id: account,
                limit,
                ..Default::default()
            };
            let (items, _) = reports::list(&store, &tenant.id, &filter).await?;
            let mut t = Table::new(vec![
                left("ID"),
                left("ACCOUNT"),
                left("PERIOD"),
                right("V"),
                left("LANG"),
                left("NARRATIVE"),
                right("GEN MS"),
                left("DELIVERY"),
                left("CREATED"),
            ]);
            for r in items {
                t.row(vec![
                    r.id,
                    if r.account_id.is_empty() {
                        "(portfolio)".into()
                    } else {
                        r.account_id
                    },
                    r.period,
                    r.version.to_string(),
                    r.language,
                    r.narrative_source,
                    r.generation_ms.to_string(),
                    r.delivery_state,
                    to_rfc3339(r.created_at),
                ]);
            }
            print!("{t}");
        }
        ReportsCmd::Run {
            tenant,
            account,
            period,
            rerun,
            no_wait,
            timeout,
        } => {
            let tenant = store.find_tenant(&tenant).await?;
            let mut accounts = Vec::new();
            match &account {
                Some(id) => accounts.push(
                    store
                        .account(&tenant.id, id)
                        .await?
                        .with_context(|| format!("account {id} has no profile in tenant {}", tenant.name))?,
                ),
                None => {
                    accounts = store
                        .all_accounts(
                            &tenant.id,
                            &AccountFilter {
                                reports_enabled: Some(true),
                                ..Default::default()
                            },
                        )
                        .await?
                }
            }
            let label = |a: Option<&kairos_core::profile::Account>| {
                period
                    .clone()
                    .unwrap_or_else(|| reporter.default_period(&tenant, a).label)
            };
            let mut jobs: Vec<_> = accounts
                .iter()
                .map(|a| reporter.job(&tenant, Some(&a.id), &label(Some(a)), rerun))
                .collect();
            if account.is_none() {
                jobs.push(reporter.job(&tenant, None, &label(None), rerun));
            }
            if let Some(p) = &period {
                kairos_jobs::report::period::Period::parse(p, kairos_jobs::report::period::UTC)
                    .map_err(anyhow::Error::msg)?;
            }
            let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
            let queue = kairos_core::queue::connect(&config.queue).await?;
            let new = reporter.record_jobs(&store, queue.as_ref(), jobs).await?;
            println!(
                "{} report jobs for tenant {} ({new} new, {} recorded before)",
                ids.len(),
                tenant.name,
                ids.len() - new
            );
            if no_wait {
                return Ok(());
            }
            let bar = indicatif::ProgressBar::new(ids.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} reports  {elapsed}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let deadline = Instant::now() + timeout;
            let settled = loop {
                let runs = store.jobs_by_ids(&ids).await?;
                let done: Vec<_> = runs
                    .iter()
                    .filter(|j| matches!(j.state, JobState::Succeeded | JobState::Dead))
                    .collect();
                bar.set_position(done.len() as u64);
                let dead = done.iter().filter(|j| j.state == JobState::Dead).count();
                bar.set_message(if dead > 0 {
                    format!("{dead} failed")
                } else {
                    String::new()
                });
                if done.len() == ids.len() {
                    break runs;
                }
                if Instant::now() > deadline {
                    bar.abandon();
                    bail!(
                        "{} of {} report jobs not finished after {} (is a worker running `report`?)",
                        ids.len() - done.len(),
                        ids.len(),
                        humantime::format_duration(timeout)
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            bar.finish();
            let dead: BTreeSet<String> = settled
                .iter()
                .filter(|j| j.state == JobState::Dead)
                .map(|j| format!("{}: {}", j.id, j.last_error.clone().unwrap_or_default()))
                .collect();
            for d in &dead {
                eprintln!("failed: {d}");
            }
            if !dead.is_empty() {
                bail!("{} of {} report jobs failed", dead.len(), ids.len());
            }
            println!("done: `kairos reports list --tenant {}` shows them", tenant.name);
        }
    }
    Ok(())
}
