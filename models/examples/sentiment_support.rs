//! Trains the shipped sentiment head on the registry data plus our support-style training texts, and measures it on
//! our held-out support texts (`models/data/`, never used for training or any choice made here): 3-class accuracy,
//! macro-F1, neutral recall, binary accuracy on positive/negative, ECE before/after the per-language calibration,
//! and alert precision/recall per language at several thresholds.
//!
//! ```text
//! scripts/fetch-models && scripts/fetch-e5
//! nice cargo run --release -p kairos-models --example sentiment_support -- \
//!     [--model-dir DIR] [--data FILE]... [--heldout FILE]... [--variants] [--support-weights 1,3]
//!     [--alphas A,B] [--cache FILE] [--out FILE] [--version V] [--dump-split DIR] [--calibrate-on-held-out]
//!     [--dev FILE]... [--calibration-set FILE]... [--head FILE] [--no-heldout] [--errors] [--no-calibration]
//!     [--as-stored] [--predictions DIR]
//! ```
//!
//! Defaults: the int8 e5 encoder, the UCI English and TASS Spanish files from `.cache/models/data/` and
//! `models/data/support-train{,-3,-4,-5,-6,-7,-8}-{en,es}.jsonl` and the former held-out sets
//! `models/data/support-heldout{,-2,-3,-5,-4,-6,-7,-8}-{en,es}.jsonl` for training (lora-8's data: the same list
//! given as `--data` reproduces its split), `models/data/support-heldout-{9,10,11,12}-{en,es}.jsonl` for the
//! report (each file reported on its own; set 9 chose lora-8 over lora-6-maps-2, sets 10, 11 and 12 are its held-out
//! sets, each read once). `--variants` also
//! fits the other settings (class balancing on/off × calibration none / temperature /
//! temperature + bias) from the same embeddings and prints, for each, its figures on the **development rows**: the
//! support texts inside the head's own 20 % held-out split (part of training data, not the held-out files). The
//! shipped setting is the best of those by development log-loss (mean over languages); the held-out files are then
//! measured once. `--support-weights` lists how many times a support training text counts against a registry text
//! (`TrainConfig::dataset_weights`; one grid of variants per weight; without `--variants` the first weight with
//! the default settings: no balancing, temperature + bias fitted on the support texts). `--cache FILE` keeps every
//! embedding by text and encoder, so a re-run embeds only new texts.
//!
//! For an encoder adapted on the training rows (`models/finetune/e5_lora.py`): `--dump-split DIR` writes the head's
//! own split (`train.jsonl`, `dev.jsonl`) for the adapter's training and exits; `--calibrate-on-held-out` fits the
//! maps on the development rows instead of out-of-fold training logits (which such an encoder has seen), choosing
//! the method (none / temperature / temperature + bias) by 5-fold cross-fitting on those rows.
//!
//! `--dev FILE` (repeatable; `models/data/support-dev-{en,es}.jsonl`): a development set written apart from every
//! training text. It replaces the development rows above, so candidates trained on different data are judged on the
//! same texts, and the maps are fitted on it after training (method by 5-fold cross-fitting, then fitted on all of
//! it, per language). `--head FILE` judges a head already trained instead of training one. `--no-heldout` leaves
//! the held-out files unread: runs that choose between candidates print development figures only. `--errors` lists
//! the texts each set gets wrong. `--no-calibration` prints the cross-fitted choice but fits no map.
//! `--calibration-set FILE` (repeatable; `models/data/support-calibration-{en,es}.jsonl`): fit the maps there
//! instead of on the development set (same rule: method by 5-fold cross-fitting, then fitted on all of it), for a
//! head whose data was written against the development set's errors. `--as-stored` (with `--head`): judge the head
//! with the maps stored in it, as the product serves it; without it, `--head` refits (or, with `--no-calibration`,
//! drops) the maps on the development or calibration set. `--predictions DIR` writes each text's probabilities (raw
//! and as served), one JSON line per text: `development.jsonl` and `calibration.jsonl` for those sets and one file per
//! held-out file read, under its name, so that heads can be combined and compared outside
//! (`models/finetune/combine.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: a failed unwrap is a failed run

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kairos_models::text::{
    self, detect_language, expected_calibration_error, negative_calibration_error, CalibrationMethod, Encoder,
    EncoderConfig, LabeledDataset, Sentiment, SentimentHead, TrainConfig,
};

fn root() -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR"));
    models.parent().unwrap_or(models).to_path_buf()
}

