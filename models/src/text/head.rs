//! The sentiment head: a multinomial logistic regression on sentence embeddings, stored as a versioned JSON artifact
//! together with the encoder it belongs to and its held-out metrics.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::classifier::argmax;
use super::encoder::EncoderFingerprint;
use super::error::TextError;
use super::metrics::EvalMetrics;
use super::pooling::Embeddings;

/// The `format` tag of a head file, so that a stray JSON file is not mistaken for one.
pub const HEAD_FORMAT: &str = "kairos.sentiment-head";
/// The artifact layout version this build reads and writes.
pub const HEAD_FORMAT_VERSION: u32 = 1;

/// The sentiment of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    /// Unhappy, critical, complaining.
    Negative,
    /// Neither (facts, questions, mixed feelings).
    Neutral,
    /// Happy, praising, thankful.
    Positive,
}

impl Sentiment {
    /// All three, in the canonical order heads use.
    pub const ALL: [Sentiment; 3] = [Sentiment::Negative, Sentiment::Neutral, Sentiment::Positive];

    /// `negative`, `neutral` or `positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
        }
    }

    /// Reads a label as written in training files or classifier configs: `negative`/`neg`, `neutral`/`neu`,
    /// `positive`/`pos`, any case. Numbers are deliberately not accepted: `0` means "negative" in binary data sets and
    /// "neutral" in ternary ones.
    pub fn parse(label: &str) -> Option<Sentiment> {
        match label.trim().to_ascii_lowercase().as_str() {
            "negative" | "neg" => Some(Sentiment::Negative),
            "neutral" | "neu" => Some(Sentiment::Neutral),
            "positive" | "pos" => Some(Sentiment::Positive),
            _ => None,
        }
    }

    /// −1, 0 or +1: the sign used for averages such as a client's mean sentiment.
    pub fn polarity(self) -> f32 {
        match self {
            Sentiment::Negative => -1.0,
            Sentiment::Neutral => 0.0,
            Sentiment::Positive => 1.0,
        }
    }
}

impl std::fmt::Display for Sentiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sentiment {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sentiment::parse(s).ok_or_else(|| TextError::UnknownSentimentLabel { label: s.to_string() })
    }
}

/// The sentiment of one text: the most probable label, its probability, and every label's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentPrediction {
    /// The most probable label.
    pub label: Sentiment,
    /// Its probability: the confidence the product's alert rules threshold (e.g. negative with score > 0.75).
    pub score: f32,
    /// Each label of the model with its probability (they sum to 1); a two-class model has no neutral entry.
    pub probabilities: Vec<(Sentiment, f32)>,
}

impl SentimentPrediction {
    /// The probability of `label` (0 when the model does not have that class).
    pub fn probability(&self, label: Sentiment) -> f32 {
        self.probabilities
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0.0, |(_, p)| *p)
    }

    /// P(positive) − P(negative), in [−1, 1]: a continuous sentiment for averages and trends.
    pub fn polarity(&self) -> f32 {
        self.probability(Sentiment::Positive) - self.probability(Sentiment::Negative)
    }

    /// Builds a prediction from per-label probabilities (in `labels` order).
    pub(crate) fn from_probabilities(labels: &[Sentiment], probabilities: &[f32]) -> Self {
        let best = argmax(probabilities);
        SentimentPrediction {
            label: labels[best],
            score: probabilities[best],
            probabilities: labels.iter().copied().zip(probabilities.iter().copied()).collect(),
        }
    }
}

/// One labelled data set a head was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Its name (the file name for files).
    pub name: String,
    /// Examples read (after removing duplicates).
    pub examples: usize,
    /// Examples per label.
    pub per_label: BTreeMap<Sentiment, usize>,
    /// Examples per language (given in the data, else detected; `und` when undetermined).
    pub per_language: BTreeMap<String, usize>,
}

/// The cross-validated macro-F1 of one regularisation strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaScore {
    /// L2 strength (linfa's `alpha`: the penalty is `alpha/2 · |W|²` on the summed log-loss).
    pub alpha: f64,
    /// Mean macro-F1 over the folds of the training split.
    pub cv_macro_f1: f64,
}

/// How a head was trained: enough to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The data sets, in the order given.
    pub datasets: Vec<DatasetSummary>,
    /// Seed of the split and the folds.
    pub seed: u64,
    /// Fraction of each (label, language) stratum held out for evaluation.
    pub test_fraction: f64,
    /// Examples the head was fitted on.
    pub train_examples: usize,
    /// Held-out examples the metrics were computed on (never seen in training or model selection).
    pub test_examples: usize,
    /// Exact duplicate texts dropped before splitting (so that no test text was also a training text).
    pub duplicates_removed: usize,
    /// Folds of the regularisation search (on the training split only).
    pub folds: usize,
    /// Whether classes were reweighted to equal total weight (by repeating minority examples).
    pub balanced: bool,
    /// The chosen L2 strength.
    pub alpha: f64,
    /// Every strength tried, with its cross-validated score.
    pub alpha_search: Vec<AlphaScore>,
    /// Data set name → how many times each of its training rows counted (absent: 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dataset_weights: BTreeMap<String, usize>,
}

