//! `nudge`: proactive messages to the people of an account — detect,
//! decide, deliver on the right channel, record why.
//!
//! One kind, two steps, each a job:
//!
//! 1. **Plan** (payload: an event, a sentiment alert, or `{"sweep": true}`
//!    from a schedule). The rules the trigger fires ([`config`]) pick the
//!    account's audience; per person a nudge row keyed by (person, rule,
//!    window) and its delivery job are written in one transaction — a
//!    second trigger in the window is a no-op ([`guards::dedupe_key`]).
//!    Quiet hours in the person's zone set the delivery job's `run_after`
//!    (status `delayed`, with the reason), unless the rule is `urgent`.
//!    Events reach the kind through `[[rules]]` entries derived from the
//!    nudge rules ([`config::NudgesConfig::event_rules`]); sentiment
//!    alerts through `sentiment.follow_up = ["nudge"]`; inactivity and
//!    churn levels are evaluated by the sweep.
//! 2. **Deliver** (payload `{"nudge_id": …}`): the kill switch, the caps,
//!    then the rule's channels in order with consent per channel
//!    ([`deliver`]). Every attempt is a `nudge_deliveries` row; the outcome
//!    (`sent`, `skipped`, `capped`, `dry_run`) lands once.

pub mod config;
pub mod deliver;
pub mod guards;
pub mod personalise;
pub mod reload;
pub mod stats;
pub mod store;
pub mod template;
pub mod tracking;

use async_trait::async_trait;
use kairos_core::enqueue::NewJob;
use kairos_core::event::Event;
use kairos_core::profile::{resolve_time_zone, ProfilesConfig};
use kairos_core::store::Tenant;
use serde::Deserialize;
use serde_json::{json, Value};

pub use config::NudgesConfig;

use crate::mail::Mailer;
use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "nudge";

/// Namespace of nudge ids (UUIDv5 of tenant and dedupe key).
const NUDGE_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_6972_6f73_6e75_6467_6500_0000_0001);

/// What a `nudge` job is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// Deliver a planned nudge.
    Deliver {
        /// The nudge.
        nudge_id: String,
    },
    /// Evaluate the inactivity and churn-level rules (a schedule's payload;
    /// fan-out fields are ignored).
    Sweep {
        /// `true`.
        sweep: bool,
    },
    /// A sentiment alert (the `follow_up` payload).
    Alert(AlertPayload),
    /// An event a derived rule matched.
    Event(Event),
}

/// The fields of an alert a nudge uses (the rest is kept for templates).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertPayload {
    /// Alert kind (`client_dissatisfaction`).
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// Account.
    pub account_id: String,
    /// Everything, for `{{alert.…}}`.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// A `nudge` job that plans the nudges of every rule triggered by
/// sentiment alerts for `alert`'s account — what an operator's
/// "intervene" does; the same payload `sentiment.follow_up` sends, plus who
/// intervened (`{{alert.intervened_by}}`). The rules' dedupe window, caps,
/// consent and quiet hours apply as to any trigger.
pub fn intervention(tenant_id: &str, alert: &kairos_core::store::Alert, actor: &str, max_attempts: u32) -> NewJob {
    let details: Value = serde_json::from_str(&alert.payload).unwrap_or(Value::Null);
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant_id.to_owned(),
        kind: KIND.to_owned(),
        event_id: None,
        payload: json!({
            "id": alert.id,
            "tenant_id": tenant_id,
            "account_id": alert.account_id,
            "event_id": alert.event_id,
            "kind": alert.kind,
            "severity": alert.severity,
            "urgency": alert.urgency,
            "reason": alert.reason,
            "details": details,
            "created_at": kairos_core::time::to_rfc3339(alert.created_at),
            "intervened_by": actor,
        })
        .to_string(),
        max_attempts,
        run_after: None,
    }
}

