//! `kairos train churn` and `kairos models list / show / activate`: train a
//! churn model from the store (labels from churn events after a cutoff,
//! features as of the cutoff) or from any labelled CSV, register it as a new
//! inactive version, and choose which version scores each tenant.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kairos_core::store::Tenant;
use kairos_core::time::to_rfc3339;
use kairos_core::{Config, Store};
use kairos_jobs::churn::{features, registry};
use kairos_models::churn::{self, ChurnModel, CsvOptions, Dataset, TrainConfig, TrainEvent};

/// `kairos train ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TrainCmd {
    /// Train a churn model from the store (default) or from `--csv`.
    Churn(TrainChurnArgs),
    /// Train a sentiment head on labelled texts (`--data FILE...`).
    Sentiment(crate::train_sentiment::TrainSentimentArgs),
}

/// Options of `kairos train churn`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainChurnArgs {
    /// Only this tenant's accounts (name or id); the model is scoped to it.
    /// Default: every tenant, a global model.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Features as of this time (RFC 3339); labels are churn events in
    /// (cutoff, cutoff + horizon]. Default: now − horizon.
    #[arg(long)]
    pub cutoff: Option<String>,
    /// Label window after the cutoff.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub horizon: Duration,
    /// Train from this CSV instead of the store.
    #[arg(long, requires = "label")]
    pub csv: Option<PathBuf>,
    /// The CSV's label column (yes/no, true/false, 1/0, churned/...).
    #[arg(long)]
    pub label: Option<String>,
    /// A CSV id column to drop from the features.
    #[arg(long)]
    pub id_column: Option<String>,
    /// Make the new version active right away.
    #[arg(long)]
    pub activate: bool,
    /// Split and search seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// `kairos models ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelsCmd {
    /// Every model version (churn with its AUC, sentiment heads with
    /// accuracy per language) and where each is active.
    List,
    /// One version: metrics, schema, coefficients.
    Show {
        /// Model version.
        version: String,
    },
    /// Make a version the active model of its kind (globally, or for one tenant).
    Activate {
        /// Model version.
        version: String,
        /// Only for this tenant (name or id).
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.store.url, 2)
        .await
        .with_context(|| format!("connecting to {}", crate::redact(&config.store.url)))?;
    if config.store.migrate_on_start {
        store.migrate().await?;
    }
    Ok(store)
}

/// A fresh, unique model version name.
pub fn new_version() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("churn-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &id[..6])
}

