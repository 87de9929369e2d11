//! Delivering one planned nudge: kill switch, caps, then the rule's
//! channels in order, each attempt recorded.
//!
//! Channels: `email` (SMTP through [`crate::mail`]; the Message-ID is
//! derived from the nudge), `webhook` (a `webhook` job with the nudge as its
//! signed body, created in the same transaction as the outcome, retried by
//! the job system), `in_app` (the feed), `success_manager` (a task assigned
//! to the account's `owner`). A channel is skipped — and the next tried —
//! when the person has not consented to it, has no address for it, it is
//! not configured, or it failed permanently (a 5xx bounce).
//!
//! **At most once.** Before anything leaves, the delivery *claims* the
//! nudge ([`store::claim`]): in one transaction serialised per account (per
//! tenant with a tenant daily cap) the caps are counted — claimed nudges
//! included — and the nudge becomes `sending` with a lease, or `capped`.
//! That intent is committed before the send; the outcome is recorded after
//! by the claim's holder ([`store::record_claimed`]). An attempt that
//! finds the nudge:
//! - `sending` within its lease leaves it to the attempt holding it (and
//!   is retried later);
//! - `sending` past its lease: the attempt that claimed it died between
//!   claim and record, so the message may or may not have left. It is
//!   **not** re-sent: the nudge becomes `unknown`, with the reason;
//! - anything else but `planned`/`delayed` does nothing.
//!
//! A transient email refusal (4xx, refused connection) is known not to have
//! delivered: the claim is released and the job retries. A timeout or
//! dropped connection after the message was handed over
//! ([`MailError::Unknown`]) may have delivered: the nudge becomes `unknown`
//! at once, as after a crash. The Message-ID is derived from the nudge, so
//! even a server-side duplicate is recognisable.

use kairos_core::enqueue::NewJob;
use kairos_core::profile::resolve_language;
use kairos_core::store::Tenant;
use serde_json::{json, Value};

