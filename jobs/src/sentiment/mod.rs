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
pub mod scores;
pub mod urgency;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kairos_core::enqueue::NewJob;
use kairos_core::Event;
use kairos_models::text::{
    self, ClassifierModel, Encoder, EncoderConfig, SentimentAnalyzer, SentimentHead, SentimentResult,
};
use serde_json::{json, Value};

use crate::active_model::ActiveModelCache;
use crate::{Job, JobContext, JobError, JobOutput, JobsConfig};
use batcher::{BatchConfig, Batcher, InferenceError, TextModel};
pub use config::{ClassifierConfig, SentimentConfig};

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

/// The sentiment job, with its model, batcher and head cache.
pub struct Sentiment {
    config: SentimentConfig,
    model: TextModel,
    classifier_version: Option<String>,
    batcher: Batcher,
    /// Tenant names or ids with a webhook.
    webhook_tenants: Vec<String>,
    /// Attempts of the notification kinds (webhook + follow-ups), from their policies.
    max_attempts: HashMap<String, u32>,
    /// Tenant → active head version → head (checked against this process's encoder).
    heads: ActiveModelCache<SentimentHead>,
}

impl std::fmt::Debug for Sentiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentiment")
            .field("batcher", &self.batcher)
            .field("classifier_version", &self.classifier_version)
            .finish()
    }
}

impl Sentiment {
    /// Loads the `[sentiment]` model (off the async runtime: it reads and
    /// initialises ONNX files), registers the configured default head when
    /// no head is active yet, and starts the job.
    pub async fn start(config: &JobsConfig, store: &kairos_core::Store) -> Result<Self, SetupError> {
        let s = config.sentiment.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || load_model(&s)).await??;
        if let (Some(head), Some(path)) = (&loaded.default_head, &config.sentiment.head) {
            let source = format!("file {}", path.display());
            let active = registry::ensure_default(store, head, &source).await?;
            tracing::info!(head = %head.version(), active = %active, "sentiment head ready");
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            encoder = %config.sentiment.encoder.display(),
            "sentiment model loaded"
        );
        Ok(Self::new(config, loaded))
    }

    /// A job serving `loaded` with the `[sentiment]` and `[webhooks]`
    /// sections of `config`. Starts the batcher: call inside a tokio runtime.
    pub fn new(config: &JobsConfig, loaded: LoadedModel) -> Self {
        let s = &config.sentiment;
        let batcher = Batcher::start(
            loaded.model.clone(),
            BatchConfig {
                max: s.batch_max,
                wait: s.batch_wait,
                encode: s.encode_batch,
                threads: s.inference_threads,
            },
        );
        let mut max_attempts = HashMap::new();
        for kind in s.follow_up.iter().map(String::as_str).chain([crate::webhook::KIND]) {
            max_attempts.insert(kind.to_owned(), config.policies.get(kind).max_attempts);
        }
        Self {
            config: s.clone(),
            model: loaded.model,
            classifier_version: loaded.classifier_version,
            batcher,
            webhook_tenants: config.webhooks.keys().cloned().collect(),
            max_attempts,
            heads: ActiveModelCache::new(s.model_refresh),
        }
    }

    /// The batcher (its counters show how well batching works).
    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    /// The head a tenant's job uses now (encoder models), with its version.
    async fn head(&self, ctx: &JobContext) -> Result<(Option<Arc<SentimentHead>>, String), JobError> {
        let encoder = match &self.model {
            TextModel::Classifier(_) => return Ok((None, self.classifier_version.clone().unwrap_or_default())),
            TextModel::Encoder(e) => e,
        };
        let store = &ctx.store;
        let active = async {
            registry::active_version(store, &ctx.tenant_id)
                .await
                .map_err(|e| JobError::Retryable(format!("{KIND}: {e}")))
        };
        let load = |version: String| async move {
            let head = registry::load(store, &version).await.map_err(|e| match e {
                registry::HeadStoreError::Registry(crate::model_registry::RegistryError::Store(e)) => {
                    JobError::Retryable(format!("{KIND}: store: {e}"))
                }
                other => JobError::Permanent(format!("{KIND}: {other}")),
            })?;
            head.check_encoder(encoder.fingerprint()).map_err(|e| {
                JobError::Permanent(format!(
                    "{KIND}: active head {version} does not fit this worker's encoder: {e}"
                ))
            })?;
            Ok::<_, JobError>(head)
        };
        let (version, head) = self
            .heads
            .get(&ctx.tenant_id, active, load)
            .await?
            .ok_or_else(|| JobError::Permanent(NO_MODEL.into()))?;
        Ok((Some(head), version))
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
#[allow(clippy::too_many_arguments)]
fn build(
    config: &SentimentConfig,
    ctx: &JobContext,
    event: &Event,
    text: &str,
    combined: &chunks::Combined,
    chunks: usize,
    version: &str,
    now: i64,
) -> Scored {
    // Stored: the whole text's tone. Alert and urgency: its most negative chunk (the text itself when
    // it fits the window).
    let result = &combined.overall;
    let alerting = &combined.most_negative;
    let urgency = urgency::urgency(text, alerting, &config.urgency);
    let probabilities: serde_json::Map<String, Value> = result
        .probabilities
        .iter()
        .map(|(s, p)| (s.as_str().to_owned(), json!(p)))
        .collect();
    // `und` (neither Spanish nor English, or no evidence) is recorded too: the text is still scored.
    let language = Some(result.language.map_or("und", |l| l.code()).to_owned());
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
    let upset = alerting.label == text::Sentiment::Negative && f64::from(alerting.score) >= config.alert_threshold;
    let alert = upset.then(|| {
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
                "negative {} ({:.0}% confident{}) from account {}: urgency {}{keywords}",
                event.event_type,
                alerting.score * 100.0,
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
                "label": alerting.label.as_str(),
                "score": alerting.score,
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
        let (head, version) = self.head(ctx).await?;
        let pieces = chunks::split(&text, chunks::MAX_CHUNK_WORDS);
        // The chunks go to the batcher together, so they share inference batches.
        let results = futures::future::join_all(pieces.iter().map(|p| self.batcher.analyze(p.clone(), head.clone())))
            .await
            .into_iter()
            .map(|r| {
                r.map_err(|e| match e {
                    InferenceError::Model(m) => JobError::Permanent(format!("sentiment: {m}")),
                    InferenceError::Unavailable(m) => JobError::Retryable(format!("sentiment: {m}")),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parts: Vec<(SentimentResult, usize)> = results
            .into_iter()
            .zip(&pieces)
            .map(|(r, p)| (r, p.split_whitespace().count()))
            .collect();
        let mut combined =
            chunks::combine(&parts).ok_or_else(|| JobError::Permanent(format!("{KIND}: nothing to score")))?;
        // The language is the whole text's, not its first chunk's (one chunk: the analyzer's, already).
        if pieces.len() > 1 {
            let language = kairos_models::text::detect_language(&text);
            combined.overall.language = language;
            combined.most_negative.language = language;
        }
        let now = kairos_core::time::now_ms();
        let scored = build(&self.config, ctx, &event, &text, &combined, pieces.len(), &version, now);
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
