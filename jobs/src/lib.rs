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

    /// Whether the worker hands this kind's fetched jobs to
    /// [`Job::run_batch`] together (one attempt each, one task, one
    /// timeout), so a kind whose attempts are small store writes can make
    /// them one transaction per batch.
    const BATCHED: bool = false;

    /// Runs one attempt of each job; one result per job, in order. Must
    /// be as idempotent as `run`, job by job. By default, `run` one after
    /// the other.
    async fn run_batch(&self, jobs: Vec<(&JobContext, Self::Payload)>) -> Vec<Result<JobOutput, JobError>> {
        let mut out = Vec::with_capacity(jobs.len());
        for (ctx, payload) in jobs {
            out.push(Job::run(self, ctx, payload).await);
        }
        out
    }
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

    /// Whether fetched jobs of this kind run together ([`Job::BATCHED`]).
    fn batched(&self) -> bool;

    /// Parses each payload and runs one attempt of each job together
    /// ([`Job::run_batch`]); one result per job, in order.
    async fn run_batch(&self, jobs: &[(JobContext, String)]) -> Vec<Result<JobOutput, JobError>>;
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

    fn batched(&self) -> bool {
        J::BATCHED
    }

    async fn run_batch(&self, jobs: &[(JobContext, String)]) -> Vec<Result<JobOutput, JobError>> {
        // A payload that does not parse fails alone; the others run
        // together, their results put back in their places.
        let mut out: Vec<Option<Result<JobOutput, JobError>>> = Vec::with_capacity(jobs.len());
        let mut parsed = Vec::with_capacity(jobs.len());
        let mut places = Vec::with_capacity(jobs.len());
        for (i, (ctx, payload)) in jobs.iter().enumerate() {
            match serde_json::from_str::<J::Payload>(payload) {
                Ok(p) => {
                    out.push(None);
                    parsed.push((ctx, p));
                    places.push(i);
                }
                Err(e) => out.push(Some(Err(JobError::Permanent(format!(
                    "{}: invalid payload: {e}",
                    J::KIND
                ))))),
            }
        }
        let ran = Job::run_batch(self, parsed).await;
        let mut ran = ran.into_iter();
        for i in places {
            out[i] = Some(
                ran.next()
                    .unwrap_or_else(|| Err(JobError::Retryable(format!("{}: no result from the batch", J::KIND)))),
            );
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(JobError::Retryable(format!("{}: no result from the batch", J::KIND)))))
            .collect()
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

    async fn context(dir: &tempfile::TempDir, name: &str, tenant: &str) -> JobContext {
        let store = Store::connect(&format!("sqlite://{}", dir.path().join(name).display()), 2)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let queue = kairos_core::queue::connect(&kairos_core::config::QueueConfig {
            url: format!("sqlite://{}", dir.path().join(format!("q-{name}")).display()),
            ..Default::default()
        })
        .await
        .unwrap();
        JobContext {
            job_id: "j".into(),
            tenant_id: tenant.into(),
            attempt: 1,
            max_attempts: 3,
            store,
            queue,
        }
    }

    /// A row of `account_activity_daily`: tenant, account, day, counters.
    type DailyRow = (String, String, String, i64, i64, i64, i64, i64, i64);

    async fn daily(store: &Store) -> Vec<DailyRow> {
        sqlx::query_as(
            "SELECT tenant_id, account_id, day, events, logins, comments, tickets, payments, failed_payments \
             FROM account_activity_daily ORDER BY tenant_id, account_id, day",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    }

    /// The activity kind's batch (one transaction, sums per account)
    /// leaves exactly what running its jobs one by one leaves: duplicates
    /// in the batch and events applied before count once, payments with an
    /// amount (checked one by one) and profile events are handled, and an
    /// invalid payload fails alone.
    #[tokio::test]
    async fn an_activity_batch_adds_up_like_its_jobs_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let day = 1_764_547_200_000_i64; // 2025-12-01T00:00Z
        let ev = |id: &str, ty: &str, acct: &str, at: i64, data: serde_json::Value| {
            serde_json::json!({"id": id, "type": ty, "account_id": acct, "occurred_at_ms": at, "data": data})
                .to_string()
        };
        let tenants = ["t1", "t2"];
        let mut payloads: Vec<(usize, String)> = Vec::new();
        for (t, _) in tenants.iter().enumerate() {
            payloads.extend([
                (t, ev("e1", "user.logged_in", "a", day + 5_000, serde_json::json!({}))),
                (t, ev("e2", "comment.created", "a", day + 1_000, serde_json::json!({}))),
                (
                    t,
                    ev("e3", "ticket.created", "b", day + 90_000_000, serde_json::json!({})),
                ),
                (
                    t,
                    ev(
                        "e4",
                        "payment.succeeded",
                        "b",
                        day + 7_000,
                        serde_json::json!({"amount_cents": 1250}),
                    ),
                ),
                (
                    t,
                    ev("e5", "payment.succeeded", "a", day + 8_000, serde_json::json!({})),
                ),
                (t, ev("e6", "payment.failed", "c", day + 9_000, serde_json::json!({}))),
                (t, ev("e7", "account.updated", "c", day + 9_500, serde_json::json!({}))),
                (t, ev("e1", "user.logged_in", "a", day + 5_000, serde_json::json!({}))),
                (t, r#"{"id": 1}"#.to_owned()),
                (
                    t,
                    ev("e8", "user.logged_in", "a", day + 86_400_000 + 3, serde_json::json!({})),
                ),
            ]);
        }
        let job: Arc<dyn DynJob> = Arc::new(activity::Activity);
        // One by one, on one store; `e2` applied beforehand on both.
        let one = [context(&dir, "one.db", "t1").await, context(&dir, "one.db", "t2").await];
        let all = [context(&dir, "all.db", "t1").await, context(&dir, "all.db", "t2").await];
        let e2 = ev("e2", "comment.created", "a", day + 1_000, serde_json::json!({}));
        for ctx in one.iter().chain(&all) {
            job.run(ctx, &e2).await.unwrap();
        }
        let mut singles = Vec::new();
        for (t, p) in &payloads {
            singles.push(job.run(&one[*t], p).await.map(|o| o.result_ref));
        }
        // Together, on the other.
        let batch: Vec<(JobContext, String)> = payloads.iter().map(|(t, p)| (all[*t].clone(), p.clone())).collect();
        let together: Vec<_> = job
            .run_batch(&batch)
            .await
            .into_iter()
            .map(|r| r.map(|o| o.result_ref))
            .collect();
        assert_eq!(singles.len(), together.len());
        for (i, (a, b)) in singles.iter().zip(&together).enumerate() {
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "job {i}"),
                (Err(JobError::Permanent(a)), Err(JobError::Permanent(b))) => assert_eq!(a, b, "job {i}"),
                other => panic!("job {i}: {other:?}"),
            }
        }
        for t in tenants {
            let a = activity::read_all(&one[0].store, t).await.unwrap();
            let b = activity::read_all(&all[0].store, t).await.unwrap();
            assert!(!a.is_empty());
            assert_eq!(a, b, "tenant {t}");
        }
        assert_eq!(daily(&one[0].store).await, daily(&all[0].store).await);
        // Delivered again (an ack lost): nothing changes.
        let before = activity::read_all(&all[0].store, "t1").await.unwrap();
        assert_eq!(job.run_batch(&batch).await.len(), batch.len());
        assert_eq!(activity::read_all(&all[0].store, "t1").await.unwrap(), before);
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
