//! Churn model versions in the shared [`crate::model_registry`]: the
//! artifact is a `ChurnModel` JSON.

use kairos_core::Store;
use kairos_models::churn::ChurnModel;

use crate::model_registry::{self as reg, NewModel};
pub use crate::model_registry::{ModelInfo, GLOBAL};

use super::ChurnStoreError;

/// The registry kind of churn models.
pub const KIND: &str = "churn";

/// Stores a trained model as a new version (inactive).
pub async fn register(
    store: &Store,
    model: &ChurnModel,
    scope: Option<&str>,
    source: &str,
) -> Result<(), ChurnStoreError> {
    let new = NewModel {
        version: model.version(),
        kind: KIND,
        scope,
        artifact: serde_json::to_string(model)?,
        metrics: serde_json::to_string(model.metrics())?,
        schema: serde_json::to_string(model.schema())?,
        source,
    };
    Ok(reg::register(store, &new).await?)
}

/// Every churn model version, newest first.
pub async fn list(store: &Store) -> Result<Vec<ModelInfo>, ChurnStoreError> {
    Ok(reg::list(store, KIND).await?)
}

/// One version's info and its model.
pub async fn get(store: &Store, version: &str) -> Result<(ModelInfo, ChurnModel), ChurnStoreError> {
    let info = reg::info(store, KIND, version).await?;
    let model = load(store, version).await?;
    Ok((info, model))
}

/// Loads and validates a version's artifact.
pub async fn load(store: &Store, version: &str) -> Result<ChurnModel, ChurnStoreError> {
    let artifact = reg::artifact(store, KIND, version).await?;
    Ok(ChurnModel::from_json(artifact.as_bytes())?)
}

/// Makes `version` the active churn model for `scope` (a tenant id, or
/// `None` = global). Takes effect for the next job once workers re-check
/// (`churn.model_refresh`).
pub async fn activate(store: &Store, version: &str, scope: Option<&str>) -> Result<(), ChurnStoreError> {
    Ok(reg::activate(store, KIND, version, scope).await?)
}

/// The version a tenant's jobs use: its own active model, else the global one.
pub async fn active_version(store: &Store, tenant_id: &str) -> Result<Option<String>, ChurnStoreError> {
    Ok(reg::active_version(store, KIND, tenant_id).await?)
}
