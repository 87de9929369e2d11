//! `kairos train sentiment --data FILE...`: embeds labelled texts (CSV or
//! JSON Lines with `text,label[,lang]`) with the configured encoder, trains
//! a sentiment head, prints held-out accuracy and F1 per class and per
//! language, and registers the head as a new version (`--activate` makes
//! workers use it within `sentiment.model_refresh`). `--calibration-data
//! FILE...` fits the per-language calibration on labelled texts kept apart
//! from training (how the shipped head is calibrated, models/MODELS.md).

use std::io::Write;
use std::path::PathBuf;

use crate::Config;
use anyhow::Context;
use kairos_jobs::sentiment::registry;
use kairos_models::text::{self, Encoder, EncoderConfig, LabeledDataset, TrainConfig, TrainEvent};

/// Options of `kairos train sentiment`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainSentimentArgs {
    /// Labelled data: CSV or JSON Lines with `text,label[,lang]`
    /// (labels negative/neutral/positive); several files are merged.
    #[arg(long = "data", required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Only for this tenant (name or id); default: a global head.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Make the new version active right away.
    #[arg(long)]
    pub activate: bool,
    /// Split and cross-validation seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of each label × language held out for the reported metrics.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Also write the head artifact (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Labelled texts kept apart from `--data` (same formats) to fit the
    /// per-language calibration on, instead of out-of-fold logits of the
    /// training split: the method (none, temperature, temperature + bias) is
    /// chosen by 5-fold cross-fitting on them, then fitted on all of them.
    /// Texts like the ones the head will score (your tickets) make the best
    /// calibration set; they are never trained on.
    #[arg(long = "calibration-data", num_args = 1..)]
    pub calibration_data: Vec<PathBuf>,
}

/// A fresh, unique head version name.
pub fn new_version() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("sentiment-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &id[..6])
}

/// Runs `kairos train sentiment`.
pub async fn run(config: Config, args: TrainSentimentArgs) -> anyhow::Result<()> {
    if config.sentiment.classifier.is_some() {
        anyhow::bail!(
            "[sentiment] uses a classifier model, which has no trainable head; remove sentiment.classifier to train a head on the encoder"
        );
    }
    if !(0.0 < args.test_fraction && args.test_fraction < 1.0) {
        anyhow::bail!("--test-fraction must be between 0 and 1 (exclusive)");
    }
    let store = crate::cli::open_store(&config).await?;
    let tenant = match &args.tenant {
        Some(t) => Some(store.find_tenant(t).await?),
        None => None,
    };
    let s = config.sentiment.clone();
    let files = args.data.clone();
    let calibration_files = args.calibration_data.clone();
    let (seed, test_fraction) = (args.seed, args.test_fraction);
    let head = tokio::task::spawn_blocking(move || -> anyhow::Result<text::SentimentHead> {
        if let Some(lib) = &s.runtime_library {
            text::init_runtime(Some(lib.as_path()))?;
        }
        let read = |files: &[PathBuf]| -> anyhow::Result<Vec<LabeledDataset>> {
            let mut datasets = Vec::new();
            for f in files {
                let d = LabeledDataset::from_path(f).with_context(|| format!("reading {}", f.display()))?;
                eprintln!("{}: {} labelled texts", f.display(), d.examples.len());
                datasets.push(d);
            }
            Ok(datasets)
        };
        let datasets = read(&files)?;
        let calibration_sets = read(&calibration_files)?;
        let trained: std::collections::HashSet<&str> = datasets
            .iter()
            .flat_map(|d| d.examples.iter().map(|e| e.text.as_str()))
            .collect();
        let shared = calibration_sets
            .iter()
            .flat_map(|d| &d.examples)
            .filter(|e| trained.contains(e.text.as_str()))
            .count();
        if shared > 0 {
            anyhow::bail!(
                "{shared} calibration texts are also training texts: the calibration set must be kept apart from --data"
            );
        }
        // One single-threaded session per core, each embedding its own batches: faster on CPU than one session
        // spread over every core (Encoder::embed_batched; bench/e5/run).
        let encoder = Encoder::new(
            EncoderConfig::from_dir(&s.encoder)
                .max_length(s.max_length)
                .sessions(std::thread::available_parallelism().map_or(1, |n| n.get()))
                .intra_threads(1),
        )?;
        let mut train_config = TrainConfig {
            seed,
            test_fraction,
            version: new_version(),
            ..TrainConfig::default()
        };
        if !calibration_sets.is_empty() {
            // Fitted on the calibration set below instead.
            train_config.calibration = None;
        }
        let mut progress = |e: TrainEvent| match e {
            TrainEvent::Prepared {
                examples,
                duplicates_removed,
            } => eprintln!("{examples} examples ({duplicates_removed} duplicate texts dropped)"),
            TrainEvent::Embedding { done, total } => {
                let width = 40;
                let filled = (done * width).checked_div(total).unwrap_or(width);
                eprint!(
                    "\rembedding [{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                );
                if done == total {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            }
            TrainEvent::AlphaScored(a) => {
                eprintln!("  alpha {:<8} cross-validated macro-F1 {:.3}", a.alpha, a.cv_macro_f1)
            }
            TrainEvent::Fitted { alpha } => eprintln!("fitted on the training split (alpha {alpha})"),
            TrainEvent::Evaluated { accuracy, macro_f1 } => {
                eprintln!("held out: accuracy {accuracy:.3}, macro-F1 {macro_f1:.3}")
            }
            _ => {}
        };
        let head = text::train_sentiment_head(&encoder, &datasets, &train_config, &mut progress)?;
        if calibration_sets.is_empty() {
            return Ok(head);
        }
        let (head, scores) =
            text::calibrate_on_datasets(head, &encoder, &calibration_sets, &train_config, &mut progress)?;
        eprintln!("calibration, 5-fold cross-fitted log-loss on the calibration texts (per language; mean):");
        for s in &scores {
            let method = s.method.map_or("none".to_string(), |m| format!("{m:?}"));
            let per: Vec<String> = s.per_language.iter().map(|(l, v)| format!("{l} {v:.3}")).collect();
            eprintln!("  {method:<16} {}; mean {:.4}", per.join(", "), s.mean);
        }
        Ok(head)
    })
    .await??;
    println!("{}", text::metrics_report(&head));
    if let Some(out) = &args.out {
        head.save(out).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    let scope = tenant.as_ref().map(|t| t.id.as_str());
    let list = |files: &[PathBuf]| {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let source = if args.calibration_data.is_empty() {
        format!("data {}", list(&args.data))
    } else {
        format!(
            "data {}; calibrated on {}",
            list(&args.data),
            list(&args.calibration_data)
        )
    };
    registry::register(&store, &head, scope, &source).await?;
    if args.activate {
        registry::activate(&store, head.version(), scope).await?;
    }
    println!(
        "registered sentiment head {} ({})",
        head.version(),
        if args.activate {
            "active"
        } else {
            "inactive; `kairos models activate VERSION` to use it"
        }
    );
    Ok(())
}
