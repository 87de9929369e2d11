//! `churn_retrain`: champion / challenger retraining from the store.
//!
//! Each run trains a challenger on a window that ends where the evaluation
//! window starts, and scores challenger and champion (the tenant's active
//! model) on the same recent held-out window — accounts as of
//! `now − horizon`, labelled by what happened since. Both are judged on
//! data neither saw, out of time, which is how the model will be used. The
//! challenger becomes active only if its AUC beats the champion's by
//! `margin`; the decision is recorded either way ([`Evaluation`]), with the
//! reason, so "why is this model active?" always has an answer.
//!
//! What is measured is what ships: the promoted model is exactly the one
//! evaluated (not refitted on the evaluation window afterwards).
//!
//! Idempotent per job: the evaluation row's id is the job id and the
//! challenger's version derives from it, so a retried attempt finishes the
//! same decision instead of training a second challenger.

use std::time::Duration;

use async_trait::async_trait;
use kairos_core::config::KeyError;
use kairos_core::store::Tenant;
use kairos_core::Store;
use kairos_models::churn::{self as models, roc_auc, ChurnModel, TrainConfig};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{check_account_schema, registry, training, ChurnStoreError};
use crate::model_registry::GLOBAL;
use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "churn_retrain";

/// The metric champion and challenger are compared on.
pub const METRIC: &str = "auc";

/// `[churn.retrain]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// Label window: an account is a churner if it churned within this
    /// after the cutoff. The evaluation window is the last `horizon`, the
    /// training window the one before it.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// AUC the challenger must gain over the champion to replace it.
    pub margin: f64,
    /// Fewer labelled accounts than this in either window: skipped.
    pub min_rows: usize,
    /// Fewer churners than this in either window: skipped (an AUC on a
    /// handful of churners is noise).
    pub min_positives: usize,
    /// Split and search seed.
    pub seed: u64,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(30 * 86_400),
            margin: 0.01,
            min_rows: 100,
            min_positives: 10,
            seed: 42,
        }
    }
}

impl RetrainConfig {
    /// Checks values serde cannot; errors name the key under `churn.retrain.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.horizon < Duration::from_secs(86_400) {
            return Err(("horizon".into(), "must be at least 1d".into()));
        }
        if !(0.0..=0.5).contains(&self.margin) {
            return Err(("margin".into(), format!("{} is not in [0, 0.5]", self.margin)));
        }
        if self.min_rows < 10 {
            return Err(("min_rows".into(), "must be at least 10".into()));
        }
        if self.min_positives < 2 {
            return Err(("min_positives".into(), "must be at least 2".into()));
        }
        Ok(())
    }
}

/// One recorded retraining decision.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evaluation {
    /// The retraining job's id.
    pub id: String,
    /// Tenant id; `null` for a global model.
    pub scope: Option<String>,
    /// The version trained; `null` when skipped before training.
    pub challenger: Option<String>,
    /// The version active when it ran; `null` when none was.
    pub champion: Option<String>,
    /// `auc`.
    pub metric: String,
    /// The challenger's AUC on the evaluation window.
    pub challenger_value: Option<f64>,
    /// The champion's AUC on the same window.
    pub champion_value: Option<f64>,
    /// Gain required to promote.
    pub margin: f64,
    /// Evaluation window start (RFC 3339; epoch ms in Rust).
    #[serde(serialize_with = "crate::monitor::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub window_start: i64,
    /// Evaluation window end.
    #[serde(serialize_with = "crate::monitor::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub window_end: i64,
    /// Accounts scored in the evaluation window.
    pub rows_evaluated: i64,
    /// Churners among them.
    pub positives: i64,
    /// `promoted`, `kept` or `skipped`.
    pub decision: String,
    /// Why, in words.
    pub reason: String,
    /// Decided at.
    #[serde(serialize_with = "crate::monitor::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// The challenger's version for a retraining job.
pub fn challenger_version(job_id: &str) -> String {
    format!("churn-retrain-{job_id}")
}

