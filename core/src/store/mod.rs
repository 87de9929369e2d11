//! The relational store: tenants and keys, events, job runs and job results.
//!
//! One code path for both deployments: `sqlx::Any` over SQLite (embedded) or
//! Postgres (distributed), one portable schema in `migrations/`, every
//! statement bound with `$N` parameters (both drivers accept them).
//! Timestamps are epoch milliseconds and JSON is stored as text, which keeps
//! the schema identical on both engines.

mod accounts;
mod alerts;
mod audit;
mod ingest;
mod job_runs;
mod ops;
mod pauses;
mod push_intents;
mod queue_stats;
mod schedule_switches;
mod schedules;
mod tenants;
mod users;
mod workers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use accounts::{
    decode_cursor, guard_subject, is_erased, AccountFilter, EraseRequest, Erasure, Page, PersonFilter, Upserted,
    WriteMode, WriteSource, CURSOR_PATTERN, ERASURE_TABLES, PAGE_DEFAULT, PAGE_MAX,
};
pub use alerts::{raise_alert, Alert, AlertFilter, NewAlert};
pub use audit::{record_audit_in, AuditEntry, NewAudit};
pub use ingest::{Debounce, IngestOutcome, PlannedJob, StoredEvent};
pub(crate) use job_runs::insert_job_rows;
pub use job_runs::{Attempt, Finish, Finished, JobFilter, JobRun, JobState, Started};
pub use ops::{ActiveCount, FinishedMinute, JobPageFilter, RecentTiming};
pub use pauses::{
    PausedKind, PausedTenant, Pauses, ALL_KINDS, AUDIT_PAUSED, AUDIT_RESUMED, AUDIT_TENANT_PAUSED, AUDIT_TENANT_RESUMED,
};
pub use schedule_switches::{ScheduleSwitch, AUDIT_SCHEDULE_DISABLED, AUDIT_SCHEDULE_ENABLED};
pub use schedules::TickRecord;
pub use tenants::{ApiKey, Tenant};
pub use users::{DashboardSession, DashboardUser};
pub use workers::{WorkerInfo, WorkerRegistration, WorkerStatus, DEAD_AFTER_BEATS, WORKER_RETENTION};

/// Why a store operation failed. `Unavailable` is what the API maps to 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the operation failed in it.
    #[error("store unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A referenced row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Preparing the database file or URL failed.
    #[error("invalid store url `{url}`: {reason}")]
    Url {
        /// The URL from config.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which engine is behind the pool, for the few places that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Embedded file database.
    Sqlite,
    /// Shared server database.
    Postgres,
}

/// A handle to the store; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// The ingest group committer, started on first use (see
    /// `enqueue::group`).
    pub(crate) ingest_group: std::sync::Arc<std::sync::OnceLock<crate::enqueue::group::Handle>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

impl Store {
    /// Connects to `url`. For SQLite the file (and its folder) is created on
    /// first use and switched to WAL so readers never block the writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        let mut url = url.to_owned();
        if engine == Engine::Sqlite {
            url = prepare_sqlite_url(&url)?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            engine,
            ingest_group: Default::default(),
        })
    }

    /// Applies pending migrations from `migrations/`.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The pool, for job modules that own result tables (each job kind's SQL
    /// lives with the job, not here).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `$1, $2, ...` starting after `offset` bound values: IN-lists stay bound
/// parameters, never spliced values.
pub(crate) fn placeholders(offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", offset + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, ..., $cols<extra>), ($cols+1, ...)` for `rows` rows of a
/// multi-row `VALUES`; `extra` is appended inside each row's parentheses
/// (literals, or `${c}` to repeat the row's column `c`, 1-based).
pub(crate) fn value_rows(rows: usize, cols: usize, extra: &str) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            let extra = (1..=cols).rev().fold(extra.to_owned(), |e, c| {
                e.replace(&format!("${{{c}}}"), &format!("${}", r * cols + c))
            });
            format!("({}{extra})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most values bound in one `IN (...)` list or multi-row `VALUES`. Both
/// engines accept far more bound parameters (SQLite 32,766, Postgres
/// 65,535 per statement); 500 keeps each statement short and its text
/// reusable by the statement cache.
pub(crate) const IN_LIST_MAX: usize = 500;

/// For each chunk of at most [`IN_LIST_MAX`] `values`: `template` with
/// `{ids}` replaced by that chunk's placeholders, numbered after `offset`
/// leading parameters, and the chunk to bind after them. Every statement
/// over a list of ids goes through here, so none splices values into SQL.
pub(crate) fn chunked_in<'v, T>(
    template: &'v str,
    offset: usize,
    values: &'v [T],
) -> impl Iterator<Item = (String, &'v [T])> + 'v {
    values
        .chunks(IN_LIST_MAX)
        .map(move |chunk| (template.replace("{ids}", &placeholders(offset, chunk.len())), chunk))
}

fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Url {
            url: url.into(),
            reason: "an SQLite store needs a file path (memory databases are not shared between connections)".into(),
        });
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Url {
                url: url.into(),
                reason: format!("cannot create folder {}: {e}", dir.display()),
            })?;
        }
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}
