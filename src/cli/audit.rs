//! `kairos audit`: the audit log of admin-side changes, and the helper the
//! CLI commands record their changes with.

use anyhow::Context;
use kairos_core::store::NewAudit;
use kairos_core::time::to_rfc3339;
use kairos_core::Store;

use crate::Config;

/// `kairos audit` options.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Only this tenant's entries (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// Who is at the terminal: `cli:<$USER>`.
pub fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "unknown".into())
    )
}

/// Records a change made from the CLI. The change itself already
/// happened, so a failure here says exactly that.
pub async fn record(
    store: &Store,
    tenant_id: Option<&str>,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .record_audit(&NewAudit {
            tenant_id,
            actor: &cli_actor(),
            action,
            target,
            details,
        })
        .await
        .with_context(|| format!("{action} {target} was done, but recording it in the audit log failed"))?;
    Ok(())
}

/// Prints the newest entries.
pub async fn run(config: Config, args: AuditArgs) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    let tenant_id = match &args.tenant {
        Some(t) => Some(store.find_tenant(t).await?.id),
        None => None,
    };
    let entries = store.audit_log(tenant_id.as_deref(), args.limit).await?;
    if entries.is_empty() {
        println!("no audit entries");
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<16} {:<36} {:<38} details",
        "at", "actor", "action", "target", "tenant"
    );
    for e in entries {
        println!(
            "{:<24} {:<22} {:<16} {:<36} {:<38} {}",
            to_rfc3339(e.at),
            e.actor,
            e.action,
            e.target,
            e.tenant_id.as_deref().unwrap_or("-"),
            e.details
        );
    }
    Ok(())
}
