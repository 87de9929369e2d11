//! `kairos models monitor` and `kairos models retrain`: the model
//! lifecycle from the command line (the same report and decision the
//! `model_monitor` and `churn_retrain` jobs make on their schedules).

use kairos_core::time::{now_ms, to_rfc3339};
use kairos_core::Store;
use kairos_jobs::churn::retrain::{self, Evaluation};
use kairos_jobs::monitor::{self, MonitorReport};

use super::table::{left, right, Table};
use crate::Config;

/// Options of `kairos models monitor`.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// The tenant (name or id).
    #[arg(long)]
    pub tenant: String,
    /// Weeks to show (default `[monitor] weeks`).
    #[arg(long)]
    pub weeks: Option<u32>,
    /// Print the report as JSON (what `GET /v1/models/monitor` returns).
    #[arg(long)]
    pub json: bool,
    /// Also raise the `model_drift` alert if the latest week drifted, as the job does.
    #[arg(long)]
    pub alert: bool,
}

/// Options of `kairos models retrain`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrainArgs {
    /// The tenant (name or id); its own model is trained and compared with its active one.
    #[arg(long)]
    pub tenant: String,
}

/// Runs `kairos models monitor`.
pub async fn monitor(config: &Config, store: &Store, args: MonitorArgs) -> anyhow::Result<()> {
    let tenant = store.find_tenant(&args.tenant).await?;
    let weeks = args.weeks.unwrap_or(config.monitor.weeks);
    if !(1..=monitor::MAX_WEEKS).contains(&weeks) {
        anyhow::bail!("--weeks {weeks} is not in 1..={}", monitor::MAX_WEEKS);
    }
    let now = now_ms();
    let report = monitor::report(store, &tenant.id, &config.monitor, weeks, now).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&tenant.name, &report);
    }
    if args.alert && monitor::raise_drift_alert(store, &report, now).await? {
        println!("raised a {} alert", monitor::DRIFT_ALERT);
    }
    Ok(())
}

fn print_report(tenant: &str, r: &MonitorReport) {
    println!("tenant {tenant}, weeks since {}", to_rfc3339(r.since));
    match &r.churn {
        None => println!("\nchurn: no active model"),
        Some(c) => {
            println!(
                "\nchurn model {} (drift: PSI per feature against its {}; drifted at ≥ {})",
                c.model_version, c.reference, c.drift_threshold
            );
            let mut t = Table::new([
                left("week"),
                right("scored"),
                right("mean p"),
                left("levels"),
                right("max PSI"),
                left("drifted"),
            ]);
            for w in &c.weeks {
                let levels = w.levels.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>();
                let max = w
                    .psi
                    .values()
                    .copied()
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
                t.row([
                    w.week.clone(),
                    w.scored.to_string(),
                    format!("{:.3}", w.mean_probability),
                    levels.join(", "),
                    max.map(|m| format!("{m:.3}")).unwrap_or_else(|| "-".into()),
                    if w.drifted.is_empty() {
                        "-".into()
                    } else {
                        w.drifted.join(", ")
                    },
                ]);
            }
            if c.weeks.is_empty() {
                println!("  no scorings by this model in these weeks");
            } else {
                print!("{t}");
            }
        }
    }
    println!("\nsentiment:");
    if r.sentiment.is_empty() {
        println!("  no scorings in these weeks");
    } else {
        let mut t = Table::new([
            left("week"),
            right("scored"),
            left("labels"),
            right("low confidence"),
            left("models"),
        ]);
        for w in &r.sentiment {
            let labels = w.labels.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>();
            t.row([
                w.week.clone(),
                w.scored.to_string(),
                labels.join(", "),
                format!("{:.1} %", 100.0 * w.low_confidence_rate),
                w.model_versions.join(", "),
            ]);
        }
        print!("{t}");
    }
    println!("\nretraining decisions:");
    if r.evaluations.is_empty() {
        println!("  none yet (the `churn_retrain` job, or `kairos models retrain`)");
    } else {
        print_evaluations(&r.evaluations);
    }
}

fn print_evaluations(es: &[Evaluation]) {
    let mut t = Table::new([
        left("when"),
        left("decision"),
        left("challenger"),
        right("AUC"),
        left("champion"),
        right("AUC"),
        right("rows"),
        left("reason"),
    ]);
    let auc = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    for e in es {
        t.row([
            to_rfc3339(e.created_at),
            e.decision.clone(),
            e.challenger.clone().unwrap_or_else(|| "-".into()),
            auc(e.challenger_value),
            e.champion.clone().unwrap_or_else(|| "-".into()),
            auc(e.champion_value),
            format!("{} ({} churned)", e.rows_evaluated, e.positives),
            e.reason.clone(),
        ]);
    }
    print!("{t}");
}

/// Runs `kairos models retrain`.
pub async fn retrain(config: &Config, store: &Store, args: RetrainArgs) -> anyhow::Result<()> {
    let tenant = store.find_tenant(&args.tenant).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let e = retrain::retrain(store, &tenant, &config.churn.retrain, now_ms(), &id).await?;
    super::audit::record(
        store,
        Some(&tenant.id),
        "model.retrained",
        e.challenger.as_deref().unwrap_or("-"),
        serde_json::json!({"decision": e.decision, "reason": e.reason}),
    )
    .await?;
    print_evaluations(std::slice::from_ref(&e));
    Ok(())
}
