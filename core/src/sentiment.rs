//! The `[sentiment]` and `[webhooks]` config sections: which text model
//! scores comments and tickets, how inference is batched, when a score
//! becomes an alert, and where each tenant's alerts are delivered.
//!
//! ```toml
//! [sentiment]
//! enabled = true
//! encoder = ".cache/models/all-MiniLM-L6-v2-int8"  # model.onnx + tokenizer.json
//! head = "models/heads/sentiment-minilm-1.json"    # registered at start-up if the registry has no sentiment model
//! alert_threshold = 0.75                            # negative with confidence >= this raises an alert
//! batch_max = 32                                    # texts per inference batch
//! batch_wait = "5ms"                                # longest a text waits for others to join its batch
//! inference_threads = 2                             # dedicated inference threads (one ONNX session each)
//! follow_up = []                                    # job kinds queued for every alert (nudges, ...)
//! [sentiment.urgency]
//! keywords = ["urgente", "bloqueado", "no funciona", "critical", "blocking", "broken"]
//!
//! [webhooks.acme]                                   # by tenant name or id
//! url = "https://ops.acme.example/kairos"
//! secret_env = "KAIROS_WEBHOOK_SECRET_ACME"         # the HMAC key, read from the environment
//! ```
//!
//! Kept in core so `kairos check-config` validates it with everything else
//! and names the key at fault; file paths are checked when a worker starts
//! (the model is loaded then), not here, so config can be checked on a
//! machine without the model files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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

/// How urgent a negative text is, 0–100: the negative confidence plus
/// points for urgency keywords.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrgencyConfig {
    /// Words and phrases (Spanish and English) that make a text more urgent;
    /// matched case- and accent-insensitively on word boundaries.
    pub keywords: Vec<String>,
    /// Points the negative confidence contributes at most (confidence × this).
    pub negative_weight: f64,
    /// Points per keyword found.
    pub keyword_points: f64,
    /// Cap on the keyword points.
    pub keyword_max: f64,
}

impl Default for UrgencyConfig {
    fn default() -> Self {
        Self {
            keywords: default_keywords(),
            negative_weight: 70.0,
            keyword_points: 15.0,
            keyword_max: 30.0,
        }
    }
}

/// The built-in bilingual urgency keywords.
pub fn default_keywords() -> Vec<String> {
    [
        "urgente",
        "urgencia",
        "bloqueado",
        "bloqueada",
        "bloqueante",
        "no funciona",
        "caído",
        "caída",
        "roto",
        "inaceptable",
        "cancelar",
        "reembolso",
        "ya mismo",
        "urgent",
        "urgently",
        "asap",
        "critical",
        "blocking",
        "blocked",
        "broken",
        "down",
        "not working",
        "doesn't work",
        "unacceptable",
        "cancel",
        "refund",
        "outage",
    ]
    .into_iter()
    .map(String::from)
    .collect()
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
    /// Negative with confidence >= this raises an alert.
    pub alert_threshold: f64,
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
            encoder: PathBuf::from(".cache/models/all-MiniLM-L6-v2-int8"),
            head: None,
            classifier: None,
            runtime_library: None,
            max_length: 256,
            alert_threshold: 0.75,
            batch_max: 32,
            encode_batch: 8,
            batch_wait: Duration::from_millis(5),
            inference_threads: 1,
            intra_threads: 1,
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
    /// Checks values serde cannot; errors are `(key under sentiment., reason)`.
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.alert_threshold) {
            return Err((
                "alert_threshold".into(),
                format!("{} is not in [0, 1]", self.alert_threshold),
            ));
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

/// Where a tenant's alerts are delivered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://...` (or `http://` for local receivers).
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 key; never the key itself,
    /// so secrets stay out of config files and repos.
    pub secret_env: String,
    /// Per-request timeout.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[webhooks.TENANT]`, by tenant name or id.
pub type Webhooks = BTreeMap<String, WebhookConfig>;

/// Checks one webhook; errors are `(key under webhooks.TENANT., reason)`.
pub fn validate_webhook(w: &WebhookConfig) -> Result<(), (String, String)> {
    let url = url::Url::parse(&w.url).map_err(|e| ("url".to_string(), format!("`{}` is not a URL: {e}", w.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((
            "url".into(),
            format!("scheme `{}` not supported (use https)", url.scheme()),
        ));
    }
    if w.secret_env.trim().is_empty() {
        return Err((
            "secret_env".into(),
            "must name the environment variable holding the key".into(),
        ));
    }
    if w.timeout.is_zero() {
        return Err(("timeout".into(), "must be longer than 0s".into()));
    }
    Ok(())
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
    fn webhook_url_must_be_http() {
        let w = WebhookConfig {
            url: "ftp://x".into(),
            secret_env: "S".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(validate_webhook(&w).unwrap_err().0, "url");
    }
}
