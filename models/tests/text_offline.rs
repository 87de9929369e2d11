//! Text-model tests that need no ONNX Runtime and no network: tokenisation, pooling, language detection, data
//! files, metrics, and training / saving / loading a sentiment head on synthetic embeddings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::io::Cursor;
use std::path::{Path, PathBuf};

use kairos_models::text::{
    self, detect_language, evaluate, fit_head, l2_normalize, labels_from_hf_config, mean_pool, softmax,
    stratified_split, ClassifierConfig, ClassifierModel, EmbeddedExamples, Embeddings, Encoder, EncoderConfig,
    EncoderFingerprint, LabeledDataset, Language, Pooling, Sentiment, SentimentHead, TextError, TextTokenizer,
    TrainConfig, TrainEvent,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text")
}

fn tokenizer(max_length: usize) -> TextTokenizer {
    TextTokenizer::from_file(&fixtures().join("tokenizer.json"), max_length).expect("fixture tokenizer loads")
}

// ---------------------------------------------------------------------------------------------- tokenisation

#[test]
fn tokenizer_pads_to_the_longest_text_and_masks_padding() {
    // [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 hello=9 world=10 (see make_fixtures.py)
    let batch = tokenizer(16).encode_batch(&["Hello world", "hello"]).unwrap();
    assert_eq!((batch.batch, batch.seq_len), (2, 4));
    assert_eq!(batch.input_ids, vec![2, 9, 10, 3, 2, 9, 3, 0]);
    assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 1, 1, 0]);
    assert_eq!(batch.token_type_ids, vec![0; 8]);
    assert_eq!(batch.tokens_in_row(1), 3);
}

#[test]
fn tokenizer_truncates_to_max_length_and_keeps_the_special_tokens() {
    // good=4 bad=5 great=6 awful=7 ok=8
    let batch = tokenizer(4).encode_batch(&["good bad great awful ok", "ok"]).unwrap();
    assert_eq!(batch.seq_len, 4);
    assert_eq!(&batch.input_ids[..4], &[2, 4, 5, 3]);
    assert_eq!(&batch.input_ids[4..], &[2, 8, 3, 0]);
}

