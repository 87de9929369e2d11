//! The one entry point a job needs: texts in, sentiment + confidence + language out, whichever model backs it.

use super::classifier::ClassifierModel;
use super::encoder::{Encoder, DEFAULT_BATCH_SIZE};
use super::error::TextError;
use super::head::{Sentiment, SentimentHead, SentimentPrediction};
use super::lang::{detect_language, Language};
use super::pooling::Embeddings;

/// The sentiment of one text, as a job stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SentimentResult {
    /// The most probable label.
    pub label: Sentiment,
    /// Its probability (the confidence alert rules threshold).
    pub score: f32,
    /// P(positive) − P(negative), in [−1, 1], for averages and trends.
    pub polarity: f32,
    /// Each label with its probability.
    pub probabilities: Vec<(Sentiment, f32)>,
    /// The detected language, when there was evidence.
    pub language: Option<Language>,
}

enum Backend {
    // Boxed: the head's artifact (weights, metrics) makes this variant much larger than the other.
    Head {
        encoder: Encoder,
        head: Box<SentimentHead>,
    },
    Classifier {
        model: ClassifierModel,
        labels: Vec<Sentiment>,
    },
}

/// Sentiment analysis backed either by an encoder + trained [`SentimentHead`] (the default) or by a drop-in ONNX
/// [`ClassifierModel`] whose labels name sentiments.
///
/// Synchronous and CPU-bound like the models it wraps; `Send + Sync`, so share one behind an `Arc` and call it from
/// `spawn_blocking` or a worker pool.
pub struct SentimentAnalyzer {
    backend: Backend,
    batch_size: usize,
}

impl std::fmt::Debug for SentimentAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Head { head, .. } => format!("head {}", head.version()),
            Backend::Classifier { model, .. } => format!("classifier {}", model.model_path().display()),
        };
        f.debug_struct("SentimentAnalyzer").field("backend", &kind).finish()
    }
}

impl SentimentAnalyzer {
    /// An encoder with the head trained on it; fails with [`TextError::EncoderMismatch`] if the head was trained on
    /// another encoder.
    pub fn from_head(encoder: Encoder, head: SentimentHead) -> Result<Self, TextError> {
        head.check_encoder(encoder.fingerprint())?;
        Ok(SentimentAnalyzer {
            backend: Backend::Head {
                encoder,
                head: Box::new(head),
            },
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// A classifier whose labels are sentiments (`negative`/`neg`, `neutral`/`neu`, `positive`/`pos`, any case);
    /// fails with [`TextError::UnknownSentimentLabel`] on any other label (e.g. `LABEL_0`: rename it in the config).
    pub fn from_classifier(model: ClassifierModel) -> Result<Self, TextError> {
        let labels = model
            .labels()
            .iter()
            .map(|l| l.parse::<Sentiment>())
            .collect::<Result<Vec<_>, _>>()?;
        let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
        if distinct.len() != labels.len() {
            return Err(TextError::Config(format!(
                "classifier labels {:?} name the same sentiment twice",
                model.labels()
            )));
        }
        Ok(SentimentAnalyzer {
            backend: Backend::Classifier { model, labels },
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Sets how many texts go to the model per call in [`SentimentAnalyzer::analyze`] (default 32).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The labels this analyzer can return.
    pub fn labels(&self) -> Vec<Sentiment> {
        match &self.backend {
            Backend::Head { head, .. } => head.labels().to_vec(),
            Backend::Classifier { labels, .. } => labels.clone(),
        }
    }

    /// Analyses `texts`, in order.
    pub fn analyze(&self, texts: &[&str]) -> Result<Vec<SentimentResult>, TextError> {
        let predictions: Vec<SentimentPrediction> = match &self.backend {
            Backend::Head { encoder, head } => {
                let embeddings = encoder.embed_batched(texts, self.batch_size, &mut |_, _| {})?;
                return analyze_embeddings(head, &embeddings, texts);
            }
            Backend::Classifier { model, labels } => {
                let mut out = Vec::with_capacity(texts.len());
                for chunk in texts.chunks(self.batch_size) {
                    for p in model.predict(chunk)? {
                        out.push(SentimentPrediction::from_probabilities(labels, &p.probabilities));
                    }
                }
                out
            }
        };
        Ok(results(predictions, texts))
    }
}

/// Applies `head` to embeddings computed already (by the caller, from `texts` in order, with the encoder the head
/// belongs to: check with [`SentimentHead::check_encoder`]). A micro-batching worker embeds one batch of texts from
/// many tenants once and applies each tenant's head to its rows. Each text's language is detected and its
/// probabilities are calibrated for that language (when the head has a calibration).
pub fn analyze_embeddings(
    head: &SentimentHead,
    embeddings: &Embeddings,
    texts: &[&str],
) -> Result<Vec<SentimentResult>, TextError> {
    let languages: Vec<Option<Language>> = texts.iter().map(|t| detect_language(t)).collect();
    analyze_embeddings_in(head, embeddings, texts, &languages)
}

/// [`analyze_embeddings`] with each text's language given (e.g. the whole document's language for its chunks): the
/// language recorded and the one whose calibration applies.
pub fn analyze_embeddings_in(
    head: &SentimentHead,
    embeddings: &Embeddings,
    texts: &[&str],
    languages: &[Option<Language>],
) -> Result<Vec<SentimentResult>, TextError> {
    if embeddings.len() != texts.len() || languages.len() != texts.len() {
        return Err(TextError::Config(format!(
            "{} embeddings and {} languages for {} texts",
            embeddings.len(),
            languages.len(),
            texts.len()
        )));
    }
    let codes: Vec<Option<&str>> = languages.iter().map(|l| l.map(Language::code)).collect();
    let predictions = head.predict_calibrated(embeddings, &codes)?;
    Ok(predictions
        .into_iter()
        .zip(languages)
        .map(|(p, language)| SentimentResult {
            label: p.label,
            score: p.score,
            polarity: p.polarity(),
            language: *language,
            probabilities: p.probabilities,
        })
        .collect())
}

fn results(predictions: Vec<SentimentPrediction>, texts: &[&str]) -> Vec<SentimentResult> {
    predictions
        .into_iter()
        .zip(texts)
        .map(|(p, text)| SentimentResult {
            label: p.label,
            score: p.score,
            polarity: p.polarity(),
            language: detect_language(text),
            probabilities: p.probabilities,
        })
        .collect()
}
