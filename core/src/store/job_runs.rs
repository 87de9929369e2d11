//! Job runs: the durable record of every job — what it is, where it stands,
//! how often it was tried, and what went wrong. The queue only carries work;
//! this table is the source of truth ops read and act on.

use std::fmt;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{chunked_in, Store, StoreError, IN_LIST_MAX};
use crate::enqueue::NewJob;
use crate::time::now_ms;

/// Where a job run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Stored, not yet on a queue.
    Pending,
    /// On a queue, waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Failed an attempt; waiting for its next one.
    Retrying,
    /// Done.
    Succeeded,
    /// Failed every attempt (or failed permanently): dead-lettered.
    Dead,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Queued,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Dead,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!("unknown job state `{s}` (expected one of pending, queued, running, retrying, succeeded, dead)")
        })
    }
}

/// One job run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Job run id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Job kind.
    pub kind: String,
    /// The event that triggered it, if any.
    pub event_id: Option<String>,
    /// Input (JSON text).
    pub payload: String,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Stored at (epoch ms).
    pub created_at: i64,
    /// Put on a queue at.
    pub queued_at: Option<i64>,
    /// Last attempt started at.
    pub started_at: Option<i64>,
    /// Finished (succeeded or dead) at.
    pub finished_at: Option<i64>,
    /// Worker that ran the last attempt.
    pub worker: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Where the result is, e.g. `account_activity/ACCOUNT`.
    pub result_ref: Option<String>,
    /// Not to start before (epoch ms): rule delays, schedule jitter.
    pub run_after: Option<i64>,
}

pub(super) const COLUMNS: &str = "id, tenant_id, kind, event_id, payload, state, attempts, max_attempts, created_at, \
                       queued_at, started_at, finished_at, worker, last_error, result_ref, run_after";

pub(super) fn from_row(row: &AnyRow) -> Result<JobRun, StoreError> {
    let state: String = row.try_get("state")?;
    let attempts: i64 = row.try_get("attempts")?;
    let max_attempts: i64 = row.try_get("max_attempts")?;
    Ok(JobRun {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        event_id: row.try_get("event_id")?,
        payload: row.try_get("payload")?,
        state: state.parse().map_err(|e: String| StoreError::Conflict(e))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        created_at: row.try_get("created_at")?,
        queued_at: row.try_get("queued_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        worker: row.try_get("worker")?,
        last_error: row.try_get("last_error")?,
        result_ref: row.try_get("result_ref")?,
        run_after: row.try_get("run_after")?,
    })
}

/// A job a worker may run now, with its attempt number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Job run id.
    pub id: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the job became ready to run (epoch ms): queued, or its
    /// `run_after` if later — for a retry, the time it came due. Gives
    /// every attempt's wait without another read.
    pub ready_at: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Done, with a reference to its result.
    Succeeded {
        /// Where the result is.
        result_ref: Option<String>,
    },
    /// Failed; another attempt will follow.
    Retrying {
        /// Why it failed.
        error: String,
        /// When the next attempt comes due (epoch ms), kept as the row's
        /// `run_after`: the next attempt's wait is measured from it.
        retry_at: i64,
    },
    /// Failed for good: dead-lettered.
    Dead {
        /// Why it failed.
        error: String,
    },
}

impl Finish {
    /// The state the job run moves to.
    pub fn state(&self) -> JobState {
        match self {
            Finish::Succeeded { .. } => JobState::Succeeded,
            Finish::Retrying { .. } => JobState::Retrying,
            Finish::Dead { .. } => JobState::Dead,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Finish::Succeeded { .. } => None,
            Finish::Retrying { error, .. } | Finish::Dead { error } => Some(error),
        }
    }
}

/// The end of one attempt, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Job run id.
    pub id: String,
    /// Which attempt (1-based).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// When the attempt started (epoch ms).
    pub started_at: i64,
    /// How it ended.
    pub finish: Finish,
}

