//! What the queue gauges and listings read from the job table, each in one
//! cheap statement: jobs running per kind (the `job_runs_state` index,
//! running rows only — bounded by the workers' concurrency) and the oldest
//! job waiting per kind (one probe of the `job_runs_kind_state` index).
//! True across processes, because they read the shared store.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

impl Store {
    /// Jobs in the `running` state, per kind (kinds with none are absent).
    pub async fn running_by_kind(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM job_runs WHERE state = 'running' GROUP BY kind")
            .fetch_all(&self.pool)
            .await?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            let n: i64 = r.try_get("n")?;
            out.insert(kind, u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }

    /// When the oldest job of `kind` that is queued and due (not delayed
    /// to a later `run_after`) became ready (epoch ms), or `None` when no
    /// job of the kind waits. Retries waiting for their next attempt are
    /// not counted: their ready time lives on the queue.
    pub async fn oldest_ready(&self, kind: &str) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        // ORDER BY + LIMIT (not MIN) so the index is walked in order and the
        // walk stops at the first due row.
        let row = sqlx::query(
            "SELECT queued_at, run_after FROM job_runs WHERE kind = $1 AND state = 'queued' \
             AND queued_at IS NOT NULL AND (run_after IS NULL OR run_after <= $2) ORDER BY queued_at LIMIT 1",
        )
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let queued_at: i64 = row.try_get("queued_at")?;
        let run_after: Option<i64> = row.try_get("run_after")?;
        Ok(Some(queued_at.max(run_after.unwrap_or(queued_at))))
    }
}
