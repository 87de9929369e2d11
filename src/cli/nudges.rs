//! `kairos nudges stats`: the funnel per rule, variant and channel, and
//! each experimenting nudge rule's variants against its holdout (the same
//! numbers as `GET /v1/nudges/stats`).

use anyhow::Context;
use kairos_jobs::nudge::{stats, store};

use super::table::{left, right, Table};
use crate::Config;

/// `kairos nudges …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NudgesCmd {
    /// Re-engagement per rule and variant against the holdout, with the
    /// difference's 95% interval; a winner only when it excludes zero.
    Stats {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Re-engagement window in days (an event of the person within it).
        #[arg(long, default_value_t = 7)]
        window_days: u32,
    },
}

/// Runs a `nudges` command.
pub async fn run(config: Config, cmd: NudgesCmd) -> anyhow::Result<()> {
    let NudgesCmd::Stats { tenant, window_days } = cmd;
    anyhow::ensure!(
        (1..=90).contains(&window_days),
        "--window-days must be between 1 and 90"
    );
    let store = super::open_store(&config).await?;
    let tenant = store.find_tenant(&tenant).await?;
    let funnel = store::funnel(
        &store,
        &tenant.id,
        i64::from(window_days) * 86_400_000,
        kairos_core::time::now_ms(),
    )
    .await
    .context("reading nudges")?;
    let rows = store::experiment_counts(&funnel);
    if !funnel.is_empty() {
        let mut t = Table::new([
            left("rule"),
            left("variant"),
            left("channel"),
            right("decided"),
            right("sent"),
            right("unknown"),
            right("opened"),
            right("clicked"),
            right("replied"),
            right("re-engaged"),
            right("churned"),
        ]);
        for f in &funnel {
            let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
            t.row([
                f.rule.clone(),
                dash(&f.variant),
                dash(&f.channel),
                f.decided.to_string(),
                f.sent.to_string(),
                f.unknown.to_string(),
                f.opened.to_string(),
                f.clicked.to_string(),
                f.replied.to_string(),
                f.re_engaged.to_string(),
                f.churned.to_string(),
            ]);
        }
        println!("funnel (nudges at least {window_days} days old):\n{t}");
    }
    let report = stats::report(&rows);
    if report.is_empty() {
        println!("no nudge rule with variants or a holdout has nudges at least {window_days} days old");
        return Ok(());
    }
    let pct = |c: stats::Counts| {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let r = if c.n == 0 { 0.0 } else { c.k as f64 / c.n as f64 };
        format!("{}/{} ({:.1}%)", c.k, c.n, r * 100.0)
    };
    println!(
        "{:<24} {:<12} {:<20} {:<20} {:<28} verdict",
        "rule", "variant", "re-engaged", "holdout", "difference [95% CI]"
    );
    for r in report {
        for v in r.variants {
            let (diff, verdict) = match v.vs_holdout {
                None => ("-".to_owned(), "no holdout"),
                Some(c) => (
                    format!(
                        "{:+.1} pp [{:+.1}, {:+.1}]",
                        c.difference * 100.0,
                        c.ci_low * 100.0,
                        c.ci_high * 100.0
                    ),
                    match c.variant_wins {
                        Some(true) => "better",
                        Some(false) => "worse",
                        None => "no difference shown",
                    },
                ),
            };
            println!(
                "{:<24} {:<12} {:<20} {:<20} {:<28} {verdict}",
                r.rule,
                v.variant,
                pct(v.counts),
                pct(r.holdout),
                diff
            );
        }
    }
    Ok(())
}
