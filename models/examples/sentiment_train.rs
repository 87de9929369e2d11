//! Trains the default sentiment head on the labelled data `scripts/fetch-models` fetched, prints its held-out
//! accuracy and F1 per class and per language, and writes the artifact.
//!
//! ```text
//! scripts/fetch-models
//! cargo run --release -p kairos-models --example sentiment_train -- \
//!     [--data FILE]... [--model-dir DIR] [--out FILE] [--version V] [--seed N] [--test-fraction F] \
//!     [--balance] [--threads N] [--extra-seeds 1,2,3]
//! ```
//!
//! Defaults: `--data .cache/models/data/uci-sentiment-en.jsonl --data .cache/models/data/tass-tweets-es.jsonl`
//! (the second only if present), the MiniLM encoder in `.cache/models/all-MiniLM-L6-v2-int8`, version `1`, output
//! `.cache/models/sentiment-head-<version>.json`. Also reports how well the language detector agrees with the
//! languages the data files declare.
//!
//! `--model-dir .cache/models/multilingual-e5-small` (from `scripts/fetch-e5`) trains the head on the multilingual
//! encoder instead; give it its own `--out`. `--extra-seeds` re-fits on other splits from the same embeddings (the
//! texts are embedded once) and prints one line of held-out accuracy per seed, to see how much a figure moves with
//! the split; only the `--seed` head is written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kairos_models::text::{self, Encoder, EncoderConfig, LabeledDataset, Language, TrainConfig, TrainEvent};

struct Args {
    data: Vec<PathBuf>,
    model_dir: PathBuf,
    out: Option<PathBuf>,
    threads: usize,
    extra_seeds: Vec<u64>,
    config: TrainConfig,
}

/// The workspace root (where `.cache/` is), whatever the working directory.
fn root() -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR"));
    models.parent().unwrap_or(models).to_path_buf()
}

/// The encoder in `dir`; ONNX Runtime from `$ORT_DYLIB_PATH` (set by `cargo run` through .cargo/config.toml), else
/// from where `scripts/fetch-models` puts it, so that the built binary also runs by hand.
fn encoder_config(dir: &Path) -> EncoderConfig {
    let config = EncoderConfig::from_dir(dir);
    if std::env::var_os(kairos_models::text::ORT_DYLIB_ENV).is_some() {
        config
    } else {
        config.runtime_library(root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"))
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: Vec::new(),
        model_dir: root().join(".cache/models/all-MiniLM-L6-v2-int8"),
        out: None,
        threads: 2,
        extra_seeds: Vec::new(),
        config: TrainConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data.push(PathBuf::from(value()?)),
            "--model-dir" => args.model_dir = PathBuf::from(value()?),
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "--version" => args.config.version = value()?,
            "--seed" => args.config.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--test-fraction" => {
                args.config.test_fraction = value()?.parse().map_err(|e| format!("--test-fraction: {e}"))?
            }
            "--threads" => args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--balance" => args.config.balance_classes = true,
            "--extra-seeds" => {
                for seed in value()?.split(',') {
                    args.extra_seeds
                        .push(seed.trim().parse().map_err(|e| format!("--extra-seeds: {e}"))?);
                }
            }
            "-h" | "--help" => return Err("see the header of models/examples/sentiment_train.rs".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.data.is_empty() {
        let data = root().join(".cache/models/data");
        args.data.push(data.join("uci-sentiment-en.jsonl"));
        let spanish = data.join("tass-tweets-es.jsonl");
        if spanish.is_file() {
            args.data.push(spanish);
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentiment_train: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let datasets = args
        .data
        .iter()
        .map(|p| LabeledDataset::from_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    report_language_detection(&datasets);

    let started = Instant::now();
    let encoder = Encoder::new(encoder_config(&args.model_dir).intra_threads(args.threads))?;
    eprintln!(
        "encoder {} ({} dims, inputs {:?}) loaded in {:.1}s",
        encoder.fingerprint().short(),
        encoder.dimension(),
        encoder.input_names(),
        started.elapsed().as_secs_f64()
    );
    let mut last_percent = usize::MAX;
    let embed_start = Instant::now();
    let mut progress = |event: TrainEvent| match event {
        TrainEvent::Prepared {
            examples,
            duplicates_removed,
        } => eprintln!("{examples} examples ({duplicates_removed} duplicate texts dropped)"),
        TrainEvent::Embedding { done, total } => {
            let percent = done * 100 / total.max(1);
            if percent / 10 != last_percent / 10 || done == total {
                last_percent = percent;
                eprintln!(
                    "embedded {done}/{total} ({:.0} texts/s)",
                    done as f64 / embed_start.elapsed().as_secs_f64()
                );
            }
        }
        TrainEvent::AlphaScored(s) => eprintln!("alpha {:<6} CV macro-F1 {:.3}", s.alpha, s.cv_macro_f1),
        TrainEvent::Fitted { alpha } => eprintln!("fitted with alpha {alpha}"),
        _ => {}
    };
    // What `text::train_sentiment_head` does, in two steps so that extra seeds reuse the embeddings.
    let examples = text::embed_datasets(&encoder, &datasets, &args.config, &mut progress)?;
    let head = text::fit_head(&examples, encoder.fingerprint().clone(), &args.config, &mut progress)?;
    println!();
    for d in &head.training().datasets {
        println!(
            "dataset {}: {} examples, labels {:?}, languages {:?}",
            d.name, d.examples, d.per_label, d.per_language
        );
    }
    println!("labels: {:?}", head.labels());
    print!("{}", text::metrics_report(&head));

    let mut seeds = vec![(args.config.seed, head.metrics().clone())];
    for &seed in &args.extra_seeds {
        let config = TrainConfig {
            seed,
            ..args.config.clone()
        };
        let extra = text::fit_head(&examples, encoder.fingerprint().clone(), &config, &mut |_| {})?;
        seeds.push((seed, extra.metrics().clone()));
    }
    if seeds.len() > 1 {
        println!(
            "held-out accuracy (macro-F1) per split seed, encoder {}:",
            encoder.fingerprint().short()
        );
        for (seed, m) in &seeds {
            let lang = |code: &str| {
                m.per_language
                    .get(code)
                    .map(|e| format!("{:.3} ({:.3})", e.accuracy, e.macro_f1))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "  seed {seed:<3} overall {:.3} ({:.3})  en {}  es {}",
                m.overall.accuracy,
                m.overall.macro_f1,
                lang("en"),
                lang("es")
            );
        }
    }

    let out = args
        .out
        .unwrap_or_else(|| root().join(format!(".cache/models/sentiment-head-{}.json", head.version())));
    head.save(&out)?;
    println!(
        "wrote {} in {:.0}s total",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How often the es/en detector agrees with the language a data file declares (abstentions counted as misses).
fn report_language_detection(datasets: &[LabeledDataset]) {
    for language in [Language::English, Language::Spanish] {
        let (mut n, mut right, mut abstained) = (0, 0, 0);
        for example in datasets.iter().flat_map(|d| &d.examples) {
            if example.lang.as_deref() != Some(language.code()) {
                continue;
            }
            n += 1;
            match text::detect_language(&example.text) {
                Some(l) if l == language => right += 1,
                None => abstained += 1,
                Some(_) => {}
            }
        }
        if n > 0 {
            println!(
                "language detection on texts declared {}: {right}/{n} = {:.3} correct, {abstained} abstained, {} wrong",
                language.code(),
                right as f64 / n as f64,
                n - right - abstained
            );
        }
    }
}
