//! `kairos tenants create | list | rotate-key`.

use crate::Config;
use kairos_core::time::to_rfc3339;

use super::table::{left, right, Table};

/// `kairos tenants ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant and print its API key (shown once).
    Create {
        /// Unique name.
        name: String,
        /// Events per second (default: api.rate_per_second).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List tenants.
    List,
    /// Revoke the tenant's keys and print a new one.
    RotateKey {
        /// Tenant name or id.
        tenant: String,
    },
}

/// Runs `kairos tenants ...`.
pub async fn run(config: Config, action: TenantsCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    match action {
        TenantsCmd::Create { name, rate } => {
            let key = store.create_tenant(&name, rate).await?;
            let details = serde_json::json!({ "rate_per_second": rate });
            super::audit::record(&store, Some(&key.tenant.id), "tenant.created", &name, details).await?;
            println!("tenant {} created (id {})", key.tenant.name, key.tenant.id);
            println!("API key (shown once, store it now): {}", key.secret);
        }
        TenantsCmd::List => {
            let mut table = Table::new([left("id"), left("name"), right("rate/s"), left("created")]);
            for t in store.list_tenants().await? {
                let rate = t
                    .rate_per_second
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "default".into());
                table.row([t.id, t.name, rate, to_rfc3339(t.created_at)]);
            }
            print!("{table}");
        }
        TenantsCmd::RotateKey { tenant } => {
            let key = store.rotate_key(&tenant).await?;
            let details = serde_json::json!({ "prefix": &key.secret[..14] });
            super::audit::record(&store, Some(&key.tenant.id), "key.rotated", &key.tenant.name, details).await?;
            println!("old keys of {} revoked", key.tenant.name);
            println!("new API key (shown once, store it now): {}", key.secret);
        }
    }
    Ok(())
}
