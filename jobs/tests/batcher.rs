//! Micro-batching with the real model (MiniLM int8 + the shipped head,
//! fetched by `scripts/fetch-models`): texts scored together in batches
//! across concurrent callers get the same results as texts scored alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kairos_jobs::sentiment::batcher::{BatchConfig, Batcher, TextModel};
use kairos_jobs::sentiment::SentimentConfig;
use kairos_models::text::{Encoder, EncoderConfig, SentimentHead};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn model() -> (Arc<Encoder>, Arc<SentimentHead>) {
    // The model the shipped config uses.
    let text = std::fs::read_to_string(repo("config/default.toml")).expect("config");
    let file: toml::Table = toml::from_str(&text).expect("config is TOML");
    let config: SentimentConfig = file["sentiment"].clone().try_into().expect("[sentiment]");
    let dir = repo(config.encoder.to_str().unwrap());
    assert!(
        dir.join("model.onnx").is_file(),
        "{} missing: run scripts/fetch-models and scripts/fetch-e5",
        dir.display()
    );
    let encoder = Encoder::new(EncoderConfig::from_dir(&dir).sessions(2)).expect("encoder loads");
    let head = SentimentHead::load(&repo(config.head.unwrap().to_str().unwrap())).expect("head loads");
    head.check_encoder(encoder.fingerprint())
        .expect("head fits the encoder");
    (Arc::new(encoder), Arc::new(head))
}

const TEXTS: [&str; 12] = [
    "The app is broken and support never answers.",
    "El sistema no funciona y es urgente.",
    "Thanks, the new dashboard is great!",
    "¡Gracias! Todo funciona perfecto.",
    "ok",
    "Could you add a filter by region?",
    "¿Pueden añadir filtros por región?",
    "Terrible update, everything is slow now 😡",
    "Me encanta la nueva integración con WhatsApp 😍",
    "The invoice for November is attached.",
    "Estoy harto, quiero cancelar mi suscripción.",
    "Great support, very fast answer, thank you so much for the help with the export to CSV which works now.",
];

async fn score_all(batcher: &Batcher, head: &Arc<SentimentHead>) -> Vec<kairos_models::text::SentimentResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in TEXTS.iter().enumerate() {
        let b = batcher.clone();
        let h = head.clone();
        tasks.spawn(async move { (i, b.analyze(t.to_string(), Some(h)).await) });
    }
    let mut out: Vec<_> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, result) = r.expect("task");
        out.push((i, result.expect("scored")));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_and_single_inference_give_the_same_results() {
    let (encoder, head) = model();
    let batched = Batcher::start(
        TextModel::Encoder(encoder.clone()),
        BatchConfig {
            max: 32,
            wait: Duration::from_millis(200),
            encode: 8,
            threads: 2,
        },
    );
    let single = Batcher::start(
        TextModel::Encoder(encoder),
        BatchConfig {
            max: 1,
            wait: Duration::ZERO,
            encode: 1,
            threads: 1,
        },
    );
    let a = score_all(&batched, &head).await;
    let b = score_all(&single, &head).await;
    assert!(
        batched.stats().largest.load(Ordering::Relaxed) > 1,
        "concurrent texts were batched: {:?}",
        batched.stats()
    );
    assert_eq!(single.stats().largest.load(Ordering::Relaxed), 1);
    assert_eq!(single.stats().texts.load(Ordering::Relaxed), TEXTS.len() as u64);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.label, y.label, "text {i}: {}", TEXTS[i]);
        assert_eq!(x.language, y.language, "text {i}");
        for ((l1, p1), (l2, p2)) in x.probabilities.iter().zip(&y.probabilities) {
            assert_eq!(l1, l2);
            assert!((p1 - p2).abs() < 1e-4, "text {i} ({}): {p1} vs {p2}", TEXTS[i]);
        }
    }
    // The obvious ones come out right.
    assert_eq!(a[0].label.as_str(), "negative");
    assert_eq!(a[2].label.as_str(), "positive");
}
