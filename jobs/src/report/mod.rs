//! `report`: weekly (or monthly) executive reports — per account, to its
//! executives, and per tenant (the portfolio), to the tenant's team.
//!
//! One kind, two payloads:
//! - a **schedule tick** (`{"schedule", "tick"}`, fan-out per tenant, from
//!   the hourly `weekly-reports` schedule): finds the accounts for which
//!   it is now past the send time (Monday 09:00 by default) in their own
//!   zone, within `catch_up`, and records one report job per account (and
//!   one for the portfolio) with an id derived from (tenant, account,
//!   period), so a re-fired tick or a second replica records nothing new;
//! - **one report** (`{"account_id", "period"}` or `{"scope": "tenant"}`):
//!   gathers the facts ([`facts`]), writes the narrative ([`narrative`]),
//!   renders it ([`render`], [`charts`]), stores it ([`store`], unique per
//!   (tenant, account, period, version)), then delivers it ([`deliver`]).
//!   A retried or duplicated job finds the stored report and only finishes
//!   its deliveries; `rerun: true` (the CLI's `--rerun`) adds a version.
//!
//! Modules: `config` (`[reports]`), `period`, `metrics`, `facts`,
//! `narrative`, `charts`, `render`, `raster` (the charts as PNGs for
//! emails), `store`, `deliver`.

pub mod charts;
pub mod config;
pub mod deliver;
pub mod facts;
pub mod metrics;
pub mod narrative;
pub mod period;
pub mod raster;
pub mod render;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kairos_core::config::JobPolicies;
use kairos_core::enqueue::{enqueue_recorded, insert_jobs, NewJob};
use kairos_core::profile::{self, Account, ProfilesConfig};
use kairos_core::store::{AccountFilter, Tenant};
use kairos_core::time::now_ms;
use kairos_core::Store;
use serde::{Deserialize, Serialize};

use config::Channel;
pub use config::ReportsConfig;
use facts::{Facts, Scope, Subject};
use narrative::{Narrative, Written};
use period::Period;
use store::{Claim, DeliveryKey, StoredReport};

use crate::llm::Llm;
use crate::mail::{Attachment, Email, MailError, Mailer};
use crate::webhook::Webhook;
use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "report";

/// Namespace of the per-account job ids a tick records.
const JOB_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_6972_6f73_2d72_6570_6f72_7473_0002);

/// A `report` job's input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Set by the scheduler: plan the reports due at this tick (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<String>,
    /// The schedule that fired (for logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// One account's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `tenant` for the portfolio report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// `2026-W48` / `2026-11`; default: the last complete period in the
    /// recipient's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Write a new version even if one exists (an explicit re-run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun: bool,
    /// The chunk of a `per_account` fan-out (plans only these accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ids: Option<Vec<String>>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed (worth retrying).
    #[error("report: store: {0}")]
    Store(String),
    /// The request cannot succeed (unknown account, bad period).
    #[error("report: {0}")]
    Invalid(String),
}

impl From<sqlx::Error> for ReportError {
    fn from(e: sqlx::Error) -> Self {
        ReportError::Store(e.to_string())
    }
}

impl From<kairos_core::StoreError> for ReportError {
    fn from(e: kairos_core::StoreError) -> Self {
        match e {
            kairos_core::StoreError::NotFound(what) => ReportError::Invalid(format!("{what} not found")),
            other => ReportError::Store(other.to_string()),
        }
    }
}

impl From<ReportError> for JobError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Store(_) => JobError::Retryable(e.to_string()),
            ReportError::Invalid(_) => JobError::Permanent(e.to_string()),
        }
    }
}

/// What a generated (or found) report is.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The stored row.
    pub report: StoredReport,
    /// Whether this call wrote it (false: it existed).
    pub created: bool,
}

