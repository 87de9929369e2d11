//! Schedule ticks: the record that makes each (schedule, tick) fire once.

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

/// A job created by a schedule tick, or by another job (a sentiment alert's
/// webhook and follow-ups), recorded as `pending` in its creator's
/// transaction and queued after commit.
#[derive(Debug, Clone)]
pub struct TickJob {
    /// Deterministic id (same schedule, tick and target → same id; same
    /// alert and kind → same id), so a retried creator cannot create a
    /// second copy.
    pub id: String,
    /// Tenant the job works for.
    pub tenant_id: String,
    /// Job kind.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Not before (epoch ms), for jitter.
    pub run_after: Option<i64>,
}

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
        jobs: &[TickJob],
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
        insert_pending_jobs(&mut tx, jobs, now).await?;
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
    /// "last run" and for not re-firing recent ticks).
    pub async fn prune_ticks(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM schedule_ticks WHERE tick_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

/// Records `jobs` as `pending` inside the caller's transaction (ids that
/// exist already are left alone), so that a job and whatever created it
/// commit together. Queue them after the commit; if that fails, the
/// dispatcher queues them.
pub async fn insert_pending_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[TickJob],
    now: i64,
) -> Result<(), sqlx::Error> {
    for job in jobs {
        sqlx::query(
            "INSERT INTO job_runs (id, tenant_id, kind, event_id, payload, state, attempts, max_attempts, created_at, run_after) \
             VALUES ($1, $2, $3, NULL, $4, 'pending', 0, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&job.id)
        .bind(&job.tenant_id)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(i64::from(job.max_attempts))
        .bind(now)
        .bind(job.run_after)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