/// Embeddings saved by `--cache FILE`, per text, for one encoder: a re-run embeds only texts it has not seen (adding
/// a few training texts costs seconds, not the minutes of embedding everything again).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Cache {
    encoder: Option<text::EncoderFingerprint>,
    texts: std::collections::HashMap<String, Vec<f32>>,
}

impl Cache {
    fn load(path: Option<&Path>, encoder: &Encoder) -> Cache {
        let cache: Cache = path
            .filter(|p| p.is_file())
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .unwrap_or_default();
        if cache.encoder.as_ref() == Some(encoder.fingerprint()) {
            cache
        } else {
            Cache {
                encoder: Some(encoder.fingerprint().clone()),
                texts: Default::default(),
            }
        }
    }

    /// Embeds `texts` (those not cached yet with the encoder), in order.
    fn embed(&mut self, encoder: &Encoder, texts: &[&str]) -> Result<text::Embeddings, text::TextError> {
        let mut missing: Vec<&str> = texts.iter().copied().filter(|t| !self.texts.contains_key(*t)).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            eprintln!(
                "embedding {} texts ({} cached)",
                missing.len(),
                texts.len() - missing.len()
            );
            let embedded = encoder.embed_batched(&missing, 8, &mut |_, _| {})?;
            for (i, t) in missing.iter().enumerate() {
                self.texts.insert((*t).to_string(), embedded.get(i).unwrap().to_vec());
            }
        }
        let dim = encoder.fingerprint().dimension;
        let mut values = Vec::with_capacity(texts.len() * dim);
        for t in texts {
            values.extend_from_slice(&self.texts[*t]);
        }
        text::Embeddings::from_vec(dim, values)
    }

    fn save(&self, path: Option<&Path>) {
        if let Some(path) = path {
            std::fs::write(path, serde_json::to_string(self).unwrap()).unwrap();
        }
    }
}

/// Labelled raw logits of `dev` for calibration (`head` must be uncalibrated: its raw logits are what the maps see).
fn calibration_examples(head: &SentimentHead, dev: &[Scored]) -> Vec<text::CalibrationExample> {
    let labels = head.labels();
    dev.iter()
        .map(|t| text::CalibrationExample {
            logits: head.logits(&t.embedding).unwrap(),
            truth: labels.iter().position(|l| *l == t.truth).unwrap(),
            language: t.language.clone(),
        })
        .collect()
}

fn print_method_scores(scores: &[text::MethodScore], on: &str) {
    println!("calibration method, 5-fold cross-fitted on {on} (log-loss per language, mean):");
    for s in scores {
        let name = match s.method {
            None => "none",
            Some(CalibrationMethod::Temperature) => "temperature",
            Some(CalibrationMethod::TemperatureBias) => "temperature+bias",
        };
        let per: Vec<f64> = s.per_language.values().copied().collect();
        println!("  {name:<18} {per:.3?} mean {:.4}", s.mean);
    }
}

/// The calibration method for maps fitted on the development rows, chosen on those rows without fitting and judging
/// on the same texts (`text::calibration_from_set`). Printed, then the winner is returned.
fn choose_calibration(head: &SentimentHead, dev: &[Scored]) -> Option<CalibrationMethod> {
    let (calibration, scores) = text::calibration_from_set(&calibration_examples(head, dev), 0, String::new());
    print_method_scores(&scores, "the development rows");
    calibration.map(|c| c.method)
}

/// Writes the head's own split as `DIR/train.jsonl` (every training row, support texts with `weight`) and
/// `DIR/dev.jsonl` (the development rows: support texts of the held-out 20 %), for `models/finetune/e5_lora.py`:
/// the encoder is then adapted on exactly the rows the head trains on, and never sees a development row.
fn dump(
    dir: &Path,
    texts: &[String],
    examples: &text::EmbeddedExamples,
    dataset_of: &[usize],
    test_rows: &[usize],
    support_weight: usize,
) {
    use std::io::Write as _;
    assert_eq!(
        texts.len(),
        examples.labels.len(),
        "every merged text was embedded once"
    );
    std::fs::create_dir_all(dir).unwrap();
    let test: std::collections::HashSet<usize> = test_rows.iter().copied().collect();
    let mut train = std::io::BufWriter::new(std::fs::File::create(dir.join("train.jsonl")).unwrap());
    let mut dev = std::io::BufWriter::new(std::fs::File::create(dir.join("dev.jsonl")).unwrap());
    let (mut n_train, mut n_dev) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        let dataset = &examples.datasets[dataset_of[i]].name;
        let support = dataset.starts_with("support-");
        let row = serde_json::json!({
            "text": text,
            "label": examples.labels[i].as_str(),
            "lang": examples.languages[i],
            "dataset": dataset,
            "weight": if support { support_weight } else { 1 },
        });
        if !test.contains(&i) {
            writeln!(train, "{row}").unwrap();
            n_train += 1;
        } else if support {
            writeln!(dev, "{row}").unwrap();
            n_dev += 1;
        }
    }
    train.flush().unwrap();
    dev.flush().unwrap();
    println!(
        "wrote {n_train} training and {n_dev} development rows to {}",
        dir.display()
    );
}

