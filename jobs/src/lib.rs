//! Every job kind Kairos can run, behind one small trait, and the registry
//! the worker dispatches through.
//!
//! A job kind is a module here: it owns its input format, its logic and the
//! SQL of its result tables. Adding a kind means writing the module and
//! registering it in [`Registry::standard`]; rules and config can then name
//! it.

pub mod activity;
pub mod churn;
pub mod model_registry;
pub mod probe;
pub mod profile;
pub mod sentiment;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kairos_core::{Queue, Store};

/// What a job sees besides its input.
#[derive(Clone)]
pub struct JobContext {
    /// The job run id.
    pub job_id: String,
    /// The tenant the job works for; every read and write is scoped to it.
    pub tenant_id: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed before the job is dead-lettered.
    pub max_attempts: u32,
    /// The store, for results.
    pub store: Store,
    /// The queue, for jobs this job creates (recorded in the store first,
    /// queued after commit; see `sentiment`).
    pub queue: Arc<dyn Queue>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.job_id)
            .field("tenant_id", &self.tenant_id)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A successful attempt's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOutput {
    /// Where the result is stored, shown to ops (e.g. `account_activity/acme-1`).
    pub result_ref: Option<String>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (a dependency was down, a timeout).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way every time (bad input): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retryable(format!("store: {e}"))
    }
}

/// One job kind.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// The kind's name, as used in config, rules and queues.
    fn kind(&self) -> &'static str;

    /// Runs one attempt on `payload` (JSON text). Must be idempotent: an
    /// attempt may be repeated after a crash.
    async fn run(&self, ctx: &JobContext, payload: &str) -> Result<JobOutput, JobError>;
}

/// The job kinds a process can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<&'static str, Arc<dyn Job>>,
}

/// Every job kind a config may name: the standard ones plus those that
/// need config or model files to run (`sentiment`, `webhook`), which the
/// process registers when it starts a worker.
pub const KNOWN_KINDS: &[&str] = &[
    "activity",
    "churn_score",
    "probe",
    profile::KIND,
    sentiment::KIND,
    webhook::KIND,
];

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}

impl Registry {
    /// Every job kind shipped with Kairos.
    pub fn standard() -> Self {
        let mut r = Self::default();
        r.register(Arc::new(activity::Activity));
        // Default `[churn]` config; `kairos::Runtime::open` re-registers it with the file's.
        r.register(Arc::new(churn::ChurnScore::new(Default::default())));
        r.register(Arc::new(probe::Probe));
        r.register(Arc::new(profile::Profile));
        // No endpoints until `kairos::start` registers it with `[webhooks]`.
        r.register(Arc::new(webhook::Webhook::none()));
        r
    }

    /// Adds (or replaces) a kind.
    pub fn register(&mut self, job: Arc<dyn Job>) {
        self.jobs.insert(job.kind(), job);
    }

    /// The job for `kind`.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn Job>> {
        self.jobs.get(kind).cloned()
    }

    /// Names of every registered kind, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.jobs.keys().copied().collect()
    }
}
