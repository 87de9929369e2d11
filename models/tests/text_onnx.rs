//! Text-model tests that run ONNX Runtime: the tiny committed fixtures (hand-checkable pooling, padding, truncation,
//! softmax) and, when `scripts/fetch-models` has run, the real all-MiniLM-L6-v2 int8 encoder checked against Python
//! onnxruntime's embeddings.
//!
//! The ONNX Runtime library comes from `$ORT_DYLIB_PATH` (set by `.cargo/config.toml` to the library
//! `scripts/fetch-models` fetches). Without it, or without the fetched model, the tests here print why and skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{
    self, fit_head, ClassifierConfig, ClassifierModel, EmbeddedExamples, Embeddings, Encoder, EncoderConfig,
    LabeledDataset, Language, Sentiment, SentimentAnalyzer, SentimentHead, TextError, TrainConfig,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text")
}

fn minilm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/models/all-MiniLM-L6-v2-int8")
}

/// The ONNX Runtime library must be there (`scripts/test` fetches it first): a missing one fails the test with
/// the reason, rather than skipping it silently.
fn ort_available() -> bool {
    let path = std::env::var_os(text::ORT_DYLIB_ENV);
    assert!(
        path.as_ref().is_some_and(|p| Path::new(p).is_file()),
        "no ONNX Runtime library (ORT_DYLIB_PATH={path:?}): run scripts/fetch-models"
    );
    true
}

/// The real MiniLM encoder must have been fetched (and ONNX Runtime be there).
fn minilm_available() -> bool {
    ort_available();
    let dir = minilm_dir();
    assert!(
        dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file(),
        "{} is missing: run scripts/fetch-models to fetch the MiniLM encoder",
        dir.display()
    );
    true
}

fn tiny_encoder(model: &str, max_length: usize, normalize: bool) -> Encoder {
    let mut config =
        EncoderConfig::new(fixtures().join(model), fixtures().join("tokenizer.json")).max_length(max_length);
    config.normalize = normalize;
    Encoder::new(config).expect("tiny encoder loads")
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance,
            "component {i}: {x} vs {y} (tolerance {tolerance})\n{a:?}\n{b:?}"
        );
    }
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

// ---------------------------------------------------------------------------------------------- tiny encoder

#[test]
fn mean_pooling_over_real_tokens_by_hand() {
    if !ort_available() {
        return;
    }
    // h = [id, mask + type_id, id²] per token. "Hello world" = [CLS]=2 hello=9 world=10 [SEP]=3;
    // "hello" = 2 9 3 plus one padding position (id 0, mask 0) that must not count.
    let encoder = tiny_encoder("tiny_encoder.onnx", 16, false);
    assert_eq!(encoder.dimension(), 3);
    assert_eq!(
        encoder.input_names(),
        vec!["input_ids", "attention_mask", "token_type_ids"]
    );
    assert!(encoder.uses_token_type_ids());
    let e = encoder.embed(&["Hello world", "hello"]).unwrap();
    assert_close(e.get(0).unwrap(), &[24.0 / 4.0, 1.0, 194.0 / 4.0], 1e-5);
    assert_close(e.get(1).unwrap(), &[14.0 / 3.0, 1.0, 94.0 / 3.0], 1e-5);

    let normalizing = tiny_encoder("tiny_encoder.onnx", 16, true);
    let n = normalizing.embed(&["Hello world", "hello"]).unwrap();
    assert_close(n.get(0).unwrap(), &normalized(&[6.0, 1.0, 48.5]), 1e-6);
    assert_close(n.get(1).unwrap(), &normalized(&[14.0 / 3.0, 1.0, 94.0 / 3.0]), 1e-6);
    assert_eq!(normalizing.fingerprint().dimension, 3);
    assert_eq!(normalizing.fingerprint().model_file, "tiny_encoder.onnx");
    assert_eq!(normalizing.fingerprint().model_sha256.len(), 64);
}

#[test]
fn truncation_applies_before_the_model() {
    if !ort_available() {
        return;
    }
    // max_length 3 leaves room for one word: "hello world" becomes [CLS] hello [SEP], i.e. "hello".
    let encoder = tiny_encoder("tiny_encoder.onnx", 3, false);
    let e = encoder.embed(&["hello world", "hello"]).unwrap();
    assert_eq!(e.get(0), e.get(1));
    assert_close(e.get(0).unwrap(), &[14.0 / 3.0, 1.0, 94.0 / 3.0], 1e-5);
}

