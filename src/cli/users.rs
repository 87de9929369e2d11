//! `kairos users create`: dashboard users. The password comes from stdin
//! (a prompt without echo at a terminal, else the first line), or is
//! generated and printed once with `--generate`; only its argon2id hash is
//! stored.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use kairos_api::dashboard::auth::{create_user, generate_password, Role};

use crate::Config;

/// `kairos users ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UsersCmd {
    /// Create a dashboard user.
    Create {
        /// Login name (letters, digits, `.`, `-`, `_`, `@`).
        name: String,
        /// viewer (read only), operator (acts on jobs, queues, schedules) or admin (also models).
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Limit the user to this tenant (name or id): it sees and acts on nothing else.
        #[arg(long)]
        tenant: Option<String>,
        /// Generate a password and print it once instead of reading one.
        #[arg(long)]
        generate: bool,
    },
}

/// Runs `kairos users ...`.
pub async fn run(config: Config, cmd: UsersCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    match cmd {
        UsersCmd::Create {
            name,
            role,
            tenant,
            generate,
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let tenant = match tenant {
                Some(t) => Some(store.find_tenant(&t).await?),
                None => None,
            };
            let password = if generate {
                generate_password()
            } else {
                read_password()?
            };
            let user = create_user(&store, &name, &password, role, tenant.as_ref().map(|t| t.id.as_str()))
                .await
                .with_context(|| format!("creating dashboard user `{name}`"))?;
            let details = serde_json::json!({ "role": user.role });
            super::audit::record(
                &store,
                user.tenant_id.as_deref(),
                "dashboard_user.created",
                &name,
                details,
            )
            .await?;
            match &tenant {
                Some(t) => println!("dashboard user {name} created ({role}, tenant {})", t.name),
                None => println!("dashboard user {name} created ({role}, every tenant)"),
            }
            if generate {
                println!("password (shown once, store it now): {password}");
            }
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on stdin (or use --generate)");
    }
    Ok(password)
}
