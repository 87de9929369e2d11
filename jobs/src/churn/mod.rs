//! `churn_score`: scores accounts with the tenant's active churn model and
//! stores probability, risk level, top factors in the tenant's language and
//! recommended actions; CRITICAL accounts raise an alert (once per account
//! per UTC day).
//!
//! Payload: an event (a rule such as `payment.failed` → score that account)
//! or a schedule payload with `account_ids` (the daily per-account fan-out).
//! The model is the tenant's active one, else the global one
//! ([`registry::active_version`]); models are cached by version and the
//! active version is re-checked every `churn.model_refresh`, so
//! `kairos models activate` takes effect for later jobs without a restart.
//! With no active model the job fails permanently with a message saying
//! how to train one. Scoring (CPU) runs on the blocking pool.

pub mod config;
pub mod describe;
pub mod features;
pub mod on_demand;
pub mod registry;
pub mod retrain;
pub mod scores;
pub mod training;

use std::sync::Arc;

use async_trait::async_trait;
use kairos_core::Event;
use kairos_models::churn::{AccountFeatures, ChurnError, ChurnModel, RiskThresholds};
use serde_json::{json, Value};

use crate::active_model::ActiveModelCache;
use crate::{Job, JobContext, JobError, JobOutput};
pub use config::ChurnConfig;

/// The job kind.
pub const KIND: &str = "churn_score";

/// The message of a job that finds no model to use.
pub const NO_MODEL: &str = "no active churn model; train one with `kairos train churn`";

/// Factors kept per score.
pub const TOP_FACTORS: usize = 5;

/// Why reading or writing churn data failed.
#[derive(Debug, thiserror::Error)]
pub enum ChurnStoreError {
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored JSON column could not be read or written.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored model artifact is invalid.
    #[error("model: {0}")]
    Model(#[from] ChurnError),
    /// No such row.
    #[error("{0} not found")]
    NotFound(String),
    /// A registered model does not score Kairos accounts.
    #[error("{0}")]
    Schema(String),
}

impl From<crate::model_registry::RegistryError> for ChurnStoreError {
    fn from(e: crate::model_registry::RegistryError) -> Self {
        use crate::model_registry::RegistryError as R;
        match e {
            R::Store(e) => Self::Store(e),
            R::Json(e) => Self::Json(e),
            R::NotFound(what) => Self::NotFound(what),
        }
    }
}

impl From<crate::monitor::baselines::BaselineError> for ChurnStoreError {
    fn from(e: crate::monitor::baselines::BaselineError) -> Self {
        use crate::monitor::baselines::BaselineError as B;
        match e {
            B::Store(e) => Self::Store(e),
            B::Json(e) => Self::Json(e),
        }
    }
}

impl From<ChurnStoreError> for JobError {
    fn from(e: ChurnStoreError) -> Self {
        match e {
            ChurnStoreError::Store(e) => JobError::Retryable(format!("{KIND}: store: {e}")),
            other => JobError::Permanent(format!("{KIND}: {other}")),
        }
    }
}

/// Checks that a model scores Kairos accounts (its features are all
/// `AccountFeatures` fields), so a CSV-trained model with other columns is
/// refused with a clear error instead of scoring garbage.
pub fn check_account_schema(model: &ChurnModel) -> Result<(), String> {
    let foreign: Vec<&str> = model
        .schema()
        .features
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| !AccountFeatures::FEATURE_NAMES.contains(name))
        .collect();
    if foreign.is_empty() {
        // Account features are numbers; a column read as text from a CSV cannot take their values.
        if let Some(f) = model
            .schema()
            .features
            .iter()
            .find(|f| !matches!(f.encoding, kairos_models::churn::FeatureEncoding::Numeric { .. }))
        {
            return Err(format!(
                "model {} cannot score Kairos accounts: its column `{}` was categorical (text) in training, \
                 but account features are numbers",
                model.version(),
                f.name
            ));
        }
        return Ok(());
    }
    Err(format!(
        "model {} cannot score Kairos accounts: its columns {} are not account features \
         (accounts provide {}); train one with `kairos train churn` from the store, or from a CSV \
         whose columns are among those",
        model.version(),
        foreign.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        AccountFeatures::FEATURE_NAMES.join(", ")
    ))
}