/// Labelled accounts of `tenants` at `cutoff_ms`: features as of the cutoff,
/// label = churned within the horizon. Ids are `tenant/account`.
pub async fn dataset_from_store(
    store: &Store,
    tenants: &[Tenant],
    cutoff_ms: i64,
    horizon_ms: i64,
) -> anyhow::Result<Dataset> {
    let (mut all_features, mut labels, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for t in tenants {
        let labelled = features::labelled_accounts(store, &t.id, cutoff_ms, horizon_ms).await?;
        let accounts: Vec<String> = labelled.iter().map(|(a, _)| a.clone()).collect();
        let f = features::account_features(store, &t.id, &accounts, cutoff_ms).await?;
        for ((account, churned), f) in labelled.into_iter().zip(f) {
            ids.push(format!("{}/{account}", t.name));
            labels.push(churned);
            all_features.push(f);
        }
    }
    if labels.is_empty() {
        anyhow::bail!(
            "no accounts with events before the cutoff {} (and not churned by then)",
            to_rfc3339(cutoff_ms)
        );
    }
    Ok(Dataset::from_accounts("store", &all_features, &labels, Some(ids))?)
}

/// Trains with a text progress bar on stderr; returns the model (version set).
pub fn train_dataset(data: &Dataset, seed: u64, show_progress: bool) -> anyhow::Result<ChurnModel> {
    let config = TrainConfig {
        seed,
        version: Some(new_version()),
        ..TrainConfig::default()
    };
    let mut progress = |e: &TrainEvent| {
        if !show_progress {
            return;
        }
        match e {
            TrainEvent::Split { train, test } => {
                eprintln!("split: {train} training rows, {test} held out (stratified)")
            }
            TrainEvent::SearchStep { step, steps, .. } => {
                let width = 30;
                let done = step * width / (*steps).max(1);
                eprint!(
                    "\rsearching L2 strength [{}{}] {step}/{steps}",
                    "#".repeat(done),
                    ".".repeat(width - done)
                );
                if step == steps {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            }
            TrainEvent::FinalFit { alpha, rows, features } => {
                eprintln!("final fit: alpha {alpha}, {rows} rows × {features} encoded features")
            }
            _ => {}
        }
    };
    let outcome = churn::train_with_progress(data, &config, &mut progress).context("training the churn model")?;
    Ok(outcome.model)
}

/// Prints a model's held-out metrics.
pub fn print_metrics(model: &ChurnModel) {
    let m = model.metrics();
    let pct = |v: Option<f64>| v.map(|v| format!("{:.3}", v)).unwrap_or_else(|| "n/a".into());
    println!(
        "held-out ({} rows, {} churned): AUC {:.3} · accuracy {:.3} · precision {} · recall {} at threshold {:.2} · Brier {:.3} · ECE {:.3}",
        m.rows,
        m.positives,
        m.auc,
        m.accuracy,
        pct(m.precision),
        pct(m.recall),
        m.threshold,
        m.brier,
        m.expected_calibration_error
    );
}

/// Trains a model from the store and registers it (activating it if asked).
pub async fn train_from_store(
    store: &Store,
    tenant: Option<&Tenant>,
    cutoff_ms: i64,
    horizon_ms: i64,
    seed: u64,
    activate: bool,
    show_progress: bool,
) -> anyhow::Result<ChurnModel> {
    let tenants = match tenant {
        Some(t) => vec![t.clone()],
        None => store.list_tenants().await?,
    };
    let data = dataset_from_store(store, &tenants, cutoff_ms, horizon_ms).await?;
    let positives = data.labels().iter().filter(|l| **l).count();
    if show_progress {
        eprintln!(
            "{} accounts at cutoff {} ({} churned within {} d after it)",
            data.labels().len(),
            to_rfc3339(cutoff_ms),
            positives,
            horizon_ms / features::DAY_MS
        );
    }
    let model = tokio::task::spawn_blocking(move || train_dataset(&data, seed, show_progress)).await??;
    let source = format!(
        "store cutoff={} horizon={}d",
        to_rfc3339(cutoff_ms),
        horizon_ms / features::DAY_MS
    );
    let scope = tenant.map(|t| t.id.as_str());
    registry::register(store, &model, scope, &source).await?;
    if activate {
        registry::activate(store, model.version(), scope).await?;
    }
    Ok(model)
}

/// Runs `kairos train ...`.
pub async fn train(config: Config, cmd: TrainCmd) -> anyhow::Result<()> {
    let args = match cmd {
        TrainCmd::Churn(args) => args,
        TrainCmd::Sentiment(args) => return crate::train_sentiment::train(config, args).await,
    };
    let store = open_store(&config).await?;
    let tenant = match &args.tenant {
        Some(t) => Some(store.find_tenant(t).await?),
        None => None,
    };
    let model = if let Some(path) = &args.csv {
        let label = args.label.clone().context("--csv needs --label COLUMN")?;
        let mut options = CsvOptions::new(label);
        if let Some(id) = &args.id_column {
            options = options.id_column(id.clone());
        }
        let data = Dataset::from_csv_path(path, &options).with_context(|| format!("reading {}", path.display()))?;
        eprintln!(
            "{}: {} rows, {} feature columns",
            path.display(),
            data.labels().len(),
            data.features().columns().len()
        );
        let seed = args.seed;
        let model = tokio::task::spawn_blocking(move || train_dataset(&data, seed, true)).await??;
        let scope = tenant.as_ref().map(|t| t.id.as_str());
        registry::register(&store, &model, scope, &format!("csv {}", path.display())).await?;
        if args.activate {
            registry::activate(&store, model.version(), scope).await?;
        }
        model
    } else {
        let horizon_ms = i64::try_from(args.horizon.as_millis()).context("--horizon is too long")?;
        let cutoff_ms = match &args.cutoff {
            Some(c) => chrono::DateTime::parse_from_rfc3339(c)
                .with_context(|| format!("--cutoff `{c}` is not an RFC 3339 time"))?
                .timestamp_millis(),
            None => kairos_core::time::now_ms() - horizon_ms,
        };
        train_from_store(
            &store,
            tenant.as_ref(),
            cutoff_ms,
            horizon_ms,
            args.seed,
            args.activate,
            true,
        )
        .await?
    };
    print_metrics(&model);
    if let Err(e) = kairos_jobs::churn::check_account_schema(&model) {
        println!("note: this model cannot score Kairos accounts: {e}");
    }
    println!(
        "registered model {} ({})",
        model.version(),
        if args.activate {
            "active"
        } else {
            "inactive; `kairos models activate VERSION` to use it"
        }
    );
    Ok(())
}

/// Runs `kairos models ...`.
pub async fn models(config: Config, cmd: ModelsCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        ModelsCmd::List => {
            let models = registry::list(&store).await?;
            if models.is_empty() {
                println!("no churn models; train one with `kairos train churn`");
            }
            println!("churn models:");
            println!(
                "{:<32} {:<24} {:>6}  {:<14} source",
                "version", "created", "AUC", "active in"
            );
            for m in models {
                let auc = m.metrics["auc"].as_f64().map(|a| format!("{a:.3}")).unwrap_or_default();
                let active = if m.active_in.is_empty() {
                    "-".to_string()
                } else {
                    m.active_in.join(",")
                };
                println!(
                    "{:<32} {:<24} {:>6}  {:<14} {}{}",
                    m.version,
                    to_rfc3339(m.created_at),
                    auc,
                    active,
                    m.source,
                    m.scope.map(|s| format!(" (tenant {s})")).unwrap_or_default()
                );
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
            crate::cli_audit::record(
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
            println!(
                "active:   {}",
                if info.active_in.is_empty() {
                    "no".into()
                } else {
                    info.active_in.join(", ")
                }
            );
            print_metrics(&model);
            println!(
                "intercept {:.4}; coefficients (per standardised unit):",
                model.intercept()
            );
            for (name, c) in model.encoded_features().iter().zip(model.coefficients()) {
                println!("  {name:<28} {c:>8.4}");
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
            crate::cli_audit::record(
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

/// Prints the sentiment heads: held-out accuracy overall and per language.
async fn list_sentiment(store: &Store) -> anyhow::Result<()> {
    let heads = kairos_jobs::sentiment::registry::list(store).await?;
    println!();
    println!("sentiment heads:");
    if heads.is_empty() {
        println!("  none; a worker registers sentiment.head at start, or `kairos train sentiment --data FILE`");
        return Ok(());
    }
    println!(
        "{:<36} {:<24} {:>6} {:>6} {:>6}  {:<14} source",
        "version", "created", "acc", "en", "es", "active in"
    );
    for m in heads {
        let acc = |v: &serde_json::Value| v["accuracy"].as_f64().map(|a| format!("{a:.3}")).unwrap_or("-".into());
        println!(
            "{:<36} {:<24} {:>6} {:>6} {:>6}  {:<14} {}{}",
            m.version,
            to_rfc3339(m.created_at),
            acc(&m.metrics["overall"]),
            acc(&m.metrics["per_language"]["en"]),
            acc(&m.metrics["per_language"]["es"]),
            if m.active_in.is_empty() {
                "-".to_string()
            } else {
                m.active_in.join(",")
            },
            m.source,
            m.scope.map(|s| format!(" (tenant {s})")).unwrap_or_default()
        );
    }
    Ok(())
}
