//! Sentence encoders: a BERT-style ONNX model + its `tokenizer.json` → one normalised vector per text.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::error::TextError;
use super::pooling::{l2_normalize, mean_pool, Embeddings};
use super::session::{sha256_file, InferenceOptions, InputRole, OnnxModel};
use super::tokenize::TextTokenizer;

/// The default maximum tokens per text: all-MiniLM-L6-v2's `max_seq_length` in sentence-transformers.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// The default batch size of [`Encoder::embed_batched`]: large enough to amortise a call, small enough that one
/// long text does not make 31 short ones pay for its padding (texts are sorted by length first anyway).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Where an encoder's files are and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    /// The ONNX model (inputs `input_ids` and optionally `attention_mask`, `token_type_ids`; output token embeddings
    /// `[batch, seq, dim]`, or already pooled sentence embeddings `[batch, dim]`).
    pub model: PathBuf,
    /// The Hugging Face `tokenizer.json` that belongs to the model.
    pub tokenizer: PathBuf,
    /// Texts are truncated to this many tokens, special tokens included.
    pub max_length: usize,
    /// The output to read; `None` picks `last_hidden_state`, then `token_embeddings`, `sentence_embedding`, then the
    /// first output.
    pub output: Option<String>,
    /// Whether to L2-normalise the embeddings (what all-MiniLM-L6-v2 is meant to be used with).
    pub normalize: bool,
    /// Sessions, threads and the ONNX Runtime library.
    pub inference: InferenceOptions,
}

impl EncoderConfig {
    /// The model and tokenizer at the given paths, with the defaults: 256 tokens, normalised, one session on one
    /// thread.
    pub fn new(model: impl Into<PathBuf>, tokenizer: impl Into<PathBuf>) -> Self {
        EncoderConfig {
            model: model.into(),
            tokenizer: tokenizer.into(),
            max_length: DEFAULT_MAX_LENGTH,
            output: None,
            normalize: true,
            inference: InferenceOptions::default(),
        }
    }

    /// `dir/model.onnx` and `dir/tokenizer.json`: the layout `scripts/fetch-models` writes.
    pub fn from_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::new(dir.join("model.onnx"), dir.join("tokenizer.json"))
    }

    /// Sets [`EncoderConfig::max_length`].
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// Sets [`InferenceOptions::sessions`].
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.inference.sessions = sessions;
        self
    }

    /// Sets [`InferenceOptions::intra_threads`].
    pub fn intra_threads(mut self, threads: usize) -> Self {
        self.inference.intra_threads = threads;
        self
    }

    /// Sets [`InferenceOptions::runtime_library`].
    pub fn runtime_library(mut self, library: impl Into<PathBuf>) -> Self {
        self.inference.runtime_library = Some(library.into());
        self
    }
}

/// How token vectors become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean of the token vectors under the attention mask.
    Mean,
    /// The model outputs one vector per text already.
    Model,
}

/// What identifies an encoder: a sentiment head records it and refuses any other encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderFingerprint {
    /// The model's file name (for humans; the hash is what is compared).
    pub model_file: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// sha256 of the tokenizer file.
    pub tokenizer_sha256: String,
    /// Width of the embeddings.
    pub dimension: usize,
    /// Maximum tokens per text.
    pub max_length: usize,
    /// How token vectors are pooled.
    pub pooling: Pooling,
    /// Whether embeddings are L2-normalised.
    pub normalized: bool,
}

impl EncoderFingerprint {
    /// `file (sha256 prefix)`, for messages.
    pub fn short(&self) -> String {
        format!(
            "{} ({})",
            self.model_file,
            &self.model_sha256[..self.model_sha256.len().min(12)]
        )
    }
}

