//! The shipped sentiment head on our held-out support texts (`models/data/support-heldout{,-2}-{en,es}.jsonl`, written
//! for Kairos, never used for training or for any choice of the shipped head): floors under the figures recorded in
//! `models/MODELS.md`, per file — 3-class accuracy, macro-F1, neutral recall, binary accuracy on positive/negative,
//! alert precision/recall at the shipped threshold — a ceiling on the calibration error, the calibration choice
//! re-made on the development set, and negation.
//!
//! Ignored by default (they need the adapted e5 encoder from `scripts/fetch-e5`); `scripts/test` runs them with
//! `--run-ignored all`, or: `cargo nextest run -p kairos-models --test sentiment_quality --run-ignored only`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{
    cross_fit_calibration, detect_language, evaluate, expected_calibration_error, negative_calibration_error,
    CalibrationExample, Encoder, EncoderConfig, LabeledDataset, Sentiment, SentimentHead,
};

/// The head `config/default.toml` ships.
const HEAD: &str = "models/heads/sentiment-e5-int8-lora-2.json";
/// `sentiment.alert_threshold` in `config/default.toml`.
const ALERT_THRESHOLD: f64 = 0.75;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn encoder() -> Encoder {
    let lib = root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1");
    let dir = root().join(".cache/models/multilingual-e5-small-int8-sentiment-2");
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
const FLOORS: [(&str, [f64; 6]); 4] = [
    // measured: 0.963, 0.963, 0.972, 0.958, 0.943, 0.917
    (
        "models/data/support-heldout-en.jsonl",
        [0.95, 0.95, 0.94, 0.94, 0.91, 0.88],
    ),
    // measured: 0.954, 0.954, 0.972, 0.958, 0.941, 0.889
    (
        "models/data/support-heldout-es.jsonl",
        [0.94, 0.94, 0.94, 0.94, 0.91, 0.86],
    ),
    // measured: 0.965, 0.965, 0.947, 0.973, 0.973, 0.947
    (
        "models/data/support-heldout-2-en.jsonl",
        [0.95, 0.95, 0.92, 0.95, 0.94, 0.92],
    ),
    // measured: 0.930, 0.931, 0.946, 0.922, 0.919, 0.872
    (
        "models/data/support-heldout-2-es.jsonl",
        [0.91, 0.91, 0.92, 0.90, 0.89, 0.84],
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
/// and P(negative), which alert thresholds compare with. Measured (models/MODELS.md): en 0.016 / 0.027 and 0.020 /
/// 0.030, es 0.030 / 0.024 and 0.035 / 0.058.
const ECE_CEILING: f64 = 0.065;

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn probabilities_are_calibrated_in_each_language() {
    let encoder = encoder();
    let head = head(&encoder);
    // The shipped head carries no map: on the development set, 5-fold cross-fitted maps (temperature, temperature +
    // bias) raised the log-loss in both languages, so none was fitted (models/MODELS.md; the test below keeps that
    // choice honest). What users rely on is that a probability means the same in Spanish and English, which this
    // checks directly.
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

/// The development set the shipped head's calibration was chosen and fitted on (models/data/README.md).
const DEV: [&str; 2] = ["models/data/support-dev-en.jsonl", "models/data/support-dev-es.jsonl"];

#[test]
#[ignore = "needs the adapted e5 encoder (scripts/fetch-models, scripts/fetch-e5)"]
fn the_shipped_calibration_is_the_one_cross_fitting_on_the_development_set_chooses() {
    // Whether a head serves maps or its softmax is decided per language by 5-fold cross-fitted log-loss on texts
    // written apart from training (a map fitted on the texts it is judged on always looks better). This checks
    // that the shipped head carries what that rule chooses, so a retrained head cannot ship with maps that make
    // its probabilities worse, or without maps that would make them better.
    let encoder = encoder();
    let head = head(&encoder);
    let raw = head.clone().with_calibration(None).unwrap();
    let labels = raw.labels().to_vec();
    let mut rows = Vec::new();
    for file in DEV {
        let data = LabeledDataset::from_path(&root().join(file)).unwrap();
        let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
        let embeddings = encoder.embed_batched(&texts, 8, &mut |_, _| {}).unwrap();
        for (i, e) in data.examples.iter().enumerate() {
            rows.push(CalibrationExample {
                logits: raw.logits(embeddings.get(i).unwrap()).unwrap(),
                truth: labels.iter().position(|l| *l == e.label).unwrap(),
                language: e.lang.clone().unwrap(),
            });
        }
    }
    let scores = cross_fit_calibration(&rows, 5);
    for s in &scores {
        println!("{:?}: {:?} mean {:.4}", s.method, s.per_language, s.mean);
    }
    let best = scores.iter().min_by(|a, b| a.mean.total_cmp(&b.mean)).unwrap();
    assert_eq!(
        head.calibration().map(|c| c.method),
        best.method,
        "the shipped head's calibration is not the one cross-fitting chooses: {scores:?}"
    );
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