/// Retrains `tenant`'s churn model as of `now_ms` and records the decision
/// under `id` (returns the recorded one if `id` was decided already).
pub async fn retrain(
    store: &Store,
    tenant: &Tenant,
    config: &RetrainConfig,
    now_ms: i64,
    id: &str,
) -> Result<Evaluation, ChurnStoreError> {
    if let Some(done) = evaluation(store, id).await? {
        return Ok(done);
    }
    let horizon = i64::try_from(config.horizon.as_millis()).unwrap_or(i64::MAX / 4);
    let (eval_cutoff, train_cutoff) = (now_ms - horizon, now_ms - 2 * horizon);
    let champion = registry::active_version(store, &tenant.id).await?;
    let mut e = Evaluation {
        id: id.to_owned(),
        scope: Some(tenant.id.clone()),
        challenger: None,
        champion: champion.clone(),
        metric: METRIC.into(),
        challenger_value: None,
        champion_value: None,
        margin: config.margin,
        window_start: eval_cutoff,
        window_end: now_ms,
        rows_evaluated: 0,
        positives: 0,
        decision: "skipped".into(),
        reason: String::new(),
        created_at: now_ms,
    };
    let tenants = std::slice::from_ref(tenant);
    let held_out = training::store_dataset(store, tenants, eval_cutoff, horizon).await?;
    if let Some(h) = &held_out {
        e.rows_evaluated = h.labels.len() as i64;
        e.positives = h.positives() as i64;
    }
    let train_rows = training::store_dataset(store, tenants, train_cutoff, horizon).await?;
    let (Some(held_out), Some(train_rows)) = (
        held_out.filter(|d| enough(d, config, &mut e.reason, "evaluation")),
        train_rows.filter(|d| enough(d, config, &mut e.reason, "training")),
    ) else {
        if e.reason.is_empty() {
            e.reason = "no labelled accounts in the training or evaluation window".into();
        }
        record(store, &e).await?;
        return Ok(e);
    };

    let version = challenger_version(id);
    let challenger = match registry::load(store, &version).await {
        Ok(model) => model,
        Err(ChurnStoreError::NotFound(_)) => {
            let (data, seed, v) = (train_rows.dataset.clone(), config.seed, version.clone());
            let model = tokio::task::spawn_blocking(move || {
                let config = TrainConfig {
                    seed,
                    version: Some(v),
                    refit_on_all: true,
                    ..TrainConfig::default()
                };
                models::train(&data, &config).map(|o| o.model)
            })
            .await
            .map_err(|e| ChurnStoreError::Schema(format!("training panicked: {e}")))??;
            let source = format!(
                "retrain cutoff={} horizon={}d",
                kairos_core::time::to_rfc3339(train_cutoff),
                horizon / super::features::DAY_MS
            );
            training::register(store, &model, Some(&tenant.id), &source, &train_rows.features).await?;
            model
        }
        Err(other) => return Err(other),
    };
    e.challenger = Some(version.clone());

    let champion_model = match &champion {
        Some(v) => {
            let m = registry::load(store, v).await?;
            match check_account_schema(&m) {
                Ok(()) => Some(m),
                Err(why) => {
                    e.reason = format!("the active model cannot score accounts ({why}); ");
                    None
                }
            }
        }
        None => None,
    };
    let (ch, champ) = score(
        challenger,
        champion_model,
        held_out.features.clone(),
        held_out.labels.clone(),
    )
    .await?;
    e.challenger_value = Some(ch);
    e.champion_value = champ;
    let promote = match champ {
        None => {
            e.reason.push_str("no active model to compare with");
            true
        }
        Some(c) if ch >= c + config.margin => {
            e.reason.push_str(&format!(
                "AUC {ch:.4} beats the champion's {c:.4} by at least {}",
                config.margin
            ));
            true
        }
        Some(c) => {
            e.reason.push_str(&format!(
                "AUC {ch:.4} does not beat the champion's {c:.4} by {} (the champion stays)",
                config.margin
            ));
            false
        }
    };
    if promote {
        registry::activate(store, &version, Some(&tenant.id)).await?;
    }
    e.decision = if promote { "promoted" } else { "kept" }.into();
    record(store, &e).await?;
    Ok(e)
}

fn enough(d: &training::StoreDataset, c: &RetrainConfig, reason: &mut String, window: &str) -> bool {
    let (rows, pos) = (d.labels.len(), d.positives());
    let why = if rows < c.min_rows {
        format!(
            "{window} window: {rows} labelled accounts, fewer than min_rows = {}",
            c.min_rows
        )
    } else if pos < c.min_positives {
        format!(
            "{window} window: {pos} churned accounts, fewer than min_positives = {}",
            c.min_positives
        )
    } else if pos == rows {
        format!("{window} window: every account churned")
    } else {
        return true;
    };
    if reason.is_empty() {
        *reason = why;
    }
    false
}

