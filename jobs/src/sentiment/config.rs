//! The `[sentiment]` config section: which text model scores comments and
//! tickets, how inference is batched, when a score becomes an alert and
//! which jobs it queues. (`[sentiment.urgency]` is [`super::urgency`]'s,
//! `[webhooks]` the `webhook` kind's.)
//!
//! ```toml
//! [sentiment]
//! enabled = true
//! encoder = ".cache/models/multilingual-e5-small-int8-sentiment-8"  # model.onnx + tokenizer.json
//! head = "models/heads/sentiment-e5-int8-lora-8.json"         # registered at start-up if no sentiment head is active
//! alert_threshold = 0.75                            # negative with confidence >= this raises an alert
//! batch_max = 32                                    # texts per inference batch
//! batch_wait = "5ms"                                # longest a text waits for others to join its batch
//! inference_threads = 2                             # dedicated inference threads (one ONNX session each)
//! follow_up = []                                    # job kinds queued for every alert (nudges, ...)
//! [sentiment.urgency]
//! keywords = ["urgente", "bloqueado", "no funciona", "critical", "blocking", "broken"]
//! ```
//!
//! `kairos check-config` validates it with the rest of the file and names
//! the key at fault; file paths are checked when a worker starts (the model
//! is loaded then), not here, so config can be checked on a machine
//! without the model files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kairos_core::config::KeyError;
use serde::Deserialize;

use super::urgency::UrgencyConfig;

/// A model that is itself a classifier (ONNX output = logits), e.g. an
/// exported Hugging Face sequence-classification model, used instead of
/// encoder + head.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// The ONNX file.
    pub model: PathBuf,
    /// Its `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Label of each logit, in output order; sentiment needs `negative`
    /// among them (`neutral` and `positive` optional).
    pub labels: Vec<String>,
}

/// `[sentiment]`: the model, batching, alerting and follow-ups.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentimentConfig {
    /// Off: the `sentiment` kind is not loaded (rules naming it are then
    /// refused at load).
    pub enabled: bool,
    /// Encoder directory holding `model.onnx` and `tokenizer.json`.
    pub encoder: PathBuf,
    /// The head shipped with the encoder: registered as a model version at
    /// start-up when no sentiment model is registered yet.
    pub head: Option<PathBuf>,
    /// A classifier ONNX to use instead of encoder + head.
    pub classifier: Option<ClassifierConfig>,
    /// ONNX Runtime shared library; default `$ORT_DYLIB_PATH`.
    pub runtime_library: Option<PathBuf>,
    /// Tokens per text (longer texts are truncated).
    pub max_length: usize,
    /// A text whose calibrated P(negative) (of its most negative chunk) is
    /// at least this raises an alert, unless its tenant has its own.
    pub alert_threshold: f64,
    /// Tenant name or id → its own alert threshold.
    pub alert_thresholds: BTreeMap<String, f64>,
    /// Load the model when the API starts instead of on the first
    /// `POST /v1/sentiment:analyze` (an API-only process otherwise never
    /// loads it unless the endpoint is used).
    pub api_preload: bool,
    /// Texts per inference batch at most.
    pub batch_max: usize,
    /// Texts per encoder call inside a batch, after sorting the batch by
    /// length: small calls of similar texts avoid padding. Which size is
    /// fastest depends on the model (`kairos bench-sentiment` measures it).
    pub encode_batch: usize,
    /// Longest a text waits for others to join its batch.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Dedicated inference threads, one ONNX session each.
    pub inference_threads: usize,
    /// ONNX Runtime threads per session.
    pub intra_threads: usize,
    /// ONNX Runtime's CPU memory arena (keeps freed activation memory
    /// reserved for the next batch; off returns it).
    pub cpu_arena: bool,
    /// ONNX Runtime's memory pattern (plans buffers per input shape seen).
    pub memory_pattern: bool,
    /// The inference threads' sessions share one copy of the prepacked
    /// weights.
    pub share_weights: bool,
    /// Event data fields read as the text, first non-empty wins.
    pub text_fields: Vec<String>,
    /// Longest text accepted, in characters (longer: the job fails permanently).
    pub max_text_chars: usize,
    /// Job kinds queued for every alert (payload: the alert).
    pub follow_up: Vec<String>,
    /// How often a worker re-checks which head version is active.
    #[serde(with = "humantime_serde")]
    pub model_refresh: Duration,
    /// Urgency scoring.
    pub urgency: UrgencyConfig,
}