/// One text to score: embedding, truth, language (given by the file).
struct Scored {
    /// The text (for `--errors`); empty for rows of the training data.
    text: String,
    embedding: Vec<f32>,
    truth: Sentiment,
    /// The language its file declares (what figures are grouped by).
    language: String,
    /// The language the product detects (what calibration uses, as in the product).
    detected: Option<String>,
}

/// What a head does on a set of texts, per language.
#[derive(Default)]
struct Figures {
    n: usize,
    accuracy: f64,
    macro_f1: f64,
    neutral_recall: f64,
    binary_accuracy: f64,
    ece_raw: f64,
    ece_calibrated: f64,
    neg_ece_raw: f64,
    neg_ece_calibrated: f64,
    /// Mean log-loss of the calibrated probabilities (what variants are chosen by).
    log_loss: f64,
    /// threshold → (precision, recall, alerts)
    alerts: BTreeMap<String, (f64, f64, usize)>,
}

const THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.75, 0.8];

/// `language_for_calibration`: `Some(true)` calibrate for the detected language, `Some(false)` with the pooled map,
/// `None` not at all (the raw head).
fn figures(head: &SentimentHead, texts: &[&Scored], language_for_calibration: Option<bool>) -> Figures {
    let labels = head.labels();
    let index = |s: Sentiment| labels.iter().position(|l| *l == s);
    let truth: Vec<usize> = texts.iter().map(|t| index(t.truth).unwrap_or(0)).collect();
    let raw: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| {
            head.probabilities(&t.embedding)
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect();
    let calibrated: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| {
            let language = if language_for_calibration == Some(true) {
                t.detected.as_deref()
            } else {
                None
            };
            if language_for_calibration.is_none() {
                return head
                    .probabilities(&t.embedding)
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect();
            }
            head.calibrated_probabilities(&t.embedding, language)
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect();
    let argmax = |p: &Vec<f64>| {
        p.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    };
    let predicted: Vec<usize> = calibrated.iter().map(argmax).collect();
    let m = text::evaluate(labels, &truth, &predicted);
    let neutral_recall = m.per_class.get(&Sentiment::Neutral).map_or(f64::NAN, |c| c.recall);
    let (neg, pos) = (index(Sentiment::Negative).unwrap(), index(Sentiment::Positive).unwrap());
    let polar: Vec<usize> = (0..texts.len())
        .filter(|&i| truth[i] == neg || truth[i] == pos)
        .collect();
    let binary_hits = polar
        .iter()
        .filter(|&&i| {
            let says = if calibrated[i][neg] > calibrated[i][pos] {
                neg
            } else {
                pos
            };
            says == truth[i]
        })
        .count();
    let mut alerts = BTreeMap::new();
    for threshold in THRESHOLDS {
        let raised: Vec<usize> = (0..texts.len()).filter(|&i| calibrated[i][neg] >= threshold).collect();
        let hits = raised.iter().filter(|&&i| truth[i] == neg).count();
        let negatives = truth.iter().filter(|&&t| t == neg).count();
        alerts.insert(
            format!("{threshold:.2}"),
            (
                if raised.is_empty() {
                    f64::NAN
                } else {
                    hits as f64 / raised.len() as f64
                },
                hits as f64 / negatives.max(1) as f64,
                raised.len(),
            ),
        );
    }
    Figures {
        n: texts.len(),
        accuracy: m.accuracy,
        macro_f1: m.macro_f1,
        neutral_recall,
        binary_accuracy: binary_hits as f64 / polar.len().max(1) as f64,
        ece_raw: expected_calibration_error(&raw, &truth),
        ece_calibrated: expected_calibration_error(&calibrated, &truth),
        neg_ece_raw: negative_calibration_error(&raw, &truth, neg),
        neg_ece_calibrated: negative_calibration_error(&calibrated, &truth, neg),
        log_loss: calibrated
            .iter()
            .zip(&truth)
            .map(|(p, &y)| -p[y].max(1e-12).ln())
            .sum::<f64>()
            / truth.len().max(1) as f64,
        alerts,
    }
}

fn print_figures(name: &str, f: &Figures) {
    println!(
        "  {name:<4} n={:<4} 3-class accuracy {:.3}  macro-F1 {:.3}  neutral recall {:.3}  binary (pos/neg) {:.3}  \
         ECE {:.3} → {:.3}  P(neg) ECE {:.3} → {:.3}  log-loss {:.3}",
        f.n,
        f.accuracy,
        f.macro_f1,
        f.neutral_recall,
        f.binary_accuracy,
        f.ece_raw,
        f.ece_calibrated,
        f.neg_ece_raw,
        f.neg_ece_calibrated,
        f.log_loss
    );
    let alerts: Vec<String> = f
        .alerts
        .iter()
        .map(|(t, (p, r, n))| format!("≥{t}: P {p:.3} R {r:.3} ({n})"))
        .collect();
    println!("       alerts {}", alerts.join("  "));
}

fn per_language(head: &SentimentHead, texts: &[Scored], use_language: Option<bool>) -> BTreeMap<String, Figures> {
    let mut out = BTreeMap::new();
    let mut languages: Vec<&str> = texts.iter().map(|t| t.language.as_str()).collect();
    languages.sort_unstable();
    languages.dedup();
    for language in languages {
        let subset: Vec<&Scored> = texts.iter().filter(|t| t.language == language).collect();
        out.insert(language.to_string(), figures(head, &subset, use_language));
    }
    out
}

fn main() {
    let mut model_dir = root().join(".cache/models/multilingual-e5-small-int8");
    let mut data: Vec<PathBuf> = Vec::new();
    let mut heldout: Vec<PathBuf> = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut version = "sentiment-e5-int8-support-1".to_string();
    let mut variants = false;
    let mut alphas: Option<Vec<f64>> = None;
    let mut cache_path: Option<PathBuf> = None;
    // How many times a support training text counts against a registry text (one candidate each).
    let mut support_weights: Vec<usize> = vec![1];
    let mut dump_split: Option<PathBuf> = None;
    let mut calibrate_on_held_out = false;
    let mut dev_files: Vec<PathBuf> = Vec::new();
    let mut head_path: Option<PathBuf> = None;
    let mut report_held_out = true;
    let mut show_errors = false;
    let mut calibrate = true;
    let mut calibration_files: Vec<PathBuf> = Vec::new();
    let mut as_stored = false;
    let mut predictions: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => model_dir = PathBuf::from(value()),
            "--data" => data.push(PathBuf::from(value())),
            "--heldout" => heldout.push(PathBuf::from(value())),
            "--out" => out = Some(PathBuf::from(value())),
            "--version" => version = value(),
            "--variants" => variants = true,
            "--alphas" => alphas = Some(value().split(',').map(|a| a.trim().parse().unwrap()).collect()),
            "--cache" => cache_path = Some(PathBuf::from(value())),
            "--support-weights" => support_weights = value().split(',').map(|w| w.trim().parse().unwrap()).collect(),
            "--dump-split" => dump_split = Some(PathBuf::from(value())),
            "--calibrate-on-held-out" => calibrate_on_held_out = true,
            "--dev" => dev_files.push(PathBuf::from(value())),
            "--head" => head_path = Some(PathBuf::from(value())),
            "--no-heldout" => report_held_out = false,
            "--errors" => show_errors = true,
            "--no-calibration" => calibrate = false,
            "--calibration-set" => calibration_files.push(PathBuf::from(value())),
            "--as-stored" => as_stored = true,
            "--predictions" => predictions = Some(PathBuf::from(value())),
            other => panic!("unknown flag {other}"),
        }
    }
    if data.is_empty() {
        data = [
            ".cache/models/data/uci-sentiment-en.jsonl",
            ".cache/models/data/tass-tweets-es.jsonl",
            "models/data/support-train-en.jsonl",
            "models/data/support-train-es.jsonl",
            "models/data/support-train-3-en.jsonl",
            "models/data/support-train-3-es.jsonl",
            "models/data/support-train-4-en.jsonl",
            "models/data/support-train-4-es.jsonl",
            "models/data/support-train-5-en.jsonl",
            "models/data/support-train-5-es.jsonl",
            "models/data/support-train-6-en.jsonl",
            "models/data/support-train-6-es.jsonl",
            "models/data/support-train-7-en.jsonl",
            "models/data/support-train-7-es.jsonl",
            "models/data/support-train-8-en.jsonl",
            "models/data/support-train-8-es.jsonl",
            // Held out until lora-3 was measured; read for several heads since, so training texts from lora-4 on.
            "models/data/support-heldout-en.jsonl",
            "models/data/support-heldout-es.jsonl",
            "models/data/support-heldout-2-en.jsonl",
            "models/data/support-heldout-2-es.jsonl",
            "models/data/support-heldout-3-en.jsonl",
            "models/data/support-heldout-3-es.jsonl",
            // Held out for lora-5 (read once); training texts from lora-6 on.
            "models/data/support-heldout-5-en.jsonl",
            "models/data/support-heldout-5-es.jsonl",
            // Selection and calibration sets of lora-5 to lora-7; training texts from lora-8 on (rule 5).
            "models/data/support-heldout-4-en.jsonl",
            "models/data/support-heldout-4-es.jsonl",
            "models/data/support-heldout-6-en.jsonl",
            "models/data/support-heldout-6-es.jsonl",
            "models/data/support-heldout-7-en.jsonl",
            "models/data/support-heldout-7-es.jsonl",
            "models/data/support-heldout-8-en.jsonl",
            "models/data/support-heldout-8-es.jsonl",
        ]
        .iter()
        .map(|p| root().join(p))
        .collect();
    }
    if heldout.is_empty() {
        heldout = [
            "models/data/support-heldout-9-en.jsonl",
            "models/data/support-heldout-9-es.jsonl",
            "models/data/support-heldout-10-en.jsonl",
            "models/data/support-heldout-10-es.jsonl",
            "models/data/support-heldout-11-en.jsonl",
            "models/data/support-heldout-11-es.jsonl",
            "models/data/support-heldout-12-en.jsonl",
            "models/data/support-heldout-12-es.jsonl",
        ]
        .iter()
        .map(|p| root().join(p))
        .filter(|p| p.is_file())
        .collect();
    }
    let reporting = Reporting {
        dev_files: &dev_files,
        calibration_files: &calibration_files,
        heldout: &heldout,
        held_out: report_held_out,
        errors: show_errors,
        calibrate,
        as_stored,
        predictions: predictions.as_deref(),
    };
    let mut config = EncoderConfig::from_dir(&model_dir);
    if std::env::var_os(text::ORT_DYLIB_ENV).is_none() {
        config = config.runtime_library(root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let encoder = Encoder::new(config.sessions(threads).intra_threads(1)).unwrap();
    let datasets: Vec<LabeledDataset> = data.iter().map(|p| LabeledDataset::from_path(p).unwrap()).collect();
    let support: Vec<String> = datasets
        .iter()
        .map(|d| d.name.clone())
        .filter(|n| n.starts_with("support-"))
        .collect();
    let started = std::time::Instant::now();
    let mut cache = Cache::load(cache_path.as_deref(), &encoder);
    let external_dev = load_scored(&dev_files, &mut cache, &encoder);
    let calibration_set = load_scored(&calibration_files, &mut cache, &encoder);
    cache.save(cache_path.as_deref());
    if let Some(path) = &head_path {
        // Evaluation of a head already trained (e.g. the shipped one against a new candidate) on the same
        // development set, without training anything.
        let head = SentimentHead::load(path).unwrap();
        head.check_encoder(encoder.fingerprint()).unwrap();
        assert!(
            !external_dev.is_empty(),
            "--head needs --dev FILE (the set it is judged on)"
        );
        println!("{}: {}", path.display(), head.version());
        finish(
            head,
            &external_dev,
            &calibration_set,
            &reporting,
            &mut cache,
            &encoder,
            out.as_deref(),
        );
        cache.save(cache_path.as_deref());
        return;
    }
    let mut merged_texts: Vec<String> = Vec::new();
    let examples = text::embed_datasets_with(&datasets, &mut |_| {}, &mut |texts, _| {
        merged_texts = texts.iter().map(|t| (*t).to_string()).collect();
        cache.embed(&encoder, texts)
    })
    .unwrap();
    cache.save(cache_path.as_deref());
    eprintln!(
        "{} training texts ready in {:.1?}",
        examples.labels.len(),
        started.elapsed()
    );

    // Language detection on the held-out texts (what the product calibrates with).
    let mut detected_ok = BTreeMap::<String, (usize, usize)>::new();
    for path in heldout.iter().filter(|_| report_held_out) {
        for e in LabeledDataset::from_path(path).unwrap().examples {
            let lang = e.lang.clone().unwrap();
            let entry = detected_ok.entry(lang.clone()).or_default();
            entry.1 += 1;
            if detect_language(&e.text).map(|l| l.code().to_string()) == Some(lang) {
                entry.0 += 1;
            }
        }
    }
    for (lang, (ok, n)) in &detected_ok {
        println!("language detection on held-out {lang}: {ok}/{n}");
    }

    // Development rows: support texts in the head's own held-out split (same split fit_head makes).
    let strata: Vec<(Sentiment, &str)> = examples
        .labels
        .iter()
        .zip(&examples.languages)
        .map(|(&l, g)| (l, g.as_str()))
        .collect();
    let base = TrainConfig {
        version: version.clone(),
        alphas: alphas.unwrap_or_else(|| TrainConfig::default().alphas),
        calibrate_on: support.clone(),
        calibrate_on_held_out,
        ..TrainConfig::default()
    };
    let (_, test_rows) = text::stratified_split(&strata, base.test_fraction, base.seed);
    let mut dataset_of = Vec::new();
    for (d, s) in examples.datasets.iter().enumerate() {
        dataset_of.extend(std::iter::repeat_n(d, s.examples));
    }
    let internal_dev: Vec<Scored> = test_rows
        .iter()
        .filter(|&&i| examples.datasets[dataset_of[i]].name.starts_with("support-"))
        .map(|&i| Scored {
            text: String::new(),
            embedding: examples.embeddings.get(i).unwrap().to_vec(),
            truth: examples.labels[i],
            language: examples.languages[i].clone(),
            detected: Some(examples.languages[i].clone()),
        })
        .collect();

    // With `--dev`, the development set is that file set (written apart from the training texts), and the maps are
    // fitted on it after training; otherwise the support rows of the head's own held-out split.
    let dev: &[Scored] = if external_dev.is_empty() {
        &internal_dev
    } else {
        &external_dev
    };
    if let Some(dir) = &dump_split {
        dump(
            dir,
            &merged_texts,
            &examples,
            &dataset_of,
            &test_rows,
            support_weights[0],
        );
        return;
    }

    let weighted = |weight: usize| -> BTreeMap<String, usize> {
        if weight == 1 {
            return BTreeMap::new();
        }
        support.iter().map(|name| (name.clone(), weight)).collect()
    };
    let mut candidates: Vec<(String, TrainConfig)> = Vec::new();
    if variants {
        for &weight in &support_weights {
            for balance in [false, true] {
                for (name, method) in [
                    ("none", None),
                    ("temperature", Some(CalibrationMethod::Temperature)),
                    ("temperature+bias", Some(CalibrationMethod::TemperatureBias)),
                ] {
                    for calibrate_on in [Vec::new(), support.clone()] {
                        if method.is_none() && !calibrate_on.is_empty() {
                            continue;
                        }
                        let label = format!(
                            "support weight={weight} balance={balance} calibration={name} on={}",
                            if calibrate_on.is_empty() { "all" } else { "support" }
                        );
                        candidates.push((
                            label,
                            TrainConfig {
                                balance_classes: balance,
                                calibration: method,
                                calibrate_on,
                                dataset_weights: weighted(weight),
                                ..base.clone()
                            },
                        ));
                    }
                }
            }
        }
    } else {
        let mut config = TrainConfig {
            dataset_weights: weighted(support_weights[0]),
            ..base.clone()
        };
        if !external_dev.is_empty() {
            // Fitted after training, on the development set (below).
            config.calibration = None;
        } else if calibrate_on_held_out {
            let uncalibrated = TrainConfig {
                calibration: None,
                ..config.clone()
            };
            let head = text::fit_head(&examples, encoder.fingerprint().clone(), &uncalibrated, &mut |_| {}).unwrap();
            config.calibration = choose_calibration(&head, dev);
        }
        candidates.push(("shipped".into(), config));
    }
    let mut best: Option<(f64, String, SentimentHead)> = None;
    for (label, config) in candidates {
        let fit_started = std::time::Instant::now();
        let head = text::fit_head(&examples, encoder.fingerprint().clone(), &config, &mut |_| {}).unwrap();
        eprintln!("{label}: fitted in {:.1?}", fit_started.elapsed());
        let dev_figures = per_language(&head, dev, Some(true));
        // Chosen by the mean log-loss over languages (a proper score: it rewards right labels and honest
        // probabilities alike), negated so that larger is better.
        let score = -dev_figures.values().map(|f| f.log_loss).sum::<f64>() / dev_figures.len().max(1) as f64;
        println!(
            "{label}: alpha {}; development rows (support texts of the head's own split):",
            head.training().alpha
        );
        for (language, f) in &dev_figures {
            print_figures(language, f);
        }
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, label, head));
        }
    }
    let (score, label, head) = best.unwrap();
    println!("\nchosen by development log-loss ({:.3}): {label}", -score);
    println!("{}", text::metrics_report(&head));
    finish(
        head,
        dev,
        &calibration_set,
        &reporting,
        &mut cache,
        &encoder,
        out.as_deref(),
    );
    cache.save(cache_path.as_deref());
}

