//! Every job kind Kairos can run, behind one small trait, and the registry
//! the worker dispatches through.
//!
//! A job kind is a module here: it owns its input format (a typed
//! [`Job::Payload`]), its config section, its logic and the SQL of its
//! result tables. Adding a kind means writing the module, naming it in
//! [`KINDS`] and building it in [`Registry::from_config`]; rules and config
//! can then name it.
//!
//! Shared services for kinds that write to people: [`llm`] (an
//! OpenAI-compatible client with a quota shared by all workers, and the
//! grounding check) and [`mail`] (SMTP).

pub mod active_model;
pub mod activity;
pub mod churn;
pub mod llm;
pub mod mail;
pub mod model_registry;
pub mod monitor;
pub mod nudge;
pub mod probe;
pub mod profile;
pub mod report;
pub mod sentiment;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kairos_core::config::JobPolicies;
use kairos_core::{Queue, Store};
use serde::de::DeserializeOwned;

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
    const KIND: &'static str;

    /// What a job of this kind is given, parsed from the stored JSON.
    type Payload: DeserializeOwned + Send + 'static;

    /// Runs one attempt. Must be idempotent: an attempt may be repeated
    /// after a crash.
    async fn run(&self, ctx: &JobContext, payload: Self::Payload) -> Result<JobOutput, JobError>;
}

/// A [`Job`] of any kind, as the worker runs it: on the payload's JSON
/// text. Implemented for every `Job`; a payload that does not parse fails
/// permanently (it would fail the same way on every attempt), with the
/// kind named.
#[async_trait]
pub trait DynJob: Send + Sync + 'static {
    /// The kind's name.
    fn kind(&self) -> &'static str;

    /// Parses `payload` and runs one attempt on it.
    async fn run(&self, ctx: &JobContext, payload: &str) -> Result<JobOutput, JobError>;
}

#[async_trait]
impl<J: Job> DynJob for J {
    fn kind(&self) -> &'static str {
        J::KIND
    }

    async fn run(&self, ctx: &JobContext, payload: &str) -> Result<JobOutput, JobError> {
        let payload: J::Payload = serde_json::from_str(payload)
            .map_err(|e| JobError::Permanent(format!("{}: invalid payload: {e}", J::KIND)))?;
        Job::run(self, ctx, payload).await
    }
}

/// Every job kind Kairos ships, by name: what config and rules may name.
/// Taken from the kinds themselves; [`Registry::from_config`] builds each
/// (a test keeps the two in step).
pub const KINDS: &[&str] = &[
    activity::Activity::KIND,
    churn::ChurnScore::KIND,
    churn::retrain::ChurnRetrain::KIND,
    monitor::ModelMonitor::KIND,
    nudge::Nudge::KIND,
    probe::Probe::KIND,
    profile::Profile::KIND,
    report::Report::KIND,
    sentiment::Sentiment::KIND,
    webhook::Webhook::KIND,
];

/// The config every kind is built from: each kind's own section and the
/// execution policies.
#[derive(Debug, Clone, Default)]
pub struct JobsConfig {
    /// `[churn]`.
    pub churn: churn::ChurnConfig,
    /// `[sentiment]` (the kind is built only when enabled).
    pub sentiment: sentiment::SentimentConfig,
    /// `[webhooks.TENANT]`.
    pub webhooks: webhook::Webhooks,
    /// `[reports]`.
    pub reports: report::ReportsConfig,
    /// `[profiles]`: the language and time zone reports are written and
    /// timed in, and nudges fall back to.
    pub profiles: kairos_core::profile::ProfilesConfig,
    /// `[jobs.KIND]` (sentiment records its notification jobs with their attempts).
    pub policies: JobPolicies,
    /// `[llm]`; `None`: no LLM (kinds use their templates).
    pub llm: Option<llm::LlmConfig>,
    /// `[smtp]`; `None`: no email.
    pub smtp: Option<mail::SmtpConfig>,
    /// `[queue]`: the LLM quota is shared through the queue's Redis (or held
    /// in-process when the queue is SQLite).
    pub queue: kairos_core::config::QueueConfig,
    /// `[nudges]`: the nudge rules and their guards.
    pub nudges: nudge::NudgesConfig,
    /// `[monitor]`: model monitoring and its drift alert.
    pub monitor: monitor::MonitorConfig,
}

