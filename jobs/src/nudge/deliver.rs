//! Delivering one planned nudge: kill switch, caps, then the rule's
//! channels in order, each attempt recorded.
//!
//! Channels: `email` (SMTP through [`crate::mail`]; the Message-ID is
//! derived from the nudge, so a retried attempt is recognisably the same
//! message), `webhook` (a `webhook` job with the nudge as its signed body,
//! created in the same transaction as the outcome, retried by the job
//! system), `in_app` (the feed), `success_manager` (a task assigned to the
//! account's `owner`). A channel is skipped — and the next tried — when the person
//! has not consented to it, has no address for it, it is not configured,
//! or it failed permanently (a 5xx bounce). A transient email failure
//! records the attempt and fails the job, which retries it.

use kairos_core::enqueue::NewJob;
use kairos_core::profile::resolve_language;
use kairos_core::store::Tenant;
use serde_json::{json, Value};

use super::config::{EMAIL, IN_APP, TASK, WEBHOOK};
use super::store::{DeliveryRow, NudgeRow, Outcome};
use super::{guards, store, template, Nudge, KIND};
use crate::mail::Email;
use crate::{JobContext, JobError, JobOutput};

fn outcome(status: &'static str, reason: impl Into<String>) -> Outcome {
    Outcome {
        status,
        reason: reason.into(),
        ..Default::default()
    }
}