/// A loaded sentence encoder.
///
/// Construction validates everything (files exist, the tokenizer parses, ONNX Runtime loads, the model's inputs are
/// understood, a warm-up text embeds) so that a broken deployment fails at start-up. Every method is synchronous and
/// CPU-bound: from async code call it inside `spawn_blocking` or a dedicated thread pool. `Encoder` is `Send + Sync`;
/// share one behind an `Arc` and size [`InferenceOptions::sessions`] for the concurrency you want.
#[derive(Debug)]
pub struct Encoder {
    tokenizer: TextTokenizer,
    model: OnnxModel,
    fingerprint: EncoderFingerprint,
}

impl Encoder {
    /// Loads and checks the encoder described by `config`; see [`Encoder`] for what is validated.
    pub fn new(config: EncoderConfig) -> Result<Self, TextError> {
        // Paths first, so that a wrong path is reported as such even where ONNX Runtime is missing too.
        if !config.model.is_file() {
            return Err(TextError::MissingFile {
                what: "ONNX model",
                path: config.model.clone(),
            });
        }
        let tokenizer = TextTokenizer::from_file(&config.tokenizer, config.max_length)?;
        let tokenizer_sha256 = sha256_file(&config.tokenizer, "tokenizer")?;
        let model = OnnxModel::load(
            &config.model,
            &config.inference,
            config.output.as_deref(),
            &["last_hidden_state", "token_embeddings", "sentence_embedding"],
        )?;
        let declared = model.output_shape();
        let signature = |message: String| TextError::ModelSignature {
            path: config.model.clone(),
            message,
        };
        let pooling = match declared.len() {
            3 => Pooling::Mean,
            2 => Pooling::Model,
            rank => {
                return Err(signature(format!(
                    "output {:?} has rank {rank}; expected [batch, seq, dim] or [batch, dim]",
                    model.output_name()
                )))
            }
        };
        let model_file = config
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut encoder = Encoder {
            tokenizer,
            fingerprint: EncoderFingerprint {
                model_file,
                model_sha256: model.sha256().to_string(),
                tokenizer_sha256,
                dimension: declared.last().map(|&d| d.max(0) as usize).unwrap_or(0),
                max_length: config.max_length,
                pooling,
                normalized: config.normalize,
            },
            model,
        };
        // The warm-up proves the model runs with this tokenizer, and gives the width when the graph leaves it dynamic.
        let warm = encoder.embed_with_dim(&["Kairos warm-up"], None)?;
        if warm.dim() == 0 {
            return Err(signature("the model produced zero-width embeddings".into()));
        }
        encoder.fingerprint.dimension = warm.dim();
        Ok(encoder)
    }

    /// Width of the embeddings (384 for MiniLM).
    pub fn dimension(&self) -> usize {
        self.fingerprint.dimension
    }

    /// What identifies this encoder (file name, sha256s, dimension, pooling).
    pub fn fingerprint(&self) -> &EncoderFingerprint {
        &self.fingerprint
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        self.model.path()
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The model inputs that are fed (a subset of `input_ids`, `attention_mask`, `token_type_ids`).
    pub fn input_names(&self) -> Vec<&str> {
        self.model.inputs().iter().map(|i| i.name.as_str()).collect()
    }

    /// Whether the model takes `token_type_ids` (BERT does; DistilBERT and many exports do not).
    pub fn uses_token_type_ids(&self) -> bool {
        self.model.inputs().iter().any(|i| i.role == InputRole::TokenTypeIds)
    }

    /// The number of sessions in the pool.
    pub fn sessions(&self) -> usize {
        self.model.session_count()
    }

    /// Embeds `texts` as one batch (padded to its longest text). An empty slice gives an empty matrix.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings, TextError> {
        self.embed_with_dim(texts, Some(self.fingerprint.dimension))
    }