/// The nudge kind with its rules, the profile defaults and its channels.
pub struct Nudge {
    /// `[nudges]`, replaced as a whole by a hot reload ([`reload`]).
    config: reload::NudgeRules,
    profiles: ProfilesConfig,
    mailer: Option<Mailer>,
    /// Personalisation (`personalise = true`): the LLM every kind shares.
    llm: crate::llm::Llm,
    /// Open and click tracking (`[nudges.tracking]`).
    tracker: Option<tracking::Tracker>,
    /// Tenant names or ids with a `[webhooks.TENANT]` endpoint.
    webhook_tenants: Vec<String>,
    /// Attempts of `nudge` and `webhook` jobs this kind creates.
    nudge_attempts: u32,
    webhook_attempts: u32,
}

impl std::fmt::Debug for Nudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nudge")
            .field("rules", &self.config().rules.len())
            .field("email", &self.mailer.is_some())
            .finish_non_exhaustive()
    }
}

impl Nudge {
    /// The kind built from its config; `[smtp]` gives the email channel,
    /// `[llm]` personalisation, `[nudges.tracking]` (its key from the
    /// environment) tracking.
    pub async fn from_config(config: &crate::JobsConfig) -> Result<Self, crate::SetupError> {
        let tracker = config
            .nudges
            .tracking
            .as_ref()
            .map(tracking::Tracker::from_config)
            .transpose()?;
        Ok(Self {
            config: reload::NudgeRules::new(config.nudges.clone()),
            profiles: config.profiles.clone(),
            mailer: Mailer::from_jobs_config(config)?,
            llm: crate::llm::Llm::from_jobs_config(config).await?,
            tracker,
            webhook_tenants: config.webhooks.keys().cloned().collect(),
            nudge_attempts: config.policies.get(KIND).max_attempts,
            webhook_attempts: config.policies.get(crate::webhook::KIND).max_attempts,
        })
    }

    /// The rules and guards in force now (a hot reload replaces them).
    pub fn config(&self) -> std::sync::Arc<NudgesConfig> {
        self.config.current()
    }

    /// The handle a config watcher updates the rules through.
    pub fn rules_handle(&self) -> reload::NudgeRules {
        self.config.clone()
    }

    fn has_webhook(&self, tenant: &Tenant) -> bool {
        self.webhook_tenants
            .iter()
            .any(|t| *t == tenant.id || *t == tenant.name)
    }

