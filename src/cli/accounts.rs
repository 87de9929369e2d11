//! `kairos accounts list / show`: account and person profiles for operators.

use crate::Config;
use kairos_core::profile::{resolve_language, resolve_time_zone};
use kairos_core::store::AccountFilter;
use kairos_core::time::to_rfc3339;

/// `kairos accounts ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountsCmd {
    /// A tenant's account profiles, by id.
    List {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Only this plan.
        #[arg(long)]
        plan: Option<String>,
        /// Page size (1-200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `next` cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One account: its profile, resolved language and zone, and its people.
    Show {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Account id.
        account: String,
    },
}

/// Runs an `accounts` command.
pub async fn run(config: Config, action: AccountsCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    let profiles = &config.profiles;
    match action {
        AccountsCmd::List {
            tenant,
            plan,
            limit,
            cursor,
        } => {
            let tenant = store.find_tenant(&tenant).await?;
            let defaults = profiles.tenant(&tenant);
            let page = store
                .list_accounts(
                    &tenant.id,
                    &AccountFilter {
                        plan,
                        reports_enabled: None,
                        limit,
                        cursor,
                    },
                )
                .await?;
            println!(
                "{:<24} {:<28} {:<10} {:<4} {:<20} {:<12} reports",
                "id", "name", "plan", "lang", "time zone", "renewal"
            );
            for a in &page.items {
                println!(
                    "{:<24} {:<28} {:<10} {:<4} {:<20} {:<12} {}",
                    a.id,
                    a.display_name.as_deref().unwrap_or("-"),
                    a.plan.as_deref().unwrap_or("-"),
                    resolve_language(None, Some(a), defaults, profiles),
                    resolve_time_zone(None, Some(a), defaults, profiles).name(),
                    a.renewal_date.as_deref().unwrap_or("-"),
                    if a.reports_enabled { "on" } else { "off" }
                );
            }
            match page.next_cursor {
                Some(c) => println!("more: kairos accounts list --tenant {} --cursor {c}", tenant.name),
                None => println!("({} accounts)", page.items.len()),
            }
        }
        AccountsCmd::Show { tenant, account } => {
            let tenant = store.find_tenant(&tenant).await?;
            let defaults = profiles.tenant(&tenant);
            let a = store.account(&tenant.id, &account).await?;
            match &a {
                Some(a) => {
                    println!("account:   {}", a.id);
                    println!("name:      {}", a.display_name.as_deref().unwrap_or("-"));
                    println!("plan:      {}", a.plan.as_deref().unwrap_or("-"));
                    println!("renewal:   {}", a.renewal_date.as_deref().unwrap_or("-"));
                    println!("owner:     {}", a.owner.as_deref().unwrap_or("-"));
                    println!("reports:   {}", if a.reports_enabled { "on" } else { "off" });
                    println!("attributes: {}", serde_json::Value::Object(a.attributes.clone()));
                    println!("updated:   {}", to_rfc3339(a.updated_at));
                }
                None => println!("account:   {account} (no profile)"),
            }
            println!(
                "language:  {} · time zone: {} (after fallbacks)",
                resolve_language(None, a.as_ref(), defaults, profiles),
                resolve_time_zone(None, a.as_ref(), defaults, profiles).name()
            );
            let people = store.all_people(&tenant.id, &account, None).await?;
            println!("people:    {}", people.len());
            for p in &people {
                let consented: Vec<&str> = p
                    .channels
                    .iter()
                    .map(String::as_str)
                    .filter(|c| p.consents_to(c))
                    .collect();
                println!(
                    "  {:<20} {:<10} {:<24} {:<32} {} {}  channels {} (consented: {})",
                    p.id,
                    p.role,
                    p.name.as_deref().unwrap_or("-"),
                    p.email.as_deref().unwrap_or("-"),
                    resolve_language(Some(p), a.as_ref(), defaults, profiles),
                    resolve_time_zone(Some(p), a.as_ref(), defaults, profiles).name(),
                    if p.channels.is_empty() {
                        "-".into()
                    } else {
                        p.channels.join(",")
                    },
                    if consented.is_empty() {
                        "none".into()
                    } else {
                        consented.join(",")
                    }
                );
            }
        }
    }
    Ok(())
}