impl Default for SentimentConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            // The shipped default (config/default.toml, scripts/fetch-e5).
            encoder: PathBuf::from(".cache/models/multilingual-e5-small-int8-sentiment-8"),
            head: None,
            classifier: None,
            runtime_library: None,
            max_length: 256,
            alert_threshold: 0.75,
            alert_thresholds: BTreeMap::new(),
            api_preload: false,
            batch_max: 32,
            encode_batch: 8,
            batch_wait: Duration::from_millis(5),
            inference_threads: 1,
            intra_threads: 1,
            cpu_arena: true,
            memory_pattern: true,
            share_weights: true,
            text_fields: [
                "text",
                "body",
                "comment",
                "message",
                "content",
                "subject",
                "description",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            max_text_chars: 20_000,
            follow_up: Vec::new(),
            model_refresh: Duration::from_secs(5),
            urgency: UrgencyConfig::default(),
        }
    }
}

impl SentimentConfig {
    /// A tenant's alert threshold: its own (by id, else by name), else the default.
    pub fn alert_threshold_for(&self, tenant_id: &str, tenant_name: Option<&str>) -> f64 {
        self.alert_thresholds
            .get(tenant_id)
            .or_else(|| tenant_name.and_then(|n| self.alert_thresholds.get(n)))
            .copied()
            .unwrap_or(self.alert_threshold)
    }

    /// Checks values serde cannot; errors name the key under `sentiment.`.
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), KeyError> {
        if !(0.0..=1.0).contains(&self.alert_threshold) {
            return Err((
                "alert_threshold".into(),
                format!("{} is not in [0, 1]", self.alert_threshold),
            ));
        }
        for (tenant, t) in &self.alert_thresholds {
            if !(0.0..=1.0).contains(t) {
                return Err((format!("alert_thresholds.{tenant}"), format!("{t} is not in [0, 1]")));
            }
        }
        for (key, v) in [
            ("batch_max", self.batch_max),
            ("encode_batch", self.encode_batch),
            ("inference_threads", self.inference_threads),
            ("intra_threads", self.intra_threads),
            ("max_length", self.max_length),
            ("max_text_chars", self.max_text_chars),
        ] {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.batch_max > 1024 {
            return Err((
                "batch_max".into(),
                format!("{} is too large (at most 1024)", self.batch_max),
            ));
        }
        if self.model_refresh.is_zero() {
            return Err(("model_refresh".into(), "must be longer than 0s".into()));
        }
        if self.text_fields.is_empty() {
            return Err(("text_fields".into(), "must name at least one event data field".into()));
        }
        for (i, kind) in self.follow_up.iter().enumerate() {
            if !known_kinds.contains(&kind.as_str()) {
                return Err((
                    format!("follow_up[{i}]"),
                    format!("unknown job kind `{kind}` (known: {})", known_kinds.join(", ")),
                ));
            }
        }
        if let Some(c) = &self.classifier {
            if c.labels.is_empty() {
                return Err(("classifier.labels".into(), "must list the label of each output".into()));
            }
            if !c.labels.iter().any(|l| l.eq_ignore_ascii_case("negative")) {
                return Err((
                    "classifier.labels".into(),
                    "must include `negative` (sentiment alerts are raised on it)".into(),
                ));
            }
        }
        let u = &self.urgency;
        for (key, v) in [
            ("negative_weight", u.negative_weight),
            ("keyword_points", u.keyword_points),
            ("keyword_max", u.keyword_max),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err((format!("urgency.{key}"), format!("{v} is not in [0, 100]")));
            }
        }
        for (i, k) in u.keywords.iter().enumerate() {
            if k.trim().is_empty() {
                return Err((format!("urgency.keywords[{i}]"), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_ups_must_be_known_kinds() {
        let c = SentimentConfig::default();
        assert!(c.validate(&["sentiment"]).is_ok());
        let c = SentimentConfig {
            follow_up: vec!["nudge".into()],
            ..SentimentConfig::default()
        };
        let (key, reason) = c.validate(&["sentiment", "webhook"]).unwrap_err();
        assert_eq!(key, "follow_up[0]");
        assert!(reason.contains("nudge"), "{reason}");
    }

    #[test]
    fn a_tenant_threshold_overrides_the_default_by_id_or_name() {
        let c: SentimentConfig =
            toml::from_str("alert_threshold = 0.6\n[alert_thresholds]\nacme = 0.8\n\"t-42\" = 0.4\n").unwrap();
        assert_eq!(c.alert_threshold_for("t-1", Some("acme")), 0.8);
        assert_eq!(c.alert_threshold_for("t-42", Some("other")), 0.4);
        assert_eq!(c.alert_threshold_for("t-1", None), 0.6);
        let bad = SentimentConfig {
            alert_thresholds: [("acme".to_string(), 1.5)].into(),
            ..SentimentConfig::default()
        };
        assert_eq!(bad.validate(&[]).unwrap_err().0, "alert_thresholds.acme");
    }
}
