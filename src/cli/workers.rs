//! `kairos workers`: every worker process registered in the store, alive
//! first, with what it runs and when it was last heard from.

use kairos_core::ops::age_secs;
use kairos_core::time::to_rfc3339;

use super::table::{left, right, Table};
use crate::Config;

/// Prints the registered workers.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    let workers = store.workers().await?;
    if workers.is_empty() {
        println!("no workers registered");
        return Ok(());
    }
    let mut t = Table::new([
        left("id"),
        left("status"),
        left("host"),
        right("pid"),
        left("version"),
        right("in flight"),
        left("last heartbeat"),
        left("started"),
        left("kinds"),
    ]);
    for w in &workers {
        t.row([
            w.id.clone(),
            w.status.to_string(),
            w.host.clone(),
            w.pid.to_string(),
            w.version.clone(),
            w.in_flight.to_string(),
            format!("{:.1}s ago", age_secs(w.last_heartbeat)),
            to_rfc3339(w.started_at),
            w.kinds.join(","),
        ]);
    }
    print!("{t}");
    let alive = workers
        .iter()
        .filter(|w| w.status == kairos_core::store::WorkerStatus::Alive)
        .count();
    println!("{alive} alive of {}", workers.len());
    Ok(())
}
