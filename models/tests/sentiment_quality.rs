//! The shipped sentiment head on our held-out support texts (`models/data/support-heldout{,-2,-3}-{en,es}.jsonl`,
//! written for Kairos, never trained on; set 3 also never read before the head was chosen): floors under the figures recorded in
//! `models/MODELS.md`, per file — 3-class accuracy, macro-F1, neutral recall, binary accuracy on positive/negative,
//! alert precision/recall at the shipped threshold — a ceiling on the calibration error, the evidence for serving the
//! softmax, and negation.
//!
//! Ignored by default (they need the adapted e5 encoder from `scripts/fetch-e5`); `scripts/test` runs them with
//! `--run-ignored all`, or: `cargo nextest run -p kairos-models --test sentiment_quality --run-ignored only`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{
    calibration_from_set, detect_language, evaluate, expected_calibration_error, negative_calibration_error,
    CalibrationExample, Calibrator, Encoder, EncoderConfig, LabeledDataset, Sentiment, SentimentHead,
};

/// The head `config/default.toml` ships.
const HEAD: &str = "models/heads/sentiment-e5-int8-lora-3.json";
/// `sentiment.alert_threshold` in `config/default.toml`.
const ALERT_THRESHOLD: f64 = 0.75;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn encoder() -> Encoder {
    let lib = root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1");
    let dir = root().join(".cache/models/multilingual-e5-small-int8-sentiment-3");
    assert!(
        lib.is_file() && dir.join("model.onnx").is_file(),
        "missing {} or {}: run scripts/fetch-models and scripts/fetch-e5",
        lib.display(),
        dir.display()
    );
    Encoder::new(EncoderConfig::from_dir(&dir).runtime_library(lib).sessions(2)).unwrap()
}

fn head(encoder: &Encoder) -> SentimentHead {
    let head = SentimentHead::load(&root().join(HEAD)).unwrap();
    head.check_encoder(encoder.fingerprint()).unwrap();
    head
}

struct Measured {
    accuracy: f64,
    macro_f1: f64,
    neutral_recall: f64,
    binary_accuracy: f64,
    ece_raw: f64,
    ece_calibrated: f64,
    negative_ece_raw: f64,
    negative_ece_calibrated: f64,
    alert_precision: f64,
    alert_recall: f64,
}

fn measure(encoder: &Encoder, head: &SentimentHead, file: &str) -> Measured {
    let data = LabeledDataset::from_path(&root().join(file)).unwrap();
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let embeddings = encoder.embed_batched(&texts, 8, &mut |_, _| {}).unwrap();
    let labels = head.labels();
    let index = |s: Sentiment| labels.iter().position(|l| *l == s).unwrap();
    let (neg, pos) = (index(Sentiment::Negative), index(Sentiment::Positive));
    let truth: Vec<usize> = data.examples.iter().map(|e| index(e.label)).collect();
    let (mut raw, mut calibrated) = (Vec::new(), Vec::new());
    for (i, text) in texts.iter().enumerate() {
        let row = embeddings.get(i).unwrap();
        // Calibrated for the language the product detects, as the product does.
        let language = detect_language(text).map(|l| l.code());
        raw.push(
            head.probabilities(row)
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>(),
        );
        calibrated.push(
            head.calibrated_probabilities(row, language)
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>(),
        );
    }
    let argmax = |p: &Vec<f64>| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    let predicted: Vec<usize> = calibrated.iter().map(argmax).collect();
    let m = evaluate(labels, &truth, &predicted);
    let polar: Vec<usize> = (0..truth.len())
        .filter(|&i| truth[i] != index(Sentiment::Neutral))
        .collect();
    let binary_hits = polar
        .iter()
        .filter(|&&i| {
            (if calibrated[i][neg] > calibrated[i][pos] {
                neg
            } else {
                pos
            }) == truth[i]
        })
        .count();
    let alerts: Vec<usize> = (0..truth.len())
        .filter(|&i| calibrated[i][neg] >= ALERT_THRESHOLD)
        .collect();
    let true_alerts = alerts.iter().filter(|&&i| truth[i] == neg).count();
    let negatives = truth.iter().filter(|&&t| t == neg).count();
    let measured = Measured {
        accuracy: m.accuracy,
        macro_f1: m.macro_f1,
        neutral_recall: m.per_class[&Sentiment::Neutral].recall,
        binary_accuracy: binary_hits as f64 / polar.len() as f64,
        ece_raw: expected_calibration_error(&raw, &truth),
        ece_calibrated: expected_calibration_error(&calibrated, &truth),
        negative_ece_raw: negative_calibration_error(&raw, &truth, neg),
        negative_ece_calibrated: negative_calibration_error(&calibrated, &truth, neg),
        alert_precision: true_alerts as f64 / alerts.len().max(1) as f64,
        alert_recall: true_alerts as f64 / negatives as f64,
    };
    println!(
        "{file}: n={} 3-class accuracy {:.3} macro-F1 {:.3} neutral recall {:.3} binary {:.3} ECE {:.3} → {:.3} \
         P(neg) ECE {:.3} → {:.3} alerts ≥{ALERT_THRESHOLD}: precision {:.3} recall {:.3}",
        truth.len(),
        measured.accuracy,
        measured.macro_f1,
        measured.neutral_recall,
        measured.binary_accuracy,
        measured.ece_raw,
        measured.ece_calibrated,
        measured.negative_ece_raw,
        measured.negative_ece_calibrated,
        measured.alert_precision,
        measured.alert_recall
    );
    measured
}

