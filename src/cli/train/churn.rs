//! `kairos train churn`: train a churn model from the store (labels from
//! churn events after a cutoff, features as of the cutoff) or from any
//! labelled CSV, and register it as a new (inactive) version. The demo
//! trains through [`train_from_store`] too.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::Config;
use anyhow::Context;
use kairos_core::store::Tenant;
use kairos_core::time::to_rfc3339;
use kairos_core::Store;
use kairos_jobs::churn::{features, registry, training};
use kairos_models::churn::{self, ChurnModel, CsvOptions, Dataset, Split, TrainConfig, TrainEvent};

use crate::cli::table::{left, right, Table};

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
    /// Evaluate on this labelled CSV (same columns) instead of holding out
    /// 20 % of `--csv`: the model is fitted on the whole `--csv` and never
    /// sees the test file.
    #[arg(long, requires = "csv")]
    pub test: Option<PathBuf>,
    /// Make the new version active right away.
    #[arg(long)]
    pub activate: bool,
    /// Split and search seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// A fresh, unique model version name.
pub fn new_version() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("churn-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &id[..6])
}

/// Trains with a text progress bar on stderr; returns the model (version set).
///
/// Without `split`, 20 % is held out (stratified) to measure the model and
/// the shipped model is then refitted on every row; with a `split` (a
/// separate test file) the model is fitted on the training rows only, so the
/// test rows stay unseen.
pub fn train_dataset(
    data: &Dataset,
    split: Option<Split>,
    seed: u64,
    show_progress: bool,
) -> anyhow::Result<ChurnModel> {
    let config = TrainConfig {
        seed,
        version: Some(new_version()),
        refit_on_all: split.is_none(),
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
                eprintln!("fit for evaluation: alpha {alpha}, {rows} rows × {features} encoded features")
            }
            TrainEvent::AlphaAtEdge { alpha } => {
                eprintln!("warning: the chosen L2 strength {alpha} is at the edge of the grid searched")
            }
            TrainEvent::Refit { rows } => eprintln!("refit of the shipped model on all {rows} rows"),
            _ => {}
        }
    };
    let outcome = match split {
        Some(split) => churn::train_on_split(data, split, &config, &mut progress),
        None => churn::train_with_progress(data, &config, &mut progress),
    }
    .context("training the churn model")?;
    Ok(outcome.model)
}

/// Prints a model's held-out metrics: AUC with its bootstrap interval,
/// the threshold metrics, and the reliability table.
pub fn print_metrics(model: &ChurnModel) {
    let m = model.metrics();
    let pct = |v: Option<f64>| v.map(|v| format!("{:.3}", v)).unwrap_or_else(|| "n/a".into());
    let interval = m
        .auc_interval
        .map(|i| {
            format!(
                " (95 % CI {:.3}–{:.3}, {} bootstrap resamples)",
                i.lower, i.upper, i.resamples
            )
        })
        .unwrap_or_default();
    println!(
        "held-out ({} rows, {} churned): AUC {:.3}{interval} · accuracy {:.3} · precision {} · recall {} at threshold {:.2} · Brier {:.3} · ECE {:.3}",
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
    let t = model.training();
    let fitted_on = if t.final_fit_rows == 0 {
        t.train_rows
    } else {
        t.final_fit_rows
    };
    println!(
        "training: {} ({} rows, {} churned) · {} trained, {} held out (seed {}) · L2 strength {} by {}-fold CV · shipped model fitted on {} rows",
        t.dataset, t.rows, t.positives, t.train_rows, t.test_rows, t.seed, t.alpha, t.cv_folds, fitted_on
    );
    for w in &t.warnings {
        println!("warning: {w}");
    }
    println!("reliability (held-out):");
    let mut table = Table::new([
        left("predicted"),
        right("rows"),
        right("mean predicted"),
        right("observed"),
    ])
    .indent(2);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    for b in &m.reliability {
        table.row([
            format!("{:.1}–{:.1}", b.lower, b.upper),
            b.count.to_string(),
            opt(b.mean_predicted),
            opt(b.observed_rate),
        ]);
    }
    print!("{table}");
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
    let Some(rows) = training::store_dataset(store, &tenants, cutoff_ms, horizon_ms).await? else {
        anyhow::bail!(
            "no accounts with events before the cutoff {} (and not churned by then)",
            to_rfc3339(cutoff_ms)
        );
    };
    let positives = rows.positives();
    if show_progress {
        eprintln!(
            "{} accounts at cutoff {} ({} churned within {} d after it)",
            rows.labels.len(),
            to_rfc3339(cutoff_ms),
            positives,
            horizon_ms / features::DAY_MS
        );
    }
    let data = rows.dataset.clone();
    let model = tokio::task::spawn_blocking(move || train_dataset(&data, None, seed, show_progress)).await??;
    let source = format!(
        "store cutoff={} horizon={}d",
        to_rfc3339(cutoff_ms),
        horizon_ms / features::DAY_MS
    );
    let scope = tenant.map(|t| t.id.as_str());
    training::register(store, &model, scope, &source, &rows.features).await?;
    if activate {
        registry::activate(store, model.version(), scope).await?;
    }
    Ok(model)
}

/// Runs `kairos train churn`.
pub async fn run(config: Config, args: TrainChurnArgs) -> anyhow::Result<()> {
    let store = crate::cli::open_store(&config).await?;
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
        let (data, split) = match &args.test {
            Some(test_path) => {
                let test = Dataset::from_csv_path(test_path, &options.like(&data))
                    .with_context(|| format!("reading {}", test_path.display()))?;
                eprintln!("{}: {} test rows", test_path.display(), test.len());
                let (data, split) = data
                    .with_test_set(test, seed)
                    .with_context(|| format!("{} does not match {}", test_path.display(), path.display()))?;
                (data, Some(split))
            }
            None => (data, None),
        };
        let model = tokio::task::spawn_blocking(move || train_dataset(&data, split, seed, true)).await??;
        let scope = tenant.as_ref().map(|t| t.id.as_str());
        let source = match &args.test {
            Some(test) => format!("csv {} (test {})", path.display(), test.display()),
            None => format!("csv {}", path.display()),
        };
        registry::register(&store, &model, scope, &source).await?;
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
        println!("note: {e}");
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
