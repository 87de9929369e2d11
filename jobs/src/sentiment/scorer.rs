//! Scoring one text, exactly as stored: chunks, micro-batched inference with
//! the tenant's active head, per-language calibration, urgency and the alert
//! decision. The `sentiment` job and `POST /v1/sentiment:analyze` both call
//! [`Scorer::score`], so the API answers what the job would store.
//!
//! One [`Scorer`] (one encoder, one batcher, one head cache) serves a whole
//! process: [`Scorer::shared`] hands the worker's to the API when both roles
//! run in the same process, and [`OnDemand`] loads one in an API-only
//! process on the first request (or at start with `sentiment.api_preload`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use kairos_core::Store;
use kairos_models::text::{self, Language, Sentiment, SentimentHead, SentimentResult};

use super::batcher::{BatchConfig, Batcher, InferenceError, TextModel};
use super::urgency::{self, Urgency};
use super::{chunks, load_model, registry, LoadedModel, SentimentConfig, SetupError, KIND, NO_MODEL};
use crate::active_model::ActiveModelCache;

/// Why a text could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The store could not be read (retry later).
    #[error("store: {0}")]
    Store(String),
    /// No head is active for the tenant, nor globally.
    #[error("{NO_MODEL}")]
    NoModel,
    /// The tenant's active head cannot be used (corrupt, or for another encoder).
    #[error("{0}")]
    Head(String),
    /// Inference failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

/// Why [`Scorer::head`] could not use an active version: a head trained on
/// another encoder is told apart, since it can give way to the global head.
enum Lookup {
    Failed(ScoreError),
    OtherEncoder(String),
}

impl Lookup {
    fn into_score_error(self) -> ScoreError {
        match self {
            Lookup::Failed(e) => e,
            Lookup::OtherEncoder(version) => ScoreError::Head(format!(
                "active head {version} was trained on another encoder than this process's, and no global head \
                 that fits it is active"
            )),
        }
    }
}

/// A text's score: what the job stores and the API returns.
#[derive(Debug, Clone)]
pub struct TextScore {
    /// The whole text (for a chunked text: the word-weighted mean of its chunks), calibrated probabilities.
    pub overall: SentimentResult,
    /// The chunk with the highest P(negative): what urgency and the alert use (the text itself when not chunked).
    pub most_negative: SentimentResult,
    /// Windows the text was scored in (1 unless longer than the encoder's window).
    pub chunks: usize,
    /// The whole text's language (`None`: undetermined, recorded as `und`).
    pub language: Option<Language>,
    /// Urgency 0–100 and the keywords found.
    pub urgency: Urgency,
    /// Head (or classifier) version.
    pub model_version: String,
    /// Calibrated P(negative) of the most negative chunk: what the alert threshold is compared with.
    pub alert_probability: f32,
    /// The tenant's threshold.
    pub alert_threshold: f64,
    /// Whether a `client_dissatisfaction` alert is (or would be) raised.
    pub alert: bool,
}

/// The model, batcher and per-tenant head cache of a process.
pub struct Scorer {
    config: SentimentConfig,
    model: TextModel,
    classifier_version: Option<String>,
    batcher: Batcher,
    /// Tenant → active head version → head (checked against this process's encoder).
    heads: ActiveModelCache<SentimentHead>,
    /// Head versions found trained on another encoder: skipped without re-reading the store.
    stale_heads: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("batcher", &self.batcher)
            .field("classifier_version", &self.classifier_version)
            .finish()
    }
}

/// Scorers alive in this process, by config: the worker's and the API's are
/// one when their `[sentiment]` sections are equal.
static SHARED: Mutex<Vec<(SentimentConfig, Weak<Scorer>)>> = Mutex::new(Vec::new());

