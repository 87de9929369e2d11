//! Reading alerts. Jobs raise them (churn CRITICAL today, sentiment next)
//! in their own transactions; ops and product backends read them here.

use sqlx::Row;

use super::{Store, StoreError};

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Alert id.
    pub id: String,
    /// The account it is about.
    pub account_id: String,
    /// What raised it, e.g. `churn_critical`.
    pub kind: String,
    /// `critical`, `high`, ...
    pub severity: String,
    /// Why, in words.
    pub reason: String,
    /// Details (JSON text).
    pub payload: String,
    /// Raised at (epoch ms).
    pub created_at: i64,
}

impl Store {
    /// A tenant's alerts raised at or after `since_ms`, optionally of one
    /// kind, newest first.
    pub async fn alerts(
        &self,
        tenant_id: &str,
        since_ms: i64,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, kind, severity, reason, payload, created_at FROM alerts \
             WHERE tenant_id = $1 AND created_at >= $2 AND ($3 IS NULL OR kind = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(tenant_id)
        .bind(since_ms)
        .bind(kind)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Alert {
                    id: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    kind: r.try_get("kind")?,
                    severity: r.try_get("severity")?,
                    reason: r.try_get("reason")?,
                    payload: r.try_get("payload")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}
