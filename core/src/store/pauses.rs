//! Paused job kinds: while a kind is listed in `paused_kinds`, no worker
//! fetches its jobs; they stay queued and nothing is lost. Every worker
//! process reads [`Store::paused_kinds`] every `worker.pause_poll` (one
//! read of a table of a few rows), so a pause takes hold everywhere within
//! that interval plus one fetch. Pausing and resuming are recorded in the
//! audit log in the same transaction.
//!
//! A pause is deployment-wide: queues are per kind, not per tenant, so a
//! tenant-scoped pause would need a queue per (kind, tenant) or fetching
//! and deferring other tenants' jobs.

use sqlx::Row;

use super::audit::{record_audit_in, NewAudit};
use super::{Store, StoreError};
use crate::time::now_ms;

/// Audit action of a pause.
pub const AUDIT_PAUSED: &str = "queue.paused";
/// Audit action of a resume.
pub const AUDIT_RESUMED: &str = "queue.resumed";

/// A paused job kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedKind {
    /// The job kind.
    pub kind: String,
    /// Paused at (epoch ms).
    pub paused_at: i64,
    /// Who paused it (an audit actor: `cli:<user>`, `dashboard:<user>`).
    pub paused_by: String,
    /// Why, if given.
    pub reason: Option<String>,
}

impl Store {
    /// Pauses `kind` for every worker; recorded in the audit log as
    /// `queue.paused` by `actor`. Returns false (and records nothing) when
    /// it was already paused. The caller checks `kind` is a known kind.
    pub async fn pause_kind(&self, kind: &str, actor: &str, reason: Option<&str>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO paused_kinds (kind, paused_at, paused_by, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind) DO NOTHING",
        )
        .bind(kind)
        .bind(now_ms())
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record_audit_in(
            &mut tx,
            &NewAudit {
                tenant_id: None,
                actor,
                action: AUDIT_PAUSED,
                target: kind,
                details: serde_json::json!({ "reason": reason }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Resumes `kind`: workers fetch it again within their pause poll.
    /// Recorded as `queue.resumed` by `actor`. Returns false (and records
    /// nothing) when it was not paused.
    pub async fn resume_kind(&self, kind: &str, actor: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM paused_kinds WHERE kind = $1")
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record_audit_in(
            &mut tx,
            &NewAudit {
                tenant_id: None,
                actor,
                action: AUDIT_RESUMED,
                target: kind,
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The paused kinds, by kind. Cheap: workers call it every
    /// `worker.pause_poll`.
    pub async fn paused_kinds(&self) -> Result<Vec<PausedKind>, StoreError> {
        let rows = sqlx::query("SELECT kind, paused_at, paused_by, reason FROM paused_kinds ORDER BY kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PausedKind {
                    kind: r.try_get("kind")?,
                    paused_at: r.try_get("paused_at")?,
                    paused_by: r.try_get("paused_by")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}
