//! Model monitoring: what each active model has been doing, week by week,
//! and whether its inputs still look like its training data.
//!
//! - churn (the tenant's active model): scorings per ISO week (UTC), mean
//!   probability, risk-level mix, and input drift as the population
//!   stability index ([`psi`]) of each feature against the model's
//!   training rows ([`baselines`]; a model trained without one — from a
//!   CSV, or before baselines existed — is compared with its first
//!   monitored week, and the report says so);
//! - sentiment: scorings per week, label mix and the low-confidence rate
//!   (the label's probability under `low_confidence`), per model version;
//! - the recorded champion / challenger decisions
//!   ([`crate::churn::retrain`]).
//!
//! The `model_monitor` job computes the report for a tenant and raises a
//! `model_drift` alert (once per model and week) when a feature's PSI in
//! the latest week reaches `drift_alert_psi`. `kairos models monitor` and
//! `GET /v1/models/monitor` show the same report.

pub mod baselines;
pub mod psi;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{Datelike, TimeZone, Utc};
use kairos_core::config::KeyError;
use kairos_core::store::{raise_alert, NewAlert};
use kairos_core::Store;
use kairos_models::churn::AccountFeatures;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::churn::registry;
use crate::churn::retrain::{self, Evaluation};
use crate::{Job, JobContext, JobError, JobOutput};
use psi::{Baseline, FeatureBaseline};

/// The job kind.
pub const KIND: &str = "model_monitor";

/// The alert kind raised on input drift.
pub const DRIFT_ALERT: &str = "model_drift";

/// Most weeks a report covers.
pub const MAX_WEEKS: u32 = 52;

const WEEK_MS: i64 = 7 * 86_400_000;

/// `[monitor]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Weeks a report covers (the current one included).
    pub weeks: u32,
    /// PSI at or above which a feature counts as drifted and the job raises an alert.
    pub drift_alert_psi: f64,
    /// A sentiment label whose probability is below this is "low confidence".
    pub low_confidence: f64,
    /// Weeks with fewer scorings than this get no PSI (too few rows to bin).
    pub min_rows: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            weeks: 8,
            drift_alert_psi: 0.25,
            low_confidence: 0.6,
            min_rows: 30,
        }
    }
}

impl MonitorConfig {
    /// Checks values serde cannot; errors name the key under `monitor.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if !(1..=MAX_WEEKS).contains(&self.weeks) {
            return Err(("weeks".into(), format!("{} is not in 1..={MAX_WEEKS}", self.weeks)));
        }
        if !(self.drift_alert_psi > 0.0 && self.drift_alert_psi.is_finite()) {
            return Err(("drift_alert_psi".into(), "must be a positive number".into()));
        }
        if !(0.0..=1.0).contains(&self.low_confidence) {
            return Err((
                "low_confidence".into(),
                format!("{} is not in [0, 1]", self.low_confidence),
            ));
        }
        if self.min_rows < 10 {
            return Err(("min_rows".into(), "must be at least 10".into()));
        }
        Ok(())
    }
}

/// A tenant's models, week by week.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonitorReport {
    /// The tenant.
    pub tenant_id: String,
    /// First week covered: its Monday 00:00 UTC (RFC 3339; epoch ms in Rust).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: i64,
    /// The active churn model's weeks; `null` when the tenant has no active churn model.
    pub churn: Option<ChurnMonitor>,
    /// Sentiment scorings per week (all model versions).
    pub sentiment: Vec<SentimentWeek>,
    /// Recent champion / challenger decisions, newest first.
    pub evaluations: Vec<Evaluation>,
}

/// The active churn model's weeks.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChurnMonitor {
    /// The active version.
    pub model_version: String,
    /// What drift is measured against: `training rows` or `first week YYYY-Www`.
    pub reference: String,
    /// PSI threshold of a drifted feature.
    pub drift_threshold: f64,
    /// Weeks with scorings, oldest first.
    pub weeks: Vec<ChurnWeek>,
}

/// One week of a churn model's scorings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChurnWeek {
    /// ISO week, e.g. `2026-W48`.
    pub week: String,
    /// Scorings.
    pub scored: u64,
    /// Mean churn probability.
    pub mean_probability: f64,
    /// Scorings per risk level.
    pub levels: BTreeMap<String, u64>,
    /// PSI per feature; empty when the week has fewer than `min_rows` scorings.
    pub psi: BTreeMap<String, f64>,
    /// Features whose PSI reached the threshold, worst first.
    pub drifted: Vec<String>,
}

/// One week of sentiment scorings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SentimentWeek {
    /// ISO week.
    pub week: String,
    /// Scorings.
    pub scored: u64,
    /// Scorings per label.
    pub labels: BTreeMap<String, u64>,
    /// Share of scorings whose label's probability was below `low_confidence`.
    pub low_confidence_rate: f64,
    /// Model versions that scored this week.
    pub model_versions: Vec<String>,
}

/// Serialises epoch ms as RFC 3339, as every API time is.
pub(crate) fn rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&kairos_core::time::to_rfc3339(*ms))
}

