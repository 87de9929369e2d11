//! The one error type of the text models.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or training a text model.
///
/// Every error caused by a file names that file, so that a misconfigured deployment says which path to fix at
/// start-up instead of failing vaguely at the first request. Errors caused by one cell of a training file carry the
/// 1-based `line` and the column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A file the model needs does not exist (or is not a regular file).
    #[error("{what} not found: {path} (run scripts/fetch-models, or fix the configured path)")]
    MissingFile {
        /// What the file was supposed to be ("ONNX model", "tokenizer", …).
        what: &'static str,
        /// The path that was tried.
        path: PathBuf,
    },
    /// A file exists but could not be read or written.
    #[error("cannot access {what} {path}: {source}")]
    Io {
        /// What the file was supposed to be.
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No ONNX Runtime library was configured: neither an explicit path nor `ORT_DYLIB_PATH`.
    #[error(
        "no ONNX Runtime library configured: set ORT_DYLIB_PATH or pass a library path \
         (scripts/fetch-models puts one under .cache/ort/)"
    )]
    RuntimeNotConfigured,
    /// The ONNX Runtime shared library could not be loaded (dlopen failed, wrong file, too old a version) or its
    /// environment could not be created.
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    RuntimeLoad {
        /// The library that was tried.
        path: PathBuf,
        /// What ONNX Runtime or the dynamic loader said.
        message: String,
    },
    /// ONNX Runtime is process-wide and was already loaded from another library.
    #[error("ONNX Runtime is already loaded from {active} in this process; cannot switch to {requested}")]
    RuntimeConflict {
        /// The library in use.
        active: PathBuf,
        /// The library that was asked for.
        requested: PathBuf,
    },
    /// A tokenizer file could not be parsed or configured.
    #[error("invalid tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Tokenising a text failed (rare: e.g. a maximum length too short for the special tokens).
    #[error("cannot tokenise with {path}: {message}")]
    Tokenize {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An ONNX model could not be loaded by ONNX Runtime.
    #[error("cannot load the ONNX model {path}: {message}")]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        message: String,
    },
    /// An ONNX model loaded but its inputs or outputs are not what this kind of model needs.
    #[error("the ONNX model {path} does not fit: {message}")]
    ModelSignature {
        /// The model file.
        path: PathBuf,
        /// Which input or output is wrong, and how.
        message: String,
    },
    /// Running an ONNX model failed.
    #[error("inference with {path} failed: {message}")]
    Inference {
        /// The model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A row of a labelled data file is wrong.
    #[error("{source_name}: line {line}, column {column}: {message}")]
    Data {
        /// The file (or the name given to an in-memory reader).
        source_name: String,
        /// 1-based line of the file.
        line: u64,
        /// The column (CSV header name or JSON field) or, for syntax errors, the character position.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// A labelled data file is wrong as a whole (no rows, an unknown extension, a missing column, …).
    #[error("{source_name}: {message}")]
    Dataset {
        /// The file (or the name given to an in-memory reader).
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Training could not proceed (too few examples of a class, the optimiser failed, …).
    #[error("training failed: {0}")]
    Training(String),
    /// A sentiment-head artifact is malformed or of an unsupported format.
    #[error("invalid sentiment head{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Artifact {
        /// The artifact file, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        message: String,
    },
    /// Embeddings of the wrong width were given to a head.
    #[error("embedding dimension {got} does not match the model's {expected}")]
    Dimension {
        /// What the model expects.
        expected: usize,
        /// What it was given.
        got: usize,
    },
    /// A sentiment head was combined with an encoder other than the one it was trained on: its predictions would be
    /// meaningless.
    #[error("the sentiment head was trained on encoder {expected}, but the encoder given is {actual}")]
    EncoderMismatch {
        /// `file (sha256 prefix)` the head was trained on.
        expected: String,
        /// `file (sha256 prefix)` of the encoder given.
        actual: String,
    },
    /// A classifier's label cannot be read as negative / neutral / positive.
    #[error("classifier label {label:?} is not a sentiment (expected negative, neutral or positive)")]
    UnknownSentimentLabel {
        /// The label.
        label: String,
    },
}

impl TextError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TextError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