/// Held-out metrics of a head, overall and per language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMetrics {
    /// On the whole held-out split.
    pub overall: EvalMetrics,
    /// On the held-out examples of each language.
    pub per_language: BTreeMap<String, EvalMetrics>,
}

/// A trained sentiment head: softmax(W·x + b) over the embeddings of one particular encoder.
///
/// The JSON artifact is self-describing: format tag and version, the head's own `version` string, the labels, the
/// encoder (file name, sha256 of model and tokenizer, dimension, pooling) it must be used with, the weights, how it
/// was trained and its held-out metrics. [`SentimentHead::load`] validates all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentHead {
    format: String,
    format_version: u32,
    version: String,
    created_at: String,
    labels: Vec<Sentiment>,
    encoder: EncoderFingerprint,
    /// `weights[class][feature]`.
    weights: Vec<Vec<f64>>,
    intercepts: Vec<f64>,
    training: TrainingInfo,
    metrics: HeadMetrics,
    /// Per-language calibration of the probabilities (absent in heads trained before it existed: their
    /// probabilities are used as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<Calibration>,
}

impl SentimentHead {
    /// Assembles and validates a head (used by training; weights are `[class][feature]`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        version: String,
        labels: Vec<Sentiment>,
        encoder: EncoderFingerprint,
        weights: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
        training: TrainingInfo,
        metrics: HeadMetrics,
        calibration: Option<Calibration>,
    ) -> Result<Self, TextError> {
        let head = SentimentHead {
            format: HEAD_FORMAT.into(),
            format_version: HEAD_FORMAT_VERSION,
            version,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            encoder,
            weights,
            intercepts,
            training,
            metrics,
            calibration,
        };
        head.validate()
            .map_err(|message| TextError::Artifact { path: None, message })?;
        Ok(head)
    }

    /// Reads and validates a head artifact.
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TextError::MissingFile {
                what: "sentiment head",
                path: path.to_path_buf(),
            },
            _ => TextError::io("sentiment head", path, e),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            TextError::Artifact { message, .. } => TextError::Artifact {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a head from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, TextError> {
        let bad = |message: String| TextError::Artifact { path: None, message };
        // Check the tag and version before the full structure, for a useful message on other files and versions.
        let probe: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match probe.get("format").and_then(|f| f.as_str()) {
            Some(HEAD_FORMAT) => {}
            other => return Err(bad(format!("format is {other:?}, expected {HEAD_FORMAT:?}"))),
        }
        match probe.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(HEAD_FORMAT_VERSION) => {}
            other => {
                return Err(bad(format!(
                    "format_version {other:?} is not supported (this build reads {HEAD_FORMAT_VERSION})"
                )))
            }
        }
        let head: SentimentHead = serde_json::from_value(probe).map_err(|e| bad(e.to_string()))?;
        head.validate().map_err(bad)?;
        Ok(head)
    }

    /// The artifact as pretty-printed JSON (f64 values round-trip exactly).
    pub fn to_json(&self) -> Result<String, TextError> {
        serde_json::to_string_pretty(self).map_err(|e| TextError::Artifact {
            path: None,
            message: e.to_string(),
        })
    }

    /// Writes the artifact to `path` atomically (a temporary file renamed into place), creating parent directories.
    pub fn save(&self, path: &Path) -> Result<(), TextError> {
        let json = self.to_json()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| TextError::io("sentiment head directory", parent, e))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, json).map_err(|e| TextError::io("sentiment head", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TextError::io("sentiment head", path, e))
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != HEAD_FORMAT || self.format_version != HEAD_FORMAT_VERSION {
            return Err(format!(
                "format {:?} v{} is not supported",
                self.format, self.format_version
            ));
        }
        if self.labels.len() < 2 {
            return Err(format!("a head needs at least two labels, has {:?}", self.labels));
        }
        if self.labels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "labels {:?} are not distinct and in canonical order",
                self.labels
            ));
        }
        let dim = self.encoder.dimension;
        if dim == 0 {
            return Err("the encoder dimension is 0".into());
        }
        if self.weights.len() != self.labels.len() || self.intercepts.len() != self.labels.len() {
            return Err(format!(
                "{} labels but {} weight rows and {} intercepts",
                self.labels.len(),
                self.weights.len(),
                self.intercepts.len()
            ));
        }
        if let Some(row) = self.weights.iter().find(|r| r.len() != dim) {
            return Err(format!(
                "a weight row has {} values, the encoder dimension is {dim}",
                row.len()
            ));
        }
        if !self
            .weights
            .iter()
            .flatten()
            .chain(&self.intercepts)
            .all(|v| v.is_finite())
        {
            return Err("non-finite weights".into());
        }
        if let Some(c) = &self.calibration {
            c.validate(self.labels.len())?;
        }
        Ok(())
    }

    /// The head's own version string (chosen at training; part of the artifact's file name by convention).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// When it was trained (RFC 3339, UTC).
    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The labels it predicts, in canonical order (three, or two when the data had no neutral examples).
    pub fn labels(&self) -> &[Sentiment] {
        &self.labels
    }

    /// The encoder it was trained on.
    pub fn encoder(&self) -> &EncoderFingerprint {
        &self.encoder
    }

    /// How it was trained.
    pub fn training(&self) -> &TrainingInfo {
        &self.training
    }

    /// Its held-out metrics.
    pub fn metrics(&self) -> &HeadMetrics {
        &self.metrics
    }

    /// Fails unless `encoder` is the encoder this head was trained on (same model and tokenizer files, dimension,
    /// pooling and normalisation): embeddings of another encoder live in another space, and the head's output on
    /// them would be confident nonsense.
    pub fn check_encoder(&self, encoder: &EncoderFingerprint) -> Result<(), TextError> {
        let ours = &self.encoder;
        let same = ours.model_sha256 == encoder.model_sha256
            && ours.tokenizer_sha256 == encoder.tokenizer_sha256
            && ours.dimension == encoder.dimension
            && ours.pooling == encoder.pooling
            && ours.normalized == encoder.normalized;
        if same {
            Ok(())
        } else {
            Err(TextError::EncoderMismatch {
                expected: ours.short(),
                actual: encoder.short(),
            })
        }
    }

    /// Its per-language calibration, if it has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The same head with `calibration` in place of its own (`None`: raw probabilities), validated: for maps fitted
    /// after training on a calibration set written apart from the training data ([`super::fit_calibration`]).
    pub fn with_calibration(mut self, calibration: Option<Calibration>) -> Result<Self, TextError> {
        self.calibration = calibration;
        self.validate()
            .map_err(|message| TextError::Artifact { path: None, message })?;
        Ok(self)
    }

    /// Raw logits (W·x + b) of one embedding, in [`SentimentHead::labels`] order.
    pub fn logits(&self, embedding: &[f32]) -> Result<Vec<f64>, TextError> {
        if embedding.len() != self.encoder.dimension {
            return Err(TextError::Dimension {
                expected: self.encoder.dimension,
                got: embedding.len(),
            });
        }
        Ok(self
            .weights
            .iter()
            .zip(&self.intercepts)
            .map(|(w, b)| b + w.iter().zip(embedding).map(|(w, &x)| w * f64::from(x)).sum::<f64>())
            .collect())
    }

    /// Uncalibrated class probabilities of one embedding, in [`SentimentHead::labels`] order.
    pub fn probabilities(&self, embedding: &[f32]) -> Result<Vec<f32>, TextError> {
        let p = super::calibration::softmax(&self.logits(embedding)?);
        Ok(p.into_iter().map(|v| v as f32).collect())
    }

    /// Class probabilities of one embedding of a text in `language` (`es`, `en`, ...; `None` when undetermined),
    /// calibrated for that language when the head has a calibration (else the raw ones).
    pub fn calibrated_probabilities(&self, embedding: &[f32], language: Option<&str>) -> Result<Vec<f32>, TextError> {
        let logits = self.logits(embedding)?;
        let p = match &self.calibration {
            Some(c) => c.for_language(language).apply(&logits),
            None => super::calibration::softmax(&logits),
        };
        Ok(p.into_iter().map(|v| v as f32).collect())
    }

    /// The calibrated sentiment of each embedding, with each row's language.
    pub fn predict_calibrated(
        &self,
        embeddings: &Embeddings,
        languages: &[Option<&str>],
    ) -> Result<Vec<SentimentPrediction>, TextError> {
        if embeddings.len() != languages.len() {
            return Err(TextError::Config(format!(
                "{} embeddings for {} languages",
                embeddings.len(),
                languages.len()
            )));
        }
        if embeddings.dim() != self.encoder.dimension && !embeddings.is_empty() {
            return Err(TextError::Dimension {
                expected: self.encoder.dimension,
                got: embeddings.dim(),
            });
        }
        embeddings
            .rows()
            .zip(languages)
            .map(|(row, language)| {
                Ok(SentimentPrediction::from_probabilities(
                    &self.labels,
                    &self.calibrated_probabilities(row, *language)?,
                ))
            })
            .collect()
    }

    /// The sentiment of each embedding (rows of `embeddings`, in order).
    pub fn predict(&self, embeddings: &Embeddings) -> Result<Vec<SentimentPrediction>, TextError> {
        if embeddings.dim() != self.encoder.dimension && !embeddings.is_empty() {
            return Err(TextError::Dimension {
                expected: self.encoder.dimension,
                got: embeddings.dim(),
            });
        }
        embeddings
            .rows()
            .map(|row| {
                Ok(SentimentPrediction::from_probabilities(
                    &self.labels,
                    &self.probabilities(row)?,
                ))
            })
            .collect()
    }
}
