//! The reads and the few writes of the ops dashboard: keyset pages of job
//! runs and of the audit log, per-kind activity for the overview, and
//! discarding dead jobs. Every function takes the tenant scope (`None`:
//! every tenant, for unscoped users); statements are built from the
//! filters that are set (each one bound) so Postgres plans each shape with
//! the index that fits rather than one generic plan of `$n IS NULL OR ...`.

use sqlx::Row;

use super::audit::AuditEntry;
use super::job_runs::{from_row, COLUMNS};
use super::{JobRun, JobState, Store, StoreError};

/// One page of a job-run listing, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobPageFilter {
    /// Only this tenant's (the user's scope, or a filter).
    pub tenant_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Created at or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Created before (epoch ms).
    pub to_ms: Option<i64>,
    /// Keyset cursor: rows strictly older than this `(created_at, id)`.
    pub before: Option<(i64, String)>,
    /// Page size (clamped to 1..=500).
    pub limit: u32,
}

/// A bound value of a statement built from optional filters.
enum Bind {
    Text(String),
    Int(i64),
}

/// `WHERE` clauses and their bound values, numbered in order.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    fn push(&mut self, column_op: &str, value: Bind) {
        self.binds.push(value);
        self.sql.push(format!("{column_op} ${}", self.binds.len()));
    }

    fn push_keyset(&mut self, at_column: &str, (at, id): (i64, String)) {
        self.binds.push(Bind::Int(at));
        self.binds.push(Bind::Text(id));
        let n = self.binds.len();
        // A row-value comparison (both engines) that Postgres turns into an
        // index condition on `(..., created_at, id)`.
        self.sql.push(format!("({at_column}, id) < (${}, ${n})", n - 1));
    }

    /// `LIMIT $n` with `n` bound last.
    fn limit(&mut self, n: i64) -> String {
        self.binds.push(Bind::Int(n));
        format!("LIMIT ${}", self.binds.len())
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }

    fn query<'q>(&'q self, sql: &'q str) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(sql);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Finished jobs of one tenant and kind in one minute of the recent window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedMinute {
    /// Owning tenant.
    pub tenant_id: String,
    /// Job kind.
    pub kind: String,
    /// Minute (epoch ms / 60,000).
    pub minute: i64,
    /// Succeeded in that minute.
    pub succeeded: i64,
    /// Dead-lettered in that minute.
    pub dead: i64,
}

/// Timings of one recently finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentTiming {
    /// Owning tenant.
    pub tenant_id: String,
    /// Job kind.
    pub kind: String,
    /// Queued → started of its last attempt (ms).
    pub wait_ms: Option<i64>,
    /// Started → finished of its last attempt (ms).
    pub run_ms: Option<i64>,
}

/// The current number of unfinished jobs of one tenant, kind and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCount {
    /// Owning tenant.
    pub tenant_id: String,
    /// Job kind.
    pub kind: String,
    /// Pending, queued, running or retrying.
    pub state: JobState,
    /// How many.
    pub n: i64,
}