/// Embeds labelled files (`{"text", "label", "lang"}` lines) for scoring.
fn load_scored(paths: &[PathBuf], cache: &mut Cache, encoder: &Encoder) -> Vec<Scored> {
    let mut scored = Vec::new();
    for path in paths {
        let d = LabeledDataset::from_path(path).unwrap();
        let texts: Vec<&str> = d.examples.iter().map(|e| e.text.as_str()).collect();
        let embeddings = cache.embed(encoder, &texts).unwrap();
        for (i, e) in d.examples.iter().enumerate() {
            scored.push(Scored {
                text: e.text.clone(),
                embedding: embeddings.get(i).unwrap().to_vec(),
                truth: e.label,
                language: e
                    .lang
                    .clone()
                    .unwrap_or_else(|| panic!("{}: a text without \"lang\"", path.display())),
                detected: detect_language(&e.text).map(|l| l.code().to_string()),
            });
        }
    }
    scored
}

/// What `finish` reports besides the development figures.
#[derive(Clone, Copy)]
struct Reporting<'a> {
    /// The development set's files (empty: the development rows of the head's own split, maps already fitted).
    dev_files: &'a [PathBuf],
    /// A calibration set written apart from the training texts and from the development set (`--calibration-set`):
    /// when given, the maps are fitted there instead of on the development set, which candidates were chosen on
    /// and later training batches were written against.
    calibration_files: &'a [PathBuf],
    heldout: &'a [PathBuf],
    /// Read and report the held-out files (off with `--no-heldout`).
    held_out: bool,
    /// List the texts each set gets wrong (`--errors`).
    errors: bool,
    /// Fit the maps the development set chooses (off with `--no-calibration`: for a head whose training data was
    /// written against that set's errors, so that it no longer stands for new texts; models/MODELS.md).
    calibrate: bool,
    /// Serve the maps stored with a `--head` as they are: fit nothing, drop nothing (`--as-stored`).
    as_stored: bool,
    /// Write every text's probabilities, raw and as served, per file read (`--predictions DIR`): what
    /// `models/finetune/combine.py` averages over heads.
    predictions: Option<&'a Path>,
}

