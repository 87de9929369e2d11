//! `kairos train sentiment --data FILE...`: embeds labelled texts (CSV or
//! JSON Lines with `text,label[,lang]`) with the configured encoder, trains
//! a sentiment head, prints held-out accuracy and F1 per class and per
//! language, and registers the head as a new version (`--activate` makes
//! workers use it within `sentiment.model_refresh`).

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
    let (seed, test_fraction) = (args.seed, args.test_fraction);
    let head = tokio::task::spawn_blocking(move || -> anyhow::Result<text::SentimentHead> {
        if let Some(lib) = &s.runtime_library {
            text::init_runtime(Some(lib.as_path()))?;
        }
        let mut datasets = Vec::new();
        for f in &files {
            let d = LabeledDataset::from_path(f).with_context(|| format!("reading {}", f.display()))?;
            eprintln!("{}: {} labelled texts", f.display(), d.examples.len());
            datasets.push(d);
        }
        // One single-threaded session per core, each embedding its own batches: faster on CPU than one session
        // spread over every core (Encoder::embed_batched; bench/e5/run).
        let encoder = Encoder::new(
            EncoderConfig::from_dir(&s.encoder)
                .max_length(s.max_length)
                .sessions(std::thread::available_parallelism().map_or(1, |n| n.get()))
                .intra_threads(1),
        )?;
        let train_config = TrainConfig {
            seed,
            test_fraction,
            version: new_version(),
            ..TrainConfig::default()
        };
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
        Ok(text::train_sentiment_head(
            &encoder,
            &datasets,
            &train_config,
            &mut progress,
        )?)
    })
    .await??;
    println!("{}", text::metrics_report(&head));
    if let Some(out) = &args.out {
        head.save(out).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    let scope = tenant.as_ref().map(|t| t.id.as_str());
    let source = format!(
        "data {}",
        args.data
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
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