/// `2026-W48` for a time.
pub fn iso_week(ms: i64) -> String {
    let t = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    let w = t.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// Monday 00:00 UTC of the week `weeks − 1` weeks before `now_ms`'s.
fn since(now_ms: i64, weeks: u32) -> i64 {
    let t = Utc.timestamp_millis_opt(now_ms).single().unwrap_or_default();
    let monday = t.date_naive() - chrono::Duration::days(i64::from(t.weekday().num_days_from_monday()));
    let start = monday
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis();
    start - i64::from(weeks.saturating_sub(1)) * WEEK_MS
}

/// The report for `tenant_id` over the last `weeks` weeks as of `now_ms`.
pub async fn report(
    store: &Store,
    tenant_id: &str,
    config: &MonitorConfig,
    weeks: u32,
    now_ms: i64,
) -> Result<MonitorReport, MonitorError> {
    let since = since(now_ms, weeks.clamp(1, MAX_WEEKS));
    let churn = match registry::active_version(store, tenant_id).await? {
        Some(version) => Some(churn_weeks(store, tenant_id, &version, since, config).await?),
        None => None,
    };
    Ok(MonitorReport {
        tenant_id: tenant_id.to_owned(),
        since,
        churn,
        sentiment: sentiment_weeks(store, tenant_id, since, config).await?,
        evaluations: retrain::evaluations(store, tenant_id, 10).await?,
    })
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored JSON column could not be read.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The model registry failed.
    #[error(transparent)]
    Registry(#[from] crate::churn::ChurnStoreError),
    /// A baseline could not be read.
    #[error(transparent)]
    Baseline(#[from] baselines::BaselineError),
}

/// One week's churn scorings: (ISO week, probabilities, levels, feature rows).
type WeekRows = (String, Vec<f64>, BTreeMap<String, u64>, Vec<AccountFeatures>);

async fn churn_weeks(
    store: &Store,
    tenant_id: &str,
    version: &str,
    since: i64,
    config: &MonitorConfig,
) -> Result<ChurnMonitor, MonitorError> {
    let rows = sqlx::query(
        "SELECT probability, risk_level, features, scored_at FROM churn_scores \
         WHERE tenant_id = $1 AND model_version = $2 AND scored_at >= $3 ORDER BY scored_at",
    )
    .bind(tenant_id)
    .bind(version)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut weeks: Vec<WeekRows> = Vec::new();
    for r in &rows {
        let week = iso_week(r.try_get("scored_at")?);
        if weeks.last().is_none_or(|w| w.0 != week) {
            weeks.push((week, Vec::new(), BTreeMap::new(), Vec::new()));
        }
        let Some(w) = weeks.last_mut() else { continue };
        w.1.push(r.try_get("probability")?);
        *w.2.entry(r.try_get("risk_level")?).or_insert(0) += 1;
        w.3.push(serde_json::from_str(&r.try_get::<String, _>("features")?)?);
    }
    let (baseline, reference): (Option<Baseline>, String) = match baselines::load(store, version).await? {
        Some(b) => (Some(b), "training rows".into()),
        None => match weeks.iter().find(|w| w.3.len() >= config.min_rows) {
            Some(first) => (
                Some(crate::churn::training::baseline(&first.3)),
                format!("first week {}", first.0),
            ),
            None => (None, "none yet (no week with enough scorings)".into()),
        },
    };
    let weeks = weeks
        .into_iter()
        .map(|(week, probs, levels, features)| {
            let psi = match &baseline {
                Some(b) if features.len() >= config.min_rows => feature_psi(b, &features),
                _ => BTreeMap::new(),
            };
            let mut drifted: Vec<(&String, &f64)> = psi.iter().filter(|(_, v)| **v >= config.drift_alert_psi).collect();
            drifted.sort_by(|a, b| b.1.total_cmp(a.1));
            let drifted = drifted.into_iter().map(|(k, _)| k.clone()).collect();
            ChurnWeek {
                week,
                scored: probs.len() as u64,
                mean_probability: probs.iter().sum::<f64>() / probs.len().max(1) as f64,
                levels,
                psi,
                drifted,
            }
        })
        .collect();
    Ok(ChurnMonitor {
        model_version: version.to_owned(),
        reference,
        drift_threshold: config.drift_alert_psi,
        weeks,
    })
}

fn feature_psi(baseline: &Baseline, rows: &[AccountFeatures]) -> BTreeMap<String, f64> {
    let values: Vec<_> = rows.iter().map(AccountFeatures::values).collect();
    AccountFeatures::FEATURE_NAMES
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let b: &FeatureBaseline = baseline.get(*name)?;
            let column: Vec<Option<f64>> = values.iter().map(|v| v[i]).collect();
            // Rounded so reports and alerts read the same figure.
            Some(((*name).to_owned(), (b.psi(&column) * 10_000.0).round() / 10_000.0))
        })
        .collect()
}

async fn sentiment_weeks(
    store: &Store,
    tenant_id: &str,
    since: i64,
    config: &MonitorConfig,
) -> Result<Vec<SentimentWeek>, MonitorError> {
    let rows = sqlx::query(
        "SELECT label, score, model_version, scored_at FROM sentiment_scores \
         WHERE tenant_id = $1 AND scored_at >= $2 ORDER BY scored_at",
    )
    .bind(tenant_id)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut out: Vec<(SentimentWeek, u64)> = Vec::new();
    for r in &rows {
        let week = iso_week(r.try_get("scored_at")?);
        if out.last().is_none_or(|w| w.0.week != week) {
            out.push((
                SentimentWeek {
                    week,
                    scored: 0,
                    labels: BTreeMap::new(),
                    low_confidence_rate: 0.0,
                    model_versions: Vec::new(),
                },
                0,
            ));
        }
        let Some((w, low)) = out.last_mut() else { continue };
        w.scored += 1;
        *w.labels.entry(r.try_get("label")?).or_insert(0) += 1;
        if r.try_get::<f64, _>("score")? < config.low_confidence {
            *low += 1;
        }
        let v: String = r.try_get("model_version")?;
        if !w.model_versions.contains(&v) {
            w.model_versions.push(v);
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut w, low)| {
            w.low_confidence_rate = low as f64 / w.scored.max(1) as f64;
            w
        })
        .collect())
}