/// Why the job kinds could not be built (at process start: a wrong model
/// path or a missing secret stops the process, named, before any job runs).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `webhook`: a secret is missing.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookSetupError),
    /// `sentiment`: the model, its head or its registration.
    #[error(transparent)]
    Sentiment(#[from] sentiment::SetupError),
    /// `[llm]`: the key's variable is unset, or the quota's Redis is unreachable.
    #[error(transparent)]
    Llm(#[from] llm::LlmSetupError),
    /// `[smtp]`: a credential's variable is unset, or TLS could not be set up.
    #[error(transparent)]
    Mail(#[from] mail::MailSetupError),
    /// `[nudges.tracking]`: the signing key's variable is unset or short.
    #[error(transparent)]
    Tracking(#[from] nudge::tracking::TrackingSetupError),
}

/// The job kinds a process can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<&'static str, Arc<dyn DynJob>>,
    /// The `nudge` kind's rules, for the config watcher (hot reload).
    nudge_rules: Option<nudge::reload::NudgeRules>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}

impl Registry {
    /// Builds every kind in `only` (empty = all) with its config: webhook
    /// secrets are read from the environment, and `sentiment`, when
    /// enabled, loads its model (off the async runtime) and registers its
    /// default head. A kind left out of `only` loads nothing.
    pub async fn from_config(config: &JobsConfig, only: &[String], store: &Store) -> Result<Self, SetupError> {
        let wanted = |kind: &str| only.is_empty() || only.iter().any(|k| k == kind);
        let mut r = Self::default();
        if wanted(activity::Activity::KIND) {
            r.register(activity::Activity);
        }
        if wanted(churn::ChurnScore::KIND) {
            r.register(churn::ChurnScore::new(config.churn.clone()));
        }
        if wanted(churn::retrain::ChurnRetrain::KIND) {
            r.register(churn::retrain::ChurnRetrain::new(config.churn.retrain.clone()));
        }
        if wanted(monitor::ModelMonitor::KIND) {
            r.register(monitor::ModelMonitor::new(config.monitor.clone()));
        }
        if wanted(nudge::Nudge::KIND) {
            let kind = nudge::Nudge::from_config(config).await?;
            r.nudge_rules = Some(kind.rules_handle());
            r.register(kind);
        }
        if wanted(probe::Probe::KIND) {
            r.register(probe::Probe);
        }
        if wanted(profile::Profile::KIND) {
            r.register(profile::Profile);
        }
        if wanted(webhook::Webhook::KIND) {
            r.register(webhook::Webhook::from_config(&config.webhooks)?);
        }
        if wanted(report::Report::KIND) {
            r.register(report::Report::new(Arc::new(
                report::Reporter::from_jobs_config(config).await?,
            )));
        }
        if wanted(sentiment::Sentiment::KIND) && config.sentiment.enabled {
            r.register(sentiment::Sentiment::start(config, store).await?);
        }
        Ok(r)
    }

    /// Adds (or replaces) a kind.
    pub fn register<J: DynJob>(&mut self, job: J) {
        self.jobs.insert(job.kind(), Arc::new(job));
    }

    /// The job for `kind`.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn DynJob>> {
        self.jobs.get(kind).cloned()
    }

    /// The handle a config watcher reloads the `nudge` kind's rules
    /// through; `None` when this process does not run the kind.
    pub fn nudge_rules(&self) -> Option<nudge::reload::NudgeRules> {
        self.nudge_rules.clone()
    }

    /// Names of every registered kind, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.jobs.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::connect(&format!("sqlite://{}", dir.path().join("k.db").display()), 1)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn from_config_builds_every_known_kind_but_a_disabled_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let r = Registry::from_config(&JobsConfig::default(), &[], &store)
            .await
            .unwrap();
        let mut expected: Vec<&str> = KINDS.iter().copied().filter(|k| *k != sentiment::KIND).collect();
        expected.sort_unstable();
        assert_eq!(r.kinds(), expected);
        let only = Registry::from_config(&JobsConfig::default(), &["probe".into()], &store)
            .await
            .unwrap();
        assert_eq!(only.kinds(), ["probe"]);
    }

    #[tokio::test]
    async fn an_invalid_payload_fails_permanently_naming_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let queue = kairos_core::queue::connect(&kairos_core::config::QueueConfig {
            url: format!("sqlite://{}", dir.path().join("q.db").display()),
            ..Default::default()
        })
        .await
        .unwrap();
        let ctx = JobContext {
            job_id: "j1".into(),
            tenant_id: "t1".into(),
            attempt: 1,
            max_attempts: 1,
            store,
            queue,
        };
        let job: Arc<dyn DynJob> = Arc::new(activity::Activity);
        match job.run(&ctx, r#"{"id": 1}"#).await {
            Err(JobError::Permanent(m)) => assert!(m.starts_with("activity: invalid payload:"), "{m}"),
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }
}
