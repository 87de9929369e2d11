//! From `[[schedules]]` and the tenant list to the concrete schedules that
//! tick: a base schedule, plus one per tenant override.

use std::sync::Arc;

use kairos_core::schedule::{CronSchedule, FanOut, ScheduleConfig};
use kairos_core::store::{ScheduleSwitch, Tenant};

/// Who a planned schedule's jobs are for.
#[derive(Debug, Clone)]
pub enum Targets {
    /// No tenant (`fan_out = "none"`): one job per tick.
    System,
    /// Every tenant except those with an override of their own.
    AllTenantsExcept(Vec<String>),
    /// One tenant (an override).
    Tenant(Tenant),
}

/// A schedule as it ticks.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Unique key of its ticks: the name, or `name@tenant` for an override.
    pub key: String,
    /// The schedule's config.
    pub config: Arc<ScheduleConfig>,
    /// Parsed expression in its zone.
    pub cron: CronSchedule,
    /// Whether it fires: the operator's switch if any, else the config.
    pub enabled: bool,
    /// The operator's stored enable / disable, when set
    /// ([`apply_switches`]).
    pub switch: Option<ScheduleSwitch>,
    /// Whose jobs.
    pub targets: Targets,
}

/// Expands schedules and their per-tenant overrides. Overrides naming a
/// tenant that does not exist are logged and ignored (the tenant may be
/// created later; the next plan picks it up).
pub fn plan(schedules: &[ScheduleConfig], tenants: &[Tenant]) -> Vec<Planned> {
    let mut out = Vec::new();
    for s in schedules {
        let config = Arc::new(s.clone());
        let Ok(cron) = CronSchedule::parse(&s.cron, &s.timezone) else {
            // Validated at load; unreachable unless config was built by hand.
            tracing::error!(schedule = %s.name, "invalid cron expression; schedule skipped");
            continue;
        };
        let overridden: Vec<String> = s.overrides.iter().map(|o| o.tenant.clone()).collect();
        out.push(Planned {
            key: s.name.clone(),
            config: config.clone(),
            cron,
            enabled: s.enabled,
            switch: None,
            targets: match s.fan_out {
                FanOut::None => Targets::System,
                _ => Targets::AllTenantsExcept(overridden),
            },
        });
        for o in &s.overrides {
            let Some(tenant) = tenants.iter().find(|t| t.name == o.tenant) else {
                tracing::debug!(schedule = %s.name, tenant = %o.tenant, "override for an unknown tenant ignored");
                continue;
            };
            let expr = o.cron.as_deref().unwrap_or(&s.cron);
            let tz = o.timezone.as_deref().unwrap_or(&s.timezone);
            let Ok(cron) = CronSchedule::parse(expr, tz) else {
                tracing::error!(schedule = %s.name, tenant = %o.tenant, "invalid override; skipped");
                continue;
            };
            out.push(Planned {
                key: format!("{}@{}", s.name, o.tenant),
                config: config.clone(),
                cron,
                enabled: o.enabled.unwrap_or(s.enabled),
                switch: None,
                targets: Targets::Tenant(tenant.clone()),
            });
        }
    }
    out
}

/// Applies the operators' stored switches (`kairos schedules enable /
/// disable`, the dashboard) over the config's `enabled`. A switch naming
/// no planned key (a schedule since removed) is ignored.
pub fn apply_switches(plans: &mut [Planned], switches: &[ScheduleSwitch]) {
    for p in plans {
        if let Some(s) = switches.iter().find(|s| s.key == p.key) {
            p.enabled = s.enabled;
            p.switch = Some(s.clone());
        }
    }
}