/// Everything reports need besides the store: built once per process.
pub struct Reporter {
    config: ReportsConfig,
    profiles: ProfilesConfig,
    text_fields: Vec<String>,
    webhook: Option<Arc<Webhook>>,
    llm: Llm,
    mailer: Option<Mailer>,
    max_attempts: u32,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("period", &self.config.period)
            .field("metrics", &self.config.metrics.0.len())
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// A reporter that writes template narratives and delivers nowhere
    /// (see [`Reporter::with_llm`], [`Reporter::with_mailer`],
    /// [`Reporter::with_webhook`]).
    pub fn new(
        config: ReportsConfig,
        profiles: ProfilesConfig,
        text_fields: Vec<String>,
        policies: &JobPolicies,
    ) -> Self {
        Self {
            max_attempts: policies.get(KIND).max_attempts,
            config,
            profiles,
            text_fields,
            webhook: None,
            llm: Llm::disabled(),
            mailer: None,
        }
    }

    /// Narratives by this LLM (grounded; the template on any failure).
    pub fn with_llm(mut self, llm: Llm) -> Self {
        self.llm = llm;
        self
    }

    /// Email through this relay.
    pub fn with_mailer(mut self, mailer: Mailer) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Tenants' signed webhooks.
    pub fn with_webhook(mut self, webhook: Arc<Webhook>) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// A reporter from the kinds' config: webhook secrets and SMTP
    /// credentials from the environment, the LLM with its shared quota.
    pub async fn from_jobs_config(c: &crate::JobsConfig) -> Result<Self, crate::SetupError> {
        let mut r = Self::new(
            c.reports.clone(),
            c.profiles.clone(),
            c.sentiment.text_fields.clone(),
            &c.policies,
        )
        .with_llm(Llm::from_jobs_config(c).await?);
        if !c.webhooks.is_empty() {
            r = r.with_webhook(Arc::new(Webhook::from_config(&c.webhooks)?));
        }
        if let Some(mailer) = Mailer::from_jobs_config(c)? {
            r = r.with_mailer(mailer);
        }
        Ok(r)
    }

    /// `[reports]`.
    pub fn config(&self) -> &ReportsConfig {
        &self.config
    }

    /// The period a report made now covers for `account` (the portfolio
    /// when `None`): the last complete one in its zone.
    pub fn default_period(&self, tenant: &Tenant, account: Option<&Account>) -> Period {
        Period::previous_complete(self.config.period, now_ms(), self.zone(tenant, account))
    }

    fn tenant_zone(&self, tenant: &Tenant) -> chrono_tz::Tz {
        profile::resolve_time_zone(None, None, self.profiles.tenant(tenant), &self.profiles)
    }

    fn zone(&self, tenant: &Tenant, account: Option<&Account>) -> chrono_tz::Tz {
        profile::resolve_time_zone(None, account, self.profiles.tenant(tenant), &self.profiles)
    }

    fn language(&self, tenant: &Tenant, account: Option<&Account>) -> String {
        profile::resolve_language(None, account, self.profiles.tenant(tenant), &self.profiles).to_owned()
    }

