//! `churn_scores` (every scoring of an account, history kept), written with
//! the CRITICAL alerts they raise; reads for the API, the CLI and the demo.

use kairos_core::store::{raise_alert, NewAlert};
use kairos_core::Store;
use sqlx::Row;

use super::ChurnStoreError;

/// One stored score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    /// Account id.
    pub account_id: String,
    /// Churn probability.
    pub probability: f64,
    /// `LOW` | `MEDIUM` | `HIGH` | `CRITICAL`.
    pub risk_level: String,
    /// Top factors (JSON array).
    pub factors: serde_json::Value,
    /// Recommended actions (JSON array).
    pub actions: serde_json::Value,
    /// The features that were scored (JSON object).
    pub features: serde_json::Value,
    /// Model version used.
    pub model_version: String,
    /// `event` or `schedule`.
    pub trigger_kind: String,
    /// Event id, or `schedule@tick`.
    pub trigger_ref: String,
    /// The job run that scored it.
    pub job_id: String,
    /// Epoch ms.
    pub scored_at: i64,
}

const COLUMNS: &str = "account_id, probability, risk_level, factors, actions, features, model_version, \
                       trigger_kind, trigger_ref, job_id, scored_at";

fn score_from_row(r: &sqlx::any::AnyRow) -> Result<ScoreRow, ChurnStoreError> {
    let json = |c: &str| -> Result<serde_json::Value, ChurnStoreError> {
        let s: String = r.try_get(c)?;
        Ok(serde_json::from_str(&s)?)
    };
    Ok(ScoreRow {
        account_id: r.try_get("account_id")?,
        probability: r.try_get("probability")?,
        risk_level: r.try_get("risk_level")?,
        factors: json("factors")?,
        actions: json("actions")?,
        features: json("features")?,
        model_version: r.try_get("model_version")?,
        trigger_kind: r.try_get("trigger_kind")?,
        trigger_ref: r.try_get("trigger_ref")?,
        job_id: r.try_get("job_id")?,
        scored_at: r.try_get("scored_at")?,
    })
}

/// Stores scores (and alerts) in one transaction. A score's id is its job
/// id + account, so a re-delivered job overwrites its own rows; an alert's
/// `dedup_key` makes raising it again a no-op.
pub async fn store_scores(
    store: &Store,
    tenant_id: &str,
    scores: &[ScoreRow],
    alerts: &[NewAlert],
) -> Result<(), ChurnStoreError> {
    let mut tx = store.pool().begin().await?;
    for s in scores {
        sqlx::query(
            "INSERT INTO churn_scores (id, tenant_id, account_id, probability, risk_level, factors, actions, features, \
                 model_version, trigger_kind, trigger_ref, job_id, scored_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET probability = excluded.probability, risk_level = excluded.risk_level, \
                 factors = excluded.factors, actions = excluded.actions, features = excluded.features, \
                 model_version = excluded.model_version, scored_at = excluded.scored_at",
        )
        .bind(format!("{}|{}", s.job_id, s.account_id))
        .bind(tenant_id)
        .bind(&s.account_id)
        .bind(s.probability)
        .bind(&s.risk_level)
        .bind(s.factors.to_string())
        .bind(s.actions.to_string())
        .bind(s.features.to_string())
        .bind(&s.model_version)
        .bind(&s.trigger_kind)
        .bind(&s.trigger_ref)
        .bind(&s.job_id)
        .bind(s.scored_at)
        .execute(&mut *tx)
        .await?;
    }
    for a in alerts {
        raise_alert(&mut tx, tenant_id, a).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// An account's scores, newest first (at most `limit`).
pub async fn history(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    limit: i64,
) -> Result<Vec<ScoreRow>, ChurnStoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM churn_scores WHERE tenant_id = $1 AND account_id = $2 \
         ORDER BY scored_at DESC, id DESC LIMIT $3"
    ))
    .bind(tenant_id)
    .bind(account_id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(score_from_row).collect()
}

/// The latest score of every scored account of a tenant, by account id.
pub async fn latest(store: &Store, tenant_id: &str) -> Result<Vec<ScoreRow>, ChurnStoreError> {
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("s.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!(
        "SELECT {cols} FROM churn_scores s \
         JOIN (SELECT account_id, MAX(scored_at) AS m FROM churn_scores WHERE tenant_id = $1 GROUP BY account_id) l \
           ON s.account_id = l.account_id AND s.scored_at = l.m \
         WHERE s.tenant_id = $2 ORDER BY s.account_id, s.id DESC"
    ))
    .bind(tenant_id)
    .bind(tenant_id)
    .fetch_all(store.pool())
    .await?;
    let mut out: Vec<ScoreRow> = Vec::with_capacity(rows.len());
    for r in &rows {
        let s = score_from_row(r)?;
        // Two scorings in the same millisecond: keep one.
        if out.last().is_some_and(|l| l.account_id == s.account_id) {
            continue;
        }
        out.push(s);
    }
    Ok(out)
}