/// Raises a `model_drift` alert for the latest week of `report` if a
/// feature drifted (once per model and week). Returns whether one was raised.
pub async fn raise_drift_alert(store: &Store, report: &MonitorReport, now_ms: i64) -> Result<bool, sqlx::Error> {
    let Some(churn) = &report.churn else { return Ok(false) };
    let Some(week) = churn.weeks.iter().rev().find(|w| !w.psi.is_empty()) else {
        return Ok(false);
    };
    let Some(worst) = week.drifted.first() else {
        return Ok(false);
    };
    let psi = week.psi.get(worst).copied().unwrap_or_default();
    let alert = NewAlert {
        id: uuid::Uuid::now_v7().to_string(),
        // Model-wide, not about one account.
        account_id: String::new(),
        kind: DRIFT_ALERT.into(),
        severity: "high".into(),
        reason: format!(
            "input drift on churn model {}: `{worst}` PSI {psi:.2} in {} (threshold {}; reference: {}); {} feature(s) drifted",
            churn.model_version,
            week.week,
            churn.drift_threshold,
            churn.reference,
            week.drifted.len()
        ),
        payload: serde_json::json!({
            "model_version": churn.model_version,
            "week": week.week,
            "psi": week.psi,
            "drifted": week.drifted,
            "reference": churn.reference,
        }),
        dedup_key: format!("{DRIFT_ALERT}|{}|{}", churn.model_version, week.week),
        event_id: None,
        urgency: None,
        created_at: now_ms,
    };
    let mut tx = store.pool().begin().await?;
    let raised = raise_alert(&mut tx, &report.tenant_id, &alert).await?;
    tx.commit().await?;
    Ok(raised)
}

/// The monitoring job: one tenant per job (schedule `fan_out = "per_tenant"`).
#[derive(Debug, Clone)]
pub struct ModelMonitor {
    config: MonitorConfig,
}

impl ModelMonitor {
    /// A job using `config`.
    pub fn new(config: MonitorConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Job for ModelMonitor {
    const KIND: &'static str = KIND;
    /// The schedule's payload; nothing in it is needed.
    type Payload = serde_json::Value;

    async fn run(&self, ctx: &JobContext, _payload: serde_json::Value) -> Result<JobOutput, JobError> {
        let now = kairos_core::time::now_ms();
        let r = report(&ctx.store, &ctx.tenant_id, &self.config, self.config.weeks, now)
            .await
            .map_err(|e| match e {
                MonitorError::Store(e) => JobError::Retryable(format!("{KIND}: store: {e}")),
                other => JobError::Permanent(format!("{KIND}: {other}")),
            })?;
        let raised = raise_drift_alert(&ctx.store, &r, now).await?;
        if raised {
            tracing::warn!(tenant = %ctx.tenant_id, "model drift alert raised");
        }
        Ok(JobOutput {
            result_ref: Some(format!("models/monitor/{}", ctx.tenant_id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-12-01 is a Tuesday in ISO week 49.
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap().timestamp_millis();
        assert_eq!(iso_week(now), "2026-W49");
        let monday = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap().timestamp_millis();
        assert_eq!(since(now, 1), monday);
        assert_eq!(since(now, 3), monday - 2 * WEEK_MS);
        assert_eq!(iso_week(since(now, 3)), "2026-W47");
    }

    #[test]
    fn config_is_validated_with_its_key() {
        assert!(MonitorConfig::default().validate().is_ok());
        let bad = MonitorConfig {
            weeks: 0,
            ..MonitorConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "weeks");
        let bad = MonitorConfig {
            drift_alert_psi: -1.0,
            ..MonitorConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "drift_alert_psi");
    }
}
