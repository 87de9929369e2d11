//! `kairos schedules [list] | run NAME | enable KEY | disable KEY`: every
//! cron schedule with its next fire times, last run and whether it is on
//! (an operator's stored switch wins over the config file); fire one now;
//! switch one on or off for every scheduler replica (audited).

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
    /// Switch a schedule on for every scheduler replica (stored, so it
    /// survives restarts; wins over `enabled` in the config file).
    Enable {
        /// Schedule key: its name, or `name@tenant` for a tenant override.
        key: String,
    },
    /// Switch a schedule off for every scheduler replica.
    Disable {
        /// Schedule key: its name, or `name@tenant` for a tenant override.
        key: String,
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
            let mut plans = kairos_scheduler::plan::plan(&config.schedules, &tenants);
            kairos_scheduler::plan::apply_switches(&mut plans, &store.schedule_switches().await?);
            for p in plans {
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
                if let Some(sw) = &p.switch {
                    println!(
                        "    switched {} by {} at {} (the config says {})",
                        if sw.enabled { "on" } else { "off" },
                        sw.set_by,
                        to_rfc3339(sw.set_at),
                        if config_enabled(&p) { "on" } else { "off" }
                    );
                }
                println!("    last run: {last}");
                let next: Vec<String> = p.cron.upcoming(now, 5).iter().map(|t| t.to_rfc3339()).collect();
                println!("    next:     {}", next.join(", "));
            }
        }
        SchedulesCmd::Enable { key } => switch(&config, &store, &key, true).await?,
        SchedulesCmd::Disable { key } => switch(&config, &store, &key, false).await?,
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

/// What the config file alone says of a planned schedule.
fn config_enabled(p: &kairos_scheduler::plan::Planned) -> bool {
    match &p.targets {
        kairos_scheduler::plan::Targets::Tenant(t) => p
            .config
            .overrides
            .iter()
            .find(|o| o.tenant == t.name)
            .and_then(|o| o.enabled)
            .unwrap_or(p.config.enabled),
        _ => p.config.enabled,
    }
}

/// `kairos schedules enable|disable KEY`.
async fn switch(config: &Config, store: &kairos_core::Store, key: &str, on: bool) -> anyhow::Result<()> {
    let tenants = store.list_tenants().await?;
    anyhow::ensure!(
        kairos_scheduler::plan::plan(&config.schedules, &tenants)
            .iter()
            .any(|p| p.key == key),
        "no schedule `{key}` (see `kairos schedules`)"
    );
    store.switch_schedule(key, on, &super::audit::cli_actor()).await?;
    println!(
        "{key} switched {}: every scheduler replica {} it from its next round",
        if on { "on" } else { "off" },
        if on { "fires" } else { "skips" }
    );
    Ok(())
}
