//! Recording events and the jobs they trigger, atomically.

use sqlx::Row;

use super::{chunked_in, Store, StoreError};
use crate::enqueue::NewJob;
use crate::event::Event;
use crate::time::now_ms;

/// A rule's debounce claim: the job is created only if no job of this rule
/// and key was created within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    /// Rule id (with the kind).
    pub rule: String,
    /// The key value (account, user, a data field...).
    pub key: String,
    /// Window length, ms.
    pub window_ms: i64,
}

/// A job the rules decided an event triggers, with its id chosen up front
/// so the API can return it.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The job to create.
    pub job: NewJob,
    /// Its debounce claim, if its rule debounces.
    pub debounce: Option<Debounce>,
}

/// An event with the jobs it triggers, ready to store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The validated event.
    pub event: Event,
    /// The jobs to create if the event is new.
    pub jobs: Vec<PlannedJob>,
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// New: stored, and these job runs created.
    Accepted {
        /// Ids of the triggered job runs.
        job_ids: Vec<String>,
    },
    /// Seen before for this tenant: nothing new was created; these are the
    /// job runs its first delivery triggered.
    Duplicate {
        /// Ids of the job runs the first delivery created.
        job_ids: Vec<String>,
    },
}

impl Store {
    /// Stores a batch of events and their job runs (state `pending`) in one
    /// transaction: either all of it is recorded or none of it. Producers go
    /// through [`crate::enqueue::accept_events`], which also queues the jobs.
    pub async fn ingest(&self, tenant_id: &str, batch: &[StoredEvent]) -> Result<Vec<IngestOutcome>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for item in batch {
            let e = &item.event;
            let inserted = sqlx::query(
                "INSERT INTO events (tenant_id, event_id, type, account_id, user_id, occurred_at, received_at, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, event_id) DO NOTHING",
            )
            .bind(tenant_id)
            .bind(&e.id)
            .bind(&e.event_type)
            .bind(&e.account_id)
            .bind(e.user_id.as_deref())
            .bind(e.occurred_at_ms)
            .bind(now)
            .bind(serde_json::Value::Object(e.data.clone()).to_string())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                let rows = sqlx::query("SELECT id FROM job_runs WHERE tenant_id = $1 AND event_id = $2 ORDER BY id")
                    .bind(tenant_id)
                    .bind(&e.id)
                    .fetch_all(&mut *tx)
                    .await?;
                let job_ids = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
                outcomes.push(IngestOutcome::Duplicate { job_ids });
                continue;
            }
            let mut job_ids = Vec::with_capacity(item.jobs.len());
            let mut jobs: Vec<NewJob> = Vec::with_capacity(item.jobs.len());
            for planned in &item.jobs {
                if let Some(d) = &planned.debounce {
                    // Claim the window unless a live claim exists.
                    let claimed = sqlx::query(
                        "INSERT INTO rule_debounce (tenant_id, rule, debounce_key, until_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant_id, rule, debounce_key) DO UPDATE SET until_at = excluded.until_at \
                         WHERE rule_debounce.until_at <= $5",
                    )
                    .bind(tenant_id)
                    .bind(&d.rule)
                    .bind(&d.key)
                    .bind(now + d.window_ms)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if claimed.rows_affected() == 0 {
                        continue;
                    }
                }
                job_ids.push(planned.job.id.clone());
                jobs.push(planned.job.clone());
            }
            // Inserted per event, not per batch: a later copy of the same
            // event id in this batch must find them as its duplicate's jobs.
            crate::enqueue::insert_jobs(&mut tx, &jobs, now).await?;
            outcomes.push(IngestOutcome::Accepted { job_ids });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Undoes an [`Store::ingest`] whose jobs could not be queued, so a 503
    /// really means "nothing recorded" and the client's retry is not taken
    /// for a duplicate.
    pub async fn revert_ingest(
        &self,
        tenant_id: &str,
        event_ids: &[String],
        job_ids: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (sql, chunk) in chunked_in(
            "DELETE FROM job_runs WHERE state = 'pending' AND id IN ({ids})",
            0,
            job_ids,
        ) {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        for (sql, chunk) in chunked_in(
            "DELETE FROM events WHERE tenant_id = $1 AND event_id IN ({ids})",
            1,
            event_ids,
        ) {
            let mut q = sqlx::query(&sql).bind(tenant_id);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