/// What every run ends with. With a development set written apart (`dev_files`), the head's maps are fitted there,
/// or on the calibration set when one is given (`calibration_files`): the method chosen by 5-fold cross-fitting on
/// it, then fitted on all of it, per declared language. Then the
/// development figures, the calibration, the probes, the held-out report per file (unless `reporting.held_out` is
/// off: runs that choose between candidates print development figures only), and the head is written to `out`.
fn finish(
    mut head: SentimentHead,
    dev: &[Scored],
    calibration_set: &[Scored],
    reporting: &Reporting,
    cache: &mut Cache,
    encoder: &Encoder,
    out: Option<&Path>,
) {
    let Reporting {
        dev_files,
        calibration_files,
        heldout,
        held_out: report_held_out,
        errors: show_errors,
        ..
    } = *reporting;
    let (fit_set, fit_files, kind) = if calibration_files.is_empty() {
        (dev, dev_files, "a development set")
    } else {
        (calibration_set, calibration_files, "a calibration set")
    };
    if !fit_files.is_empty() && !reporting.as_stored {
        head = head.with_calibration(None).unwrap();
        for (name, files, set) in [
            ("development", dev_files, dev),
            ("calibration", calibration_files, calibration_set),
        ] {
            if !files.is_empty() {
                println!("uncalibrated head on the {name} set ({}):", describe(files));
                for (language, f) in &per_language(&head, set, None) {
                    print_figures(language, f);
                }
            }
        }
        let fitted_on = format!(
            "{kind} written apart from the training texts ({}); {} examples",
            describe(fit_files),
            fit_set.len()
        );
        let (calibration, scores) = text::calibration_from_set(
            &calibration_examples(&head, fit_set),
            TrainConfig::default().calibration_min_examples,
            fitted_on,
        );
        print_method_scores(&scores, kind);
        if !reporting.calibrate {
            println!("no map fitted (--no-calibration): the head's softmax is served");
        } else if calibration.is_some() {
            head = head.with_calibration(calibration).unwrap();
            println!("calibrated on all of it (in-sample figures; the cross-fitted ones above are the honest ones):");
            for (language, f) in &per_language(&head, fit_set, Some(true)) {
                print_figures(language, f);
            }
        }
    }
    if let Some(c) = head.calibration() {
        println!("calibration: {:?}, fitted on {}", c.method, c.fitted_on);
        for (language, cal) in &c.per_language {
            println!(
                "  {language}: scale {:.3} bias {:?} (n={})",
                cal.scale, cal.bias, cal.examples
            );
        }
        println!(
            "  pooled: scale {:.3} bias {:?} (n={})",
            c.pooled.scale, c.pooled.bias, c.pooled.examples
        );
    } else {
        println!("calibration: none (the head's softmax is served)");
    }
    // Negation and short texts (the cases of the quality and API tests; printed, never used for a choice).
    let probes = [
        "No está mal.",
        "No está nada mal, la verdad.",
        "Not bad.",
        "Not bad at all.",
        "Honestly, not bad.",
        "No problem, thanks.",
        "Ningún problema, ya funciona.",
        "Está mal.",
        "Bad.",
        "Muy mal, no funciona.",
        "Really bad, nothing works.",
        "Está mal, no funciona nada.",
    ];
    let embedded = cache.embed(encoder, &probes).unwrap();
    println!("\nprobes (calibrated for the detected language: P(negative) / P(neutral) / P(positive)):");
    for (i, text) in probes.iter().enumerate() {
        let language = detect_language(text).map(|l| l.code());
        let p = head
            .calibrated_probabilities(embedded.get(i).unwrap(), language)
            .unwrap();
        let p: Vec<String> = p.iter().map(|v| format!("{v:.3}")).collect();
        println!("  {text:<32} {:?} {}", head.labels(), p.join(" / "));
    }
    if show_errors {
        println!("\ndevelopment texts labelled wrong (as served):");
        print_errors(&head, dev);
        if !calibration_files.is_empty() {
            println!("\ncalibration texts labelled wrong (as served):");
            print_errors(&head, calibration_set);
        }
    }
    if let Some(dir) = reporting.predictions {
        // The sets already embedded above, one file each (both languages), rather than re-reading their files.
        if !dev_files.is_empty() {
            write_predictions(dir, "development.jsonl", &head, dev);
        }
        if !calibration_files.is_empty() {
            write_predictions(dir, "calibration.jsonl", &head, calibration_set);
        }
    }
    if report_held_out {
        for path in heldout {
            let held = load_scored(std::slice::from_ref(path), cache, encoder);
            if let Some(dir) = reporting.predictions {
                let name = path.file_name().unwrap().to_string_lossy();
                write_predictions(dir, &name, &head, &held);
            }
            if show_errors {
                println!("\n{}: texts labelled wrong (as served):", path.display());
                print_errors(&head, &held);
            }
            println!("\nHELD-OUT {}:", path.display());
            for (label, language_for_calibration) in [
                ("calibrated for the detected language (as served)", Some(true)),
                ("pooled map only (as for an undetermined language)", Some(false)),
                ("uncalibrated (raw softmax; ECE columns: raw → raw)", None),
            ] {
                println!(" {label}:");
                for (language, f) in &per_language(&head, &held, language_for_calibration) {
                    print_figures(language, f);
                }
            }
        }
    } else {
        println!("\n(held-out files not read: --no-heldout)");
    }
    if let Some(out) = out {
        head.save(out).unwrap();
        println!("wrote {}", out.display());
    }
}