use super::config::{NudgeRule, EMAIL, IN_APP, TASK, WEBHOOK};
use super::store::{Caps, Claim, DeliveryRow, NudgeRow, Outcome};
use super::tracking::{escape_html, Tracker};
use super::{guards, personalise, store, template, Nudge, KIND};
use crate::mail::{Email, MailError};
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
    match n.status.as_str() {
        "planned" | "delayed" => {}
        "sending" if n.lease_until.is_some_and(|l| l > now) => {
            return Err(JobError::Retryable(format!(
                "{KIND}: nudge {nudge_id} is being sent by another attempt"
            )));
        }
        "sending" => {
            let status = if store::expire_claim(&ctx.store, &ctx.tenant_id, nudge_id, now).await? {
                "unknown"
            } else {
                "sending"
            };
            return Ok(done(nudge_id, status));
        }
        other => return Ok(done(&n.id, other)),
    }
    let config = kind.config();
    let finish = |o: Outcome, attempts: Vec<DeliveryRow>, jobs: Vec<NewJob>| async move {
        let status = o.status;
        let landed = store::record(&ctx.store, &ctx.tenant_id, nudge_id, &attempts, Some(&o), &jobs, now).await?;
        if landed && !jobs.is_empty() {
            crate::sentiment::queue_after_commit(ctx, &jobs).await;
        }
        Ok::<_, JobError>(done(nudge_id, status))
    };
    if config.killed(tenant) {
        return finish(outcome("skipped", "kill switch"), vec![], vec![]).await;
    }
    let Some(rule) = config.rule(&n.rule) else {
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
    let caps = Caps {
        person: &config.person_caps,
        account: &config.account_caps,
        tenant_daily: config.tenant_daily_cap,
    };
    // An early, unlocked look: a nudge already over a cap spends no LLM
    // call. The binding check is the claim's.
    let counts = store::sent_counts(&ctx.store, &ctx.tenant_id, &n, caps, now).await?;
    if let Some(reason) = guards::cap_reason(caps.person, caps.account, caps.tenant_daily, &counts) {
        return finish(outcome("capped", reason), vec![], vec![]).await;
    }

    // Which channels can carry it, in order; the others are noted with why.
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
    // Each channel in order with what blocks it (consent, an address, the
    // config); attempts are noted as the loop below passes them.
    let mut order: Vec<(&str, Option<(&str, String)>)> = Vec::new();
    for channel in guards::channel_order(&rule.channels, &person.channels) {
        let blocked = match guards::consent_blocks(&person, channel) {
            Some(why) => Some(("no_consent", why)),
            None if channel == EMAIL && kind.mailer.is_none() => {
                Some(("not_configured", "no [smtp] configured".to_owned()))
            }
            None if channel == EMAIL && person.email.is_none() => {
                Some(("no_address", "the person has no email".to_owned()))
            }
            None if channel == WEBHOOK && !kind.has_webhook(tenant) => {
                Some(("not_configured", format!("no [webhooks.{}] endpoint", tenant.name)))
            }
            None if channel == TASK && account.as_ref().and_then(|a| a.owner.as_ref()).is_none() => {
                Some(("no_address", "the account has no owner".to_owned()))
            }
            None => None,
        };
        order.push((channel, blocked));
    }
    if order.iter().all(|(_, b)| b.is_some()) {
        for (channel, blocked) in order {
            if let Some((word, why)) = blocked {
                note(&mut attempts, channel, word, why);
            }
        }
        let reason = format!("no channel could deliver ({})", tried.join("; "));
        return finish(outcome("skipped", reason), attempts, vec![]).await;
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
            None => return finish(outcome("skipped", "the rule has no template"), attempts, vec![]).await,
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
    // Dry runs show the template: they must not spend the LLM's quota.
    let text = personalise::write(
        &kind.llm,
        rule.personalise && !rule.dry_run,
        &language,
        &context,
        subject,
        body,
    )
    .await;
    let stored_body = with_link(&text.body, rule.link.as_deref());
    // Open and click tracking: the deployment set it up, the tenant opted in, the rule asks.
    let tracker = kind
        .tracker
        .as_ref()
        .filter(|_| rule.track && config.tracking.as_ref().is_some_and(|t| t.covers(tenant)));
    let message = |status: &'static str, channel: &str, reason: String| Outcome {
        status,
        reason,
        channel: Some(channel.to_owned()),
        language: Some(language.clone()),
        subject: Some(text.subject.clone()),
        body: Some(stored_body.clone()),
        text_source: Some(text.source),
        text_note: text.note.clone(),
    };
    if rule.dry_run {
        for (channel, blocked) in order.clone() {
            match blocked {
                Some((word, why)) => note(&mut attempts, channel, word, why),
                None => {
                    note(&mut attempts, channel, "dry_run", "would have been sent".into());
                    return finish(message("dry_run", channel, "dry run".into()), attempts, vec![]).await;
                }
            }
        }
    }

    let claim_id = match store::claim(&ctx.store, &ctx.tenant_id, &n, caps, config.delivery_lease_ms(), now).await? {
        Claim::Claimed(id) => id,
        Claim::Capped(reason) => {
            store::record(&ctx.store, &ctx.tenant_id, nudge_id, &attempts, None, &[], now).await?;
            return Ok(done(nudge_id, &format!("capped: {reason}")));
        }
        Claim::Taken => return Ok(done(nudge_id, "taken by another attempt")),
    };
    let record = |o: Outcome, attempts: Vec<DeliveryRow>, jobs: Vec<NewJob>| {
        let claim_id = claim_id.clone();
        async move {
            let status = o.status;
            let landed = store::record_claimed(
                &ctx.store,
                &ctx.tenant_id,
                nudge_id,
                &claim_id,
                &attempts,
                &o,
                &jobs,
                kairos_core::time::now_ms(),
            )
            .await?;
            if landed && !jobs.is_empty() {
                crate::sentiment::queue_after_commit(ctx, &jobs).await;
            }
            Ok::<_, JobError>(done(nudge_id, status))
        }
    };
    for (channel, blocked) in order {
        if let Some((word, why)) = blocked {
            note(&mut attempts, channel, word, why);
            continue;
        }
        match channel {
            EMAIL => {
                let (Some(mailer), Some(to)) = (&kind.mailer, &person.email) else {
                    continue;
                };
                let email = Email {
                    to: vec![to.clone()],
                    subject: text.subject.clone(),
                    text: email_text(tracker, &ctx.tenant_id, rule, &n, &text.body),
                    message_id: Some(format!("nudge-{}@kairos", n.id)),
                    headers: vec![("X-Kairos-Nudge".into(), format!("{}/{}", n.rule, n.id))],
                    html: tracker.map(|t| email_html(t, &ctx.tenant_id, rule, &n, &text.body)),
                    ..Default::default()
                };
                match mailer.send(&email).await {
                    Ok(sent) => {
                        note(&mut attempts, channel, "sent", sent.response);
                        return record(message("sent", channel, String::new()), attempts, vec![]).await;
                    }
                    Err(e @ MailError::Unknown { .. }) => {
                        // The relay may have it: neither re-sent nor tried on another channel.
                        note(&mut attempts, channel, "unknown", e.to_string());
                        let reason = format!("{e}; not re-sent");
                        return record(message("unknown", channel, reason), attempts, vec![]).await;
                    }
                    Err(e @ MailError::Permanent { .. }) => note(&mut attempts, channel, "failed", e.to_string()),
                    Err(e @ MailError::Transient { .. }) => {
                        // Known not delivered: give the claim back; the job retries.
                        note(&mut attempts, channel, "failed", e.to_string());
                        store::release(&ctx.store, &ctx.tenant_id, nudge_id, &claim_id, &attempts, now).await?;
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
                    payload: webhook_body(&n, &language, &text.subject, &stored_body).to_string(),
                    max_attempts: kind.webhook_attempts,
                    run_after: None,
                };
                note(&mut attempts, channel, "queued", format!("webhook job {}", job.id));
                return record(message("sent", channel, String::new()), attempts, vec![job]).await;
            }
            IN_APP => {
                note(&mut attempts, channel, "sent", "in the person's feed".into());
                return record(message("sent", channel, String::new()), attempts, vec![]).await;
            }
            _ => {
                let owner = account.as_ref().and_then(|a| a.owner.clone()).unwrap_or_default();
                note(&mut attempts, channel, "sent", format!("task assigned to {owner}"));
                return record(message("sent", channel, format!("task for {owner}")), attempts, vec![]).await;
            }
        }
    }
    let reason = format!("no channel could deliver ({})", tried.join("; "));
    record(outcome("skipped", reason), attempts, vec![]).await
}

/// `body` with the rule's link after it.
fn with_link(body: &str, link: Option<&str>) -> String {
    match link {
        Some(l) => format!("{body}\n\n{l}"),
        None => body.to_owned(),
    }
}

/// The plain-text part: the link tracked when tracking is on.
fn email_text(tracker: Option<&Tracker>, tenant_id: &str, rule: &NudgeRule, n: &NudgeRow, body: &str) -> String {
    match (tracker, rule.link.as_deref()) {
        (Some(t), Some(link)) => with_link(body, Some(&t.click_url(tenant_id, &n.account_id, &n.id, link))),
        (_, link) => with_link(body, link),
    }
}

/// The HTML part of a tracked email: the text, the tracked link and the pixel.
fn email_html(t: &Tracker, tenant_id: &str, rule: &NudgeRule, n: &NudgeRow, body: &str) -> String {
    let mut html = String::from("<!doctype html><html><body>");
    for para in body.split("\n\n") {
        html.push_str(&format!("<p>{}</p>", escape_html(para).replace('\n', "<br>")));
    }
    if let Some(link) = &rule.link {
        let url = t.click_url(tenant_id, &n.account_id, &n.id, link);
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape_html(&url),
            escape_html(link)
        ));
    }
    html.push_str(&format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
        escape_html(&t.open_url(tenant_id, &n.account_id, &n.id))
    ));
    html.push_str("</body></html>");
    html
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