    fn embed_with_dim(&self, texts: &[&str], expected_dim: Option<usize>) -> Result<Embeddings, TextError> {
        if texts.is_empty() {
            return Ok(Embeddings::empty(self.fingerprint.dimension));
        }
        let batch = self.tokenizer.encode_batch(texts)?;
        let path = self.model.path();
        let pooling = self.fingerprint.pooling;
        let mut data = self.model.run(&batch, |shape, hidden| {
            let bad = |what: &str| TextError::Inference {
                path: path.to_path_buf(),
                message: format!(
                    "output shape {shape:?} does not fit a batch of {} × {} tokens ({what})",
                    batch.batch, batch.seq_len
                ),
            };
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            match (pooling, dims.as_slice()) {
                (Pooling::Mean, &[b, s, d]) if b == batch.batch && s == batch.seq_len => {
                    if expected_dim.is_some_and(|e| e != d) {
                        return Err(bad("width changed"));
                    }
                    Ok((d, mean_pool(hidden, &batch.attention_mask, b, s, d)?))
                }
                (Pooling::Model, &[b, d]) if b == batch.batch => {
                    if expected_dim.is_some_and(|e| e != d) {
                        return Err(bad("width changed"));
                    }
                    Ok((d, hidden.to_vec()))
                }
                _ => Err(bad("unexpected shape")),
            }
        })?;
        if self.fingerprint.normalized {
            l2_normalize(&mut data.1, data.0);
        }
        Embeddings::from_vec(data.0, data.1)
    }

    /// Embeds any number of texts in batches of `batch_size`, calling `progress(done, total)` after each batch.
    ///
    /// Texts are sorted by length before batching (and the results put back in input order), so that batches carry
    /// little padding: on mixed-length data this is markedly faster than batching in input order, and the results
    /// are the same up to float rounding (padding is masked out).
    ///
    /// With more than one session, the batches run on all of them at once (one thread each; `progress` is still
    /// called on the calling thread). On CPU, sessions of one thread each working on separate batches beat one
    /// session spreading each batch over all threads (multilingual-e5 int8 on 2 cores, batches of 32: 1.2x; see
    /// `bench/e5/run`), and a text's embedding does not depend on which session or batch computed it.
    pub fn embed_batched(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Embeddings, TextError> {
        if batch_size == 0 {
            return Err(TextError::Config("batch_size must be at least 1".into()));
        }
        let dim = self.fingerprint.dimension;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| TextTokenizer::approx_len(texts[i]));
        let chunks: Vec<&[usize]> = order.chunks(batch_size).collect();
        let embed_chunk = |chunk: &[usize]| self.embed(&chunk.iter().map(|&i| texts[i]).collect::<Vec<_>>());
        let mut out = vec![0f32; texts.len() * dim];
        let mut done = 0;
        let mut place = |chunk: &[usize], embedded: Embeddings| {
            for (row, &i) in embedded.rows().zip(chunk) {
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
            done += chunk.len();
            progress(done, texts.len());
        };
        let workers = self.sessions().min(chunks.len());
        if workers <= 1 {
            for chunk in &chunks {
                place(chunk, embed_chunk(chunk)?);
            }
        } else {
            let next = AtomicUsize::new(0);
            let (sender, results) = mpsc::channel::<(usize, Result<Embeddings, TextError>)>();
            std::thread::scope(|scope| -> Result<(), TextError> {
                for _ in 0..workers {
                    let (sender, next, chunks, embed_chunk) = (sender.clone(), &next, &chunks, &embed_chunk);
                    scope.spawn(move || loop {
                        // Each worker takes the next batch as soon as it is free, so a long batch does not hold
                        // the others up.
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(k) else { break };
                        let result = embed_chunk(chunk);
                        let failed = result.is_err();
                        if sender.send((k, result)).is_err() || failed {
                            break;
                        }
                    });
                }
                drop(sender);
                for (k, result) in results {
                    match result {
                        Ok(embedded) => place(chunks[k], embedded),
                        Err(e) => {
                            // Let the other workers stop after their current batch; the scope waits for them.
                            next.store(chunks.len(), Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                Ok(())
            })?;
        }
        Embeddings::from_vec(dim, out)
    }
}
