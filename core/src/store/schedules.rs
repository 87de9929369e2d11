//! Schedule ticks: the record that makes each (schedule, tick) fire once.

use sqlx::Row;

use super::{Store, StoreError};
use crate::enqueue::NewJob;
use crate::time::now_ms;

/// The last recorded tick of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRecord {
    /// The tick (epoch ms).
    pub tick_at: i64,
    /// `fired`, `catch_up`, `skipped` or `manual`.
    pub outcome: String,
    /// When it was recorded.
    pub fired_at: i64,
    /// Jobs it created.
    pub jobs: i64,
    /// Which scheduler replica recorded it.
    pub replica: String,
}

fn tick_from_row(r: &sqlx::any::AnyRow) -> Result<TickRecord, sqlx::Error> {
    Ok(TickRecord {
        tick_at: r.try_get("tick_at")?,
        outcome: r.try_get("outcome")?,
        fired_at: r.try_get("fired_at")?,
        jobs: r.try_get("jobs")?,
        replica: r.try_get("replica")?,
    })
}

impl Store {
    /// Records tick `tick_ms` of `key` with its jobs, in one transaction.
    /// Returns false (and writes nothing) when the tick was already
    /// recorded — by this replica before a restart, or by another replica.
    /// A replica that dies mid-transaction leaves nothing behind, so the tick
    /// is still free for the others.
    pub async fn record_tick(
        &self,
        key: &str,
        tick_ms: i64,
        outcome: &str,
        replica: &str,
        jobs: &[NewJob],
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO schedule_ticks (schedule_key, tick_at, outcome, fired_at, jobs, replica) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (schedule_key, tick_at) DO NOTHING",
        )
        .bind(key)
        .bind(tick_ms)
        .bind(outcome)
        .bind(now)
        .bind(jobs.len() as i64)
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        crate::enqueue::insert_jobs(&mut tx, jobs, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The latest recorded tick of `key`.
    pub async fn last_tick(&self, key: &str) -> Result<Option<TickRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT tick_at, outcome, fired_at, jobs, replica FROM schedule_ticks WHERE schedule_key = $1 \
             ORDER BY tick_at DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(tick_from_row).transpose()?)
    }

    /// Every tick recorded for `key` since `since_ms`, oldest first.
    pub async fn ticks_since(&self, key: &str, since_ms: i64) -> Result<Vec<TickRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tick_at, outcome, fired_at, jobs, replica FROM schedule_ticks WHERE schedule_key = $1 AND tick_at >= $2 \
             ORDER BY tick_at",
        )
        .bind(key)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(tick_from_row).collect::<Result<_, _>>()?)
    }

    /// Accounts of a tenant known from its activity, sorted.
    pub async fn account_ids(&self, tenant_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT account_id FROM account_activity WHERE tenant_id = $1 ORDER BY account_id")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.try_get("account_id")).collect::<Result<_, _>>()?)
    }

    /// Deletes tick records older than `before_ms` (they only matter for
    /// "last run" and for not re-firing recent ticks), except each
    /// schedule's latest, which a restarted replica resumes from.
    pub async fn prune_ticks(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM schedule_ticks WHERE tick_at < $1 AND tick_at < \
             (SELECT MAX(t.tick_at) FROM schedule_ticks t WHERE t.schedule_key = schedule_ticks.schedule_key)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