    /// The report jobs due at `now` for a tenant (accounts whose local time
    /// is past the send time of the current period, by less than
    /// `catch_up`; the portfolio report by the tenant's zone). Ids are
    /// derived from (tenant, account, period).
    pub async fn due_jobs(
        &self,
        store: &Store,
        tenant: &Tenant,
        now: i64,
        only: Option<&[String]>,
    ) -> Result<Vec<NewJob>, ReportError> {
        let tr = self.config.tenant(&tenant.name, &tenant.id);
        if !tr.enabled {
            return Ok(Vec::new());
        }
        let catch_up = i64::try_from(self.config.catch_up.as_millis()).unwrap_or(i64::MAX);
        let due = |tz| period::due(self.config.period, self.config.send_hour, catch_up, now, tz);
        let accounts = store
            .all_accounts(
                &tenant.id,
                &AccountFilter {
                    reports_enabled: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let mut jobs = Vec::new();
        for a in &accounts {
            if only.is_some_and(|ids| !ids.contains(&a.id)) {
                continue;
            }
            if let Some(p) = due(self.zone(tenant, Some(a))) {
                jobs.push(self.job(tenant, Some(&a.id), &p.label, false));
            }
        }
        // Every chunk of a per_account fan-out plans the portfolio too: its
        // job id is deterministic, so it is recorded once.
        if let Some(p) = due(self.tenant_zone(tenant)) {
            jobs.push(self.job(tenant, None, &p.label, false));
        }
        Ok(jobs)
    }

    /// One report job (`account = None`: the portfolio). Deterministic id
    /// unless `rerun`.
    pub fn job(&self, tenant: &Tenant, account: Option<&str>, period: &str, rerun: bool) -> NewJob {
        let payload = Payload {
            account_id: account.map(str::to_owned),
            scope: account.is_none().then_some(Scope::Tenant),
            period: Some(period.to_owned()),
            rerun,
            ..Default::default()
        };
        let id = if rerun {
            uuid::Uuid::now_v7()
        } else {
            uuid::Uuid::new_v5(
                &JOB_NS,
                format!("{}|{}|{period}", tenant.id, account.unwrap_or("")).as_bytes(),
            )
        };
        NewJob {
            id: id.to_string(),
            tenant_id: tenant.id.clone(),
            kind: KIND.to_owned(),
            event_id: None,
            payload: serde_json::to_string(&payload).unwrap_or_default(),
            max_attempts: self.max_attempts,
            run_after: None,
        }
    }

    /// Records `jobs` (those not recorded yet) and queues them. Returns how
    /// many were new.
    pub async fn record_jobs(
        &self,
        store: &Store,
        queue: &dyn kairos_core::Queue,
        jobs: Vec<NewJob>,
    ) -> Result<usize, ReportError> {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let existing: std::collections::BTreeSet<String> =
            store.jobs_by_ids(&ids).await?.into_iter().map(|j| j.id).collect();
        let new: Vec<NewJob> = jobs.into_iter().filter(|j| !existing.contains(&j.id)).collect();
        if new.is_empty() {
            return Ok(0);
        }
        let mut tx = store.pool().begin().await?;
        insert_jobs(&mut tx, &new, now_ms()).await?;
        tx.commit().await?;
        if let Err(e) = enqueue_recorded(store, queue, &new).await {
            tracing::warn!(error = %e, "queue unavailable; the dispatcher will queue the report jobs");
        }
        Ok(new.len())
    }

    /// Builds the facts of a report.
    pub async fn facts(
        &self,
        store: &Store,
        tenant: &Tenant,
        account: Option<&Account>,
        period: &Period,
        language: &str,
    ) -> Result<Facts, ReportError> {
        let scope = if account.is_some() {
            Scope::Account
        } else {
            Scope::Tenant
        };
        let req = facts::Request {
            scope,
            subject: Subject {
                tenant_id: tenant.id.clone(),
                tenant_name: tenant.name.clone(),
                account_id: account.map(|a| a.id.clone()),
                account_name: account.map(|a| a.display_name.clone().unwrap_or_else(|| a.id.clone())),
                plan: account.and_then(|a| a.plan.clone()),
                renewal_date: account.and_then(|a| a.renewal_date.clone()),
            },
            period: period.clone(),
            language,
            metrics: &self.config.metrics.0,
            top_comments: self.config.top_comments,
            top_accounts: self.config.top_accounts,
            text_fields: &self.text_fields,
        };
        Ok(facts::gather(store, &req).await?)
    }

    /// The template narrative for `facts`.
    pub fn narrative(&self, facts: &Facts) -> Narrative {
        narrative::template(facts)
    }

    /// The narrative for `facts`: the LLM's when one is configured and
    /// what it wrote is grounded (one retry on a violation), else the
    /// template with the reason.
    pub async fn write(&self, facts: &Facts) -> Written {
        narrative::write(&self.llm, facts).await
    }

    /// Generates the report of (tenant, account or portfolio, period) —
    /// or finds the one stored. With `rerun`, writes a new version.
    pub async fn generate(
        &self,
        store: &Store,
        tenant: &Tenant,
        account_id: Option<&str>,
        period: Option<&str>,
        rerun: bool,
        job_id: &str,
    ) -> Result<Generated, ReportError> {
        let started = Instant::now();
        let account = match account_id {
            Some(id) => Some(
                store
                    .account(&tenant.id, id)
                    .await?
                    .ok_or_else(|| ReportError::Invalid(format!("account {id} has no profile")))?,
            ),
            None => None,
        };
        let tz = self.zone(tenant, account.as_ref());
        let period = match period {
            Some(l) => Period::parse(l, tz).map_err(ReportError::Invalid)?,
            None => Period::previous_complete(self.config.period, now_ms(), tz),
        };
        let account_key = account_id.unwrap_or("");
        let latest = store::latest_version(store, &tenant.id, account_key, &period.label).await?;
        if latest > 0 && !rerun {
            if let Some(r) = store::find(store, &tenant.id, account_key, &period.label, latest).await? {
                return Ok(Generated {
                    report: r,
                    created: false,
                });
            }
        }
        let version = if rerun { latest + 1 } else { 1 };
        let language = self.language(tenant, account.as_ref());
        let facts = self.facts(store, tenant, account.as_ref(), &period, &language).await?;
        let Written {
            narrative,
            usage,
            model,
        } = self.write(&facts).await;
        let tr = self.config.tenant(&tenant.name, &tenant.id);
        let brand = self.config.branding(&tr);
        let html = render::html(&facts, &narrative, &brand);
        let markdown = render::markdown(&facts, &narrative);
        let channels = self.config.channels(&tr);
        let report = StoredReport {
            id: store::report_id(&tenant.id, account_key, &period.label, version),
            tenant_id: tenant.id.clone(),
            account_id: account_key.to_owned(),
            scope: facts.scope.as_str().to_owned(),
            period: period.label.clone(),
            version,
            period_start: period.start_ms,
            period_end: period.end_ms,
            time_zone: period.time_zone.clone(),
            language,
            narrative_source: narrative.source.as_str().to_owned(),
            llm_model: model,
            tokens_prompt: usage.map(|u| i64::from(u.prompt_tokens)),
            tokens_completion: usage.map(|u| i64::from(u.completion_tokens)),
            generation_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            facts: serde_json::to_string(&facts).map_err(|e| ReportError::Invalid(e.to_string()))?,
            narrative: serde_json::to_string(&narrative).map_err(|e| ReportError::Invalid(e.to_string()))?,
            html,
            markdown,
            delivery_state: if channels.is_empty() { "none" } else { "pending" }.to_owned(),
            delivery_error: None,
            job_id: job_id.to_owned(),
            created_at: now_ms(),
        };
        let created = store::insert(store, &report).await?;
        if created {
            return Ok(Generated { report, created });
        }
        // Someone else (a duplicate delivery of this job, another replica)
        // stored it first: theirs is the report.
        let theirs = store::find(store, &tenant.id, account_key, &period.label, version)
            .await?
            .ok_or_else(|| ReportError::Store("report vanished after a conflicting insert".into()))?;
        Ok(Generated {
            report: theirs,
            created: false,
        })
    }

    /// The report in another language, from its stored facts: metric
    /// labels and the narrative in `language`.
    pub async fn rendition(&self, report: &StoredReport, language: &str) -> Result<(Facts, Narrative), ReportError> {
        let mut facts: Facts =
            serde_json::from_str(&report.facts).map_err(|e| ReportError::Invalid(format!("stored facts: {e}")))?;
        if facts.language == language {
            let n: Narrative = serde_json::from_str(&report.narrative)
                .map_err(|e| ReportError::Invalid(format!("stored narrative: {e}")))?;
            return Ok((facts, n));
        }
        facts.language = language.to_owned();
        for m in &mut facts.metrics {
            if let Some(d) = self.config.metrics.0.iter().find(|d| d.name == m.name) {
                m.label = d.label(language).to_owned();
            }
        }
        let n = self.write(&facts).await.narrative;
        Ok((facts, n))
    }

    /// Delivers a stored report on the tenant's channels. `Ok` when every
    /// recipient is settled (sent, refused for good, or unknown after a
    /// crash); `Retryable` while some delivery may still succeed.
    pub async fn deliver(&self, store: &Store, tenant: &Tenant, report: &StoredReport) -> Result<String, JobError> {
        let tr = self.config.tenant(&tenant.name, &tenant.id);
        let channels = self.config.channels(&tr);
        let account = if report.account_id.is_empty() {
            None
        } else {
            store
                .account(&tenant.id, &report.account_id)
                .await
                .map_err(|e| JobError::Retryable(format!("report: store: {e}")))?
        };
        let scope = if report.scope == "tenant" {
            Scope::Tenant
        } else {
            Scope::Account
        };
        let audience = deliver::Audience {
            tenant,
            account: account.as_ref(),
            scope,
            team: &tr.team,
            channels: &channels,
            language: &report.language,
        };
        let recipients = deliver::recipients(store, &self.profiles, audience)
            .await
            .map_err(|e| JobError::Retryable(format!("report: store: {e}")))?;
        let lease = i64::try_from(self.config.delivery_lease.as_millis()).unwrap_or(300_000);
        let mut states: Vec<&'static str> = Vec::new();
        let mut last_error: Option<String> = None;
        for r in &recipients {
            let message_id = deliver::message_id(&report.id, r.channel, &r.address);
            let key = DeliveryKey {
                report_id: &report.id,
                channel: r.channel.as_str(),
                recipient: &r.address,
            };
            let claim = store::claim(store, key, &r.language, &message_id, lease, now_ms()).await?;
            let state = match claim {
                Claim::Sent => "sent",
                Claim::Rejected => "rejected",
                Claim::InFlight => "sending",
                Claim::Unknown => {
                    last_error = Some(format!(
                        "{} {}: the attempt that sent it stopped before recording the outcome; not re-sent",
                        r.channel.as_str(),
                        r.address
                    ));
                    "unknown"
                }
                Claim::Claimed => {
                    let outcome = self.send(tenant, report, r, &message_id).await;
                    let (state, error) = match outcome {
                        Ok(()) => ("sent", None),
                        Err(SendError::Retry(e)) => ("failed", Some(e)),
                        Err(SendError::Refused(e)) => ("rejected", Some(e)),
                        Err(SendError::Unknown(e)) => ("unknown", Some(format!("{e}; not re-sent"))),
                    };
                    store::record(store, key, state, error.as_deref(), now_ms()).await?;
                    if let Some(e) = error {
                        last_error = Some(format!("{} {}: {e}", r.channel.as_str(), r.address));
                    }
                    state
                }
            };
            states.push(state);
        }
        let overall = deliver::overall(&states);
        store::set_delivery(store, &report.id, overall, last_error.as_deref()).await?;
        let summary = format!("reports/{} v{} {overall}", report.id, report.version);
        if overall == "pending" {
            return Err(JobError::Retryable(format!(
                "{summary}: {}",
                last_error.unwrap_or_else(|| "a delivery is in flight in another attempt".into())
            )));
        }
        Ok(summary)
    }

    async fn send(
        &self,
        tenant: &Tenant,
        report: &StoredReport,
        r: &deliver::Recipient,
        message_id: &str,
    ) -> Result<(), SendError> {
        match r.channel {
            Channel::Webhook => {
                let Some(w) = &self.webhook else {
                    return Err(SendError::Refused("webhook: no webhooks configured".into()));
                };
                let (facts, narrative) = self.rendition(report, &r.language).await?;
                let body = serde_json::json!({
                    "type": "report.ready",
                    "report": {
                        "id": report.id,
                        "account_id": (!report.account_id.is_empty()).then_some(&report.account_id),
                        "scope": report.scope,
                        "period": report.period,
                        "version": report.version,
                        "language": r.language,
                        "summary": narrative.summary.first(),
                        "narrative": narrative,
                        "facts": facts,
                        "links": {
                            "html": format!("/v1/reports/{}.html", report.id),
                            "markdown": format!("/v1/reports/{}.md", report.id),
                            "json": format!("/v1/reports/{}.json", report.id),
                        },
                    },
                });
                w.post_signed(tenant, message_id, body.to_string().into_bytes())
                    .await
                    .map(|_| ())
                    .map_err(SendError::from)
            }
            Channel::Email => {
                let Some(mailer) = &self.mailer else {
                    return Err(SendError::Refused("email: no [smtp] section configured".into()));
                };
                let (facts, narrative) = self.rendition(report, &r.language).await?;
                let tr = self.config.tenant(&tenant.name, &tenant.id);
                let brand = self.config.branding(&tr);
                let html = render::html(&facts, &narrative, &brand);
                let mut attachments = Vec::new();
                if tr.pdf {
                    match render::pdf(&self.config.chromium, &html).await {
                        Ok(bytes) => attachments.push(Attachment {
                            filename: format!("report-{}.pdf", report.period),
                            content_type: "application/pdf".into(),
                            bytes,
                        }),
                        // A missing PDF is not worth withholding the report.
                        Err(e) => tracing::warn!(report = %report.id, error = %e, "report PDF failed; sent without it"),
                    }
                }
                // Mail clients that ignore inline SVG get the same charts as
                // PNGs (the stored HTML and the PDF keep the SVG).
                let (mail_html, inline) = {
                    let (html, tag) = (html.clone(), report.id.clone());
                    tokio::task::spawn_blocking(move || raster::email_html(&html, &tag))
                        .await
                        .map_err(|e| SendError::Retry(format!("report: rasterising the charts: {e}")))?
                };
                let to = match &r.name {
                    Some(n) => format!("\"{}\" <{}>", n.replace(['"', '\\'], ""), r.address),
                    None => r.address.clone(),
                };
                let email = Email {
                    from_name: Some(brand.sender_name.clone()),
                    to: vec![to],
                    subject: render::subject(&facts),
                    text: render::text(&facts, &narrative),
                    html: Some(mail_html),
                    attachments,
                    inline,
                    message_id: Some(message_id.to_owned()),
                    headers: vec![("X-Kairos-Report".into(), report.id.clone())],
                    ..Default::default()
                };
                match mailer.send(&email).await {
                    Ok(_) => Ok(()),
                    Err(e @ MailError::Transient { .. }) => Err(SendError::Retry(e.to_string())),
                    Err(e @ MailError::Unknown { .. }) => Err(SendError::Unknown(e.to_string())),
                    Err(e @ MailError::Permanent { .. }) => Err(SendError::Refused(e.to_string())),
                }
            }
        }
    }
}

/// Why one recipient's send did not end `sent`: the delivery row's state.
enum SendError {
    /// Known not to have left: `failed`, claimed again by a later attempt.
    Retry(String),
    /// Refused for good: `rejected`.
    Refused(String),
    /// The relay may have the message: `unknown`, never re-sent.
    Unknown(String),
}

impl From<ReportError> for SendError {
    fn from(e: ReportError) -> Self {
        JobError::from(e).into()
    }
}

impl From<JobError> for SendError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Retryable(e) => SendError::Retry(e),
            JobError::Permanent(e) => SendError::Refused(e),
        }
    }
}

