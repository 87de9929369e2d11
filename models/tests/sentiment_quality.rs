//! The shipped sentiment head on support texts it never trained on (`models/data/support-heldout-{9,10,11}-*.jsonl`
//! and `support-calibration-{en,es}.jsonl`, written for Kairos by writers who read nothing else; sets 10 and 11 each
//! read once for the head shipped; set 9 is where it was chosen, the calibration set where its maps were fitted):
//! floors under the figures recorded in `models/MODELS.md`, per file — 3-class accuracy, macro-F1, neutral recall,
//! binary accuracy on positive/negative, alert precision/recall at the shipped threshold — a ceiling on the
//! calibration error, the per-language maps (that they are what the calibration set chooses, and that they lower the
//! calibration error of fresh texts in each language), and negation.
//!
//! Ignored by default (they need the adapted e5 encoder from `scripts/fetch-e5`); `scripts/test` runs them with
//! `--run-ignored all`, or: `cargo nextest run -p kairos-models --test sentiment_quality --run-ignored only`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{
    calibration_from_set, detect_language, evaluate, expected_calibration_error, negative_calibration_error,
    CalibrationExample, Encoder, EncoderConfig, LabeledDataset, Sentiment, SentimentHead, TrainConfig,
};

/// The head `config/default.toml` ships, and its encoder (`scripts/fetch-e5`).
const HEAD: &str = "models/heads/sentiment-e5-int8-lora-8.json";
const ENCODER: &str = ".cache/models/multilingual-e5-small-int8-sentiment-8";
/// `sentiment.alert_threshold` in `config/default.toml`.
const ALERT_THRESHOLD: f64 = 0.75;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn encoder() -> Encoder {
    let lib = root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1");
    let dir = root().join(ENCODER);
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

/// Floors per file: (accuracy, macro-F1, neutral recall, binary accuracy, alert precision, alert recall), set a
/// little under the figures measured and recorded in models/MODELS.md (152–209 texts a file: one text is ~0.005 of
/// 3-class accuracy, ~0.007 of binary accuracy).
const FLOORS: [(&str, [f64; 6]); 10] = [
    // Set 10: two writers, written after rule 5 was fixed, read once for this head (the held-out figures).
    // measured: 0.966, 0.968, 1.000, 0.960, 0.961, 0.973
    (
        "models/data/support-heldout-10-en.jsonl",
        [0.95, 0.95, 0.98, 0.94, 0.94, 0.95],
    ),
    // measured: 0.957, 0.959, 0.981, 0.955, 0.972, 0.921
    (
        "models/data/support-heldout-10-es.jsonl",
        [0.94, 0.94, 0.96, 0.94, 0.95, 0.90],
    ),
    // Set 11: two more writers, read once for this head after rule 6 kept it (a second held-out reading).
    // measured: 0.951, 0.954, 0.962, 0.954, 0.959, 0.934
    (
        "models/data/support-heldout-11-en.jsonl",
        [0.93, 0.93, 0.94, 0.93, 0.94, 0.91],
    ),
    // measured: 0.938, 0.943, 1.000, 0.923, 0.958, 0.861
    (
        "models/data/support-heldout-11-es.jsonl",
        [0.92, 0.92, 0.98, 0.90, 0.94, 0.84],
    ),
    // Set 12: two more writers told to avoid stock phrases, read once for this head after rule 7 kept it (a third
    // held-out reading, and the hardest: praise told through a problem that did not happen is read as a complaint).
    // measured: 0.899, 0.905, 0.983, 0.881, 0.859, 0.893
    (
        "models/data/support-heldout-12-en.jsonl",
        [0.88, 0.88, 0.96, 0.86, 0.84, 0.87],
    ),
    // measured: 0.916, 0.922, 0.982, 0.899, 0.864, 0.933
    (
        "models/data/support-heldout-12-es.jsonl",
        [0.90, 0.90, 0.96, 0.88, 0.84, 0.91],
    ),
    // Set 9: where this head was chosen over lora-6-maps-2 (optimistic; regression floors).
    // measured: 0.970, 0.971, 0.980, 0.973, 0.962, 0.987
    (
        "models/data/support-heldout-9-en.jsonl",
        [0.95, 0.95, 0.96, 0.95, 0.94, 0.96],
    ),
    // measured: 0.952, 0.953, 0.927, 0.961, 0.932, 0.907
    (
        "models/data/support-heldout-9-es.jsonl",
        [0.93, 0.93, 0.90, 0.94, 0.91, 0.88],
    ),
    // The calibration set: where the maps were fitted (in-sample for the maps; regression floors).
    // measured: 0.987, 0.987, 0.979, 0.990, 0.980, 0.980
    (
        "models/data/support-calibration-en.jsonl",
        [0.97, 0.97, 0.95, 0.97, 0.96, 0.96],
    ),
    // measured: 0.948, 0.950, 0.959, 0.943, 0.977, 0.824
    (
        "models/data/support-calibration-es.jsonl",
        [0.93, 0.93, 0.94, 0.92, 0.95, 0.80],
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

/// Ceiling on the expected calibration error (10 bins) of what the product serves, per file: the top label and
/// P(negative), which alert thresholds compare with. Measured (models/MODELS.md), top label / P(negative), sets
/// 10, 11, 9 and the calibration set: en 0.014 / 0.022, 0.015 / 0.029, 0.014 / 0.021, 0.005 / 0.015; es 0.015 /
/// 0.019, 0.030 / 0.034, 0.021 / 0.037, 0.021 / 0.033.
const ECE_CEILING: f64 = 0.075;

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn probabilities_are_calibrated_in_each_language() {
    let encoder = encoder();
    let head = head(&encoder);
    // What users rely on is that a probability means the same in Spanish and English, which this checks directly.
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

/// The calibration set (models/data/README.md): never trained on; the maps are chosen and fitted on it (rule 5,
/// models/MODELS.md). Sets 4, 6, 7 and 8, which fitted earlier heads' maps, are this head's training texts.
const CALIBRATION: [&str; 2] = [
    "models/data/support-calibration-en.jsonl",
    "models/data/support-calibration-es.jsonl",
];

/// The held-out sets, each read once for the head shipped (models/data/README.md).
const HELD_OUT: [&str; 6] = [
    "models/data/support-heldout-10-en.jsonl",
    "models/data/support-heldout-10-es.jsonl",
    "models/data/support-heldout-11-en.jsonl",
    "models/data/support-heldout-11-es.jsonl",
    "models/data/support-heldout-12-en.jsonl",
    "models/data/support-heldout-12-es.jsonl",
];

/// A P(negative) calibration error this low is already calibrated: the map must keep it under this, not lower it
/// (on ~190 texts, 10 bins, a difference of 0.002 is one text moving bin).
const CALIBRATED_ENOUGH: f64 = 0.03;

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
fn the_shipped_maps_are_what_cross_fitting_on_the_calibration_set_chooses() {
    // The maps stored with the head must be the ones the documented rule gives (method by 5-fold cross-fitting on the
    // calibration set, then fitted on all of it, per language): a head re-trained or re-calibrated some other way
    // fails here rather than shipping maps nobody can reproduce.
    let encoder = encoder();
    let head = head(&encoder);
    let shipped = head.calibration().expect("the shipped head carries per-language maps");
    let (refitted, scores) = calibration_from_set(
        &labelled_logits(&encoder, &head, &CALIBRATION),
        TrainConfig::default().calibration_min_examples,
        String::new(),
    );
    println!("cross-fitted on the calibration set: {scores:?}");
    let refitted = refitted.expect("the calibration set chooses maps for this head");
    assert_eq!(refitted.method, shipped.method);
    for language in ["en", "es"] {
        let (a, b) = (&refitted.per_language[language], &shipped.per_language[language]);
        assert!(
            (a.scale - b.scale).abs() < 1e-3,
            "{language}: scale {} vs {}",
            a.scale,
            b.scale
        );
        for (x, y) in a.bias.iter().zip(&b.bias) {
            assert!((x - y).abs() < 1e-3, "{language}: bias {:?} vs {:?}", a.bias, b.bias);
        }
    }
}

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn calibration_lowers_the_calibration_error_in_each_language_on_fresh_texts() {
    // Fitted on the calibration set only; measured on the held-out set, as served (map of the detected language)
    // against the head's own softmax. The top-label error must fall in each language. P(negative), which alerts
    // compare with, must fall where the softmax is off, and stay calibrated where it already is (set 10: English
    // 0.027 → 0.022, Spanish 0.032 → 0.019, top label 0.023 → 0.014 and 0.037 → 0.015; set 11: 0.032 → 0.029,
    // 0.038 → 0.034, top label 0.032 → 0.015 and 0.047 → 0.030; set 12: 0.081 → 0.062, 0.068 → 0.064, top label
    // 0.082 → 0.060 and 0.065 → 0.042).
    let encoder = encoder();
    let head = head(&encoder);
    for file in HELD_OUT {
        let m = measure(&encoder, &head, file);
        assert!(
            m.ece_calibrated < m.ece_raw,
            "{file}: top-label ECE {} calibrated vs {} raw",
            m.ece_calibrated,
            m.ece_raw
        );
        if m.negative_ece_raw > CALIBRATED_ENOUGH {
            assert!(
                m.negative_ece_calibrated < m.negative_ece_raw,
                "{file}: P(negative) ECE {} calibrated vs {} raw",
                m.negative_ece_calibrated,
                m.negative_ece_raw
            );
        } else {
            assert!(
                m.negative_ece_calibrated <= CALIBRATED_ENOUGH,
                "{file}: P(negative) ECE {} calibrated, {} raw",
                m.negative_ece_calibrated,
                m.negative_ece_raw
            );
        }
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
