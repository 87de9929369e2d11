//! Scoring on demand: rows sent by a caller (the API's `POST
//! /v1/churn:score`) scored with a registered model, nothing stored. The
//! model's own preprocessing is applied, as in `kairos score churn`.

use std::collections::HashSet;

use kairos_core::Store;
use kairos_models::churn::{ChurnError, Factor, FieldValue, Record};
use serde_json::{Map, Value};

use super::registry;
use super::ChurnStoreError;

/// Why rows could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    /// No version named and none active for the tenant.
    #[error("no churn model is active for this tenant; name one with `model`")]
    NoActiveModel,
    /// The named version does not exist for this tenant (another tenant's model does not exist either).
    #[error("no churn model {0}")]
    NotFound(String),
    /// A row's value is not usable; `field` is its path (`rows[2].tenure`).
    #[error("{field}: {reason}")]
    Field {
        /// Path of the bad value.
        field: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(ChurnStoreError),
}

/// One scored row.
#[derive(Debug, Clone)]
pub struct ScoredRow {
    /// Churn probability.
    pub probability: f64,
    /// `LOW` … `CRITICAL`.
    pub risk_level: String,
    /// Above the model's decision threshold.
    pub churn: bool,
    /// Largest contributions, largest first.
    pub factors: Vec<Factor>,
}

/// The rows scored by one model.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Version used.
    pub model_version: String,
    /// Its decision threshold.
    pub threshold: f64,
    /// In the order of the rows.
    pub rows: Vec<ScoredRow>,
}

/// Scores `rows` (objects keyed by the model's column names) with `version`, or the tenant's active model,
/// explaining `explain` factors each. A column the model does not have is an error naming it (a typo
/// must not silently become "missing"); an absent column or `null` is missing.
pub async fn score(
    store: &Store,
    tenant_id: &str,
    version: Option<&str>,
    rows: &[Map<String, Value>],
    explain: usize,
) -> Result<Scored, OnDemandError> {
    let version = match version {
        Some(v) => v.to_string(),
        None => registry::active_version(store, tenant_id)
            .await
            .map_err(OnDemandError::Store)?
            .ok_or(OnDemandError::NoActiveModel)?,
    };
    let (info, model) = match registry::get(store, &version).await {
        Ok(found) => found,
        Err(ChurnStoreError::NotFound(_)) => return Err(OnDemandError::NotFound(version)),
        Err(e) => return Err(OnDemandError::Store(e)),
    };
    if info.scope.as_deref().is_some_and(|s| s != tenant_id) {
        return Err(OnDemandError::NotFound(version));
    }
    let known: HashSet<&str> = model.schema().features.iter().map(|f| f.name.as_str()).collect();
    let mut scored = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut record = Record::new();
        for (column, value) in row {
            let field = || format!("rows[{i}].{column}");
            if !known.contains(column.as_str()) {
                let mut columns: Vec<&str> = known.iter().copied().collect();
                columns.sort_unstable();
                return Err(OnDemandError::Field {
                    field: field(),
                    reason: format!("not a column of model {version} (its columns: {})", columns.join(", ")),
                });
            }
            let value = match value {
                Value::Null => FieldValue::Missing,
                Value::Number(n) => FieldValue::Number(n.as_f64().ok_or_else(|| OnDemandError::Field {
                    field: field(),
                    reason: "not a finite number".into(),
                })?),
                Value::String(s) => FieldValue::Text(s.clone()),
                _ => {
                    return Err(OnDemandError::Field {
                        field: field(),
                        reason: "must be a number, a string or null".into(),
                    })
                }
            };
            record.insert(column.clone(), value);
        }
        let explanation = model.explain_record(&record, explain).map_err(|e| match e {
            ChurnError::BadValue { column, reason, .. } => OnDemandError::Field {
                field: format!("rows[{i}].{column}"),
                reason,
            },
            other => OnDemandError::Field {
                field: format!("rows[{i}]"),
                reason: other.to_string(),
            },
        })?;
        scored.push(ScoredRow {
            probability: explanation.probability,
            risk_level: explanation.risk.to_string(),
            churn: model.predict_churn(explanation.probability),
            factors: explanation.factors,
        });
    }
    Ok(Scored {
        model_version: version,
        threshold: model.threshold(),
        rows: scored,
    })
}