impl Store {
    /// A keyset page of job runs matching `filter`, newest first: at most
    /// `limit` rows, plus one more when there is a next page (the caller
    /// drops it and uses the last row kept as the next cursor).
    pub async fn job_page(&self, filter: &JobPageFilter) -> Result<Vec<JobRun>, StoreError> {
        let mut c = Conditions::default();
        if let Some(t) = &filter.tenant_id {
            c.push("tenant_id =", Bind::Text(t.clone()));
        }
        if let Some(k) = &filter.kind {
            c.push("kind =", Bind::Text(k.clone()));
        }
        if let Some(s) = filter.state {
            c.push("state =", Bind::Text(s.as_str().into()));
        }
        if let Some(f) = filter.from_ms {
            c.push("created_at >=", Bind::Int(f));
        }
        if let Some(t) = filter.to_ms {
            c.push("created_at <", Bind::Int(t));
        }
        if let Some(b) = filter.before.clone() {
            c.push_keyset("created_at", b);
        }
        let clause = c.clause();
        let limit = c.limit(i64::from(filter.limit.clamp(1, 500)) + 1);
        let sql = format!("SELECT {COLUMNS} FROM job_runs {clause} ORDER BY created_at DESC, id DESC {limit}");
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Unfinished jobs (pending, queued, running, retrying) per tenant,
    /// kind and state; reads only those rows through the state index.
    pub async fn active_counts(&self, tenant_id: Option<&str>) -> Result<Vec<ActiveCount>, StoreError> {
        let mut c = Conditions::default();
        c.sql
            .push("state IN ('pending', 'queued', 'running', 'retrying')".into());
        if let Some(t) = tenant_id {
            c.push("tenant_id =", Bind::Text(t.into()));
        }
        let sql = format!(
            "SELECT tenant_id, kind, state, COUNT(*) AS n FROM job_runs {} GROUP BY tenant_id, kind, state",
            c.clause()
        );
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(ActiveCount {
                    tenant_id: r.try_get("tenant_id")?,
                    kind: r.try_get("kind")?,
                    state: state.parse().map_err(StoreError::Conflict)?,
                    n: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// Succeeded and dead jobs per kind and minute, finished since `since_ms`.
    pub async fn finished_per_minute(
        &self,
        tenant_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<FinishedMinute>, StoreError> {
        let mut c = Conditions::default();
        c.push("finished_at >=", Bind::Int(since_ms));
        if let Some(t) = tenant_id {
            c.push("tenant_id =", Bind::Text(t.into()));
        }
        let sql = format!(
            "SELECT tenant_id, kind, finished_at / 60000 AS minute, \
             SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS ok, \
             SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead \
             FROM job_runs {} GROUP BY tenant_id, kind, finished_at / 60000",
            c.clause()
        );
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FinishedMinute {
                    tenant_id: r.try_get("tenant_id")?,
                    kind: r.try_get("kind")?,
                    minute: r.try_get("minute")?,
                    succeeded: r.try_get("ok")?,
                    dead: r.try_get("dead")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }

    /// Wait and run times of the (at most `limit`) most recently finished
    /// jobs since `since_ms`: the bounded sample behind the overview's
    /// percentiles.
    pub async fn recent_timings(
        &self,
        tenant_id: Option<&str>,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<RecentTiming>, StoreError> {
        let mut c = Conditions::default();
        c.push("finished_at >=", Bind::Int(since_ms));
        if let Some(t) = tenant_id {
            c.push("tenant_id =", Bind::Text(t.into()));
        }
        let clause = c.clause();
        let limit = c.limit(i64::from(limit.max(1)));
        let sql = format!(
            "SELECT tenant_id, kind, queued_at, run_after, started_at, finished_at FROM job_runs {clause} \
             ORDER BY finished_at DESC {limit}"
        );
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let queued: Option<i64> = r.try_get("queued_at")?;
                // The last attempt's wait: from its retry's due time, if later.
                let run_after: Option<i64> = r.try_get("run_after")?;
                let queued = queued.map(|q| q.max(run_after.unwrap_or(q)));
                let started: Option<i64> = r.try_get("started_at")?;
                let finished: Option<i64> = r.try_get("finished_at")?;
                Ok(RecentTiming {
                    tenant_id: r.try_get("tenant_id")?,
                    kind: r.try_get("kind")?,
                    wait_ms: queued.zip(started).map(|(q, s)| (s - q).max(0)),
                    run_ms: started.zip(finished).map(|(s, f)| (f - s).max(0)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }

    /// Deletes a dead job run and its attempts (the dashboard's "discard"),
    /// only when it is dead and in scope; says whether it did.
    pub async fn discard_dead(&self, tenant_id: Option<&str>, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("DELETE FROM job_runs WHERE id = $1 AND state = 'dead' AND ($2 IS NULL OR tenant_id = $2)")
                .bind(id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM job_attempts WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A keyset page of the audit log, newest first (one more row than
    /// `limit` when there is a next page).
    pub async fn audit_page(
        &self,
        tenant_id: Option<&str>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut c = Conditions::default();
        if let Some(t) = tenant_id {
            c.push("tenant_id =", Bind::Text(t.into()));
        }
        if let Some(b) = before {
            c.push_keyset("at", b);
        }
        let clause = c.clause();
        let limit = c.limit(i64::from(limit.clamp(1, 500)) + 1);
        let sql = format!(
            "SELECT id, tenant_id, actor, action, target, details, at FROM audit_log {clause} \
             ORDER BY at DESC, id DESC {limit}"
        );
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}