impl Scorer {
    /// A scorer serving `loaded`. Starts the batcher: call inside a tokio runtime.
    pub fn new(config: &SentimentConfig, loaded: LoadedModel) -> Self {
        let batcher = Batcher::start(
            loaded.model.clone(),
            BatchConfig {
                max: config.batch_max,
                wait: config.batch_wait,
                encode: config.encode_batch,
                threads: config.inference_threads,
            },
        );
        Self {
            config: config.clone(),
            model: loaded.model,
            classifier_version: loaded.classifier_version,
            batcher,
            heads: ActiveModelCache::new(config.model_refresh),
            stale_heads: Mutex::new(HashSet::new()),
        }
    }

    /// Loads the `[sentiment]` model (off the async runtime: it reads and
    /// initialises ONNX files) and registers the configured default head
    /// when no head is active yet.
    pub async fn load(config: &SentimentConfig, store: &Store) -> Result<Self, SetupError> {
        let s = config.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || load_model(&s)).await??;
        if let (Some(head), Some(path)) = (&loaded.default_head, &config.head) {
            let source = format!("file {}", path.display());
            let active = registry::ensure_default(store, head, &source).await?;
            tracing::info!(head = %head.version(), active = %active, "sentiment head ready");
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            encoder = %config.encoder.display(),
            "sentiment model loaded"
        );
        Ok(Self::new(config, loaded))
    }

    /// The process's scorer for `config`: the one already loaded (by the
    /// worker or the API) if alive, else a new one ([`Scorer::load`]).
    pub async fn shared(config: &SentimentConfig, store: &Store) -> Result<Arc<Self>, SetupError> {
        let find = || {
            let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            slot.retain(|(_, w)| w.strong_count() > 0);
            slot.iter().find(|(c, _)| c == config).and_then(|(_, w)| w.upgrade())
        };
        if let Some(s) = find() {
            return Ok(s);
        }
        let scorer = Arc::new(Self::load(config, store).await?);
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        // Lost a race with another loader: use theirs, drop ours.
        if let Some(existing) = slot.iter().find(|(c, _)| c == config).and_then(|(_, w)| w.upgrade()) {
            return Ok(existing);
        }
        slot.push((config.clone(), Arc::downgrade(&scorer)));
        Ok(scorer)
    }

    /// The batcher (its counters show how well batching works).
    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    /// The alert threshold of a tenant (by id or name in
    /// `sentiment.alert_thresholds`, else `sentiment.alert_threshold`).
    pub fn alert_threshold(&self, tenant_id: &str, tenant_name: Option<&str>) -> f64 {
        self.config.alert_threshold_for(tenant_id, tenant_name)
    }

    /// The head a tenant's texts are scored with now (encoder models), with its version.
    ///
    /// A tenant's own head trained on another encoder (an upgrade shipped a
    /// new one; the global head is replaced at start by
    /// [`registry::ensure_default`], tenants' heads are not) gives way to the
    /// global head: the tenant keeps getting scores, each recording the
    /// version that made it, instead of every job failing into the dead
    /// letters until someone retrains. Warned once per version per process.
    pub async fn head(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<(Option<Arc<SentimentHead>>, String), ScoreError> {
        let encoder = match &self.model {
            TextModel::Classifier(_) => return Ok((None, self.classifier_version.clone().unwrap_or_default())),
            TextModel::Encoder(e) => e,
        };
        let load = |version: String| async move {
            if self.lock_stale().contains(&version) {
                return Err(Lookup::OtherEncoder(version));
            }
            let head = registry::load(store, &version).await.map_err(|e| {
                Lookup::Failed(match e {
                    registry::HeadStoreError::Registry(crate::model_registry::RegistryError::Store(e)) => {
                        ScoreError::Store(e.to_string())
                    }
                    other => ScoreError::Head(other.to_string()),
                })
            })?;
            if let Err(e) = head.check_encoder(encoder.fingerprint()) {
                if self.lock_stale().insert(version.clone()) {
                    tracing::warn!(
                        %version,
                        error = %e,
                        "a sentiment head was trained on another encoder than this process's; its tenants' texts \
                         are scored with the global head until it is retrained (kairos train sentiment)"
                    );
                }
                return Err(Lookup::OtherEncoder(version));
            }
            Ok(head)
        };
        let active = |scope: &str| {
            let scope = scope.to_owned();
            async move {
                registry::active_version(store, &scope)
                    .await
                    .map_err(|e| Lookup::Failed(ScoreError::Store(e.to_string())))
            }
        };
        let found = match self.heads.get(tenant_id, active(tenant_id), load).await {
            // "" is the global scope: `active_version(store, "")` reads only the global row.
            Err(Lookup::OtherEncoder(_)) if !tenant_id.is_empty() => self.heads.get("", active(""), load).await,
            other => other,
        }
        .map_err(Lookup::into_score_error)?;
        found
            .map(|(version, head)| (Some(head), version))
            .ok_or(ScoreError::NoModel)
    }

    fn lock_stale(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Single inserts only: a panic elsewhere cannot leave the set half-written.
        self.stale_heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Scores `text` for a tenant as the `sentiment` job stores it. A text
    /// longer than the encoder's window is scored in chunks (see [`chunks`]);
    /// every chunk is calibrated for the whole text's language.
    pub async fn score(
        &self,
        store: &Store,
        tenant_id: &str,
        tenant_name: Option<&str>,
        text: &str,
    ) -> Result<TextScore, ScoreError> {
        let (head, model_version) = self.head(store, tenant_id).await?;
        let language = text::detect_language(text);
        let pieces = chunks::split(text, chunks::MAX_CHUNK_WORDS);
        // The chunks go to the batcher together, so they share inference batches.
        let results = futures::future::join_all(
            pieces
                .iter()
                .map(|p| self.batcher.analyze_in(p.clone(), language, head.clone())),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let parts: Vec<(SentimentResult, usize)> = results
            .into_iter()
            .zip(&pieces)
            .map(|(r, p)| (r, p.split_whitespace().count()))
            .collect();
        let combined =
            chunks::combine(&parts).ok_or_else(|| InferenceError::Model(format!("{KIND}: nothing to score")))?;
        let urgency = urgency::urgency(text, &combined.most_negative, &self.config.urgency);
        let alert_probability = combined
            .most_negative
            .probabilities
            .iter()
            .find(|(s, _)| *s == Sentiment::Negative)
            .map_or(0.0, |(_, p)| *p);
        let alert_threshold = self.alert_threshold(tenant_id, tenant_name);
        Ok(TextScore {
            overall: combined.overall,
            most_negative: combined.most_negative,
            chunks: pieces.len(),
            language,
            urgency,
            model_version,
            alert_probability,
            alert_threshold,
            alert: f64::from(alert_probability) >= alert_threshold,
        })
    }
}

/// The API process's scorer, loaded on first use (or at start with
/// `sentiment.api_preload`), shared with a worker in the same process.
pub struct OnDemand {
    config: SentimentConfig,
    store: Store,
    scorer: tokio::sync::OnceCell<Arc<Scorer>>,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("loaded", &self.scorer.initialized())
            .finish()
    }
}

impl OnDemand {
    /// Nothing is loaded yet.
    pub fn new(config: SentimentConfig, store: Store) -> Self {
        Self {
            config,
            store,
            scorer: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether texts can be scored here at all (`sentiment.enabled`).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether the model is to be loaded at start (`sentiment.api_preload`).
    pub fn preload(&self) -> bool {
        self.config.api_preload
    }

    /// The scorer, loading it on the first call (a failed load is not
    /// remembered: the next call tries again).
    pub async fn scorer(&self) -> Result<&Arc<Scorer>, SetupError> {
        self.scorer
            .get_or_try_init(|| Scorer::shared(&self.config, &self.store))
            .await
    }

    /// A tenant's alert threshold (see [`SentimentConfig::alert_threshold_for`]).
    pub fn alert_threshold_for(&self, tenant_id: &str, tenant_name: Option<&str>) -> f64 {
        self.config.alert_threshold_for(tenant_id, tenant_name)
    }

    /// Longest text scored, in characters (`sentiment.max_text_chars`).
    pub fn max_text_chars(&self) -> usize {
        self.config.max_text_chars
    }
}
