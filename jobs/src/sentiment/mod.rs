//! `sentiment`: scores a comment or ticket (an event with text) for
//! sentiment, stores label, confidence, language, urgency and model
//! version, and — when the customer is clearly upset (negative with
//! confidence ≥ `sentiment.alert_threshold`) — raises a
//! `client_dissatisfaction` alert and queues its notifications: the
//! tenant's signed webhook (the `webhook` kind) and the follow-up kinds
//! named in `sentiment.follow_up`.
//!
//! The model is loaded once per worker process at start-up ([`load_model`]:
//! a wrong path fails the process, naming the path, before any job runs);
//! inference is micro-batched across concurrent jobs on a dedicated thread
//! pool ([`batcher`]). With an encoder model, each tenant's active head
//! version comes from the registry (re-checked every
//! `sentiment.model_refresh`, so `kairos models activate` or
//! `kairos train sentiment --activate` takes effect without a restart).
//!
//! Score, alert and notification jobs are written in one transaction; the
//! jobs are queued after commit (or by the dispatcher if the queue is down).

pub mod batcher;
pub mod chunks;
pub mod config;
pub mod registry;
pub mod scorer;
pub mod scores;
pub mod urgency;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kairos_core::enqueue::NewJob;
use kairos_core::Event;
use kairos_models::text::{self, ClassifierModel, Encoder, EncoderConfig, SentimentAnalyzer, SentimentHead};
use serde_json::{json, Value};

use crate::{Job, JobContext, JobError, JobOutput, JobsConfig};
use batcher::{Batcher, InferenceError, TextModel};
pub use config::{ClassifierConfig, SentimentConfig};
pub use scorer::{OnDemand, ScoreError, Scorer, TextScore};

/// The job kind.
pub const KIND: &str = "sentiment";
/// The alert kind raised for upset customers.
pub const ALERT_KIND: &str = "client_dissatisfaction";
/// The message of a job that finds no head to use.
pub const NO_MODEL: &str =
    "no active sentiment model; set sentiment.head in config or train one with `kairos train sentiment --activate`";
/// The result of a sentiment job whose event has no text: skipped, not failed.
pub const SKIPPED_NO_TEXT: &str = "skipped: no text";

/// Characters of the text kept in an alert (enough for ops to see the gist).
const EXCERPT_CHARS: usize = 280;

/// Namespace of the deterministic ids of notification jobs.
const JOB_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_6972_6f73_2d73_656e_7469_6d65_6e74);

