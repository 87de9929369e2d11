//! `kairos migrate`: apply the database migrations and exit.

use anyhow::Context;
use kairos_core::Store;

use crate::Config;

use crate::redact;

/// Applies every pending migration to `store.url`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.store.url, 1)
        .await
        .with_context(|| format!("connecting to {}", redact(&config.store.url)))?;
    store.migrate().await?;
    println!("migrations applied to {}", redact(&config.store.url));
    Ok(())
}