#[test]
fn batched_and_single_inference_agree_and_order_is_kept() {
    if !ort_available() {
        return;
    }
    let encoder = tiny_encoder("tiny_encoder.onnx", 16, true);
    let texts = [
        "good bad great awful ok good",
        "hello",
        "the service is good",
        "ok",
        "el servicio es malo",
        "world",
    ];
    let batch = encoder.embed(&texts).unwrap();
    let mut progress = Vec::new();
    let batched = encoder
        .embed_batched(&texts, 4, &mut |done, total| progress.push((done, total)))
        .unwrap();
    assert_eq!(progress, vec![(4, 6), (6, 6)]);
    for (i, text) in texts.iter().enumerate() {
        let single = encoder.embed(&[text]).unwrap();
        assert_close(batch.get(i).unwrap(), single.get(0).unwrap(), 1e-6);
        assert_close(batched.get(i).unwrap(), single.get(0).unwrap(), 1e-6);
    }
    assert!(encoder.embed(&[]).unwrap().is_empty());
    assert!(encoder.embed_batched(&texts, 0, &mut |_, _| {}).is_err());
}

#[test]
fn token_type_ids_are_only_fed_to_models_that_take_them() {
    if !ort_available() {
        return;
    }
    let encoder = tiny_encoder("tiny_encoder_no_tt.onnx", 16, false);
    assert!(!encoder.uses_token_type_ids());
    assert_eq!(encoder.input_names(), vec!["input_ids", "attention_mask"]);
    let e = encoder.embed(&["Hello world", "hello"]).unwrap();
    assert_close(e.get(0).unwrap(), &[6.0, 1.0], 1e-6);
    assert_close(e.get(1).unwrap(), &[14.0 / 3.0, 1.0], 1e-6);
}