/// The churn scoring job, with its config and model cache.
pub struct ChurnScore {
    config: ChurnConfig,
    models: ActiveModelCache<ChurnModel>,
}

impl std::fmt::Debug for ChurnScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChurnScore").field("config", &self.config).finish()
    }
}

impl ChurnScore {
    /// A job using `config` (thresholds, languages, actions, model refresh).
    pub fn new(config: ChurnConfig) -> Self {
        let models = ActiveModelCache::new(config.model_refresh);
        Self { config, models }
    }

    /// The model a tenant's job uses now.
    async fn model(&self, ctx: &JobContext) -> Result<Arc<ChurnModel>, JobError> {
        let store = &ctx.store;
        let found = self
            .models
            .get(
                &ctx.tenant_id,
                registry::active_version(store, &ctx.tenant_id),
                |version| async move {
                    let model = registry::load(store, &version).await?;
                    check_account_schema(&model).map_err(ChurnStoreError::Schema)?;
                    Ok::<_, ChurnStoreError>(model)
                },
            )
            .await?;
        let (_, model) = found.ok_or_else(|| JobError::Permanent(NO_MODEL.into()))?;
        Ok(model)
    }

    /// The tenant's language; the tenant is read only when languages are
    /// configured per tenant (a store failure is retried, never read as
    /// "no tenant name").
    async fn language(&self, ctx: &JobContext) -> Result<String, JobError> {
        if self.config.tenant_languages.is_empty() {
            return Ok(self.config.language.clone());
        }
        let tenant = ctx
            .store
            .find_tenant(&ctx.tenant_id)
            .await
            .map_err(|e| JobError::Retryable(format!("{KIND}: reading tenant: {e}")))?;
        Ok(self.config.language_for(&tenant.name, &ctx.tenant_id).to_owned())
    }
}

/// What triggered a job: the accounts to score and the reference stored with the scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Accounts to score.
    pub account_ids: Vec<String>,
    /// `event` or `schedule`.
    pub kind: &'static str,
    /// The event id, or `schedule@tick`.
    pub reference: String,
}

/// A payload is a schedule payload with `account_ids`, or an event.
impl<'de> serde::Deserialize<'de> for Trigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        if let Some(ids) = value.get("account_ids") {
            let account_ids: Vec<String> = serde_json::from_value(ids.clone())
                .map_err(|e| D::Error::custom(format!("`account_ids` must be a list of strings: {e}")))?;
            let schedule = value.get("schedule").and_then(Value::as_str).unwrap_or("manual");
            let tick = value.get("tick").and_then(Value::as_str).unwrap_or("");
            return Ok(Trigger {
                account_ids,
                kind: "schedule",
                reference: format!("{schedule}@{tick}"),
            });
        }
        let event: Event = serde_json::from_value(value).map_err(|e| {
            D::Error::custom(format!(
                "neither an event nor a schedule payload with `account_ids`: {e}"
            ))
        })?;
        Ok(Trigger {
            account_ids: vec![event.account_id],
            kind: "event",
            reference: event.id,
        })
    }
}

#[async_trait]
impl Job for ChurnScore {
    const KIND: &'static str = KIND;
    type Payload = Trigger;

