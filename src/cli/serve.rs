//! `kairos serve | api | worker | scheduler`: run roles until SIGINT/SIGTERM,
//! then finish in-flight work and exit.

use anyhow::Context;
use clap::builder::PossibleValuesParser;

use crate::Config;

use crate::{shutdown_signal, start, Roles, Runtime};

/// `--kinds` of `kairos worker` and `kairos serve`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Job kinds this process runs, comma-separated (replaces `[worker]
    /// kinds`; default: every kind). Other kinds' queues are left to other
    /// workers, and their models are not loaded.
    #[arg(long, value_name = "KIND,...", value_delimiter = ',', value_parser = PossibleValuesParser::new(kairos_jobs::KINDS.iter().copied()))]
    kinds: Vec<String>,
}

impl WorkerArgs {
    /// `config` with `--kinds` in `[worker] kinds`, checked like the file's
    /// own list (a disabled kind is refused).
    pub fn apply(self, mut config: Config) -> anyhow::Result<Config> {
        if self.kinds.is_empty() {
            return Ok(config);
        }
        let mut kinds = self.kinds;
        let mut seen = std::collections::HashSet::new();
        kinds.retain(|k| seen.insert(k.clone()));
        config.worker.kinds = kinds;
        config.validate().context("--kinds (replaces [worker] kinds)")?;
        Ok(config)
    }
}

/// `kairos api`.
pub const API: Roles = Roles {
    api: true,
    scheduler: false,
    worker: false,
};
/// `kairos worker`.
pub const WORKER: Roles = Roles {
    api: false,
    scheduler: false,
    worker: true,
};
/// `kairos scheduler`.
pub const SCHEDULER: Roles = Roles {
    api: false,
    scheduler: true,
    worker: false,
};

/// Starts `roles` and runs them until a shutdown signal (or until they stop
/// on their own).
pub async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    let rt = Runtime::open(config).await?;
    let running = start(rt, roles).await?;
    if let Some(addr) = running.addr {
        tracing::info!("API listening on http://{addr}");
    }
    if let Some(addr) = running.metrics_addr {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let token = running.shutdown_token();
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown requested; finishing in-flight work"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}
