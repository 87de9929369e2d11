//! The model registry: every trained churn model version (artifact JSON,
//! metrics, schema) in `models`, and which one is live per scope in
//! `active_models`. Scope is a tenant id, or global ([`GLOBAL`]); a
//! tenant's own active model wins over the global one.

use kairos_core::Store;
use kairos_models::churn::ChurnModel;
use sqlx::Row;

use super::ChurnStoreError;

/// The scope value of a global model (stored as '' so that keys need no NULL handling).
pub const GLOBAL: &str = "";
/// The registry kind of churn models.
pub const KIND: &str = "churn";

/// A registered model version, without its artifact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// The version (unique).
    pub version: String,
    /// `churn`.
    pub kind: String,
    /// Tenant id it was trained for; `None` = global.
    pub scope: Option<String>,
    /// How it was trained (`store cutoff=...`, `csv FILE`).
    pub source: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Scopes where it is active (`"global"` or tenant ids).
    pub active_in: Vec<String>,
    /// Held-out metrics JSON.
    pub metrics: serde_json::Value,
}

fn scope_of(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Stores a trained model as a new version (inactive).
pub async fn register(
    store: &Store,
    model: &ChurnModel,
    scope: Option<&str>,
    source: &str,
) -> Result<(), ChurnStoreError> {
    let artifact = serde_json::to_string(model)?;
    let metrics = serde_json::to_string(model.metrics())?;
    let schema = serde_json::to_string(model.schema())?;
    sqlx::query(
        "INSERT INTO models (version, kind, scope, artifact, metrics, schema, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(model.version())
    .bind(KIND)
    .bind(scope.unwrap_or(GLOBAL))
    .bind(artifact)
    .bind(metrics)
    .bind(schema)
    .bind(source)
    .bind(kairos_core::time::now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Every churn model version, newest first.
pub async fn list(store: &Store) -> Result<Vec<ModelInfo>, ChurnStoreError> {
    let rows = sqlx::query(
        "SELECT version, kind, scope, source, created_at, metrics FROM models WHERE kind = $1 \
         ORDER BY created_at DESC, version DESC",
    )
    .bind(KIND)
    .fetch_all(store.pool())
    .await?;
    let active = sqlx::query("SELECT scope, version FROM active_models WHERE kind = $1")
        .bind(KIND)
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let version: String = r.try_get("version")?;
        let mut active_in = Vec::new();
        for a in &active {
            if a.try_get::<String, _>("version")? == version {
                let s: String = a.try_get("scope")?;
                active_in.push(if s.is_empty() { "global".into() } else { s });
            }
        }
        let metrics: String = r.try_get("metrics")?;
        out.push(ModelInfo {
            version,
            kind: r.try_get("kind")?,
            scope: scope_of(r.try_get("scope")?),
            source: r.try_get("source")?,
            created_at: r.try_get("created_at")?,
            active_in,
            metrics: serde_json::from_str(&metrics)?,
        });
    }
    Ok(out)
}

/// One version's info and its model.
pub async fn get(store: &Store, version: &str) -> Result<(ModelInfo, ChurnModel), ChurnStoreError> {
    let info = list(store)
        .await?
        .into_iter()
        .find(|m| m.version == version)
        .ok_or_else(|| ChurnStoreError::NotFound(format!("model version `{version}`")))?;
    let model = load(store, version).await?;
    Ok((info, model))
}

/// Loads and validates a version's artifact.
pub async fn load(store: &Store, version: &str) -> Result<ChurnModel, ChurnStoreError> {
    let row = sqlx::query("SELECT artifact FROM models WHERE version = $1 AND kind = $2")
        .bind(version)
        .bind(KIND)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| ChurnStoreError::NotFound(format!("model version `{version}`")))?;
    let artifact: String = row.try_get("artifact")?;
    Ok(ChurnModel::from_json(artifact.as_bytes())?)
}

/// Makes `version` the active churn model for `scope` (a tenant id, or
/// `None` = global). Takes effect for the next job once workers re-check
/// (`churn.model_refresh`).
pub async fn activate(store: &Store, version: &str, scope: Option<&str>) -> Result<(), ChurnStoreError> {
    let exists = sqlx::query("SELECT version FROM models WHERE version = $1 AND kind = $2")
        .bind(version)
        .bind(KIND)
        .fetch_optional(store.pool())
        .await?;
    if exists.is_none() {
        return Err(ChurnStoreError::NotFound(format!("model version `{version}`")));
    }
    sqlx::query(
        "INSERT INTO active_models (kind, scope, version, activated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, scope) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
    )
    .bind(KIND)
    .bind(scope.unwrap_or(GLOBAL))
    .bind(version)
    .bind(kairos_core::time::now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The version a tenant's jobs use: its own active model, else the global one.
pub async fn active_version(store: &Store, tenant_id: &str) -> Result<Option<String>, ChurnStoreError> {
    let rows = sqlx::query("SELECT scope, version FROM active_models WHERE kind = $1 AND scope IN ($2, $3)")
        .bind(KIND)
        .bind(tenant_id)
        .bind(GLOBAL)
        .fetch_all(store.pool())
        .await?;
    let mut global = None;
    for r in rows {
        let scope: String = r.try_get("scope")?;
        let version: String = r.try_get("version")?;
        if scope.is_empty() {
            global = Some(version);
        } else {
            return Ok(Some(version));
        }
    }
    Ok(global)
}
