//! The stored reference distribution of each model version's training rows
//! (`model_baselines`), written when a model is trained from the store.

use kairos_core::Store;
use sqlx::Row;

use super::psi::Baseline;

/// Why a baseline could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// The stored JSON is not a baseline.
    #[error("stored baseline: {0}")]
    Json(#[from] serde_json::Error),
}

/// Stores `version`'s baseline (replacing none: the first one stays).
pub async fn save(store: &Store, version: &str, baseline: &Baseline, rows: usize) -> Result<(), BaselineError> {
    sqlx::query(
        "INSERT INTO model_baselines (version, baseline, rows, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (version) DO NOTHING",
    )
    .bind(version)
    .bind(serde_json::to_string(baseline)?)
    .bind(rows as i64)
    .bind(kairos_core::time::now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// `version`'s baseline, if it was trained with one.
pub async fn load(store: &Store, version: &str) -> Result<Option<Baseline>, BaselineError> {
    let row = sqlx::query("SELECT baseline FROM model_baselines WHERE version = $1")
        .bind(version)
        .fetch_optional(store.pool())
        .await?;
    match row {
        Some(r) => Ok(Some(serde_json::from_str(&r.try_get::<String, _>("baseline")?)?)),
        None => Ok(None),
    }
}
