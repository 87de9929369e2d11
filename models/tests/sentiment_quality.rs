//! The shipped sentiment head on our held-out support texts (`models/data/support-heldout-{en,es}.jsonl`, written by
//! the Kairos team, never used for training or for any choice): floors under the figures recorded in
//! `models/MODELS.md`, per language — 3-class accuracy, macro-F1, neutral recall, binary accuracy on
//! positive/negative, calibration that lowers ECE, alert precision/recall at the shipped threshold — and negation.
//!
//! Ignored by default (they need the int8 e5 encoder from `scripts/fetch-e5`); `scripts/test` runs them with
//! `--run-ignored all`, or: `cargo nextest run -p kairos-models --test sentiment_quality --run-ignored only`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{
    detect_language, evaluate, expected_calibration_error, negative_calibration_error, Encoder, EncoderConfig,
    LabeledDataset, Sentiment, SentimentHead,
};

/// The head `config/default.toml` ships.
const HEAD: &str = "models/heads/sentiment-e5-int8-lora-1.json";
/// `sentiment.alert_threshold` in `config/default.toml`.
const ALERT_THRESHOLD: f64 = 0.75;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn encoder() -> Encoder {
    let lib = root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1");
    let dir = root().join(".cache/models/multilingual-e5-small-int8-sentiment");
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

/// Floors per language: (accuracy, macro-F1, neutral recall, binary accuracy, alert precision, alert recall), set a
/// little under the figures measured and recorded in models/MODELS.md (216 texts: one text is ~0.008 of a language).
const FLOORS: [(&str, [f64; 6]); 2] = [
    // measured: 0.954, 0.954, 0.972, 0.972, 0.939, 0.861
    (
        "models/data/support-heldout-en.jsonl",
        [0.94, 0.94, 0.94, 0.95, 0.91, 0.83],
    ),
    // measured: 0.926, 0.926, 0.917, 0.944, 0.935, 0.806
    (
        "models/data/support-heldout-es.jsonl",
        [0.91, 0.91, 0.89, 0.92, 0.91, 0.78],
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

/// Ceiling on the expected calibration error (10 bins) of what the product serves, per language: the top label and
/// P(negative), which alert thresholds compare with. Measured (models/MODELS.md): en 0.034 / 0.048, es 0.048 / 0.028.
const ECE_CEILING: f64 = 0.065;

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn probabilities_are_calibrated_in_each_language() {
    let encoder = encoder();
    let head = head(&encoder);
    // The shipped head carries no map: on the development rows, 5-fold cross-fitted maps (temperature, temperature +
    // bias) raised the log-loss in both languages, so the trainer chose none (models/MODELS.md). What users rely on
    // is that a probability means the same in Spanish and English, which this checks directly.
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
