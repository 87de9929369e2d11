//! The audit log: an append-only record of admin-side changes (tenant
//! created, key rotated, model activated, job retried, profile erased) with
//! who did it, when, and to what.

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Entry id (UUIDv7).
    pub id: String,
    /// The tenant concerned; `None` for global changes (a global model).
    pub tenant_id: Option<String>,
    /// Who: `cli:<user>`, `tenant:<name>` (an API key), `admin-api`.
    pub actor: String,
    /// What, e.g. `tenant.created`, `profile.erased`.
    pub action: String,
    /// To what, e.g. a tenant name, a job id, `account/person`.
    pub target: String,
    /// More about it (JSON).
    pub details: serde_json::Value,
    /// When (epoch ms).
    pub at: i64,
}

/// A change to record.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    /// See [`AuditEntry::tenant_id`].
    pub tenant_id: Option<&'a str>,
    /// See [`AuditEntry::actor`].
    pub actor: &'a str,
    /// See [`AuditEntry::action`].
    pub action: &'a str,
    /// See [`AuditEntry::target`].
    pub target: &'a str,
    /// See [`AuditEntry::details`].
    pub details: serde_json::Value,
}

/// Appends `entry` inside the caller's transaction, so a change and its
/// record commit together.
pub async fn record_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &NewAudit<'_>,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor, action, target, details, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(entry.tenant_id)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.details.to_string())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

impl Store {
    /// Appends one entry to the audit log.
    pub async fn record_audit(&self, entry: &NewAudit<'_>) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = record_audit_in(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The newest `limit` entries (clamped to 1..=10,000), of one tenant
    /// when `tenant_id` is given, newest first.
    pub async fn audit_log(&self, tenant_id: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, actor, action, target, details, at FROM audit_log \
             WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}