/// One attempt of a job run, from its history (`job_attempts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Which attempt (1-based).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// Started at (epoch ms).
    pub started_at: i64,
    /// Ended at (epoch ms).
    pub finished_at: i64,
    /// `succeeded`, `retrying` or `dead`.
    pub outcome: JobState,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Filter for listing job runs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this tenant's.
    pub tenant_id: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Store {
    /// `{ids}` as a sub-select that locks the rows in id order. Batch
    /// updates of job runs come from several processes at once (the API
    /// marking jobs queued, workers starting and finishing them); on
    /// Postgres, rows locked in different orders deadlock, so every batch
    /// update locks in the same (id) order. SQLite has one writer at a time
    /// and no row locks.
    pub(super) fn in_lock_order(&self) -> &'static str {
        match self.engine {
            super::Engine::Postgres => "SELECT id FROM job_runs WHERE id IN ({ids}) ORDER BY id FOR UPDATE",
            super::Engine::Sqlite => "{ids}",
        }
    }

    /// Marks stored jobs as handed to the queue.
    pub async fn mark_queued(&self, ids: &[String]) -> Result<(), StoreError> {
        for (sql, chunk) in chunked_in(
            &format!(
                "UPDATE job_runs SET state = 'queued', queued_at = $1 WHERE state = 'pending' AND id IN ({})",
                self.in_lock_order()
            ),
            1,
            ids,
        ) {
            let mut q = sqlx::query(&sql).bind(now_ms());
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Claims recorded jobs for their producer before it pushes them:
    /// `pending` → `queued`, conditionally, returning the ids it moved. A
    /// job the dispatcher (or another producer) claimed first is left out,
    /// so no two processes push the same job.
    pub async fn claim(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut claimed = Vec::with_capacity(ids.len());
        for (sql, chunk) in chunked_in(
            &format!(
                "UPDATE job_runs SET state = 'queued', queued_at = $1 WHERE state = 'pending' AND id IN ({}) RETURNING id",
                self.in_lock_order()
            ),
            1,
            ids,
        ) {
            let mut q = sqlx::query(&sql).bind(now_ms());
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                claimed.push(row.try_get("id")?);
            }
        }
        Ok(claimed)
    }

    /// Claims up to `limit` jobs left `pending` since before `cutoff_ms`
    /// (their producer died, the queue was down, or a worker parked them
    /// while their tenant was paused — those are skipped while the pause
    /// lasts) by moving them to `queued`. The conditional UPDATE makes concurrent dispatchers claim
    /// disjoint sets.
    pub async fn claim_pending(&self, cutoff_ms: i64, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        // Rows another transaction holds are skipped, not waited for: the
        // claimer never queues behind (or deadlocks with) the API or a
        // worker, and a row it skips is still pending for the next round.
        let skip_locked = match self.engine {
            super::Engine::Postgres => "FOR UPDATE SKIP LOCKED",
            super::Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE job_runs SET state = 'queued', queued_at = $1 WHERE state = 'pending' AND id IN \
             (SELECT id FROM job_runs WHERE state = 'pending' AND created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM paused_tenants p WHERE p.tenant_id = job_runs.tenant_id \
             AND (p.kind = job_runs.kind OR p.kind = '*')) ORDER BY created_at LIMIT $3 \
             {skip_locked}) RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms())
            .bind(cutoff_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Puts claimed jobs back to `pending` when queueing them failed.
    pub async fn unclaim(&self, ids: &[String]) -> Result<(), StoreError> {
        self.set_state_where(ids, "pending", "state = 'queued'").await
    }

    /// Hands jobs back to the queue's care (a worker shutting down with
    /// jobs it could not finish in its grace period).
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        self.set_state_where(ids, "queued", "state = 'running'").await
    }

    async fn set_state_where(&self, ids: &[String], state: &str, guard: &str) -> Result<(), StoreError> {
        let template = format!(
            "UPDATE job_runs SET state = $1 WHERE {guard} AND id IN ({})",
            self.in_lock_order()
        );
        for (sql, chunk) in chunked_in(&template, 1, ids) {
            let mut q = sqlx::query(&sql).bind(state);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Records that `worker` starts the given jobs and returns those it may
    /// run. A job already finished (a duplicate delivery after its ack was
    /// lost) is left out: the caller acknowledges it without running it.
    pub async fn start(&self, ids: &[String], worker: &str) -> Result<Vec<Started>, StoreError> {
        let mut started = Vec::with_capacity(ids.len());
        // `queued_at` is filled here too: a job a worker took before its
        // producer marked it queued was queued all the same.
        for (sql, chunk) in chunked_in(
            &format!(
                "UPDATE job_runs SET state = 'running', attempts = attempts + 1, started_at = $1, worker = $2, \
                 queued_at = COALESCE(queued_at, $1) \
                 WHERE state NOT IN ('succeeded', 'dead') AND id IN ({}) RETURNING id, attempts, max_attempts, queued_at, run_after",
                self.in_lock_order()
            ),
            2,
            ids,
        ) {
            let mut q = sqlx::query(&sql).bind(now_ms()).bind(worker);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let attempt: i64 = row.try_get("attempts")?;
                let max: i64 = row.try_get("max_attempts")?;
                let queued_at: Option<i64> = row.try_get("queued_at")?;
                let run_after: Option<i64> = row.try_get("run_after")?;
                started.push(Started {
                    id: row.try_get("id")?,
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(max).unwrap_or(u32::MAX),
                    ready_at: queued_at.map(|q| q.max(run_after.unwrap_or(q))),
                });
            }
        }
        Ok(started)
    }

    /// The jobs of `ids` a worker may run now — those not finished — with
    /// the attempt each would be (stored attempts + 1). A read, not a write:
    /// the worker records the start with the outcome ([`Self::finish`]) when
    /// the attempt ends quickly, and with [`Self::mark_running`] when it is
    /// still running after a short delay, so a quick job costs one write. A
    /// job already finished (a duplicate delivery after its ack was lost) is
    /// left out: the caller acknowledges it without running it.
    pub async fn startable(&self, ids: &[String]) -> Result<Vec<Started>, StoreError> {
        let mut started = Vec::with_capacity(ids.len());
        for (sql, chunk) in chunked_in(
            "SELECT id, attempts, max_attempts, queued_at, run_after FROM job_runs \
             WHERE state NOT IN ('succeeded', 'dead') AND id IN ({ids})",
            0,
            ids,
        ) {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            let now = now_ms();
            for row in q.fetch_all(&self.pool).await? {
                let attempts: i64 = row.try_get("attempts")?;
                let max: i64 = row.try_get("max_attempts")?;
                let queued_at: Option<i64> = row.try_get("queued_at")?;
                let run_after: Option<i64> = row.try_get("run_after")?;
                // Fetched before its producer marked it queued: it was
                // queued all the same, by now at the latest.
                let queued_at = queued_at.unwrap_or(now);
                started.push(Started {
                    id: row.try_get("id")?,
                    attempt: u32::try_from(attempts.saturating_add(1)).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(max).unwrap_or(u32::MAX),
                    ready_at: Some(queued_at.max(run_after.unwrap_or(queued_at))),
                });
            }
        }
        Ok(started)
    }

    /// Records that `worker` is running these attempts (`(id, attempt)`,
    /// started at `started_at`): for attempts still running a short while
    /// after they started, so ops see long jobs as running. Conditional: a
    /// job already finished, or whose row already counts this attempt (its
    /// outcome was recorded first), is left alone. Rows locked in id order.
    pub async fn mark_running(
        &self,
        attempts: &[(String, u32)],
        worker: &str,
        started_at: i64,
    ) -> Result<(), StoreError> {
        let mut by_attempt: std::collections::BTreeMap<u32, Vec<&String>> = std::collections::BTreeMap::new();
        for (id, attempt) in attempts {
            by_attempt.entry(*attempt).or_default().push(id);
        }
        for (attempt, mut ids) in by_attempt {
            ids.sort();
            for (sql, chunk) in chunked_in(
                &format!(
                    "UPDATE job_runs SET state = 'running', attempts = $1, started_at = $2, worker = $3, \
                     queued_at = COALESCE(queued_at, $2) \
                     WHERE state NOT IN ('succeeded', 'dead') AND attempts < $1 AND id IN ({})",
                    self.in_lock_order()
                ),
                3,
                &ids,
            ) {
                let mut q = sqlx::query(&sql).bind(i64::from(attempt)).bind(started_at).bind(worker);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    /// Records the end of a batch of attempts in one transaction: each job
    /// run's new state — with the attempt's start (attempt number, worker,
    /// start time), which [`Self::startable`] left unwritten — and each
    /// attempt in the job's history. Conditional: a job already finished,
    /// or whose row counts a later attempt, is left alone (a finished job
    /// never changes state again). Rows are locked in id order, so two
    /// transactions touching the same jobs cannot deadlock.
    pub async fn finish(&self, batch: &[Finished]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut sorted: Vec<&Finished> = batch.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        // One statement per (state, attempt, worker) group and chunk, not
        // one per job: the per-row values come from a CASE over the ids.
        // Retries are few and carry more values: one statement each.
        let mut groups: std::collections::BTreeMap<(JobState, u32, &str), Vec<&Finished>> =
            std::collections::BTreeMap::new();
        let mut retries = Vec::new();
        for f in &sorted {
            match f.finish.state() {
                JobState::Retrying => retries.push(*f),
                state => groups
                    .entry((state, f.attempt, f.worker.as_str()))
                    .or_default()
                    .push(*f),
            }
        }
        let mut tx = self.pool.begin().await?;
        // Postgres: with one group and no retry, the group's statement
        // locks its rows in id order itself (chunks follow the sorted ids);
        // otherwise lock the whole batch in id order first, so the
        // statements below (each its own subset) cannot lock in an order
        // that deadlocks with a claim or a start of the same jobs.
        let one_statement = retries.is_empty() && groups.len() == 1;
        if self.engine == super::Engine::Postgres && !one_statement {
            let ids: Vec<&str> = sorted.iter().map(|f| f.id.as_str()).collect();
            for (sql, chunk) in chunked_in(
                "SELECT id FROM job_runs WHERE id IN ({ids}) ORDER BY id FOR UPDATE",
                0,
                &ids,
            ) {
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
        }
        const GUARD: &str = "state NOT IN ('succeeded', 'dead') AND attempts <= $3";
        for f in &retries {
            if let Finish::Retrying { error, retry_at } = &f.finish {
                sqlx::query(&format!(
                    "UPDATE job_runs SET state = 'retrying', last_error = $1, run_after = $2, attempts = $3, \
                     started_at = $4, worker = $5, queued_at = COALESCE(queued_at, $4) \
                     WHERE id = $6 AND {GUARD}"
                ))
                .bind(error)
                .bind(*retry_at)
                .bind(i64::from(f.attempt))
                .bind(f.started_at)
                .bind(&f.worker)
                .bind(&f.id)
                .execute(&mut *tx)
                .await?;
            }
        }
        for ((state, attempt, worker), rows) in &groups {
            for chunk in rows.chunks(IN_LIST_MAX / 3) {
                // $1 = now, $2 = worker, $3 = attempt; then per row (id,
                // value, started_at), the ids reused by the IN list.
                let id_at = |i: usize| 4 + 3 * i;
                let case = |col: usize| -> String {
                    let arms: Vec<String> = (0..chunk.len())
                        .map(|i| format!("WHEN ${} THEN ${}", id_at(i), id_at(i) + col))
                        .collect();
                    format!("CASE id {} END", arms.join(" "))
                };
                let ids: Vec<String> = (0..chunk.len()).map(|i| format!("${}", id_at(i))).collect();
                let ids = ids.join(", ");
                let in_ids = if one_statement {
                    self.in_lock_order().replace("{ids}", &ids)
                } else {
                    ids
                };
                let column = match state {
                    JobState::Succeeded => "result_ref",
                    _ => "last_error",
                };
                let sql = format!(
                    "UPDATE job_runs SET state = '{state}', finished_at = $1, worker = $2, attempts = $3, \
                     {column} = {}, started_at = {}, queued_at = COALESCE(queued_at, $1) \
                     WHERE id IN ({in_ids}) AND {GUARD}",
                    case(1),
                    case(2),
                    state = state.as_str(),
                );
                let mut q = sqlx::query(&sql).bind(now).bind(*worker).bind(i64::from(*attempt));
                for f in chunk {
                    let value = match &f.finish {
                        Finish::Succeeded { result_ref } => result_ref.as_deref(),
                        Finish::Retrying { error, .. } | Finish::Dead { error } => Some(error.as_str()),
                    };
                    q = q.bind(&f.id).bind(value).bind(f.started_at);
                }
                q.execute(&mut *tx).await?;
            }
        }
        // One multi-row insert per chunk: the history costs one statement
        // per batch, not one per job.
        const COLS: usize = 7;
        for chunk in sorted.chunks(IN_LIST_MAX) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let p: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error) \
                 VALUES {} ON CONFLICT (job_id, attempt) DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for f in chunk {
                q = q
                    .bind(&f.id)
                    .bind(i64::from(f.attempt))
                    .bind(&f.worker)
                    .bind(f.started_at)
                    .bind(now)
                    .bind(f.finish.state().as_str())
                    .bind(f.finish.error());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every recorded attempt of job `id`, oldest first.
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
             WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let attempt: i64 = r.try_get("attempt")?;
                let outcome: String = r.try_get("outcome")?;
                Ok(Attempt {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    worker: r.try_get("worker")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    outcome: outcome.parse().map_err(StoreError::Conflict)?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// One job run, only if it belongs to `tenant_id` (when given).
    pub async fn job(&self, tenant_id: Option<&str>, id: &str) -> Result<Option<JobRun>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM job_runs WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The job runs with these ids (those that exist), in no set order.
    pub async fn jobs_by_ids(&self, ids: &[String]) -> Result<Vec<JobRun>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let template = format!("SELECT {COLUMNS} FROM job_runs WHERE id IN ({{ids}})");
        for (sql, chunk) in chunked_in(&template, 0, ids) {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push(from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Job runs matching `filter`, newest first.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRun>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM job_runs WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR kind = $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.tenant_id.as_deref())
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(i64::from(filter.limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Counts of job runs per (kind, state), optionally for one tenant.
    pub async fn job_counts(&self, tenant_id: Option<&str>) -> Result<Vec<(String, JobState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, COUNT(*) AS n FROM job_runs WHERE ($1 IS NULL OR tenant_id = $1) GROUP BY kind, state ORDER BY kind, state",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok((
                    r.try_get("kind")?,
                    state.parse().map_err(|e: String| StoreError::Conflict(e))?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Jobs in one of `states` (of `kind`, when given) queued — or, never
    /// queued, created — before `before_ms`, with ids after `after_id`, in
    /// id order: one page of a re-queue (reconciler, `kairos jobs requeue`).
    pub async fn jobs_to_requeue(
        &self,
        states: &[JobState],
        kind: Option<&str>,
        before_ms: i64,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<JobRun>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..states.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM job_runs WHERE ($1 IS NULL OR kind = $1) AND COALESCE(queued_at, created_at) < $2 \
             AND id > $3 AND state IN ({}) ORDER BY id LIMIT $4",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(kind)
            .bind(before_ms)
            .bind(after_id)
            .bind(i64::from(limit.max(1)));
        for st in states {
            q = q.bind(st.as_str());
        }
        q.fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    /// Per kind, the oldest start of the jobs `running` since before
    /// `before_ms` (the reconciler's view of the jobs whose delivery the
    /// queue lost).
    pub async fn running_started_before(&self, before_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, MIN(started_at) AS oldest FROM job_runs WHERE state = 'running' AND started_at < $1 \
             GROUP BY kind ORDER BY kind",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("oldest")?)))
            .collect()
    }

    /// Hands the jobs of `kind` still `running` since before
    /// `started_before_ms` back to the dispatcher (`pending`, pushed on its
    /// next round) and returns their ids. A conditional UPDATE, so
    /// concurrent reconcilers release disjoint sets; rows locked in id
    /// order (see [`Self::mark_queued`]).
    pub async fn release_running_started_before(
        &self,
        kind: &str,
        started_before_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = match self.engine {
            super::Engine::Postgres => {
                "UPDATE job_runs SET state = 'pending' WHERE state = 'running' AND id IN \
                 (SELECT id FROM job_runs WHERE state = 'running' AND kind = $1 AND started_at < $2 \
                 ORDER BY id FOR UPDATE) RETURNING id"
            }
            super::Engine::Sqlite => {
                "UPDATE job_runs SET state = 'pending' WHERE state = 'running' AND kind = $1 AND started_at < $2 \
                 RETURNING id"
            }
        };
        let rows = sqlx::query(sql)
            .bind(kind)
            .bind(started_before_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Forgets a remembered fact (`kairos_meta`).
    pub async fn delete_meta(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kairos_meta WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A remembered fact (`kairos_meta`), if set.
    pub async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM kairos_meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Remembers a fact (`kairos_meta`), replacing its previous value.
    pub async fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kairos_meta (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a dead job back to `queued` with `extra_attempts` more
    /// attempts (its attempt count and last error are kept as history) and
    /// returns it, for the caller to put on the queue.
    pub async fn requeue_dead(&self, id: &str, extra_attempts: u32) -> Result<JobRun, StoreError> {
        let sql = format!(
            "UPDATE job_runs SET state = 'queued', max_attempts = attempts + $1, queued_at = $2, finished_at = NULL \
             WHERE id = $3 AND state = 'dead' RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(i64::from(extra_attempts.max(1)))
            .bind(now_ms())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => match self.job(None, id).await? {
                Some(job) => Err(StoreError::Conflict(format!(
                    "job {id} is {}, not dead: only dead jobs can be retried",
                    job.state
                ))),
                None => Err(StoreError::NotFound(format!("job {id}"))),
            },
        }
    }
}

/// Inserts job rows as `pending` (existing ids are left alone), in
/// multi-row statements. Called through [`crate::enqueue::insert_jobs`].
pub(crate) async fn insert_job_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[NewJob],
    now: i64,
) -> Result<(), sqlx::Error> {
    let refs: Vec<&NewJob> = jobs.iter().collect();
    insert_job_refs(tx, &refs, now, JobState::Pending).await
}

/// Inserts job rows in `state` (`pending`, or `queued` — then `queued_at`
/// is their creation — for a producer that pushes them itself right after
/// commit); existing ids are left alone.
pub(crate) async fn insert_job_refs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[&NewJob],
    now: i64,
    state: JobState,
) -> Result<(), sqlx::Error> {
    const COLS: usize = 8;
    let extra = match state {
        JobState::Queued => ", 'queued', 0, ${7}".to_owned(),
        other => format!(", '{}', 0, NULL", other.as_str()),
    };
    for chunk in jobs.chunks(IN_LIST_MAX) {
        let sql = format!(
            "INSERT INTO job_runs (id, tenant_id, kind, event_id, payload, max_attempts, created_at, run_after, \
             state, attempts, queued_at) VALUES {} ON CONFLICT (id) DO NOTHING",
            super::value_rows(chunk.len(), COLS, &extra)
        );
        let mut q = sqlx::query(&sql);
        for j in chunk {
            q = q
                .bind(&j.id)
                .bind(&j.tenant_id)
                .bind(&j.kind)
                .bind(j.event_id.as_deref())
                .bind(&j.payload)
                .bind(i64::from(j.max_attempts))
                .bind(now)
                .bind(j.run_after);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
