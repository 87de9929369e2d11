//! The model registry shared by every model kind (`churn`, `sentiment`):
//! each trained version (artifact JSON, metrics, schema) in `models`, and
//! which one is live per scope in `active_models`. Scope is a tenant id, or
//! global ([`GLOBAL`]); a tenant's own active model wins over the global one.
//!
//! Kinds wrap these functions with their own artifact type (see
//! `churn::registry`, `sentiment::registry`), so the SQL lives once.

use kairos_core::Store;
use sqlx::Row;

/// The scope value of a global model (stored as '' so that keys need no NULL handling).
pub const GLOBAL: &str = "";

/// Why a registry read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored JSON column could not be read.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No such version (of this kind).
    #[error("{0} not found")]
    NotFound(String),
}

/// A registered model version, without its artifact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// The version (unique across kinds).
    pub version: String,
    /// `churn`, `sentiment`.
    pub kind: String,
    /// Tenant id it was trained for; `None` = global.
    pub scope: Option<String>,
    /// How it was trained (`store cutoff=...`, `csv FILE`, `data FILE...`).
    pub source: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Scopes where it is active (`"global"` or tenant ids).
    pub active_in: Vec<String>,
    /// Held-out metrics JSON.
    pub metrics: serde_json::Value,
}

/// A version to register.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    /// Unique version name.
    pub version: &'a str,
    /// Model kind.
    pub kind: &'a str,
    /// Tenant it was trained for; `None` = global.
    pub scope: Option<&'a str>,
    /// The artifact (JSON text).
    pub artifact: String,
    /// Held-out metrics (JSON text).
    pub metrics: String,
    /// Input schema (JSON text).
    pub schema: String,
    /// How it was trained.
    pub source: &'a str,
}

fn scope_of(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn not_found(kind: &str, version: &str) -> RegistryError {
    RegistryError::NotFound(format!("{kind} model version `{version}`"))
}

/// Stores a trained model as a new version (inactive).
pub async fn register(store: &Store, m: &NewModel<'_>) -> Result<(), RegistryError> {
    sqlx::query(
        "INSERT INTO models (version, kind, scope, artifact, metrics, schema, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(m.version)
    .bind(m.kind)
    .bind(m.scope.unwrap_or(GLOBAL))
    .bind(&m.artifact)
    .bind(&m.metrics)
    .bind(&m.schema)
    .bind(m.source)
    .bind(kairos_core::time::now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Every version of `kind`, newest first.
pub async fn list(store: &Store, kind: &str) -> Result<Vec<ModelInfo>, RegistryError> {
    let rows = sqlx::query(
        "SELECT version, kind, scope, source, created_at, metrics FROM models WHERE kind = $1 \
         ORDER BY created_at DESC, version DESC",
    )
    .bind(kind)
    .fetch_all(store.pool())
    .await?;
    let active = sqlx::query("SELECT scope, version FROM active_models WHERE kind = $1")
        .bind(kind)
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

/// One version's info.
pub async fn info(store: &Store, kind: &str, version: &str) -> Result<ModelInfo, RegistryError> {
    list(store, kind)
        .await?
        .into_iter()
        .find(|m| m.version == version)
        .ok_or_else(|| not_found(kind, version))
}

/// A version of any kind, by its (unique) name.
pub async fn find(store: &Store, version: &str) -> Result<ModelInfo, RegistryError> {
    let row = sqlx::query("SELECT kind FROM models WHERE version = $1")
        .bind(version)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("model version `{version}`")))?;
    let kind: String = row.try_get("kind")?;
    info(store, &kind, version).await
}

/// One version's artifact (JSON text).
pub async fn artifact(store: &Store, kind: &str, version: &str) -> Result<String, RegistryError> {
    let row = sqlx::query("SELECT artifact FROM models WHERE version = $1 AND kind = $2")
        .bind(version)
        .bind(kind)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| not_found(kind, version))?;
    Ok(row.try_get("artifact")?)
}

/// Makes `version` the active model of its kind for `scope` (a tenant id,
/// or `None` = global). Takes effect for the next job once workers
/// re-check (each kind's `model_refresh`).
pub async fn activate(store: &Store, kind: &str, version: &str, scope: Option<&str>) -> Result<(), RegistryError> {
    let exists = sqlx::query("SELECT version FROM models WHERE version = $1 AND kind = $2")
        .bind(version)
        .bind(kind)
        .fetch_optional(store.pool())
        .await?;
    if exists.is_none() {
        return Err(not_found(kind, version));
    }
    sqlx::query(
        "INSERT INTO active_models (kind, scope, version, activated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, scope) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
    )
    .bind(kind)
    .bind(scope.unwrap_or(GLOBAL))
    .bind(version)
    .bind(kairos_core::time::now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The version a tenant's jobs use: its own active model, else the global one.
pub async fn active_version(store: &Store, kind: &str, tenant_id: &str) -> Result<Option<String>, RegistryError> {
    let rows = sqlx::query("SELECT scope, version FROM active_models WHERE kind = $1 AND scope IN ($2, $3)")
        .bind(kind)
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
