//! Drop-in ONNX text classifiers: a model whose output is already one logit per class (e.g. a Hugging Face
//! `AutoModelForSequenceClassification` exported to ONNX), plus its tokenizer and label names.

use std::path::{Path, PathBuf};

use super::encoder::DEFAULT_MAX_LENGTH;
use super::error::TextError;
use super::session::{InferenceOptions, OnnxModel};
use super::tokenize::TextTokenizer;

/// Where a classifier's files are, what its classes are called and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// The ONNX model: token inputs as for an encoder, output logits `[batch, labels.len()]`.
    pub model: PathBuf,
    /// Its `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The class names in logit order (see [`labels_from_hf_config`] to read them from the export's `config.json`).
    pub labels: Vec<String>,
    /// Texts are truncated to this many tokens.
    pub max_length: usize,
    /// The output to read; `None` picks `logits`, then the first output.
    pub output: Option<String>,
    /// Sessions, threads and the ONNX Runtime library.
    pub inference: InferenceOptions,
}

impl ClassifierConfig {
    /// A classifier with the given files and labels, 256 tokens, one session on one thread.
    pub fn new(model: impl Into<PathBuf>, tokenizer: impl Into<PathBuf>, labels: Vec<String>) -> Self {
        ClassifierConfig {
            model: model.into(),
            tokenizer: tokenizer.into(),
            labels,
            max_length: DEFAULT_MAX_LENGTH,
            output: None,
            inference: InferenceOptions::default(),
        }
    }
}

/// One classified text: the most probable label, its probability, and every class's probability.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassPrediction {
    /// The winning label.
    pub label: String,
    /// Its index in [`ClassifierModel::labels`].
    pub index: usize,
    /// Its softmax probability, in (0, 1].
    pub score: f32,
    /// All softmax probabilities, in label order (they sum to 1).
    pub probabilities: Vec<f32>,
}

/// A loaded ONNX classifier. Like [`super::Encoder`], it is validated at construction (files, runtime, inputs, the
/// number of logits vs labels via a warm-up run), synchronous and CPU-bound, and `Send + Sync`.
#[derive(Debug)]
pub struct ClassifierModel {
    tokenizer: TextTokenizer,
    model: OnnxModel,
    labels: Vec<String>,
}

impl ClassifierModel {
    /// Loads and checks the classifier described by `config`.
    pub fn new(config: ClassifierConfig) -> Result<Self, TextError> {
        if !config.model.is_file() {
            return Err(TextError::MissingFile {
                what: "ONNX model",
                path: config.model.clone(),
            });
        }
        if config.labels.len() < 2 {
            return Err(TextError::Config(format!(
                "a classifier needs at least two labels, got {:?}",
                config.labels
            )));
        }
        let tokenizer = TextTokenizer::from_file(&config.tokenizer, config.max_length)?;
        let model = OnnxModel::load(&config.model, &config.inference, config.output.as_deref(), &["logits"])?;
        let declared = model.output_shape();
        let n = config.labels.len() as i64;
        if declared.len() != 2 || (declared[1] >= 0 && declared[1] != n) {
            return Err(TextError::ModelSignature {
                path: config.model.clone(),
                message: format!(
                    "output {:?} has shape {declared:?}; expected [batch, {n}] (one logit per label)",
                    model.output_name()
                ),
            });
        }
        let classifier = ClassifierModel {
            tokenizer,
            model,
            labels: config.labels,
        };
        classifier.predict(&["Kairos warm-up"])?;
        Ok(classifier)
    }

    /// The class names in logit order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        self.model.path()
    }

    /// sha256 of the model file.
    pub fn model_sha256(&self) -> &str {
        self.model.sha256()
    }

    /// The raw logits of `texts`, one row of `labels().len()` per text.
    pub fn logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, TextError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenizer.encode_batch(texts)?;
        let n = self.labels.len();
        let path = self.model.path();
        self.model.run(&batch, |shape, data| {
            if shape != [batch.batch as i64, n as i64] {
                return Err(TextError::Inference {
                    path: path.to_path_buf(),
                    message: format!("logits of shape {shape:?}, expected [{}, {n}]", batch.batch),
                });
            }
            Ok(data.chunks_exact(n).map(<[f32]>::to_vec).collect())
        })
    }

    /// Classifies `texts` as one batch: softmax over each row of logits, best label first.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<ClassPrediction>, TextError> {
        Ok(self
            .logits(texts)?
            .into_iter()
            .map(|row| {
                let probabilities = softmax(&row);
                let index = argmax(&probabilities);
                ClassPrediction {
                    label: self.labels[index].clone(),
                    index,
                    score: probabilities[index],
                    probabilities,
                }
            })
            .collect())
    }
}

/// Softmax of one row of logits, stable for large logits (the maximum is subtracted first).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The index of the largest value (the first one on ties; 0 for an empty slice).
pub(crate) fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Reads the class names of a Hugging Face export from its `config.json` (`"id2label": {"0": "negative", …}`), in
/// index order, so that a user's exported model can be dropped in without typing its labels.
pub fn labels_from_hf_config(path: &Path) -> Result<Vec<String>, TextError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TextError::MissingFile {
            what: "model config",
            path: path.to_path_buf(),
        },
        _ => TextError::io("model config", path, e),
    })?;
    let bad = |message: String| TextError::Config(format!("{}: {message}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = value
        .get("id2label")
        .and_then(|v| v.as_object())
        .ok_or_else(|| bad("no \"id2label\" object".into()))?;
    let mut labels = vec![None; map.len()];
    for (key, label) in map {
        let index: usize = key
            .parse()
            .map_err(|_| bad(format!("id2label key {key:?} is not an index")))?;
        let label = label
            .as_str()
            .ok_or_else(|| bad(format!("id2label[{key}] is not a string")))?;
        let slot = labels
            .get_mut(index)
            .ok_or_else(|| bad(format!("id2label indices are not 0..{}", map.len())))?;
        *slot = Some(label.to_string());
    }
    labels
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("id2label has gaps".into()))
}
