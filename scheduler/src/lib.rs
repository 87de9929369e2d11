//! The scheduler role: turns time and stored intent into queued work.
//!
//! - [`ticker`]: cron schedules from config (time zones, per-tenant
//!   overrides, fan-out, jitter, misfire policies), each tick fired exactly
//!   once across any number of replicas — see the module doc for how.
//! - [`dispatcher`]: jobs left `pending` in the store (the API or a replica
//!   died between commit and queue push, or the queue was down) are queued.
//! - [`reconciler`]: a queue that lost its data (Redis restarted without
//!   it) gets the store's `queued` and `retrying` jobs again.
//! - [`reload`]: hot reload of the config on file change or SIGHUP.
//! - [`fire`] / [`plan`]: what a tick becomes, shared with the CLI and the
//!   admin API's "run now".

pub mod dispatcher;
pub mod fire;
pub mod plan;
pub mod reconciler;
pub mod reload;
pub mod ticker;

pub use dispatcher::Dispatcher;
pub use fire::{Firer, Outcome};
pub use reconciler::Reconciler;
pub use ticker::Ticker;

use kairos_core::config::{JobPolicies, JobPolicy, SchedulerConfig};
use kairos_core::schedule::ScheduleConfig;
use kairos_core::time::now_ms;
use kairos_core::StoreError;

/// What the scheduler role reads from the config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// `[[schedules]]`.
    pub schedules: Vec<ScheduleConfig>,
    /// `[jobs.KIND]`: the attempts of the jobs a tick creates.
    pub jobs: JobPolicies,
}

impl Settings {
    /// The policy for `kind`.
    pub fn policy(&self, kind: &str) -> JobPolicy {
        self.jobs.get(kind)
    }
}

/// Why a manual run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No schedule of that name.
    #[error("no schedule named `{0}`")]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fires schedule `name` now (its base and every tenant override), as
/// `kairos schedules run` and the admin API do. Returns jobs created per key.
pub async fn run_now(firer: &Firer, config: &Settings, name: &str) -> Result<Vec<(String, usize)>, RunError> {
    if !config.schedules.iter().any(|s| s.name == name) {
        return Err(RunError::Unknown(name.to_owned()));
    }
    let tenants = firer.store.list_tenants().await?;
    let tick = now_ms();
    let mut out = Vec::new();
    for p in plan::plan(&config.schedules, &tenants)
        .iter()
        .filter(|p| p.config.name == name)
    {
        let n = firer
            .fire(config, p, &tenants, tick, Outcome::Manual)
            .await?
            .unwrap_or(0);
        out.push((p.key.clone(), n));
    }
    Ok(out)
}