/// `dir/name`, one line per text: its label, declared and detected language, and the head's probabilities raw and as
/// served (calibrated for the detected language), in the head's label order.
fn write_predictions(dir: &Path, name: &str, head: &SentimentHead, texts: &[Scored]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines = String::new();
    for t in texts {
        let line = serde_json::json!({
            "text": t.text,
            "label": t.truth.as_str(),
            "lang": t.language,
            "detected": t.detected,
            "labels": head.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            "raw": head.probabilities(&t.embedding).unwrap(),
            "served": head.calibrated_probabilities(&t.embedding, t.detected.as_deref()).unwrap(),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join(name), lines).unwrap();
}

/// Every text whose served label is not its truth, with the served probabilities (for reading what a head misses).
fn print_errors(head: &SentimentHead, texts: &[Scored]) {
    for t in texts.iter().filter(|t| !t.text.is_empty()) {
        let p = head
            .calibrated_probabilities(&t.embedding, t.detected.as_deref())
            .unwrap();
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        if head.labels()[best] != t.truth {
            let p: Vec<String> = p.iter().map(|v| format!("{v:.2}")).collect();
            println!(
                "  {} {:?} → {:?} [{}] {}",
                t.language,
                t.truth,
                head.labels()[best],
                p.join(" "),
                t.text
            );
        }
    }
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
