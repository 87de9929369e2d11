//! Alerts: the one writer ([`raise_alert`], called by whichever job raises
//! one, inside its own transaction so the alert commits with the result
//! that caused it) and the one reader ([`Store::alerts`]) for ops, product
//! backends and the CLI.

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
    /// The event that raised it, when one did (sentiment).
    pub event_id: Option<String>,
    /// How urgent, 0–100, when the alert kind measures it (sentiment).
    pub urgency: Option<i64>,
    /// Raised at (epoch ms).
    pub created_at: i64,
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// Alert id.
    pub id: String,
    /// The account it is about.
    pub account_id: String,
    /// What raised it, e.g. `churn_critical`.
    pub kind: String,
    /// `critical`, `high`, `medium`.
    pub severity: String,
    /// Why, in one line for humans.
    pub reason: String,
    /// Details (JSON).
    pub payload: serde_json::Value,
    /// Raising twice with the same key (per tenant) is a no-op, so a
    /// re-run job does not raise its alert again.
    pub dedup_key: String,
    /// The event that raised it, when one did.
    pub event_id: Option<String>,
    /// How urgent, 0–100, when the kind measures it.
    pub urgency: Option<i64>,
    /// Raised at (epoch ms).
    pub created_at: i64,
}

/// Raises `alert` for `tenant_id` inside the caller's transaction. Returns
/// false when an alert with its dedup key exists already.
pub async fn raise_alert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    alert: &NewAlert,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO alerts (id, tenant_id, account_id, kind, severity, reason, payload, dedup_key, created_at, \
         event_id, urgency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, dedup_key) DO NOTHING",
    )
    .bind(&alert.id)
    .bind(tenant_id)
    .bind(&alert.account_id)
    .bind(&alert.kind)
    .bind(&alert.severity)
    .bind(&alert.reason)
    .bind(alert.payload.to_string())
    .bind(&alert.dedup_key)
    .bind(alert.created_at)
    .bind(alert.event_id.as_deref())
    .bind(alert.urgency)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Which of a tenant's alerts to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Raised at or after (epoch ms).
    pub since_ms: i64,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only alerts with an urgency of at least this (alerts without an
    /// urgency are excluded when set).
    pub min_urgency: Option<i64>,
    /// At most this many (clamped to 1..=1000).
    pub limit: u32,
}

impl Store {
    /// A tenant's alerts matching `filter`, newest first.
    pub async fn alerts(&self, tenant_id: &str, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, kind, severity, reason, payload, event_id, urgency, created_at FROM alerts \
             WHERE tenant_id = $1 AND created_at >= $2 AND ($3 IS NULL OR kind = $3) \
             AND ($4 IS NULL OR urgency >= $4) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(tenant_id)
        .bind(filter.since_ms)
        .bind(filter.kind.as_deref())
        .bind(filter.min_urgency)
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(alert_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }

    /// One of a tenant's alerts, by id.
    pub async fn alert(&self, tenant_id: &str, id: &str) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, kind, severity, reason, payload, event_id, urgency, created_at FROM alerts \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(alert_from_row)
            .transpose()
            .map_err(StoreError::Unavailable)
    }
}

fn alert_from_row(r: &sqlx::any::AnyRow) -> Result<Alert, sqlx::Error> {
    Ok(Alert {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        kind: r.try_get("kind")?,
        severity: r.try_get("severity")?,
        reason: r.try_get("reason")?,
        payload: r.try_get("payload")?,
        event_id: r.try_get("event_id")?,
        urgency: r.try_get("urgency")?,
        created_at: r.try_get("created_at")?,
    })
}