#[test]
fn tokenizer_replaces_the_files_own_padding_and_truncation() {
    // A tokenizer.json that pads everything to 12 tokens and truncates at 6 (as MiniLM's pads to 128).
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokenizer.json")).unwrap()).unwrap();
    json["padding"] = serde_json::json!({"strategy": {"Fixed": 12}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
    json["truncation"] = serde_json::json!({"max_length": 6, "strategy": "LongestFirst", "stride": 0});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let t = TextTokenizer::from_file(&path, 8).unwrap();
    let batch = t
        .encode_batch(&["hello world", "good bad great awful ok good bad"])
        .unwrap();
    assert_eq!(
        batch.seq_len, 8,
        "padded to the longest (truncated) text, not to the file's 12"
    );
    assert_eq!(batch.tokens_in_row(0), 4);
    assert_eq!(batch.tokens_in_row(1), 8);
}

#[test]
fn tokenizer_handles_empty_batches_unknown_words_and_word_pieces() {
    let t = tokenizer(16);
    let empty = t.encode_batch(&[]).unwrap();
    assert_eq!((empty.batch, empty.seq_len, empty.input_ids.len()), (0, 0, 0));
    // "goods" = good + ##s (19); "xyz" is unknown.
    let batch = t.encode_batch(&["Goods XYZ"]).unwrap();
    assert_eq!(batch.input_ids, vec![2, 4, 19, 1, 3]);
}

#[test]
fn tokenizer_rejects_a_max_length_without_room_for_text() {
    let err = TextTokenizer::from_file(&fixtures().join("tokenizer.json"), 2).unwrap_err();
    assert!(matches!(err, TextError::Config(_)), "{err}");
}

#[test]
fn missing_or_invalid_tokenizer_is_an_error_naming_the_path() {
    let missing = fixtures().join("no-such-tokenizer.json");
    let err = TextTokenizer::from_file(&missing, 16).unwrap_err();
    assert!(
        matches!(err, TextError::MissingFile { what: "tokenizer", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-tokenizer.json"), "{err}");

    let not_a_tokenizer = fixtures().join("classifier_config.json");
    let err = TextTokenizer::from_file(&not_a_tokenizer, 16).unwrap_err();
    assert!(matches!(err, TextError::Tokenizer { .. }), "{err:?}");
    assert!(err.to_string().contains("classifier_config.json"), "{err}");
}

#[test]
fn encoder_and_classifier_report_bad_paths_before_touching_onnx_runtime() {
    let model = fixtures().join("tiny_encoder.onnx");
    let tok = fixtures().join("tokenizer.json");

    let err = Encoder::new(EncoderConfig::new(fixtures().join("missing.onnx"), &tok)).unwrap_err();
    assert!(
        matches!(err, TextError::MissingFile { what: "ONNX model", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.onnx"), "{err}");

    let err = Encoder::new(EncoderConfig::new(&model, fixtures().join("missing-tokenizer.json"))).unwrap_err();
    assert!(err.to_string().contains("missing-tokenizer.json"), "{err}");

    let labels = vec!["negative".to_string(), "positive".to_string()];
    let err = ClassifierModel::new(ClassifierConfig::new(fixtures().join("nope.onnx"), &tok, labels)).unwrap_err();
    assert!(err.to_string().contains("nope.onnx"), "{err}");

    let err = Encoder::new(EncoderConfig::from_dir("/nonexistent/kairos-models")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/kairos-models/model.onnx"),
        "{err}"
    );
}

#[test]
fn runtime_library_errors_name_the_path() {
    // Nothing in this test binary loads ONNX Runtime successfully, so these reach the loader checks.
    let missing = Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    let err = text::init_runtime(Some(missing)).unwrap_err();
    assert!(matches!(err, TextError::MissingFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{err}"
    );

    // A file that is not a shared library: dlopen fails, and the error says which file.
    let not_a_library = fixtures().join("tokenizer.json");
    let err = text::init_runtime(Some(&not_a_library)).unwrap_err();
    assert!(matches!(err, TextError::RuntimeLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    assert!(text::runtime().is_none());
}

// ---------------------------------------------------------------------------------------------- pooling

#[test]
fn mean_pooling_ignores_padding() {
    // batch 2, seq 3, dim 2; row 1 has one padding position holding a huge value that must not count.
    let hidden = [
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, /* row 1 */ 2.0, 2.0, 4.0, 0.0, 1000.0, -1000.0,
    ];
    let mask = [1, 1, 1, 1, 1, 0];
    let pooled = mean_pool(&hidden, &mask, 2, 3, 2).unwrap();
    assert_eq!(pooled, vec![3.0, 4.0, 3.0, 1.0]);
    // A row with no real token pools to zeros rather than NaN.
    assert_eq!(mean_pool(&[5.0, 5.0], &[0], 1, 1, 2).unwrap(), vec![0.0, 0.0]);
    assert!(mean_pool(&hidden, &mask, 2, 3, 3).is_err());
}

#[test]
fn l2_normalisation_gives_unit_rows_and_keeps_zero_rows() {
    let mut rows = vec![3.0, 4.0, 0.0, 0.0];
    l2_normalize(&mut rows, 2);
    assert_eq!(rows, vec![0.6, 0.8, 0.0, 0.0]);
}

#[test]
fn embeddings_matrix_accessors() {
    let e = Embeddings::from_vec(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!((e.len(), e.dim()), (3, 2));
    assert_eq!(e.get(1), Some(&[3.0, 4.0][..]));
    assert_eq!(e.get(3), None);
    assert_eq!(e.select(&[2, 0]).as_slice(), &[5.0, 6.0, 1.0, 2.0]);
    assert_eq!(e.view().shape(), &[3, 2]);
    assert_eq!(e.view()[[2, 1]], 6.0);
    assert_eq!(e.to_rows()[0], vec![1.0, 2.0]);
    assert!(Embeddings::from_vec(4, vec![1.0; 6]).is_err());
    let mut a = Embeddings::empty(2);
    a.extend(&e).unwrap();
    assert_eq!(a, e);
    assert!(a.extend(&Embeddings::empty(3)).is_err());
}

#[test]
fn softmax_is_stable_and_sums_to_one() {
    let p = softmax(&[1000.0, 1000.0, 998.0]);
    let e2 = (-2.0f32).exp();
    assert!((p[0] - 1.0 / (2.0 + e2)).abs() < 1e-6);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------------- language

#[test]
fn detects_spanish_and_english() {
    let cases = [
        (
            "El sistema no funciona desde ayer y es urgente",
            Some(Language::Spanish),
        ),
        ("¿Alguien me puede ayudar con la factura?", Some(Language::Spanish)),
        ("Muchas gracias por la ayuda, todo perfecto", Some(Language::Spanish)),
        ("me encanta el nuevo diseño", Some(Language::Spanish)),
        ("The dashboard is broken and we are blocked", Some(Language::English)),
        ("Thanks a lot, it works great now", Some(Language::English)),
        ("I don't like the new pricing", Some(Language::English)),
        ("Worst customer service ever.", Some(Language::English)),
        ("https://t.co/abc @kairos #ops 👍", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(detect_language(text), expected, "{text:?}");
    }
    assert_eq!(Language::from_code("es-MX"), Some(Language::Spanish));
    assert_eq!(Language::from_code("EN_us"), Some(Language::English));
    assert_eq!(Language::from_code("pt"), None);
}

// ---------------------------------------------------------------------------------------------- data files

#[test]
fn reads_csv_with_any_column_order_and_optional_lang() {
    let csv = "\u{feff}id,Label,TEXT,lang\n1,positive,\"Great, thanks\",en\n2,NEG,\"No funciona\nnada\",es-MX\n3,neutral,ok,\n";
    let d = LabeledDataset::from_csv_reader(Cursor::new(csv), "comments.csv").unwrap();
    assert_eq!(d.examples.len(), 3);
    assert_eq!(d.examples[0].text, "Great, thanks");
    assert_eq!(d.examples[1].label, Sentiment::Negative);
    assert_eq!(d.examples[1].text, "No funciona\nnada");
    assert_eq!(d.examples[1].lang.as_deref(), Some("es"));
    assert_eq!(d.examples[2].lang, None);
    assert_eq!(
        d.examples[2].line, 5,
        "the quoted newline moves the third record to line 5"
    );
}

#[test]
fn csv_errors_name_line_and_column() {
    let csv = "text,label\nfine,positive\nbad row,meh\n";
    let err = LabeledDataset::from_csv_reader(Cursor::new(csv), "x.csv").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TextError::Data { line: 3, .. }), "{err:?}");
    assert!(
        msg.contains("x.csv") && msg.contains("line 3") && msg.contains("label") && msg.contains("meh"),
        "{msg}"
    );

    let err = LabeledDataset::from_csv_reader(Cursor::new("text,label\n  ,positive\n"), "x.csv").unwrap_err();
    assert!(err.to_string().contains("line 2, column text (1): empty text"), "{err}");

    let err = LabeledDataset::from_csv_reader(Cursor::new("text,sentiment\na,positive\n"), "x.csv").unwrap_err();
    assert!(err.to_string().contains("no `label` column"), "{err}");

    let err = LabeledDataset::from_csv_reader(Cursor::new("text,label\na,positive,extra\n"), "x.csv").unwrap_err();
    assert!(matches!(err, TextError::Data { line: 2, .. }), "{err:?}");

    let err = LabeledDataset::from_csv_reader(Cursor::new("text,label,lang\na,positive,??\n"), "x.csv").unwrap_err();
    assert!(err.to_string().contains("column lang (3)"), "{err}");

    let err = LabeledDataset::from_csv_reader(Cursor::new("text,label\n"), "x.csv").unwrap_err();
    assert!(err.to_string().contains("no examples"), "{err}");
}

#[test]
fn numeric_labels_are_refused() {
    let err = LabeledDataset::from_csv_reader(Cursor::new("text,label\nhello,0\n"), "x.csv").unwrap_err();
    assert!(err.to_string().contains("unknown label \"0\""), "{err}");
}

#[test]
fn reads_jsonl_and_reports_bad_lines() {
    let jsonl = "{\"text\":\"Love it\",\"label\":\"positive\",\"lang\":\"en\",\"source\":\"x\"}\n\n{\"text\":\"meh\",\"label\":\"neu\",\"lang\":null}\n";
    let d = LabeledDataset::from_jsonl_reader(Cursor::new(jsonl), "a.jsonl").unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.examples[1].label, Sentiment::Neutral);
    assert_eq!(d.examples[1].line, 3);

    let cases = [
        (
            "{\"text\":\"a\",\"label\":\"positive\"}\n{\"text\": 5, \"label\":\"positive\"}\n",
            "line 2, column text",
        ),
        ("{\"text\":\"a\"}\n", "line 1, column label: missing"),
        (
            "{\"text\":\"a\",\"label\":\"positive\"}\n{oops\n",
            "line 2, column char 2",
        ),
        ("[1,2]\n", "expected a JSON object"),
        ("{\"text\":\"a\",\"label\":\"happy\"}\n", "unknown label \"happy\""),
    ];
    for (input, expected) in cases {
        let err = LabeledDataset::from_jsonl_reader(Cursor::new(input), "a.jsonl").unwrap_err();
        assert!(err.to_string().contains(expected), "{input:?}: {err}");
    }
}

#[test]
fn reads_files_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, "text,label\nhi,positive\n").unwrap();
    let d = LabeledDataset::from_path(&csv).unwrap();
    assert_eq!(d.name, "data.csv");

    let txt = dir.path().join("data.txt");
    std::fs::write(&txt, "hi").unwrap();
    assert!(LabeledDataset::from_path(&txt)
        .unwrap_err()
        .to_string()
        .contains("unknown file type"));
    let err = LabeledDataset::from_path(&dir.path().join("none.jsonl")).unwrap_err();
    assert!(err.to_string().contains("none.jsonl"), "{err}");
}

#[test]
fn hf_config_labels_are_read_in_index_order() {
    let labels = labels_from_hf_config(&fixtures().join("classifier_config.json")).unwrap();
    assert_eq!(labels, vec!["negative", "neutral", "positive"]);
    let err = labels_from_hf_config(&fixtures().join("tokenizer.json")).unwrap_err();
    assert!(err.to_string().contains("id2label"), "{err}");
}

// ---------------------------------------------------------------------------------------------- metrics, split

#[test]
fn metrics_by_hand() {
    let labels = [Sentiment::Negative, Sentiment::Positive];
    // truth:     n n n p p
    // predicted: n n p p n
    let m = evaluate(&labels, &[0, 0, 0, 1, 1], &[0, 0, 1, 1, 0]);
    assert_eq!(m.examples, 5);
    assert!((m.accuracy - 0.6).abs() < 1e-12);
    let neg = &m.per_class[&Sentiment::Negative];
    assert!((neg.precision - 2.0 / 3.0).abs() < 1e-12 && (neg.recall - 2.0 / 3.0).abs() < 1e-12);
    let pos = &m.per_class[&Sentiment::Positive];
    assert!((pos.precision - 0.5).abs() < 1e-12 && (pos.recall - 0.5).abs() < 1e-12);
    assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    assert_eq!(m.confusion, vec![vec![2, 1], vec![1, 1]]);
    // A class absent from the truth has no per-class entry (no recall) but shows in the confusion matrix.
    let m = evaluate(&labels, &[0, 0], &[0, 1]);
    assert!(!m.per_class.contains_key(&Sentiment::Positive));
    assert_eq!(m.confusion[0], vec![1, 1]);
}

#[test]
fn stratified_split_is_seeded_disjoint_and_proportional() {
    let strata: Vec<(u8, &str)> = (0..1000)
        .map(|i| ((i % 3) as u8, if i % 5 == 0 { "es" } else { "en" }))
        .collect();
    let (train, test) = stratified_split(&strata, 0.2, 7);
    assert_eq!(train.len() + test.len(), 1000);
    assert!((190..=210).contains(&test.len()), "{}", test.len());
    assert!(train.iter().all(|i| !test.contains(i)));
    assert_eq!(stratified_split(&strata, 0.2, 7), (train.clone(), test.clone()));
    assert_ne!(stratified_split(&strata, 0.2, 8).1, test);
    let es_test = test.iter().filter(|&&i| strata[i].1 == "es").count();
    assert!((35..=45).contains(&es_test), "{es_test}");
}

// ---------------------------------------------------------------------------------------------- the head

fn fingerprint(dim: usize) -> EncoderFingerprint {
    EncoderFingerprint {
        model_file: "synthetic.onnx".into(),
        model_sha256: "ab".repeat(32),
        tokenizer_sha256: "cd".repeat(32),
        dimension: dim,
        max_length: 128,
        pooling: Pooling::Mean,
        normalized: true,
    }
}

/// Three well-separated clusters (one per label) in 8 dimensions, in two "languages", normalised like real
/// embeddings, with a little deterministic noise.
fn synthetic(n_per_class: usize, with_neutral: bool) -> EmbeddedExamples {
    let dim = 8;
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut languages = Vec::new();
    let mut state = 1u64;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.6
    };
    let classes: &[Sentiment] = if with_neutral {
        &Sentiment::ALL
    } else {
        &[Sentiment::Negative, Sentiment::Positive]
    };
    for (k, &label) in classes.iter().enumerate() {
        for i in 0..n_per_class {
            let mut row: Vec<f32> = (0..dim).map(|_| noise()).collect();
            row[k] += 2.0;
            l2_normalize(&mut row, dim);
            data.extend(row);
            labels.push(label);
            languages.push(if i % 3 == 0 { "es" } else { "en" }.to_string());
        }
    }
    EmbeddedExamples {
        embeddings: Embeddings::from_vec(dim, data).unwrap(),
        labels,
        languages,
        datasets: vec![],
        duplicates_removed: 0,
    }
}

#[test]
fn dataset_weights_are_recorded_change_the_fit_and_an_unknown_data_set_is_refused() {
    let mut examples = synthetic(30, true);
    let n = examples.labels.len();
    examples.datasets = vec![
        text::DatasetSummary {
            name: "registry".into(),
            examples: n / 2,
            per_label: Default::default(),
            per_language: Default::default(),
        },
        text::DatasetSummary {
            name: "support".into(),
            examples: n - n / 2,
            per_label: Default::default(),
            per_language: Default::default(),
        },
    ];
    let plain = fit_head(&examples, fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    let config = TrainConfig {
        dataset_weights: [("support".to_string(), 3)].into(),
        ..quick_config()
    };
    let weighted = fit_head(&examples, fingerprint(8), &config, &mut |_| {}).unwrap();
    assert_eq!(weighted.training().dataset_weights, config.dataset_weights);
    assert!(plain.training().dataset_weights.is_empty());
    // The support rows count three times: the fitted head differs.
    let row = examples.embeddings.get(n - 1).unwrap();
    assert_ne!(plain.probabilities(row).unwrap(), weighted.probabilities(row).unwrap());
    let unknown = TrainConfig {
        dataset_weights: [("tweets".to_string(), 2)].into(),
        ..quick_config()
    };
    let err = fit_head(&examples, fingerprint(8), &unknown, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("unknown data set"), "{err}");
    let zero = TrainConfig {
        dataset_weights: [("support".to_string(), 0)].into(),
        ..quick_config()
    };
    assert!(fit_head(&examples, fingerprint(8), &zero, &mut |_| {}).is_err());
}

fn quick_config() -> TrainConfig {
    TrainConfig {
        alphas: vec![0.1, 1.0],
        max_iterations: 100,
        ..TrainConfig::default()
    }
}

#[test]
fn trains_a_three_class_head_with_held_out_metrics_per_language() {
    let examples = synthetic(60, true);
    let mut events = Vec::new();
    let head = fit_head(&examples, fingerprint(8), &quick_config(), &mut |e| events.push(e)).unwrap();
    assert_eq!(head.labels(), &Sentiment::ALL);
    let t = head.training();
    assert_eq!(t.train_examples + t.test_examples, 180);
    assert_eq!(t.test_examples, 36);
    assert_eq!(t.alpha_search.len(), 2);
    let m = head.metrics();
    assert_eq!(m.overall.examples, 36);
    assert!(m.overall.accuracy > 0.9, "{}", m.overall.accuracy);
    assert_eq!(m.per_language.keys().collect::<Vec<_>>(), vec!["en", "es"]);
    assert_eq!(m.per_language["en"].examples + m.per_language["es"].examples, 36);
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Fitted { .. })));
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Evaluated { .. })));
    let report = text::metrics_report(&head);
    assert!(
        report.contains("overall") && report.contains("neutral") && report.contains("es "),
        "{report}"
    );

    let predictions = head.predict(&examples.embeddings.select(&[0, 60, 120])).unwrap();
    let labels: Vec<Sentiment> = predictions.iter().map(|p| p.label).collect();
    assert_eq!(labels, Sentiment::ALL.to_vec());
    for p in &predictions {
        assert!((p.probabilities.iter().map(|(_, q)| q).sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(p.score > 0.5 && (-1.0..=1.0).contains(&p.polarity()));
    }
    assert!(predictions[0].polarity() < 0.0 && predictions[2].polarity() > 0.0);
}

#[test]
fn two_classes_when_the_data_has_no_neutral() {
    let head = fit_head(&synthetic(40, false), fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    assert_eq!(head.labels(), &[Sentiment::Negative, Sentiment::Positive]);
    assert_eq!(
        head.predict(&Embeddings::from_vec(8, vec![0.0; 8]).unwrap()).unwrap()[0]
            .probabilities
            .len(),
        2
    );
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let examples = synthetic(30, true);
    let a = fit_head(&examples, fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    let b = fit_head(&examples, fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    assert_eq!(a.metrics(), b.metrics());
    let x = examples.embeddings.select(&[5]);
    assert_eq!(a.predict(&x).unwrap(), b.predict(&x).unwrap());
}

#[test]
fn training_refuses_bad_input() {
    let mut one_label = synthetic(10, false);
    one_label.labels = vec![Sentiment::Positive; one_label.labels.len()];
    let err = fit_head(&one_label, fingerprint(8), &quick_config(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("at least two"), "{err}");

    let err = fit_head(&synthetic(10, true), fingerprint(16), &quick_config(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, TextError::Dimension { expected: 16, got: 8 }), "{err:?}");

    let bad = TrainConfig {
        test_fraction: 1.5,
        ..quick_config()
    };
    assert!(matches!(
        fit_head(&synthetic(10, true), fingerprint(8), &bad, &mut |_| {}),
        Err(TextError::Config(_))
    ));
}

#[test]
fn head_artifact_round_trips_and_is_validated() {
    let examples = synthetic(30, true);
    let head = fit_head(&examples, fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/sentiment-head-1.json");
    head.save(&path).unwrap();
    let loaded = SentimentHead::load(&path).unwrap();
    assert_eq!(loaded, head);
    assert_eq!(
        loaded.predict(&examples.embeddings).unwrap(),
        head.predict(&examples.embeddings).unwrap()
    );

    let json: serde_json::Value = serde_json::from_str(&head.to_json().unwrap()).unwrap();
    assert_eq!(json["format"], "kairos.sentiment-head");
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["labels"], serde_json::json!(["negative", "neutral", "positive"]));
    assert_eq!(json["encoder"]["model_sha256"], "ab".repeat(32));
    assert!(json["metrics"]["per_language"]["es"]["per_class"]["neutral"]["f1"].is_number());

    let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = json.clone();
        f(&mut v);
        SentimentHead::from_json(&v.to_string()).unwrap_err().to_string()
    };
    assert!(mutate(&|v| v["format"] = "kairos.churn-model".into()).contains("format"));
    assert!(mutate(&|v| v["format_version"] = 2.into()).contains("not supported"));
    assert!(mutate(&|v| v["encoder"]["dimension"] = 9.into()).contains("dimension"));
    assert!(mutate(&|v| v["labels"] = serde_json::json!(["negative", "positive"])).contains("weight rows"));
    assert!(mutate(&|v| v["labels"] = serde_json::json!(["positive", "neutral", "negative"])).contains("order"));

    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let err = SentimentHead::load(&dir.path().join("bad.json")).unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
    let err = SentimentHead::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn head_refuses_other_encoders_and_other_widths() {
    let head = fit_head(&synthetic(20, true), fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    head.check_encoder(&fingerprint(8)).unwrap();
    let mut other = fingerprint(8);
    other.model_sha256 = "ef".repeat(32);
    let err = head.check_encoder(&other).unwrap_err();
    assert!(matches!(err, TextError::EncoderMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("synthetic.onnx (abababababab)"), "{err}");
    let err = head
        .predict(&Embeddings::from_vec(4, vec![0.0; 4]).unwrap())
        .unwrap_err();
    assert!(matches!(err, TextError::Dimension { expected: 8, got: 4 }), "{err:?}");
}

#[test]
fn sentiment_labels_parse_leniently_but_not_numbers() {
    assert_eq!("NEG".parse::<Sentiment>().unwrap(), Sentiment::Negative);
    assert_eq!(Sentiment::parse(" Neutral "), Some(Sentiment::Neutral));
    assert_eq!(Sentiment::parse("pos"), Some(Sentiment::Positive));
    assert_eq!(Sentiment::parse("1"), None);
    assert!("LABEL_0".parse::<Sentiment>().is_err());
}

#[test]
fn models_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Encoder>();
    assert_send_sync::<ClassifierModel>();
    assert_send_sync::<text::SentimentAnalyzer>();
    assert_send_sync::<SentimentHead>();
}

#[test]
fn calibration_can_be_fitted_on_the_held_out_split() {
    let examples = synthetic(100, true);
    let oof = fit_head(&examples, fingerprint(8), &quick_config(), &mut |_| {}).unwrap();
    let config = TrainConfig {
        calibrate_on_held_out: true,
        calibration_min_examples: 10,
        ..quick_config()
    };
    let held_out = fit_head(&examples, fingerprint(8), &config, &mut |_| {}).unwrap();
    let (a, b) = (oof.calibration().unwrap(), held_out.calibration().unwrap());
    // Fitted on the held-out rows (20 % of 300), each scored by the final head, and it says so.
    assert_eq!(b.pooled.examples, held_out.training().test_examples);
    assert_eq!(a.pooled.examples, oof.training().train_examples);
    assert!(b.fitted_on.contains("held-out split"), "{}", b.fitted_on);
    assert!(a.fitted_on.contains("out-of-fold"), "{}", a.fitted_on);
    // The head's weights are the same: only where the maps come from differs.
    let row = examples.embeddings.get(7).unwrap();
    assert_eq!(oof.probabilities(row).unwrap(), held_out.probabilities(row).unwrap());
    assert_ne!(a.pooled.scale, b.pooled.scale);
}