/// Why the sentiment model could not be set up (at process start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A model, tokenizer or runtime file is missing or unusable (the message names the path).
    #[error("sentiment model: {0}")]
    Model(#[from] text::TextError),
    /// The configured head does not fit.
    #[error("sentiment head {path}: {reason}")]
    Head {
        /// The head file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Registering the default head failed.
    #[error("sentiment head registry: {0}")]
    Registry(#[from] registry::HeadStoreError),
    /// The loading task died (a panic in the model runtime).
    #[error("loading the sentiment model: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The model a process serves, as loaded at start-up.
pub struct LoadedModel {
    /// What scores texts.
    pub model: TextModel,
    /// The head file from config (encoder models), checked against the encoder.
    pub default_head: Option<SentimentHead>,
    /// Version recorded with scores from a classifier model.
    pub classifier_version: Option<String>,
}

/// Loads the configured model (blocking: call it from `spawn_blocking`).
/// Every path is checked here so a wrong one stops the process at start-up
/// with the path named.
pub fn load_model(config: &SentimentConfig) -> Result<LoadedModel, SetupError> {
    if let Some(lib) = &config.runtime_library {
        text::init_runtime(Some(lib.as_path()))?;
    }
    let inference = text::InferenceOptions {
        sessions: config.inference_threads,
        intra_threads: config.intra_threads,
        runtime_library: None,
        cpu_arena: config.cpu_arena,
        memory_pattern: config.memory_pattern,
        share_weights: config.share_weights,
    };
    if let Some(c) = &config.classifier {
        let mut cc = text::ClassifierConfig::new(&c.model, &c.tokenizer, c.labels.clone());
        cc.max_length = config.max_length;
        cc.inference = inference;
        let model = ClassifierModel::new(cc)?;
        let version = format!(
            "classifier-{}",
            &model.model_sha256()[..12.min(model.model_sha256().len())]
        );
        let analyzer = SentimentAnalyzer::from_classifier(model)?;
        return Ok(LoadedModel {
            model: TextModel::Classifier(Arc::new(analyzer)),
            default_head: None,
            classifier_version: Some(version),
        });
    }
    let mut encoder_config = EncoderConfig::from_dir(&config.encoder).max_length(config.max_length);
    encoder_config.inference = inference;
    let encoder = Encoder::new(encoder_config)?;
    let default_head = match &config.head {
        Some(path) => Some(load_head_for(&encoder, path)?),
        None => None,
    };
    Ok(LoadedModel {
        model: TextModel::Encoder(Arc::new(encoder)),
        default_head,
        classifier_version: None,
    })
}

/// Reads a head file and checks it belongs to `encoder`.
pub fn load_head_for(encoder: &Encoder, path: &Path) -> Result<SentimentHead, SetupError> {
    let head_err = |reason: String| SetupError::Head {
        path: path.display().to_string(),
        reason,
    };
    if !path.is_file() {
        return Err(head_err(
            "not found (fix sentiment.head, or train one with `kairos train sentiment`)".into(),
        ));
    }
    let head = SentimentHead::load(path).map_err(|e| head_err(e.to_string()))?;
    head.check_encoder(encoder.fingerprint())
        .map_err(|e| head_err(e.to_string()))?;
    Ok(head)
}

/// The sentiment job, with the process's scorer (model, batcher, head cache).
pub struct Sentiment {
    config: SentimentConfig,
    scorer: Arc<Scorer>,
    /// Tenant names or ids with a webhook.
    webhook_tenants: Vec<String>,
    /// Attempts of the notification kinds (webhook + follow-ups), from their policies.
    max_attempts: HashMap<String, u32>,
}

impl std::fmt::Debug for Sentiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentiment").field("scorer", &self.scorer).finish()
    }
}

impl Sentiment {
    /// Loads the `[sentiment]` model (or takes the one this process's API
    /// loaded already), registers the configured default head when no head
    /// is active yet, and starts the job.
    pub async fn start(config: &JobsConfig, store: &kairos_core::Store) -> Result<Self, SetupError> {
        let scorer = Scorer::shared(&config.sentiment, store).await?;
        Ok(Self::with_scorer(config, scorer))
    }

    /// A job serving `loaded` with the `[sentiment]` and `[webhooks]`
    /// sections of `config`. Starts the batcher: call inside a tokio runtime.
    pub fn new(config: &JobsConfig, loaded: LoadedModel) -> Self {
        Self::with_scorer(config, Arc::new(Scorer::new(&config.sentiment, loaded)))
    }

    fn with_scorer(config: &JobsConfig, scorer: Arc<Scorer>) -> Self {
        let s = &config.sentiment;
        let mut max_attempts = HashMap::new();
        for kind in s.follow_up.iter().map(String::as_str).chain([crate::webhook::KIND]) {
            max_attempts.insert(kind.to_owned(), config.policies.get(kind).max_attempts);
        }
        Self {
            config: s.clone(),
            scorer,
            webhook_tenants: config.webhooks.keys().cloned().collect(),
            max_attempts,
        }
    }

    /// The batcher (its counters show how well batching works).
    pub fn batcher(&self) -> &Batcher {
        self.scorer.batcher()
    }

    /// The text of an event: the first non-empty configured data field;
    /// `None` when it has none (nothing to score, which is not an error).
    fn text_of(&self, event: &Event) -> Result<Option<String>, String> {
        for field in &self.config.text_fields {
            if let Some(Value::String(s)) = event.data.get(field) {
                if !s.trim().is_empty() {
                    let chars = s.chars().count();
                    if chars > self.config.max_text_chars {
                        return Err(format!(
                            "data.{field} has {chars} characters; at most {} are scored (sentiment.max_text_chars)",
                            self.config.max_text_chars
                        ));
                    }
                    return Ok(Some(s.clone()));
                }
            }
        }
        Ok(None)
    }

    fn has_webhook(&self, tenant: &kairos_core::store::Tenant) -> bool {
        self.webhook_tenants
            .iter()
            .any(|k| *k == tenant.id || *k == tenant.name)
    }
}

/// A score and what it raises.
struct Scored {
    row: scores::ScoreRow,
    alert: Option<kairos_core::store::NewAlert>,
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

fn severity(urgency: u8) -> &'static str {
    match urgency {
        80.. => "critical",
        50..=79 => "high",
        _ => "medium",
    }
}

/// Builds the stored row and, if the text is clearly negative, the alert.
fn build(ctx: &JobContext, event: &Event, text: &str, scored: &TextScore, now: i64) -> Scored {
    // Stored: the whole text's tone. Alert and urgency: its most negative chunk (the text itself when
    // it fits the window).
    let result = &scored.overall;
    let urgency = &scored.urgency;
    let chunks = scored.chunks;
    let version = scored.model_version.as_str();
    let probabilities: serde_json::Map<String, Value> = result
        .probabilities
        .iter()
        .map(|(s, p)| (s.as_str().to_owned(), json!(p)))
        .collect();
    // `und` (neither Spanish nor English, or no evidence) is recorded too: the text is still scored.
    let language = Some(scored.language.map_or("und", |l| l.code()).to_owned());
    let row = scores::ScoreRow {
        job_id: ctx.job_id.clone(),
        account_id: event.account_id.clone(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        label: result.label.as_str().into(),
        score: f64::from(result.score),
        polarity: f64::from(result.polarity),
        probabilities: Value::Object(probabilities),
        language: language.clone(),
        urgency: i64::from(urgency.score),
        keywords: json!(urgency.keywords),
        model_version: version.into(),
        scored_at: now,
        chunks: i64::try_from(chunks).unwrap_or(i64::MAX),
    };
    // Decided on the calibrated P(negative), against the tenant's threshold.
    let alert = scored.alert.then(|| {
        let dedup_key = format!("{ALERT_KIND}|{}", event.id);
        let keywords = if urgency.keywords.is_empty() {
            String::new()
        } else {
            format!("; keywords: {}", urgency.keywords.join(", "))
        };
        kairos_core::store::NewAlert {
            id: format!("{}|{dedup_key}", ctx.job_id),
            account_id: event.account_id.clone(),
            event_id: Some(event.id.clone()),
            urgency: Some(i64::from(urgency.score)),
            created_at: now,
            kind: ALERT_KIND.into(),
            severity: severity(urgency.score).into(),
            reason: format!(
                "negative {} ({:.0}% probability{}) from account {}: urgency {}{keywords}",
                event.event_type,
                scored.alert_probability * 100.0,
                if chunks > 1 {
                    format!(", its most negative part of {chunks}")
                } else {
                    String::new()
                },
                event.account_id,
                urgency.score
            ),
            payload: json!({
                "event_type": event.event_type,
                "text": excerpt(text),
                "label": scored.most_negative.label.as_str(),
                "score": scored.most_negative.score,
                "negative_probability": scored.alert_probability,
                "threshold": scored.alert_threshold,
                "chunks": chunks,
                "language": language,
                "keywords": urgency.keywords,
                "model_version": version,
            }),
            dedup_key,
        }
    });
    Scored { row, alert }
}

/// The alert as notifications carry it (webhook body, follow-up payload).
fn alert_json(tenant_id: &str, row: &scores::ScoreRow, alert: &kairos_core::store::NewAlert) -> Value {
    json!({
        "id": alert.id,
        "tenant_id": tenant_id,
        "account_id": row.account_id,
        "event_id": row.event_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "urgency": row.urgency,
        "reason": alert.reason,
        "details": alert.payload,
        "created_at": kairos_core::time::to_rfc3339(row.scored_at),
    })
}

#[async_trait]
impl Job for Sentiment {
    const KIND: &'static str = KIND;
    type Payload = Event;

    async fn run(&self, ctx: &JobContext, event: Event) -> Result<JobOutput, JobError> {
        let Some(text) = self
            .text_of(&event)
            .map_err(|e| JobError::Permanent(format!("sentiment: {e}")))?
        else {
            // A rating without a comment, a ticket closed without a message: nothing to score, and
            // nothing for ops to fix — a dead letter would bury real failures. The job succeeds
            // with "skipped" as its result, so the skips are counted (`kairos jobs`, the job API).
            tracing::debug!(event = %event.id, "sentiment: no text, skipped");
            return Ok(JobOutput {
                result_ref: Some(format!(
                    "{SKIPPED_NO_TEXT}: none of data.{} is a non-empty string",
                    self.config.text_fields.join(", data.")
                )),
            });
        };
        // A tenant's threshold may be set by name: read it only when some tenant has one.
        let tenant_name = if self.config.alert_thresholds.is_empty() {
            None
        } else {
            let tenant = ctx
                .store
                .find_tenant(&ctx.tenant_id)
                .await
                .map_err(|e| JobError::Retryable(format!("{KIND}: reading tenant: {e}")))?;
            Some(tenant.name)
        };
        let score = self
            .scorer
            .score(&ctx.store, &ctx.tenant_id, tenant_name.as_deref(), &text)
            .await
            .map_err(|e| match e {
                ScoreError::Store(m) => JobError::Retryable(format!("{KIND}: store: {m}")),
                ScoreError::NoModel => JobError::Permanent(NO_MODEL.into()),
                ScoreError::Head(m) => JobError::Permanent(format!("{KIND}: {m}")),
                ScoreError::Inference(InferenceError::Model(m)) => JobError::Permanent(format!("{KIND}: {m}")),
                ScoreError::Inference(InferenceError::Unavailable(m)) => JobError::Retryable(format!("{KIND}: {m}")),
            })?;
        let now = kairos_core::time::now_ms();
        let scored = build(ctx, &event, &text, &score, now);
        let mut jobs = Vec::new();
        if let Some(alert) = &scored.alert {
            let body = alert_json(&ctx.tenant_id, &scored.row, alert).to_string();
            // A store failure here is retried: read as "no tenant", it would drop the webhook.
            let tenant = ctx
                .store
                .find_tenant(&ctx.tenant_id)
                .await
                .map_err(|e| JobError::Retryable(format!("{KIND}: reading tenant: {e}")))?;
            let mut kinds: Vec<&str> = Vec::new();
            if self.has_webhook(&tenant) {
                kinds.push(crate::webhook::KIND);
            }
            kinds.extend(self.config.follow_up.iter().map(String::as_str));
            for kind in kinds {
                let id = uuid::Uuid::new_v5(
                    &JOB_NS,
                    format!("{}|{}|{kind}", ctx.tenant_id, alert.dedup_key).as_bytes(),
                );
                jobs.push(NewJob {
                    id: id.to_string(),
                    tenant_id: ctx.tenant_id.clone(),
                    kind: kind.to_owned(),
                    event_id: None,
                    payload: body.clone(),
                    max_attempts: self.max_attempts.get(kind).copied().unwrap_or(5),
                    run_after: None,
                });
            }
        }
        scores::store(
            &ctx.store,
            &ctx.tenant_id,
            event.user_id.as_deref(),
            &scored.row,
            scored.alert.as_ref(),
            &mut jobs,
        )
        .await?;
        if !jobs.is_empty() {
            queue_after_commit(ctx, &jobs).await;
        }
        Ok(JobOutput {
            result_ref: Some(format!(
                "sentiment_scores/{} ({} {:.2}, urgency {}{})",
                ctx.job_id,
                scored.row.label,
                scored.row.score,
                scored.row.urgency,
                if scored.alert.is_some() { ", alert raised" } else { "" }
            )),
        })
    }
}

/// Queues the notification jobs recorded with an alert; on failure they
/// stay pending and the dispatcher queues them, so nothing is lost.
pub(crate) async fn queue_after_commit(ctx: &JobContext, jobs: &[NewJob]) {
    if let Err(e) = kairos_core::enqueue::enqueue_recorded(&ctx.store, ctx.queue.as_ref(), jobs).await {
        tracing::warn!(error = %e, "queue unavailable; the dispatcher will queue the notification jobs");
    }
}
