//! Worker presence: each worker process registers itself when it starts
//! and heartbeats every `heartbeat_ms` (what it runs, how many jobs it has
//! in flight). Readers (`kairos workers`, the dashboard, the
//! `kairos_workers_alive` gauge) judge liveness from the row alone — each
//! row carries its own heartbeat interval — so they need no worker config.

use std::fmt;
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

/// Missed heartbeats after which a worker is shown as dead.
pub const DEAD_AFTER_BEATS: i64 = 3;

/// How long the row of a worker that stopped or died is kept before
/// [`Store::prune_workers`] removes it.
pub const WORKER_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What a worker process says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    /// Unique per process (`host-pid-random`), as recorded on job runs.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The `kairos` version it runs.
    pub version: String,
    /// The job kinds it consumes.
    pub kinds: Vec<String>,
    /// How often it heartbeats; liveness is judged against it.
    pub heartbeat: Duration,
}

/// Where a registered worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Heartbeat within [`DEAD_AFTER_BEATS`] intervals.
    Alive,
    /// Stopped heartbeating without saying goodbye (killed, host lost).
    Dead,
    /// Shut down gracefully.
    Stopped,
}

impl WorkerStatus {
    /// `alive`, `dead` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Alive => "alive",
            WorkerStatus::Dead => "dead",
            WorkerStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One worker process as last heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Worker id (as on `job_runs.worker` and `job_attempts.worker`).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// `kairos` version.
    pub version: String,
    /// Job kinds it consumes.
    pub kinds: Vec<String>,
    /// Jobs running in it at its last heartbeat.
    pub in_flight: u64,
    /// Its heartbeat interval (ms).
    pub heartbeat_ms: i64,
    /// Registered at (epoch ms).
    pub started_at: i64,
    /// Last heartbeat (epoch ms).
    pub last_heartbeat: i64,
    /// Graceful stop (epoch ms), if it stopped.
    pub stopped_at: Option<i64>,
    /// Alive, dead or stopped, judged when read.
    pub status: WorkerStatus,
}

impl WorkerInfo {
    fn from_row(row: &AnyRow, now: i64) -> Result<Self, StoreError> {
        let kinds: String = row.try_get("kinds")?;
        let pid: i64 = row.try_get("pid")?;
        let in_flight: i64 = row.try_get("in_flight")?;
        let heartbeat_ms: i64 = row.try_get("heartbeat_ms")?;
        let last_heartbeat: i64 = row.try_get("last_heartbeat")?;
        let stopped_at: Option<i64> = row.try_get("stopped_at")?;
        let status = if stopped_at.is_some() {
            WorkerStatus::Stopped
        } else if now - last_heartbeat > DEAD_AFTER_BEATS * heartbeat_ms.max(1) {
            WorkerStatus::Dead
        } else {
            WorkerStatus::Alive
        };
        Ok(Self {
            id: row.try_get("id")?,
            host: row.try_get("host")?,
            pid: u32::try_from(pid).unwrap_or(0),
            version: row.try_get("version")?,
            kinds: serde_json::from_str(&kinds).unwrap_or_default(),
            in_flight: u64::try_from(in_flight).unwrap_or(0),
            heartbeat_ms,
            started_at: row.try_get("started_at")?,
            last_heartbeat,
            stopped_at,
            status,
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Registers (or re-registers) a worker process: its row is written
    /// afresh, alive as of now.
    pub async fn register_worker(&self, w: &WorkerRegistration) -> Result<(), StoreError> {
        let now = now_ms();
        let kinds = serde_json::to_string(&w.kinds).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO workers (id, host, pid, version, kinds, in_flight, heartbeat_ms, started_at, last_heartbeat) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7) \
             ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, version = $4, kinds = $5, heartbeat_ms = $6, \
             last_heartbeat = $7, stopped_at = NULL",
        )
        .bind(&w.id)
        .bind(&w.host)
        .bind(i64::from(w.pid))
        .bind(&w.version)
        .bind(kinds)
        .bind(ms(w.heartbeat).max(1))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat of worker `id` with its jobs in flight. Returns
    /// false when the row is gone (pruned while the process was stalled):
    /// the worker should register again.
    pub async fn heartbeat_worker(&self, id: &str, in_flight: u64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE workers SET last_heartbeat = $1, in_flight = $2, stopped_at = NULL WHERE id = $3")
                .bind(now_ms())
                .bind(i64::try_from(in_flight).unwrap_or(i64::MAX))
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks worker `id` as stopped gracefully (kept for the listing until
    /// pruned).
    pub async fn stop_worker(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET stopped_at = $1, in_flight = 0 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every registered worker, alive first, then by host and id. Status is
    /// judged now against each row's own heartbeat interval.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT id, host, pid, version, kinds, in_flight, heartbeat_ms, started_at, last_heartbeat, stopped_at \
             FROM workers ORDER BY host, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| WorkerInfo::from_row(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|w| w.status != WorkerStatus::Alive);
        Ok(out)
    }

    /// Removes workers not heard from for `older_than` (dead or stopped);
    /// returns how many.
    pub async fn prune_workers(&self, older_than: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM workers WHERE last_heartbeat < $1")
            .bind(now_ms() - ms(older_than))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