/// AUC of the challenger (and of the champion, when there is one) on the held-out rows, off the runtime.
async fn score(
    challenger: ChurnModel,
    champion: Option<ChurnModel>,
    rows: Vec<kairos_models::churn::AccountFeatures>,
    labels: Vec<bool>,
) -> Result<(f64, Option<f64>), ChurnStoreError> {
    tokio::task::spawn_blocking(move || {
        let auc = |m: &ChurnModel| -> Result<f64, ChurnStoreError> {
            let p = m.score_accounts(&rows)?;
            Ok(roc_auc(&p, &labels)?)
        };
        let ch = auc(&challenger)?;
        let champ = champion.as_ref().map(auc).transpose()?;
        Ok((ch, champ))
    })
    .await
    .map_err(|e| ChurnStoreError::Schema(format!("scoring panicked: {e}")))?
}

async fn record(store: &Store, e: &Evaluation) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO model_evaluations (id, kind, scope, challenger, champion, metric, challenger_value, \
         champion_value, margin, window_start, window_end, rows_evaluated, positives, decision, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&e.id)
    .bind(registry::KIND)
    .bind(e.scope.as_deref().unwrap_or(GLOBAL))
    .bind(e.challenger.as_deref())
    .bind(e.champion.as_deref())
    .bind(&e.metric)
    .bind(e.challenger_value)
    .bind(e.champion_value)
    .bind(e.margin)
    .bind(e.window_start)
    .bind(e.window_end)
    .bind(e.rows_evaluated)
    .bind(e.positives)
    .bind(&e.decision)
    .bind(&e.reason)
    .bind(e.created_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

const COLUMNS: &str = "id, scope, challenger, champion, metric, challenger_value, champion_value, margin, \
    window_start, window_end, rows_evaluated, positives, decision, reason, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Evaluation, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    Ok(Evaluation {
        id: r.try_get("id")?,
        scope: (scope != GLOBAL).then_some(scope),
        challenger: r.try_get("challenger")?,
        champion: r.try_get("champion")?,
        metric: r.try_get("metric")?,
        challenger_value: r.try_get("challenger_value")?,
        champion_value: r.try_get("champion_value")?,
        margin: r.try_get("margin")?,
        window_start: r.try_get("window_start")?,
        window_end: r.try_get("window_end")?,
        rows_evaluated: r.try_get("rows_evaluated")?,
        positives: r.try_get("positives")?,
        decision: r.try_get("decision")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The decision recorded under `id`, if any.
pub async fn evaluation(store: &Store, id: &str) -> Result<Option<Evaluation>, sqlx::Error> {
    let r = sqlx::query(&format!("SELECT {COLUMNS} FROM model_evaluations WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    r.as_ref().map(from_row).transpose()
}

/// A tenant's recorded decisions, newest first.
pub async fn evaluations(store: &Store, tenant_id: &str, limit: u32) -> Result<Vec<Evaluation>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM model_evaluations WHERE kind = $1 AND scope = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(registry::KIND)
    .bind(tenant_id)
    .bind(i64::from(limit.clamp(1, 1000)))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The retraining job: one tenant per job (schedule `fan_out = "per_tenant"`).
#[derive(Debug, Clone)]
pub struct ChurnRetrain {
    config: RetrainConfig,
}

impl ChurnRetrain {
    /// A job using `config`.
    pub fn new(config: RetrainConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Job for ChurnRetrain {
    const KIND: &'static str = KIND;
    /// The schedule's payload; nothing in it is needed.
    type Payload = serde_json::Value;

    async fn run(&self, ctx: &JobContext, _payload: serde_json::Value) -> Result<JobOutput, JobError> {
        let tenant = ctx
            .store
            .find_tenant(&ctx.tenant_id)
            .await
            .map_err(|e| JobError::Retryable(format!("{KIND}: reading tenant: {e}")))?;
        let now = kairos_core::time::now_ms();
        let e = retrain(&ctx.store, &tenant, &self.config, now, &ctx.job_id)
            .await
            .map_err(|e| match e {
                ChurnStoreError::Store(e) => JobError::Retryable(format!("{KIND}: store: {e}")),
                other => JobError::Permanent(format!("{KIND}: {other}")),
            })?;
        tracing::info!(tenant = %tenant.name, decision = %e.decision, reason = %e.reason, "churn retraining");
        Ok(JobOutput {
            result_ref: Some(format!("model_evaluations/{}", e.id)),
        })
    }
}