    async fn run(&self, ctx: &JobContext, trigger: Trigger) -> Result<JobOutput, JobError> {
        let model = self.model(ctx).await?;
        let now = kairos_core::time::now_ms();
        let features = features::account_features(&ctx.store, &ctx.tenant_id, &trigger.account_ids, now).await?;
        let language = self.language(ctx).await?;
        let t = self.config.thresholds;
        let thresholds = RiskThresholds::new(t.medium, t.high, t.critical)
            .map_err(|e| JobError::Permanent(format!("churn_score: {e}")))?;
        let config = self.config.clone();
        let job_id = ctx.job_id.clone();
        let trigger2 = trigger.clone();
        let (rows, alerts) = tokio::task::spawn_blocking(move || {
            score_rows(
                &model,
                &features,
                &trigger2,
                &thresholds,
                &config,
                &language,
                &job_id,
                now,
            )
        })
        .await
        .map_err(|e| JobError::Retryable(format!("churn_score: scoring task failed: {e}")))?
        .map_err(|e| JobError::Permanent(format!("churn_score: {e}")))?;
        scores::store_scores(&ctx.store, &ctx.tenant_id, &rows, &alerts).await?;
        let result_ref = match trigger.account_ids.as_slice() {
            [one] => format!("churn_scores/{one}"),
            many => format!("churn_scores ({} accounts)", many.len()),
        };
        Ok(JobOutput {
            result_ref: Some(result_ref),
        })
    }
}

/// Score rows, and the alerts they raise.
type Scored = (Vec<scores::ScoreRow>, Vec<kairos_core::store::NewAlert>);

/// Scores and explains each account; builds the rows and CRITICAL alerts.
#[allow(clippy::too_many_arguments)]
fn score_rows(
    model: &ChurnModel,
    features: &[AccountFeatures],
    trigger: &Trigger,
    thresholds: &RiskThresholds,
    config: &ChurnConfig,
    language: &str,
    job_id: &str,
    now: i64,
) -> Result<Scored, ChurnError> {
    let day = kairos_core::time::to_rfc3339(now).chars().take(10).collect::<String>();
    let mut rows = Vec::with_capacity(features.len());
    let mut alerts = Vec::new();
    for (account_id, f) in trigger.account_ids.iter().zip(features) {
        let e = model.explain_account(f, TOP_FACTORS)?;
        let level = thresholds.level(e.probability);
        let factors = describe::factors_json(&e.factors, language);
        let actions = describe::actions_json(&e.factors, config);
        if level == kairos_models::churn::RiskLevel::Critical {
            let dedup = format!("churn_critical|{account_id}|{day}");
            alerts.push(kairos_core::store::NewAlert {
                id: uuid_like(&dedup, job_id),
                account_id: account_id.clone(),
                kind: "churn_critical".into(),
                severity: "critical".into(),
                reason: format!(
                    "churn probability {:.0}% (CRITICAL) for account {account_id}",
                    e.probability * 100.0
                ),
                payload: json!({ "probability": e.probability, "model_version": model.version(),
                                 "factors": factors, "actions": actions }),
                dedup_key: dedup,
                event_id: None,
                urgency: None,
                created_at: now,
            });
        }
        rows.push(scores::ScoreRow {
            account_id: account_id.clone(),
            probability: e.probability,
            risk_level: level.as_str().into(),
            factors,
            actions,
            features: serde_json::to_value(f).unwrap_or(Value::Null),
            model_version: model.version().into(),
            trigger_kind: trigger.kind.into(),
            trigger_ref: trigger.reference.clone(),
            job_id: job_id.into(),
            scored_at: now,
        });
    }
    Ok((rows, alerts))
}

/// A readable unique id for an alert row (the dedup key decides uniqueness).
fn uuid_like(dedup: &str, job_id: &str) -> String {
    format!("{job_id}|{dedup}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(payload: &str) -> Result<Trigger, String> {
        serde_json::from_str(payload).map_err(|e| e.to_string())
    }

    #[test]
    fn payloads() {
        let t = parse(r#"{"account_ids":["a","b"],"schedule":"daily-churn","tick":"2026-01-01T09:00:00Z"}"#).unwrap();
        assert_eq!(t.account_ids, ["a", "b"]);
        assert_eq!(t.reference, "daily-churn@2026-01-01T09:00:00Z");
        let t = parse(r#"{"id":"e1","type":"payment.failed","account_id":"acct-1","occurred_at_ms":1}"#).unwrap();
        assert_eq!((t.kind, t.reference.as_str()), ("event", "e1"));
        assert!(parse(r#"{"foo":1}"#).unwrap_err().contains("neither"));
        assert!(parse(r#"{"account_ids":[1]}"#).unwrap_err().contains("account_ids"));
    }
}