/// The `report` job.
pub struct Report {
    reporter: Arc<Reporter>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.reporter.fmt(f)
    }
}

impl Report {
    /// The job over a reporter.
    pub fn new(reporter: Arc<Reporter>) -> Self {
        Self { reporter }
    }
}

#[async_trait]
impl Job for Report {
    const KIND: &'static str = KIND;
    type Payload = Payload;

    async fn run(&self, ctx: &JobContext, payload: Payload) -> Result<JobOutput, JobError> {
        let tenant = ctx
            .store
            .find_tenant(&ctx.tenant_id)
            .await
            .map_err(|e| JobError::Retryable(format!("report: reading tenant: {e}")))?;
        let r = &self.reporter;
        if let Some(tick) = &payload.tick {
            if payload.account_id.is_none() && payload.scope.is_none() {
                let now = chrono::DateTime::parse_from_rfc3339(tick)
                    .map_err(|e| JobError::Permanent(format!("report: tick `{tick}`: {e}")))?
                    .timestamp_millis();
                let jobs = r
                    .due_jobs(&ctx.store, &tenant, now, payload.account_ids.as_deref())
                    .await?;
                let due = jobs.len();
                let new = r.record_jobs(&ctx.store, ctx.queue.as_ref(), jobs).await?;
                return Ok(JobOutput {
                    result_ref: Some(format!("reports due {due}, new {new}")),
                });
            }
        }
        let account = match payload.scope {
            Some(Scope::Tenant) => None,
            _ => Some(payload.account_id.as_deref().ok_or_else(|| {
                JobError::Permanent("report: payload needs `account_id`, `scope: tenant` or `tick`".into())
            })?),
        };
        let g = r
            .generate(
                &ctx.store,
                &tenant,
                account,
                payload.period.as_deref(),
                payload.rerun,
                &ctx.job_id,
            )
            .await?;
        let summary = r.deliver(&ctx.store, &tenant, &g.report).await?;
        Ok(JobOutput {
            result_ref: Some(summary),
        })
    }
}