#[test]
fn an_unloadable_model_is_an_error_naming_it() {
    if !ort_available() {
        return;
    }
    let config = EncoderConfig::new(
        fixtures().join("classifier_config.json"),
        fixtures().join("tokenizer.json"),
    );
    let err = Encoder::new(config).unwrap_err();
    assert!(matches!(err, TextError::ModelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("classifier_config.json"), "{err}");

    // The classifier's output is [batch, 3], not token embeddings: still a valid encoder (already pooled) — but
    // asking for an output that does not exist is an error naming the model.
    let mut config = EncoderConfig::new(
        fixtures().join("tiny_classifier.onnx"),
        fixtures().join("tokenizer.json"),
    );
    config.output = Some("pooler_output".into());
    let err = Encoder::new(config).unwrap_err();
    assert!(matches!(err, TextError::ModelSignature { .. }), "{err:?}");
    assert!(
        err.to_string().contains("tiny_classifier.onnx") && err.to_string().contains("pooler_output"),
        "{err}"
    );
}

#[test]
fn the_runtime_is_loaded_once_and_cannot_be_switched() {
    if !ort_available() {
        return;
    }
    let runtime = text::init_runtime(None).unwrap();
    assert!(runtime.library().is_absolute());
    let again = text::init_runtime(Some(runtime.library())).unwrap();
    assert_eq!(again.library(), runtime.library());
    let other = fixtures().join("tokenizer.json");
    let err = text::init_runtime(Some(&other)).unwrap_err();
    assert!(matches!(err, TextError::RuntimeConflict { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn session_pool_serves_concurrent_callers() {
    if !ort_available() {
        return;
    }
    let encoder = std::sync::Arc::new(
        Encoder::new(
            EncoderConfig::new(fixtures().join("tiny_encoder.onnx"), fixtures().join("tokenizer.json")).sessions(2),
        )
        .unwrap(),
    );
    assert_eq!(encoder.sessions(), 2);
    let expected = encoder.embed(&["hello world"]).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let encoder = encoder.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| encoder.embed(&["hello world"]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        for e in handle.join().unwrap() {
            assert_eq!(e, expected);
        }
    }
    let err = Encoder::new(
        EncoderConfig::new(fixtures().join("tiny_encoder.onnx"), fixtures().join("tokenizer.json")).sessions(0),
    )
    .unwrap_err();
    assert!(matches!(err, TextError::Config(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------- tiny classifier

fn tiny_classifier(labels: &[&str]) -> Result<ClassifierModel, TextError> {
    ClassifierModel::new(ClassifierConfig::new(
        fixtures().join("tiny_classifier.onnx"),
        fixtures().join("tokenizer.json"),
        labels.iter().map(|s| s.to_string()).collect(),
    ))
}

#[test]
fn classifier_softmax_by_hand() {
    if !ort_available() {
        return;
    }
    let labels = text::labels_from_hf_config(&fixtures().join("classifier_config.json")).unwrap();
    let classifier = ClassifierModel::new(ClassifierConfig::new(
        fixtures().join("tiny_classifier.onnx"),
        fixtures().join("tokenizer.json"),
        labels,
    ))
    .unwrap();
    // Per-token logits: good [0,0,2], bad [2,0,0], great [0,0,3], ok [0,1.5,0]; other tokens 0.
    let texts = ["good service", "bad bad", "ok", "great but awful", "hello"];
    let logits = classifier.logits(&texts).unwrap();
    assert_eq!(logits[0], vec![0.0, 0.0, 2.0]);
    assert_eq!(logits[1], vec![4.0, 0.0, 0.0]);
    assert_eq!(logits[3], vec![3.0, 0.0, 3.0]);

    let p = classifier.predict(&texts).unwrap();
    let e2 = 2f32.exp();
    assert_eq!((p[0].label.as_str(), p[0].index), ("positive", 2));
    assert!((p[0].score - e2 / (2.0 + e2)).abs() < 1e-6);
    assert_close(
        &p[0].probabilities,
        &[1.0 / (2.0 + e2), 1.0 / (2.0 + e2), e2 / (2.0 + e2)],
        1e-6,
    );
    assert_eq!(p[1].label, "negative");
    let e15 = 1.5f32.exp();
    assert_eq!(p[2].label, "neutral");
    assert!((p[2].score - e15 / (2.0 + e15)).abs() < 1e-6);
    assert_close(&p[4].probabilities, &[1.0 / 3.0; 3], 1e-6);

    // Batched vs single.
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(classifier.predict(&[text]).unwrap()[0], p[i]);
    }
}

#[test]
fn classifier_label_count_must_match_the_logits() {
    if !ort_available() {
        return;
    }
    let err = tiny_classifier(&["negative", "positive"]).unwrap_err();
    assert!(matches!(err, TextError::ModelSignature { .. }), "{err:?}");
    assert!(
        err.to_string().contains("tiny_classifier.onnx") && err.to_string().contains("[batch, 2]"),
        "{err}"
    );
    assert!(matches!(tiny_classifier(&["only"]), Err(TextError::Config(_))));
}

#[test]
fn analyzer_over_a_classifier_with_sentiment_labels() {
    if !ort_available() {
        return;
    }
    let analyzer = SentimentAnalyzer::from_classifier(tiny_classifier(&["NEG", "Neutral", "pos"]).unwrap()).unwrap();
    assert_eq!(analyzer.labels(), Sentiment::ALL.to_vec());
    let results = analyzer
        .with_batch_size(2)
        .analyze(&["the service is good", "el servicio es malo", "ok"])
        .unwrap();
    assert_eq!(results[0].label, Sentiment::Positive);
    assert_eq!(results[0].language, Some(Language::English));
    assert!(results[0].polarity > 0.5);
    assert_eq!(results[1].label, Sentiment::Negative);
    assert_eq!(results[1].language, Some(Language::Spanish));
    assert!(results[1].polarity < -0.5);
    assert_eq!(results[2].label, Sentiment::Neutral);

    let err =
        SentimentAnalyzer::from_classifier(tiny_classifier(&["LABEL_0", "LABEL_1", "LABEL_2"]).unwrap()).unwrap_err();
    assert!(matches!(err, TextError::UnknownSentimentLabel { .. }), "{err:?}");
    let err = SentimentAnalyzer::from_classifier(tiny_classifier(&["neg", "negative", "pos"]).unwrap()).unwrap_err();
    assert!(matches!(err, TextError::Config(_)), "{err:?}");
}

#[test]
fn analyzer_refuses_a_head_trained_on_another_encoder() {
    if !ort_available() {
        return;
    }
    let encoder = tiny_encoder("tiny_encoder.onnx", 16, true);
    let mut other = encoder.fingerprint().clone();
    other.model_sha256 = "00".repeat(32);
    let examples = EmbeddedExamples {
        embeddings: Embeddings::from_vec(3, (0..60).map(|i| if i % 6 < 3 { 1.0 } else { -1.0 }).collect()).unwrap(),
        labels: (0..20)
            .map(|i| {
                if i % 2 == 0 {
                    Sentiment::Positive
                } else {
                    Sentiment::Negative
                }
            })
            .collect(),
        languages: vec!["en".into(); 20],
        datasets: vec![],
        duplicates_removed: 0,
    };
    let config = TrainConfig {
        alphas: vec![1.0],
        ..TrainConfig::default()
    };
    let head = fit_head(&examples, other, &config, &mut |_| {}).unwrap();
    let err = SentimentAnalyzer::from_head(encoder, head).unwrap_err();
    assert!(matches!(err, TextError::EncoderMismatch { .. }), "{err:?}");
}

#[test]
fn trains_end_to_end_from_a_file_with_the_tiny_encoder() {
    if !ort_available() {
        return;
    }
    let encoder = tiny_encoder("tiny_encoder.onnx", 16, true);
    // The tiny encoder only "sees" token ids: positive texts repeat "good" (id 4), negative ones "malo" (id 18), so
    // the mean id separates them. Texts are distinct (exact duplicates would be dropped).
    let mut jsonl = String::new();
    for n in 1..=20 {
        jsonl.push_str(&format!(
            "{{\"text\":\"{}\",\"label\":\"positive\",\"lang\":\"en\"}}\n",
            "good ".repeat(n)
        ));
        jsonl.push_str(&format!(
            "{{\"text\":\"{}\",\"label\":\"negative\",\"lang\":\"es\"}}\n",
            "malo ".repeat(n)
        ));
    }
    jsonl.push_str("{\"text\":\"good \",\"label\":\"positive\"}\n");
    let data = LabeledDataset::from_jsonl_reader(std::io::Cursor::new(jsonl), "tiny.jsonl").unwrap();
    let mut embedded = 0;
    let head = text::train_sentiment_head(&encoder, &[data], &TrainConfig::default(), &mut |e| {
        if let text::TrainEvent::Embedding { done, .. } = e {
            embedded = done;
        }
    })
    .unwrap();
    assert_eq!(head.labels(), &[Sentiment::Negative, Sentiment::Positive]);
    assert_eq!(head.training().datasets[0].name, "tiny.jsonl");
    assert_eq!(head.training().datasets[0].examples, 40);
    assert_eq!(head.training().duplicates_removed, 1);
    assert_eq!(head.metrics().per_language.keys().collect::<Vec<_>>(), vec!["en", "es"]);
    assert_eq!(embedded, head.training().datasets[0].examples);
    head.check_encoder(encoder.fingerprint()).unwrap();
    let analyzer = SentimentAnalyzer::from_head(encoder, head).unwrap();
    let r = analyzer.analyze(&["good", "malo malo"]).unwrap();
    assert_eq!((r[0].label, r[1].label), (Sentiment::Positive, Sentiment::Negative));
}

// ---------------------------------------------------------------------------------------------- real MiniLM

#[derive(serde::Deserialize)]
struct Reference {
    max_length: usize,
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

#[test]
fn minilm_matches_python_onnxruntime() {
    if !minilm_available() {
        return;
    }
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm_reference.json")).unwrap()).unwrap();
    let encoder = Encoder::new(EncoderConfig::from_dir(minilm_dir()).max_length(reference.max_length)).unwrap();
    assert_eq!(encoder.dimension(), 384);
    assert!(encoder.uses_token_type_ids());
    assert_eq!(
        encoder.fingerprint().model_sha256,
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    );
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let batch = encoder.embed(&texts).unwrap();
    for (i, expected) in reference.embeddings.iter().enumerate() {
        let row = batch.get(i).unwrap();
        assert_close(row, expected, 1e-4);
        assert!((row.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        // Alone (no padding) gives the same vector as in the padded batch.
        assert_close(encoder.embed(&[texts[i]]).unwrap().get(0).unwrap(), row, 1e-4);
    }
}

#[test]
fn shipped_minilm_head_round_trip() {
    // The MiniLM head shipped in models/heads/ (rebuilt by the sentiment_train example, models/MODELS.md) must
    // load, match the encoder and classify obvious English sentences.
    minilm_available();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("heads/sentiment-minilm-1.json");
    let head = SentimentHead::load(&path).unwrap();
    let encoder = Encoder::new(EncoderConfig::from_dir(minilm_dir())).unwrap();
    let analyzer = SentimentAnalyzer::from_head(encoder, head).unwrap();
    let r = analyzer
        .analyze(&["I love it, works perfectly.", "Terrible, it broke after one day."])
        .unwrap();
    assert_eq!((r[0].label, r[1].label), (Sentiment::Positive, Sentiment::Negative));
}