/// Floors per held-out file: (accuracy, macro-F1, neutral recall, binary accuracy, alert precision, alert recall), set
/// a little under the figures measured and recorded in models/MODELS.md (108–114 texts a file: one text is ~0.009 of
/// 3-class accuracy, ~0.013 of binary accuracy).
const FLOORS: [(&str, [f64; 6]); 6] = [
    // Sets 1 and 2: read before batch 5 was written against their error kinds (models/data/README.md).
    // measured: 0.954, 0.954, 1.000, 0.958, 0.944, 0.944
    (
        "models/data/support-heldout-en.jsonl",
        [0.94, 0.94, 0.97, 0.94, 0.91, 0.91],
    ),
    // measured: 0.935, 0.934, 1.000, 0.944, 0.967, 0.806
    (
        "models/data/support-heldout-es.jsonl",
        [0.92, 0.92, 0.97, 0.93, 0.94, 0.78],
    ),
    // measured: 0.973, 0.973, 0.947, 0.987, 1.000, 0.947
    (
        "models/data/support-heldout-2-en.jsonl",
        [0.96, 0.96, 0.92, 0.97, 0.97, 0.92],
    ),
    // measured: 0.921, 0.922, 0.973, 0.896, 0.892, 0.846
    (
        "models/data/support-heldout-2-es.jsonl",
        [0.90, 0.90, 0.94, 0.88, 0.86, 0.82],
    ),
    // Set 3: written apart, read only for the chosen head.
    // measured: 0.952, 0.952, 0.917, 0.971, 0.941, 0.941
    (
        "models/data/support-heldout-3-en.jsonl",
        [0.94, 0.94, 0.89, 0.95, 0.91, 0.91],
    ),
    // measured: 0.948, 0.949, 0.972, 0.949, 0.946, 0.875
    (
        "models/data/support-heldout-3-es.jsonl",
        [0.93, 0.93, 0.94, 0.93, 0.91, 0.85],
    ),
];

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn the_shipped_head_meets_its_floors_on_held_out_support_texts_in_both_languages() {
    let encoder = encoder();
    let head = head(&encoder);
    for (file, [accuracy, macro_f1, neutral_recall, binary, precision, recall]) in FLOORS {
        let m = measure(&encoder, &head, file);
        assert!(m.accuracy >= accuracy, "{file}: 3-class accuracy {}", m.accuracy);
        assert!(m.macro_f1 >= macro_f1, "{file}: macro-F1 {}", m.macro_f1);
        assert!(
            m.neutral_recall >= neutral_recall,
            "{file}: neutral recall {}",
            m.neutral_recall
        );
        assert!(
            m.binary_accuracy >= binary,
            "{file}: binary accuracy {}",
            m.binary_accuracy
        );
        assert!(
            m.alert_precision >= precision,
            "{file}: alert precision {}",
            m.alert_precision
        );
        assert!(m.alert_recall >= recall, "{file}: alert recall {}", m.alert_recall);
    }
}

/// Ceiling on the expected calibration error (10 bins) of what the product serves, per held-out file: the top label
/// and P(negative), which alert thresholds compare with. Measured (models/MODELS.md), sets 1 / 2 / 3: en 0.021 / 0.049,
/// 0.022 / 0.034, 0.019 / 0.036; es 0.025 / 0.042, 0.052 / 0.065, 0.035 / 0.055.
const ECE_CEILING: f64 = 0.075;

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn probabilities_are_calibrated_in_each_language() {
    let encoder = encoder();
    let head = head(&encoder);
    // The shipped head carries no map (models/MODELS.md; the test below keeps the evidence). What users rely on is
    // that a probability means the same in Spanish and English, which this checks directly.
    for (file, _) in FLOORS {
        let m = measure(&encoder, &head, file);
        assert!(
            m.ece_calibrated <= ECE_CEILING,
            "{file}: top-label ECE {}",
            m.ece_calibrated
        );
        assert!(
            m.negative_ece_calibrated <= ECE_CEILING,
            "{file}: P(negative) ECE {}",
            m.negative_ece_calibrated
        );
    }
}

