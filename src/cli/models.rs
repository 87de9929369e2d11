//! `kairos models list | show | activate`: the model registry (churn models
//! and sentiment heads) and which version scores each tenant.

use anyhow::Context;
use kairos_core::time::to_rfc3339;
use kairos_core::Store;

use crate::Config;
use kairos_jobs::churn::registry;

use super::table::{left, right, Table};
use super::train::churn::print_metrics;

/// `kairos models ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelsCmd {
    /// Every model version (churn with its AUC, sentiment heads with
    /// accuracy per language) and where each is active.
    List,
    /// One version: metrics, training, the full preprocessing and coefficients.
    Show {
        /// Model version.
        version: String,
    },
    /// Write a version's artifact (the JSON a model is stored as) to a file
    /// or standard output, to archive it or score with other tools.
    Export {
        /// Model version.
        version: String,
        /// Output file; standard output when absent.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
    /// Week by week: each active model's scorings, churn input drift (PSI
    /// per feature) and sentiment confidence, plus the retraining decisions.
    Monitor(super::models_monitor::MonitorArgs),
    /// Champion / challenger now (what the weekly `churn_retrain` job does):
    /// train on the window before the last horizon, compare with the active
    /// model on the last horizon, activate only if better by the margin.
    Retrain(super::models_monitor::RetrainArgs),
    /// Make a version the active model of its kind (globally, or for one tenant).
    Activate {
        /// Model version.
        version: String,
        /// Only for this tenant (name or id).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Runs `kairos models ...`.
pub async fn run(config: Config, cmd: ModelsCmd) -> anyhow::Result<()> {
    let store = super::open_store(&config).await?;
    match cmd {
        ModelsCmd::Monitor(args) => super::models_monitor::monitor(&config, &store, args).await?,
        ModelsCmd::Retrain(args) => super::models_monitor::retrain(&config, &store, args).await?,
        ModelsCmd::List => {
            let models = registry::list(&store).await?;
            println!("churn models:");
            if models.is_empty() {
                println!("no churn models; train one with `kairos train churn`");
            } else {
                let mut table = Table::new([
                    left("version"),
                    left("created"),
                    right("AUC"),
                    left("active in"),
                    left("source"),
                ]);
                for m in models {
                    let auc = m.metrics["auc"].as_f64().map(|a| format!("{a:.3}")).unwrap_or_default();
                    table.row([
                        m.version,
                        to_rfc3339(m.created_at),
                        auc,
                        active_cell(&m.active_in),
                        source_cell(m.source, m.scope),
                    ]);
                }
                print!("{table}");
            }
            list_sentiment(&store).await?;
        }
        ModelsCmd::Show { version } if is_sentiment(&store, &version).await? => {
            let info = kairos_jobs::model_registry::find(&store, &version).await?;
            let head = kairos_jobs::sentiment::registry::load(&store, &version).await?;
            println!("version:  {} (sentiment head)", info.version);
            println!("source:   {}", info.source);
            println!("created:  {}", to_rfc3339(info.created_at));
            println!("active:   {}", active_text(&info.active_in));
            println!("encoder:  {}", head.encoder().short());
            println!("{}", kairos_models::text::metrics_report(&head));
        }
        ModelsCmd::Activate { version, tenant } if is_sentiment(&store, &version).await? => {
            let tenant = match tenant {
                Some(t) => Some(store.find_tenant(&t).await?),
                None => None,
            };
            let info = kairos_jobs::model_registry::find(&store, &version).await?;
            let scope = tenant.as_ref().map(|t| t.id.clone()).or(info.scope);
            kairos_jobs::sentiment::registry::activate(&store, &version, scope.as_deref()).await?;
            super::audit::record(
                &store,
                scope.as_deref(),
                "model.activated",
                &version,
                serde_json::json!({"kind": "sentiment"}),
            )
            .await?;
            println!(
                "sentiment head {version} is now active for {}",
                tenant
                    .map(|t| format!("tenant {}", t.name))
                    .or(scope.map(|s| format!("tenant {s}")))
                    .unwrap_or_else(|| "every tenant without its own head".into())
            );
        }
        ModelsCmd::Show { version } => {
            let (info, model) = registry::get(&store, &version).await?;
            println!("version:  {}", info.version);
            println!("source:   {}", info.source);
            println!("created:  {}", to_rfc3339(info.created_at));
            println!("active:   {}", active_text(&info.active_in));
            print_metrics(&model);
            print_preprocessing(&model);
            println!(
                "intercept {:.4}; coefficients (per standardised unit):",
                model.intercept()
            );
            let mut table = Table::new([left("feature"), right("coefficient")]).indent(2);
            for (name, c) in model.encoded_features().iter().zip(model.coefficients()) {
                table.row([name.clone(), format!("{c:.4}")]);
            }
            print!("{table}");
        }
        ModelsCmd::Export { version, out } => {
            // Exactly the stored artifact, byte for byte: what a worker loads.
            let info = kairos_jobs::model_registry::find(&store, &version).await?;
            let bytes = kairos_jobs::model_registry::artifact(&store, &info.kind, &version)
                .await?
                .into_bytes();
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
                }
                None => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes)?;
                    stdout.write_all(b"\n")?;
                }
            }
        }
        ModelsCmd::Activate { version, tenant } => {
            let tenant = match tenant {
                Some(t) => Some(store.find_tenant(&t).await?),
                None => None,
            };
            let (info, model) = registry::get(&store, &version).await?;
            kairos_jobs::churn::check_account_schema(&model).map_err(anyhow::Error::msg)?;
            // A tenant-trained model activates for its tenant unless told otherwise.
            let scope = tenant.as_ref().map(|t| t.id.clone()).or(info.scope);
            registry::activate(&store, &version, scope.as_deref()).await?;
            super::audit::record(
                &store,
                scope.as_deref(),
                "model.activated",
                &version,
                serde_json::json!({"kind": "churn"}),
            )
            .await?;
            println!(
                "model {version} is now active for {}",
                tenant
                    .map(|t| format!("tenant {}", t.name))
                    .or(scope.map(|s| format!("tenant {s}")))
                    .unwrap_or_else(|| "every tenant without its own model".into())
            );
        }
    }
    Ok(())
}

