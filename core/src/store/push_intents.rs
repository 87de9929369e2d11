//! Push intents: how the store learns that an ingest committed jobs
//! `queued` and its process died before pushing them.
//!
//! Ingest writes its jobs `queued` (it pushes them itself, right after
//! commit, so the dispatcher, which takes only `pending` rows, never pushes
//! them too). A process killed between that commit and the push would
//! leave them `queued` with no message, forever. So the ingest transaction
//! also writes one `push_intents` row naming its jobs, and the push
//! deletes it; a row that outlives `push_deadline` means the push never
//! happened (or its confirmation was lost), and [`Store::recover_unpushed`]
//! hands its still-`queued` jobs back as `pending` for the dispatcher.
//!
//! The cost is two statements per ingest transaction (not per job). A
//! crash between the push and the delete makes the dispatcher push those
//! jobs a second time; the second message is harmless (a worker's start is
//! conditional: a job already started or finished is acknowledged without
//! running).

use sqlx::Row;

use super::{chunked_in, Store, StoreError};

/// Most intents one recovery round takes.
const RECOVER_BATCH: i64 = 100;

/// Writes the intent to push `job_ids` (already sorted by id) in `tx`.
pub(crate) async fn record_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    job_ids: &[&str],
    now: i64,
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(job_ids).map_err(|e| StoreError::Conflict(e.to_string()))?;
    sqlx::query("INSERT INTO push_intents (id, job_ids, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(ids)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// The push of intent `id` is done (or its jobs were reverted or
    /// handed back): nothing to recover.
    pub async fn push_done(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM push_intents WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the intents written before `cutoff_ms` (their process died
    /// between commit and push) and, in the same transaction, puts their
    /// jobs that are still `queued` back to `pending`, for the dispatcher.
    /// Concurrent callers take disjoint intents. Returns how many jobs were
    /// handed back.
    pub async fn recover_unpushed(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let skip_locked = match self.engine {
            super::Engine::Postgres => "FOR UPDATE SKIP LOCKED",
            super::Engine::Sqlite => "",
        };
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "DELETE FROM push_intents WHERE id IN (SELECT id FROM push_intents WHERE created_at < $1 \
             ORDER BY created_at LIMIT $2 {skip_locked}) RETURNING job_ids"
        ))
        .bind(cutoff_ms)
        .bind(RECOVER_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids: Vec<String> = Vec::new();
        for row in rows {
            let text: String = row.try_get("job_ids")?;
            let listed: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| StoreError::Conflict(format!("push intent with unreadable job ids: {e}")))?;
            ids.extend(listed);
        }
        // Lock order (Postgres): ids sorted, rows locked in that order.
        ids.sort();
        ids.dedup();
        let template = format!(
            "UPDATE job_runs SET state = 'pending' WHERE state = 'queued' AND id IN ({})",
            self.in_lock_order()
        );
        let mut handed_back = 0;
        for (sql, chunk) in chunked_in(&template, 0, &ids) {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            handed_back += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(handed_back)
    }
}