    /// Plans the nudges of `rule` for the audience of `account_id`; returns
    /// the delivery jobs of the new ones (recorded, to queue after commit).
    /// `(trigger, at)`: what fired the rule and when (the dedupe window).
    #[allow(clippy::too_many_arguments)]
    async fn plan_account(
        &self,
        config: &NudgesConfig,
        ctx: &JobContext,
        tenant: &Tenant,
        rule: &config::NudgeRule,
        account_id: &str,
        (trigger, at): (Value, i64),
        now: i64,
    ) -> Result<Vec<NewJob>, JobError> {
        let store = &ctx.store;
        let retry = |e: kairos_core::StoreError| JobError::Retryable(format!("{KIND}: {e}"));
        let account = store.account(&ctx.tenant_id, account_id).await.map_err(retry)?;
        let mut people = Vec::new();
        let roles: Vec<Option<String>> = if rule.audience.roles.is_empty() {
            vec![None]
        } else {
            rule.audience.roles.iter().cloned().map(Some).collect()
        };
        for role in roles {
            people.extend(
                store
                    .all_people(&ctx.tenant_id, account_id, role.as_deref())
                    .await
                    .map_err(retry)?,
            );
        }
        let quiet = config.quiet_hours.as_ref().and_then(|q| q.times());
        let defaults = self.profiles.tenant(tenant);
        let now_utc = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        let mut jobs = Vec::new();
        for person in &people {
            let tz = resolve_time_zone(Some(person), account.as_ref(), defaults, &self.profiles);
            let delay = match quiet {
                Some((start, end)) if !rule.urgent => guards::quiet_until(now_utc, tz, start, end),
                _ => None,
            };
            let variant = rule.is_experiment().then(|| {
                stats::assign(
                    &rule.name,
                    &person.id,
                    rule.holdout_percent * 100,
                    &rule.variant_weights(),
                )
            });
            let (status, reason, run_after) = match delay {
                _ if variant == Some(stats::Assignment::Holdout) => {
                    ("holdout", "holdout group: gets nothing (the baseline)".to_owned(), now)
                }
                Some(until) => (
                    "delayed",
                    format!(
                        "quiet hours in {tz}: delayed to {}",
                        until.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
                    ),
                    until.timestamp_millis(),
                ),
                None => ("planned", String::new(), now),
            };
            let window = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX / 4);
            // The trigger's own time (an event's), so a retried job lands in the same window.
            let key = guards::dedupe_key(&rule.name, account_id, &person.id, at, window);
            let id = uuid::Uuid::new_v5(&NUDGE_NS, format!("{}|{key}", ctx.tenant_id).as_bytes()).to_string();
            let planned = store::Planned {
                id: id.clone(),
                rule: rule.name.clone(),
                account_id: account_id.to_owned(),
                person_id: person.id.clone(),
                dedupe_key: key,
                trigger: trigger.clone(),
                status,
                variant: variant.map(|v| match v {
                    stats::Assignment::Holdout => "holdout".to_owned(),
                    stats::Assignment::Variant(name) => name,
                }),
                reason,
                priority: rule.priority,
                urgent: rule.urgent,
                dry_run: rule.dry_run,
                run_after,
            };
            let job = NewJob {
                id: uuid::Uuid::new_v5(&NUDGE_NS, format!("deliver|{id}").as_bytes()).to_string(),
                tenant_id: ctx.tenant_id.clone(),
                kind: KIND.to_owned(),
                event_id: None,
                payload: json!({ "nudge_id": id }).to_string(),
                max_attempts: self.nudge_attempts,
                run_after: (run_after > now).then_some(run_after),
            };
            let holdout = status == "holdout";
            let job = (!holdout).then_some(job);
            if store::plan(&ctx.store, &ctx.tenant_id, &planned, job.as_ref(), now).await? {
                jobs.extend(job);
            }
        }
        Ok(jobs)
    }

    /// The rules `payload` fires, with the account and what to record as the trigger.
    async fn fired<'c>(
        &self,
        config: &'c NudgesConfig,
        ctx: &JobContext,
        payload: &Payload,
        now: i64,
    ) -> Result<Vec<(&'c config::NudgeRule, String, (Value, i64))>, JobError> {
        let mut out = Vec::new();
        match payload {
            Payload::Deliver { .. } => {}
            Payload::Event(event) => {
                for rule in config.event_rules() {
                    if rule.matches(event) {
                        let name = rule
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix("nudge:"))
                            .unwrap_or_default();
                        if let Some(r) = config.rule(name) {
                            let trigger = json!({"type": "event", "event": event});
                            out.push((r, event.account_id.clone(), (trigger, event.occurred_at_ms)));
                        }
                    }
                }
            }
            Payload::Alert(alert) => {
                if alert.kind == crate::sentiment::ALERT_KIND {
                    // The whole alert, for `{{alert.*}}`.
                    let mut full = alert.rest.clone();
                    full.insert("kind".into(), json!(alert.kind));
                    full.insert("severity".into(), json!(alert.severity));
                    full.insert("account_id".into(), json!(alert.account_id));
                    for r in config.rules.iter().filter(|r| r.trigger.sentiment_alert) {
                        let trigger = json!({"type": "sentiment_alert", "alert": full});
                        out.push((r, alert.account_id.clone(), (trigger, now)));
                    }
                }
            }
            Payload::Sweep { .. } => {
                for r in &config.rules {
                    if let Some(days) = r.trigger.inactive_days {
                        let before = now - i64::from(days) * 86_400_000;
                        for account in store::inactive_accounts(&ctx.store, &ctx.tenant_id, before).await? {
                            let trigger = json!({"type": "inactivity", "inactive_days": days});
                            out.push((r, account, (trigger, now)));
                        }
                    }
                    if let Some(level) = &r.trigger.churn_level {
                        let levels: &[&str] = if level == "CRITICAL" {
                            &["CRITICAL"]
                        } else {
                            &["HIGH", "CRITICAL"]
                        };
                        for (account, risk, p) in store::accounts_at_risk(&ctx.store, &ctx.tenant_id, levels).await? {
                            let trigger =
                                json!({"type": "churn_level", "score": {"risk_level": risk, "probability": p}});
                            out.push((r, account, (trigger, now)));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Job for Nudge {
    const KIND: &'static str = KIND;
    type Payload = Payload;

    async fn run(&self, ctx: &JobContext, payload: Payload) -> Result<JobOutput, JobError> {
        let now = kairos_core::time::now_ms();
        // A store failure here is retried: read as "no tenant", it would drop nudges.
        let tenant = ctx
            .store
            .find_tenant(&ctx.tenant_id)
            .await
            .map_err(|e| JobError::Retryable(format!("{KIND}: reading tenant: {e}")))?;
        if let Payload::Deliver { nudge_id } = &payload {
            return deliver::deliver(self, ctx, &tenant, nudge_id, now).await;
        }
        let mut outcome = None;
        if let Payload::Event(e) = &payload {
            let column = config::OUTCOMES
                .iter()
                .find(|(t, _)| *t == e.event_type)
                .map(|(_, c)| *c);
            if let (Some(column), Some(Value::String(id))) = (column, e.data.get("nudge_id")) {
                let found =
                    store::record_outcome(&ctx.store, &ctx.tenant_id, &e.account_id, id, column, e.occurred_at_ms)
                        .await?;
                let what = if found { "recorded" } else { "no such nudge" };
                outcome = Some(format!("{} on nudge {id}: {what}", e.event_type));
            }
        }
        let config = self.config();
        let fired = self.fired(&config, ctx, &payload, now).await?;
        let mut jobs = Vec::new();
        for (rule, account, trigger) in &fired {
            jobs.extend(
                self.plan_account(&config, ctx, &tenant, rule, account, trigger.clone(), now)
                    .await?,
            );
        }
        if !jobs.is_empty() {
            crate::sentiment::queue_after_commit(ctx, &jobs).await;
        }
        Ok(JobOutput {
            result_ref: Some(
                outcome
                    .unwrap_or_else(|| format!("nudges: {} rule match(es), {} new nudge(s)", fired.len(), jobs.len())),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_producer_s_payload_parses_as_its_own_shape() {
        let p = |v: Value| serde_json::from_value::<Payload>(v).unwrap();
        assert!(matches!(p(json!({"nudge_id": "n1"})), Payload::Deliver { nudge_id } if nudge_id == "n1"));
        // A schedule's payload with fan-out fields.
        assert!(matches!(
            p(json!({"sweep": true, "tenant_id": "t"})),
            Payload::Sweep { sweep: true }
        ));
        // The sentiment alert as `follow_up` carries it.
        let alert = json!({"id": "a1", "tenant_id": "t", "account_id": "acme", "event_id": "e1",
            "kind": "client_dissatisfaction", "severity": "high", "urgency": 80, "reason": "r", "details": {}});
        assert!(matches!(p(alert), Payload::Alert(a) if a.account_id == "acme" && a.severity == "high"));
        let event = json!({"id": "e1", "type": "payment.failed", "account_id": "acme",
            "occurred_at_ms": 1, "data": {"reason": "card"}});
        assert!(matches!(p(event), Payload::Event(e) if e.event_type == "payment.failed"));
    }
}