/// Prints how each input column becomes model inputs, exactly as scoring
/// applies it: numeric columns' imputed value, mean and scale, categorical
/// columns' levels.
fn print_preprocessing(model: &kairos_models::churn::ChurnModel) {
    use kairos_models::churn::FeatureEncoding;
    println!("preprocessing (learned with the shipped fit, applied as is when scoring):");
    let mut table = Table::new([
        left("column"),
        left("kind"),
        right("missing → "),
        right("mean"),
        right("scale (std)"),
        right("missing in training"),
        left("levels (one input each; blank or unseen → all 0)"),
    ])
    .indent(2);
    for f in &model.schema().features {
        match &f.encoding {
            FeatureEncoding::Numeric {
                impute,
                mean,
                std,
                missing_in_training,
            } => table.row([
                f.name.clone(),
                "numeric".into(),
                format!("{impute:.4}"),
                format!("{mean:.4}"),
                format!("{std:.4}"),
                missing_in_training.to_string(),
                String::new(),
            ]),
            FeatureEncoding::Categorical { levels } => table.row([
                f.name.clone(),
                "categorical".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                levels.join(", "),
            ]),
        }
    }
    print!("{table}");
    let dropped = &model.training().dropped_columns;
    if !dropped.is_empty() {
        let names: Vec<String> = dropped.iter().map(|d| format!("{} ({:?})", d.name, d.reason)).collect();
        println!("  columns not used: {}", names.join(", "));
    }
}

async fn is_sentiment(store: &Store, version: &str) -> anyhow::Result<bool> {
    Ok(kairos_jobs::model_registry::find(store, version).await?.kind == kairos_jobs::sentiment::registry::KIND)
}

fn active_text(active_in: &[String]) -> String {
    if active_in.is_empty() {
        "no".into()
    } else {
        active_in.join(", ")
    }
}

fn active_cell(active_in: &[String]) -> String {
    if active_in.is_empty() {
        "-".into()
    } else {
        active_in.join(",")
    }
}

fn source_cell(source: String, scope: Option<String>) -> String {
    match scope {
        Some(s) => format!("{source} (tenant {s})"),
        None => source,
    }
}

/// Prints the sentiment heads: held-out accuracy overall and per language.
async fn list_sentiment(store: &Store) -> anyhow::Result<()> {
    let heads = kairos_jobs::sentiment::registry::list(store).await?;
    println!();
    println!("sentiment heads:");
    if heads.is_empty() {
        println!("  none; a worker registers sentiment.head at start, or `kairos train sentiment --data FILE`");
        return Ok(());
    }
    let mut table = Table::new([
        left("version"),
        left("created"),
        right("acc"),
        right("en"),
        right("es"),
        left("active in"),
        left("source"),
    ]);
    let acc = |v: &serde_json::Value| v["accuracy"].as_f64().map(|a| format!("{a:.3}")).unwrap_or("-".into());
    for m in heads {
        table.row([
            m.version,
            to_rfc3339(m.created_at),
            acc(&m.metrics["overall"]),
            acc(&m.metrics["per_language"]["en"]),
            acc(&m.metrics["per_language"]["es"]),
            active_cell(&m.active_in),
            source_cell(m.source, m.scope),
        ]);
    }
    print!("{table}");
    Ok(())
}