/// Runs one delivery attempt of nudge `nudge_id`.
pub(super) async fn deliver(
    kind: &Nudge,
    ctx: &JobContext,
    tenant: &Tenant,
    nudge_id: &str,
    now: i64,
) -> Result<JobOutput, JobError> {
    let retry = |e: kairos_core::StoreError| JobError::Retryable(format!("{KIND}: {e}"));
    let Some(n) = store::get(&ctx.store, &ctx.tenant_id, nudge_id).await? else {
        return Err(JobError::Permanent(format!("{KIND}: no nudge {nudge_id}")));
    };
    if !matches!(n.status.as_str(), "planned" | "delayed") {
        return Ok(done(&n.id, &n.status));
    }
    let finish = |o: Outcome, attempts: Vec<DeliveryRow>, jobs: Vec<NewJob>| async move {
        let status = o.status;
        let landed = store::record(&ctx.store, &ctx.tenant_id, nudge_id, &attempts, Some(&o), &jobs, now).await?;
        if landed && !jobs.is_empty() {
            crate::sentiment::queue_after_commit(ctx, &jobs).await;
        }
        Ok::<_, JobError>(done(nudge_id, status))
    };
    if kind.config.killed(tenant) {
        return finish(outcome("skipped", "kill switch"), vec![], vec![]).await;
    }
    let Some(rule) = kind.config.rule(&n.rule) else {
        return finish(
            outcome("skipped", format!("rule `{}` is no longer configured", n.rule)),
            vec![],
            vec![],
        )
        .await;
    };
    let person = ctx
        .store
        .person(&ctx.tenant_id, &n.account_id, &n.person_id)
        .await
        .map_err(retry)?;
    let Some(person) = person else {
        return finish(outcome("skipped", "the person's profile is gone"), vec![], vec![]).await;
    };
    let account = ctx.store.account(&ctx.tenant_id, &n.account_id).await.map_err(retry)?;
    let counts = store::sent_counts(
        &ctx.store,
        &ctx.tenant_id,
        &n.account_id,
        &n.person_id,
        &kind.config.person_caps,
        &kind.config.account_caps,
        now,
    )
    .await?;
    if let Some(reason) = guards::cap_reason(
        &kind.config.person_caps,
        &kind.config.account_caps,
        kind.config.tenant_daily_cap,
        &counts,
    ) {
        return finish(outcome("capped", reason), vec![], vec![]).await;
    }

    // The message, in the person's language (or the rule's first template).
    let language = resolve_language(
        Some(&person),
        account.as_ref(),
        kind.profiles.tenant(tenant),
        &kind.profiles,
    )
    .to_owned();
    let templates = rule.templates_for(n.variant.as_deref());
    let (language, tpl) = match templates.get(&language) {
        Some(t) => (language, t),
        None => match templates.iter().next() {
            Some((l, t)) => (l.clone(), t),
            None => return finish(outcome("skipped", "the rule has no template"), vec![], vec![]).await,
        },
    };
    let mut context = json!({
        "person": person,
        "account": account,
        "rule": {"name": rule.name, "priority": rule.priority, "variant": n.variant},
    });
    if let (Some(ctx_obj), Value::Object(t)) = (context.as_object_mut(), &n.trigger) {
        for key in ["event", "alert", "score"] {
            if let Some(v) = t.get(key) {
                ctx_obj.insert(key.to_owned(), v.clone());
            }
        }
    }
    let subject = template::render(&tpl.subject, &context);
    let body = template::render(&tpl.body, &context);
    let message = |status: &'static str, channel: &str, reason: String| Outcome {
        status,
        reason,
        channel: Some(channel.to_owned()),
        language: Some(language.clone()),
        subject: Some(subject.clone()),
        body: Some(body.clone()),
    };

    let mut attempts = Vec::new();
    let mut tried = Vec::new();
    let attempt = i64::from(ctx.attempt);
    let mut note = |attempts: &mut Vec<DeliveryRow>, channel: &str, outcome: &str, detail: String| {
        tried.push(format!("{channel}: {detail}"));
        attempts.push(DeliveryRow {
            attempt,
            channel: channel.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            at: kairos_core::time::now_ms(),
        });
    };
    for channel in guards::channel_order(&rule.channels, &person.channels) {
        if let Some(why) = guards::consent_blocks(&person, channel) {
            note(&mut attempts, channel, "no_consent", why);
            continue;
        }
        // What the channel needs, before a dry run says it would have been used.
        let missing = match channel {
            EMAIL if kind.mailer.is_none() => Some(("not_configured", "no [smtp] configured".to_owned())),
            EMAIL if person.email.is_none() => Some(("no_address", "the person has no email".to_owned())),
            WEBHOOK if !kind.has_webhook(tenant) => {
                Some(("not_configured", format!("no [webhooks.{}] endpoint", tenant.name)))
            }
            TASK if account.as_ref().and_then(|a| a.owner.as_ref()).is_none() => {
                Some(("no_address", "the account has no owner".to_owned()))
            }
            _ => None,
        };
        if let Some((outcome_word, why)) = missing {
            note(&mut attempts, channel, outcome_word, why);
            continue;
        }
        if rule.dry_run {
            note(&mut attempts, channel, "dry_run", "would have been sent".into());
            return finish(message("dry_run", channel, "dry run".into()), attempts, vec![]).await;
        }
        match channel {
            EMAIL => {
                let (Some(mailer), Some(to)) = (&kind.mailer, &person.email) else {
                    continue;
                };
                let email = Email {
                    to: vec![to.clone()],
                    subject: subject.clone(),
                    text: body.clone(),
                    message_id: Some(format!("nudge-{}@kairos", n.id)),
                    headers: vec![("X-Kairos-Nudge".into(), format!("{}/{}", n.rule, n.id))],
                    ..Default::default()
                };
                match mailer.send(&email).await {
                    Ok(sent) => {
                        note(&mut attempts, channel, "sent", sent.response);
                        return finish(message("sent", channel, String::new()), attempts, vec![]).await;
                    }
                    Err(e) if !e.is_transient() => note(&mut attempts, channel, "failed", e.to_string()),
                    Err(e) => {
                        // Transient: keep the attempt, let the job system retry.
                        note(&mut attempts, channel, "failed", e.to_string());
                        store::record(&ctx.store, &ctx.tenant_id, nudge_id, &attempts, None, &[], now).await?;
                        return Err(JobError::Retryable(format!("{KIND}: email: {e}")));
                    }
                }
            }
            WEBHOOK => {
                let job = NewJob {
                    id: uuid::Uuid::new_v5(&super::NUDGE_NS, format!("webhook|{}", n.id).as_bytes()).to_string(),
                    tenant_id: ctx.tenant_id.clone(),
                    kind: crate::webhook::KIND.to_owned(),
                    event_id: None,
                    payload: webhook_body(&n, &language, &subject, &body).to_string(),
                    max_attempts: kind.webhook_attempts,
                    run_after: None,
                };
                note(&mut attempts, channel, "queued", format!("webhook job {}", job.id));
                return finish(message("sent", channel, String::new()), attempts, vec![job]).await;
            }
            IN_APP => {
                note(&mut attempts, channel, "sent", "in the person's feed".into());
                return finish(message("sent", channel, String::new()), attempts, vec![]).await;
            }
            _ => {
                let owner = account.as_ref().and_then(|a| a.owner.clone()).unwrap_or_default();
                note(&mut attempts, channel, "sent", format!("task assigned to {owner}"));
                return finish(message("sent", channel, format!("task for {owner}")), attempts, vec![]).await;
            }
        }
    }
    let reason = format!("no channel could deliver ({})", tried.join("; "));
    finish(outcome("skipped", reason), attempts, vec![]).await
}

/// The signed body the tenant's webhook receives for a nudge.
fn webhook_body(n: &NudgeRow, language: &str, subject: &str, body: &str) -> Value {
    json!({
        "type": "nudge",
        "id": n.id,
        "rule": n.rule,
        "account_id": n.account_id,
        "person_id": n.person_id,
        "priority": n.priority,
        "urgent": n.urgent,
        "language": language,
        "subject": subject,
        "body": body,
    })
}

fn done(id: &str, status: &str) -> JobOutput {
    JobOutput {
        result_ref: Some(format!("nudges/{id} ({status})")),
    }
}
