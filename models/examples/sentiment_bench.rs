//! Encoder throughput (texts/s) at batch 1, 8 and 32 on the same texts as `bench/sentiment/bench.py`, which runs
//! the same pipeline on Python onnxruntime (`bench/sentiment/run` runs both and prints the ratio).
//!
//! ```text
//! cargo run --release -p kairos-models --example sentiment_bench -- \
//!     [--model-dir DIR] [--texts FILE.jsonl] [--n 256] [--threads 1] [--min-seconds 3] [--dump OUT.json]
//! ```
//!
//! Batches are taken in input order (as Python does), each timed pass embeds all `n` texts, and passes repeat until
//! `--min-seconds` have elapsed. `--dump` writes the embeddings of the first 64 texts for a numerical comparison.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kairos_models::text::{Encoder, EncoderConfig, LabeledDataset};

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

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentiment_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut model_dir = root().join(".cache/models/all-MiniLM-L6-v2-int8");
    let mut texts_path = root().join(".cache/models/data/uci-sentiment-en.jsonl");
    let (mut n, mut threads, mut min_seconds, mut dump) = (256usize, 1usize, 3.0f64, None::<PathBuf>);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model-dir" => model_dir = PathBuf::from(value),
            "--texts" => texts_path = PathBuf::from(value),
            "--n" => n = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--min-seconds" => min_seconds = value.parse()?,
            "--dump" => dump = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let data = LabeledDataset::from_path(&texts_path)?;
    let texts: Vec<&str> = data.examples.iter().take(n).map(|e| e.text.as_str()).collect();
    let encoder = Encoder::new(encoder_config(&model_dir).intra_threads(threads))?;
    eprintln!(
        "rust: {} texts, {} intra-op thread(s), encoder {}",
        texts.len(),
        threads,
        encoder.fingerprint().short()
    );

    for batch_size in [1usize, 8, 32] {
        let batches: Vec<&[&str]> = texts.chunks(batch_size).collect();
        for b in batches.iter().take(3) {
            encoder.embed(b)?; // warm-up
        }
        let (mut done, start) = (0usize, Instant::now());
        let elapsed = loop {
            for b in &batches {
                encoder.embed(b)?;
            }
            done += texts.len();
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= min_seconds {
                break elapsed;
            }
        };
        println!(
            "rust batch={batch_size} texts={done} seconds={elapsed:.3} texts_per_s={:.1}",
            done as f64 / elapsed
        );
    }

    // For information: the length-sorted batching that training and SentimentAnalyzer use.
    let (mut done, start) = (0usize, Instant::now());
    let elapsed = loop {
        encoder.embed_batched(&texts, 32, &mut |_, _| {})?;
        done += texts.len();
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= min_seconds {
            break elapsed;
        }
    };
    println!(
        "rust embed_batched(32, length-sorted) texts={done} seconds={elapsed:.3} texts_per_s={:.1}",
        done as f64 / elapsed
    );

    if let Some(path) = dump {
        let first = &texts[..texts.len().min(64)];
        let mut rows = Vec::new();
        for chunk in first.chunks(32) {
            rows.extend(encoder.embed(chunk)?.to_rows());
        }
        let json = serde_json::json!({ "texts": first, "embeddings": rows });
        std::fs::write(&path, json.to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
