//! `kairos schedules [list] | run NAME`: every cron schedule with its next
//! fire times and last run, or fire one now.

use crate::Config;
use kairos_core::time::to_rfc3339;

/// `kairos schedules ...` (no action: `list`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SchedulesCmd {
    /// Every schedule (and tenant override) with its next 5 fire times in
    /// its own zone and its last run.
    List,
    /// Fire a schedule now (its base and every tenant override).
    Run {
        /// Schedule name.
        name: String,
    },
}

/// Runs `kairos schedules ...`.
pub async fn run(config: Config, action: SchedulesCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    match action {
        // One block per schedule rather than a table: each has a line of
        // five upcoming times, too wide for a column.
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
            for (key, jobs) in kairos_scheduler::run_now(&firer, &config.scheduling(), &name).await? {
                println!("{key}: fired now, {jobs} jobs created");
            }
        }
    }
    Ok(())
}
