//! Recording events and the jobs they trigger, atomically.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{chunked_in, value_rows, Store, StoreError, IN_LIST_MAX};
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
    /// through [`crate::enqueue::accept_events`], which also queues the jobs
    /// (gathering concurrent requests into one transaction).
    pub async fn ingest(&self, tenant_id: &str, batch: &[StoredEvent]) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut out = self.ingest_requests(&[(tenant_id, batch)], None).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Stores several requests' events and jobs in one transaction (group
    /// commit) with multi-row statements. With `push_intent` (the caller
    /// pushes the jobs right after commit) the jobs are written `queued`,
    /// so the dispatcher, which only takes `pending` rows, never pushes
    /// them too, and the intent is recorded with them
    /// ([`super::push_intents`]); without, they are written `pending`.
    /// Returns each request's outcomes, in order.
    ///
    /// An event id repeated within the group (the same tenant) is stored
    /// once; its later copies are duplicates reporting the first copy's
    /// jobs. Events are inserted in (tenant, id) order and debounce claims
    /// in (tenant, rule, key) order, so concurrent groups that share keys
    /// wait on each other instead of deadlocking.
    pub(crate) async fn ingest_requests(
        &self,
        requests: &[(&str, &[StoredEvent])],
        push_intent: Option<&str>,
    ) -> Result<Vec<Vec<IngestOutcome>>, StoreError> {
        let now = now_ms();
        // First copy of each (tenant, event id) in the group.
        let mut first: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
        let mut unique: Vec<(usize, usize)> = Vec::new();
        for (r, (tenant, batch)) in requests.iter().enumerate() {
            for (i, item) in batch.iter().enumerate() {
                if let std::collections::hash_map::Entry::Vacant(v) = first.entry((tenant, item.event.id.as_str())) {
                    v.insert((r, i));
                    unique.push((r, i));
                }
            }
        }
        unique.sort_by(|a, b| {
            let ka = (requests[a.0].0, requests[a.0].1[a.1].event.id.as_str());
            let kb = (requests[b.0].0, requests[b.0].1[b.1].event.id.as_str());
            ka.cmp(&kb)
        });

        let mut tx = self.pool.begin().await?;
        let mut inserted: HashSet<(String, String)> = HashSet::new();
        const EVENT_COLS: usize = 8;
        for chunk in unique.chunks(IN_LIST_MAX) {
            let sql = format!(
                "INSERT INTO events (tenant_id, event_id, type, account_id, user_id, occurred_at, received_at, data) \
                 VALUES {} ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING tenant_id, event_id",
                value_rows(chunk.len(), EVENT_COLS, "")
            );
            let mut q = sqlx::query(&sql);
            for &(r, i) in chunk {
                let e = &requests[r].1[i].event;
                q = q
                    .bind(requests[r].0)
                    .bind(&e.id)
                    .bind(&e.event_type)
                    .bind(&e.account_id)
                    .bind(e.user_id.as_deref())
                    .bind(e.occurred_at_ms)
                    .bind(now)
                    .bind(serde_json::Value::Object(e.data.clone()).to_string());
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert((row.try_get("tenant_id")?, row.try_get("event_id")?));
            }
        }

        // Events stored before this group: their first delivery's jobs.
        let mut stored_jobs: HashMap<(String, String), Vec<String>> = HashMap::new();
        let mut seen_before: HashMap<&str, Vec<String>> = HashMap::new();
        for &(r, i) in &unique {
            let (tenant, batch) = requests[r];
            let id = &batch[i].event.id;
            if !inserted.contains(&(tenant.to_owned(), id.clone())) {
                seen_before.entry(tenant).or_default().push(id.clone());
            }
        }
        for (tenant, ids) in &seen_before {
            for (sql, chunk) in chunked_in(
                "SELECT event_id, id FROM job_runs WHERE tenant_id = $1 AND event_id IN ({ids}) ORDER BY id",
                1,
                ids,
            ) {
                let mut q = sqlx::query(&sql).bind(*tenant);
                for id in chunk {
                    q = q.bind(id);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    let event_id: String = row.try_get("event_id")?;
                    stored_jobs
                        .entry(((*tenant).to_owned(), event_id))
                        .or_default()
                        .push(row.try_get("id")?);
                }
            }
        }

        // Debounce claims of new events, in key order (a stable sort keeps
        // request order among equal keys: the first event claims).
        let mut claims: Vec<(usize, usize, usize)> = Vec::new();
        for (r, (tenant, batch)) in requests.iter().enumerate() {
            for (i, item) in batch.iter().enumerate() {
                if first.get(&(*tenant, item.event.id.as_str())) != Some(&(r, i))
                    || !inserted.contains(&((*tenant).to_owned(), item.event.id.clone()))
                {
                    continue;
                }
                for (j, planned) in item.jobs.iter().enumerate() {
                    if planned.debounce.is_some() {
                        claims.push((r, i, j));
                    }
                }
            }
        }
        claims.sort_by(|a, b| {
            let key = |&(r, i, j): &(usize, usize, usize)| {
                let d = requests[r].1[i].jobs[j].debounce.as_ref();
                (requests[r].0, d.map(|d| d.rule.as_str()), d.map(|d| d.key.as_str()))
            };
            key(a).cmp(&key(b))
        });
        let mut refused: HashSet<(usize, usize, usize)> = HashSet::new();
        for &(r, i, j) in &claims {
            let Some(d) = &requests[r].1[i].jobs[j].debounce else {
                continue;
            };
            // Claim the window unless a live claim exists.
            let claimed = sqlx::query(
                "INSERT INTO rule_debounce (tenant_id, rule, debounce_key, until_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, rule, debounce_key) DO UPDATE SET until_at = excluded.until_at \
                 WHERE rule_debounce.until_at <= $5",
            )
            .bind(requests[r].0)
            .bind(&d.rule)
            .bind(&d.key)
            .bind(now + d.window_ms)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                refused.insert((r, i, j));
            }
        }

        // Outcomes in request order; the new jobs in one multi-row insert.
        let mut jobs: Vec<&NewJob> = Vec::new();
        let mut outcomes: Vec<Vec<IngestOutcome>> = Vec::with_capacity(requests.len());
        for (r, (tenant, batch)) in requests.iter().enumerate() {
            let mut out = Vec::with_capacity(batch.len());
            for (i, item) in batch.iter().enumerate() {
                let key = ((*tenant).to_owned(), item.event.id.clone());
                let (fr, fi) = first.get(&(*tenant, item.event.id.as_str())).copied().unwrap_or((r, i));
                if !inserted.contains(&key) {
                    out.push(IngestOutcome::Duplicate {
                        job_ids: stored_jobs.get(&key).cloned().unwrap_or_default(),
                    });
                    continue;
                }
                let job_ids: Vec<String> = requests[fr].1[fi]
                    .jobs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| !refused.contains(&(fr, fi, *j)))
                    .map(|(_, p)| p.job.id.clone())
                    .collect();
                if (fr, fi) == (r, i) {
                    jobs.extend(
                        item.jobs
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| !refused.contains(&(r, i, *j)))
                            .map(|(_, p)| &p.job),
                    );
                    out.push(IngestOutcome::Accepted { job_ids });
                } else {
                    // A later copy within this group: its first copy's jobs.
                    out.push(IngestOutcome::Duplicate { job_ids });
                }
            }
            outcomes.push(out);
        }
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        let state = match push_intent {
            Some(_) => crate::store::JobState::Queued,
            None => crate::store::JobState::Pending,
        };
        super::job_runs::insert_job_refs(&mut tx, &jobs, now, state).await?;
        if let Some(intent) = push_intent.filter(|_| !jobs.is_empty()) {
            let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            super::push_intents::record_in(&mut tx, intent, &ids, now).await?;
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
            "DELETE FROM job_runs WHERE state IN ('pending', 'queued') AND attempts = 0 AND id IN ({ids})",
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