/// The development set (models/data/README.md).
const DEV: [&str; 2] = ["models/data/support-dev-en.jsonl", "models/data/support-dev-es.jsonl"];

/// The one held-out set nothing was written against or chosen on (models/data/README.md).
const FRESH: [&str; 2] = [
    "models/data/support-heldout-3-en.jsonl",
    "models/data/support-heldout-3-es.jsonl",
];

/// Raw logits of the labelled texts of `files`, as calibration examples.
fn labelled_logits(encoder: &Encoder, head: &SentimentHead, files: &[&str]) -> Vec<CalibrationExample> {
    let labels = head.labels().to_vec();
    let mut rows = Vec::new();
    for file in files {
        let data = LabeledDataset::from_path(&root().join(file)).unwrap();
        let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
        let embeddings = encoder.embed_batched(&texts, 8, &mut |_, _| {}).unwrap();
        for (i, e) in data.examples.iter().enumerate() {
            rows.push(CalibrationExample {
                logits: head.logits(embeddings.get(i).unwrap()).unwrap(),
                truth: labels.iter().position(|l| *l == e.label).unwrap(),
                language: e.lang.clone().unwrap(),
            });
        }
    }
    rows
}

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn the_shipped_head_serves_its_softmax_because_development_set_maps_hurt_fresh_texts() {
    // Cross-fitting on the development set chooses temperature + bias maps for this head, but batch 5 was written
    // against that set's errors, so it no longer stands for new texts: on the fresh set the maps raise the log-loss
    // in both languages (models/MODELS.md). This keeps the evidence for serving the softmax: if a retrained head's
    // development maps help fresh texts, the choice must be made again.
    let encoder = encoder();
    let head = head(&encoder);
    assert!(head.calibration().is_none(), "the shipped head serves its softmax");
    let (maps, scores) = calibration_from_set(&labelled_logits(&encoder, &head, &DEV), 50, "development set".into());
    println!("cross-fitted on the development set: {scores:?}");
    let maps = maps.expect("the development set chooses maps for this head");
    let fresh = labelled_logits(&encoder, &head, &FRESH);
    for language in ["en", "es"] {
        let rows: Vec<&CalibrationExample> = fresh.iter().filter(|r| r.language == language).collect();
        let loss = |p: &dyn Fn(&[f64]) -> Vec<f64>| {
            rows.iter().map(|r| -p(&r.logits)[r.truth].max(1e-12).ln()).sum::<f64>() / rows.len() as f64
        };
        let softmax = Calibrator::identity(head.labels().len());
        let raw = loss(&|z| softmax.apply(z));
        let mapped = loss(&|z| maps.for_language(Some(language)).apply(z));
        println!("{language}: fresh-set log-loss softmax {raw:.3}, development maps {mapped:.3}");
        assert!(raw < mapped, "{language}: the maps would help ({raw} vs {mapped})");
    }
}

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn not_bad_and_no_problem_are_not_complaints() {
    let encoder = encoder();
    let head = head(&encoder);
    // None of these strings is in the training files (models/data/README.md): the head has to generalise from
    // other negated texts.
    let not_complaints = [
        "No está mal.",
        "No está nada mal, la verdad.",
        "Not bad.",
        "Not bad at all.",
        "Honestly, not bad.",
        "No problem, thanks.",
        "Ningún problema, ya funciona.",
    ];
    let complaints = [
        "Está mal.",
        "Bad.",
        "Muy mal, no funciona.",
        "Really bad, nothing works.",
    ];
    let embeddings = encoder
        .embed_batched(&[&not_complaints[..], &complaints[..]].concat(), 8, &mut |_, _| {})
        .unwrap();
    let negative = head.labels().iter().position(|l| *l == Sentiment::Negative).unwrap();
    for (i, text) in not_complaints.iter().chain(&complaints).enumerate() {
        let language = detect_language(text).map(|l| l.code());
        let p = head
            .calibrated_probabilities(embeddings.get(i).unwrap(), language)
            .unwrap();
        let p_negative = f64::from(p[negative]);
        if i < not_complaints.len() {
            assert!(
                p_negative < ALERT_THRESHOLD,
                "{text}: P(negative) {p_negative:.3} would alert"
            );
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_ne!(best, negative, "{text}: labelled negative ({p:?})");
        } else {
            assert!(
                p_negative >= ALERT_THRESHOLD,
                "{text}: P(negative) {p_negative:.3} raises no alert"
            );
        }
    }
}
