//! `kairos serve | api | worker | scheduler`: run roles until SIGINT/SIGTERM,
//! then finish in-flight work and exit.

use crate::Config;

use crate::{shutdown_signal, start, Roles, Runtime};

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
